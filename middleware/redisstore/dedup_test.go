package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/redisstore"
	"github.com/brace-go/brace/middleware/redisstore/internal/redistest"
	"github.com/google/go-cmp/cmp"
)

type user struct {
	ID   int
	Name string
	Tags []string
}

func mustDedup(t *testing.T, cfg redisstore.DedupConfig) *redisstore.Dedup {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = name(t)
	}
	d, err := redisstore.NewDedup(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDedupConfigErrors(t *testing.T) {
	c := redistest.Shared(t).Client(t)
	for _, tt := range []struct {
		name string
		cfg  redisstore.DedupConfig
		want string
	}{
		{"nil client", redisstore.DedupConfig{Name: "x"}, "redisstore: Client must not be nil"},
		{"no name", redisstore.DedupConfig{Client: c}, "redisstore: Name must not be empty"},
		{"negative TTL", redisstore.DedupConfig{Client: c, Name: "x", TTL: -1}, "redisstore: TTL must not be negative, got -1ns"},
		{"tiny TTL", redisstore.DedupConfig{Client: c, Name: "x", TTL: time.Microsecond}, "redisstore: TTL must be 0 or at least 1ms, got 1µs"},
		{"tiny lease", redisstore.DedupConfig{Client: c, Name: "x", Lease: time.Millisecond}, "redisstore: Lease must be at least 3ms, got 1ms"},
		{"negative MaxWait", redisstore.DedupConfig{Client: c, Name: "x", MaxWait: -1}, "redisstore: MaxWait must not be negative, got -1ns"},
		{"negative MaxValueBytes", redisstore.DedupConfig{Client: c, Name: "x", MaxValueBytes: -1}, "redisstore: MaxValueBytes must not be negative, got -1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := redisstore.NewDedup(tt.cfg)
			if err == nil || err.Error() != tt.want {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestDedupMiddlewarePanics(t *testing.T) {
	c := redistest.Shared(t).Client(t)
	d := mustDedup(t, redisstore.DedupConfig{Client: c})
	for _, tt := range []struct {
		name string
		f    func()
		want string
	}{
		{"nil dedup", func() { redisstore.DedupMiddleware[int, int](nil, strconv.Itoa) }, "redisstore: nil *Dedup (was NewDedup's error ignored?)"},
		{"nil key", func() { redisstore.DedupMiddleware[int, int](d, nil) }, "redisstore: DedupMiddleware needs a non-nil key func"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if r := recover(); r != tt.want {
					t.Errorf("recovered %v, want %q", r, tt.want)
				}
			}()
			tt.f()
		})
	}
}

// TestDedupKeys (issue 15 item 7): the name and the key are
// length-prefixed, so the cache "users:secrets" with key "42" and the
// cache "users" with key "secrets:42" are different Redis keys, and one
// never serves the other's entries.
func TestDedupKeys(t *testing.T) {
	c, _ := client(t)
	base := name(t)
	d1 := mustDedup(t, redisstore.DedupConfig{Client: c, Name: base + ":users:secrets", TTL: time.Minute})
	d2 := mustDedup(t, redisstore.DedupConfig{Client: c, Name: base + ":users", TTL: time.Minute})
	if k1, k2 := d1.Key("42"), d2.Key("secrets:42"); k1 == k2 {
		t.Fatalf("both are %q", k1)
	}
	if got, want := mustDedup(t, redisstore.DedupConfig{Client: c, Name: "users"}).Key("42"), "brace:dedup:5:users:{2:42}:v"; got != want {
		t.Errorf("Key = %q, want %q", got, want)
	}
	ctx := context.Background()
	secret := middleware.Apply(func(context.Context, string) (string, error) { return "secret", nil },
		redisstore.DedupMiddleware[string, string](d1, func(k string) string { return k }))
	public := middleware.Apply(func(context.Context, string) (string, error) { return "public", nil },
		redisstore.DedupMiddleware[string, string](d2, func(k string) string { return k }))
	if got, _ := secret(ctx, "42"); got != "secret" {
		t.Fatalf("got %q", got)
	}
	if got, _ := public(ctx, "secrets:42"); got != "public" {
		t.Errorf("the other cache's key: %q, want its own stage's result", got)
	}
}

// TestDedupCacheShared: with a TTL, a result computed in one process
// serves the calls of another; errors are not cached.
func TestDedupCacheShared(t *testing.T) {
	srv := redistest.Shared(t)
	var rec recorder
	cfg := redisstore.DedupConfig{Name: name(t), TTL: time.Minute, Observer: &rec}
	cfg.Client = srv.Client(t)
	a := mustDedup(t, cfg)
	cfg.Client = srv.Client(t)
	b := mustDedup(t, cfg)
	var runs atomic.Int64
	fail := atomic.Bool{}
	fetch := func(_ context.Context, id int) (user, error) {
		runs.Add(1)
		if fail.Load() {
			return user{}, errBoom
		}
		return user{ID: id, Name: "ada", Tags: []string{"x"}}, nil
	}
	ctx := context.Background()
	ga := middleware.Apply(fetch, redisstore.DedupMiddleware[int, user](a, strconv.Itoa))
	gb := middleware.Apply(fetch, redisstore.DedupMiddleware[int, user](b, strconv.Itoa))
	want := user{ID: 1, Name: "ada", Tags: []string{"x"}}
	for i, g := range []middleware.Stage[int, user]{ga, gb, gb} {
		got, err := g(ctx, 1)
		if err != nil || !cmp.Equal(want, got) {
			t.Errorf("call %d: %+v, %v", i, got, err)
		}
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("stage ran %d times, want 1", n)
	}
	if j := rec.of(middleware.Joined); len(j) != 2 || j[0].Reason != "cache" || j[0].Concern != "redisstore" {
		t.Errorf("Joined events %+v, want 2 with Reason cache", j)
	}
	if got := b.Stats().Joined; got != 2 {
		t.Errorf("Stats().Joined = %d, want 2", got)
	}
	fail.Store(true)
	for range 2 {
		if _, err := ga(ctx, 2); !errors.Is(err, errBoom) {
			t.Errorf("failing stage: %v", err)
		}
	}
	if n := runs.Load(); n != 3 {
		t.Errorf("stage ran %d times, want 3: errors are not cached", n)
	}
	if d := a.Stats().StoreFailures; d != 0 {
		t.Errorf("StoreFailures = %d", d)
	}
}

// TestDedupInFlight: a call in one process waits for the same key's call
// in flight in another and gets its result; a follower of a leader that
// failed runs the stage itself.
func TestDedupInFlight(t *testing.T) {
	srv := redistest.Shared(t)
	for _, fails := range []bool{false, true} {
		t.Run(fmt.Sprint("leader fails ", fails), func(t *testing.T) {
			var rec recorder
			cfg := redisstore.DedupConfig{Name: name(t), Observer: &rec, Timeout: time.Second}
			cfg.Client = srv.Client(t)
			a := mustDedup(t, cfg)
			cfg.Client = srv.Client(t)
			b := mustDedup(t, cfg)
			entered, release := make(chan struct{}), make(chan struct{})
			var runs atomic.Int64
			leader := middleware.Apply(func(_ context.Context, id int) (user, error) {
				runs.Add(1)
				close(entered)
				<-release
				if fails {
					return user{}, errBoom
				}
				return user{ID: id, Name: "leader"}, nil
			}, redisstore.DedupMiddleware[int, user](a, strconv.Itoa))
			follower := middleware.Apply(func(_ context.Context, id int) (user, error) {
				runs.Add(1)
				return user{ID: id, Name: "follower"}, nil
			}, redisstore.DedupMiddleware[int, user](b, strconv.Itoa))
			ctx := context.Background()
			done := make(chan error, 1)
			go func() {
				_, err := leader(ctx, 7)
				done <- err
			}()
			<-entered
			got := make(chan user, 1)
			go func() {
				u, _ := follower(ctx, 7)
				got <- u
			}()
			// The follower polls from 1ms on; the leader ends later.
			time.AfterFunc(50*time.Millisecond, func() { close(release) })
			u := <-got
			<-done
			want, wantRuns := "leader", int64(1)
			if fails {
				want, wantRuns = "follower", 2
			}
			if u.Name != want || runs.Load() != wantRuns {
				t.Errorf("follower got %+v with %d runs, want %s's result and %d runs", u, runs.Load(), want, wantRuns)
			}
			if j := rec.of(middleware.Joined); (len(j) == 1) == fails {
				t.Errorf("Joined events %+v", j)
			}
		})
	}
}

// TestDedupCrashedLeader (issue 15 item 2): a lock whose holder is gone
// (its process crashed: nobody renews it) is taken over within Lease, not
// after a long lease: a live leader renews its lock every Lease/3, so the
// lease can be short.
func TestDedupCrashedLeader(t *testing.T) {
	c, _ := client(t)
	const lease = 150 * time.Millisecond
	d := mustDedup(t, redisstore.DedupConfig{Client: c, Lease: lease, Timeout: time.Second})
	ctx := context.Background()
	lock := strings.TrimSuffix(d.Key("k"), ":v") + ":lock"
	c.Set(ctx, lock, "crashed-process.1", lease)
	start := time.Now()
	get := middleware.Apply(func(context.Context, string) (string, error) { return "mine", nil },
		redisstore.DedupMiddleware[string, string](d, func(k string) string { return k }))
	if got, err := get(ctx, "k"); err != nil || got != "mine" {
		t.Fatalf("%q, %v", got, err)
	}
	if el := time.Since(start); el > lease+100*time.Millisecond {
		t.Errorf("took over after %v, want within Lease %v", el, lease)
	}
	// A live leader running 5 leases keeps its lock.
	entered, release := make(chan struct{}), make(chan struct{})
	slow := middleware.Apply(func(context.Context, string) (string, error) {
		close(entered)
		<-release
		return "slow", nil
	}, redisstore.DedupMiddleware[string, string](d, func(k string) string { return k }))
	go func() {
		<-entered
		defer close(release)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for s := time.Now(); time.Since(s) < 5*lease; <-tick.C {
			if c.Exists(ctx, strings.TrimSuffix(d.Key("slow"), ":v")+":lock").Val() != 1 {
				t.Errorf("a live leader lost its lock after %v", time.Since(s))
				return
			}
		}
	}()
	slow(ctx, "slow")
}

// TestDedupLostLockReply (issue 15 item 2): the reply to the step that
// took the lock is lost; the caller runs the stage unshared and, once
// Redis answers again, releases the lock with its token: the next call
// in another process leads at once instead of waiting out a lease.
func TestDedupLostLockReply(t *testing.T) {
	srv := redistest.Shared(t)
	px := startProxy(t, srv.Addr)
	opts := srv.Options()
	opts.Addr = px.Addr
	cp := redisNewClient(t, opts)
	a := mustDedup(t, redisstore.DedupConfig{Client: cp, Name: name(t), Timeout: 50 * time.Millisecond})
	b := mustDedup(t, redisstore.DedupConfig{Client: srv.Client(t), Name: name(t), Timeout: time.Second})
	ctx := context.Background()
	key := func(k string) string { return k }
	release := make(chan struct{})
	ga := middleware.Apply(func(_ context.Context, k string) (string, error) {
		if k == "k" {
			px.Drop(false) // Redis answers again before the stage ends
			<-release
		}
		return "a", nil
	}, redisstore.DedupMiddleware[string, string](a, key))
	ga(ctx, "warm") // loads the scripts, connects
	px.Drop(true)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if got, err := ga(ctx, "k"); err != nil || got != "a" {
			t.Errorf("a: %q, %v", got, err)
		}
	}()
	lock := strings.TrimSuffix(b.Key("k"), ":v") + ":lock"
	eventually(t, 5*time.Second, "the lost step's lock in Redis", func() bool { return srv.Client(t).Exists(ctx, lock).Val() == 1 })
	close(release)
	<-done
	start := time.Now()
	gb := middleware.Apply(func(context.Context, string) (string, error) { return "b", nil },
		redisstore.DedupMiddleware[string, string](b, key))
	if got, err := gb(ctx, "k"); err != nil || got != "b" {
		t.Errorf("b: %q, %v", got, err)
	}
	// Waiting for the lock would take its Lease (3 s); one round trip on a
	// loaded machine under -race can take 100 ms.
	if el := time.Since(start); el > time.Second {
		t.Errorf("b waited %v for a lock whose owner had finished, want no wait", el)
	}
}

// TestDedupHostileValues (issue 15 item 9): a value larger than
// MaxValueBytes is never transferred (its size is checked in Redis) and is
// deleted; keys of the wrong type are repaired; a value that does not
// decode is a miss. Each is reported, and the stage answers.
func TestDedupHostileValues(t *testing.T) {
	c, _ := client(t)
	var rec recorder
	d := mustDedup(t, redisstore.DedupConfig{Client: c, TTL: time.Minute, MaxValueBytes: 1 << 10, Observer: &rec, Timeout: time.Second})
	ctx := context.Background()
	var runs atomic.Int64
	get := middleware.Apply(func(_ context.Context, k string) ([]int, error) {
		runs.Add(1)
		return []int{1}, nil
	}, redisstore.DedupMiddleware[string, []int](d, func(k string) string { return k }))
	huge := "v[" + strings.Repeat("1,", 1<<19) + "1]" // 1 MiB of small numbers
	lockOf := func(k string) string { return strings.TrimSuffix(d.Key(k), ":v") + ":lock" }
	for _, tt := range []struct {
		name    string
		prepare func(k string)
		want    error
	}{
		{"too large", func(k string) { c.Set(ctx, d.Key(k), huge, time.Minute) }, redisstore.ErrTooLarge},
		{"wrong type", func(k string) { c.HSet(ctx, d.Key(k), "f", "v") }, redisstore.ErrCorrupt},
		{"lock of wrong type", func(k string) { c.LPush(ctx, lockOf(k), "x") }, redisstore.ErrCorrupt},
		{"does not decode", func(k string) { c.Set(ctx, d.Key(k), "v{not json", time.Minute) }, redisstore.ErrCorrupt},
		{"unknown tag", func(k string) { c.Set(ctx, d.Key(k), "x1", time.Minute) }, redisstore.ErrCorrupt},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k := name(t)
			tt.prepare(k)
			rec.Reset()
			runs.Store(0)
			var ms0, ms1 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			got, err := get(ctx, k)
			runtime.ReadMemStats(&ms1)
			if err != nil || len(got) != 1 || runs.Load() != 1 {
				t.Fatalf("%v, %v with %d runs; want the stage's result", got, err, runs.Load())
			}
			if alloc := ms1.TotalAlloc - ms0.TotalAlloc; alloc > 256<<10 {
				t.Errorf("the call allocated %d bytes, want far less than the 1 MiB value", alloc)
			}
			if f := rec.of(middleware.StoreFailed); len(f) != 1 || !errors.Is(f[0].Err, tt.want) {
				t.Errorf("StoreFailed events %+v, want one matching %v", f, tt.want)
			}
			// Repaired: the next call is served from the cache.
			if _, err := get(ctx, k); err != nil || runs.Load() != 1 {
				t.Errorf("second call: %v with %d runs, want a cache hit", err, runs.Load())
			}
		})
	}
}

// TestDedupContextEnded: a call whose context has ended runs nothing and
// sends nothing.
func TestDedupContextEnded(t *testing.T) {
	c, n := client(t)
	d := mustDedup(t, redisstore.DedupConfig{Client: c})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	get := middleware.Apply(func(context.Context, int) (int, error) {
		t.Error("stage ran")
		return 0, nil
	}, redisstore.DedupMiddleware[int, int](d, strconv.Itoa))
	n.take()
	if _, err := get(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("%v, want context.Canceled", err)
	}
	if got, _ := n.take(); got != 0 {
		t.Errorf("%d round trips, want 0", got)
	}
}

// TestDedupPanickingLeader: a leader whose stage panics publishes that it
// failed (its followers run the stage themselves) and releases its lock;
// the panic goes on to its caller.
func TestDedupPanickingLeader(t *testing.T) {
	c, _ := client(t)
	d := mustDedup(t, redisstore.DedupConfig{Client: c, Timeout: time.Second})
	ctx := context.Background()
	get := middleware.Apply(func(context.Context, int) (int, error) { panic("boom") },
		redisstore.DedupMiddleware[int, int](d, strconv.Itoa))
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v", r)
			}
		}()
		get(ctx, 1)
	}()
	if n := c.Exists(ctx, strings.TrimSuffix(d.Key("1"), ":v")+":lock").Val(); n != 0 {
		t.Error("the lock outlived the panicking leader")
	}
}

// TestDedupManyCallers: 150 concurrent callers of one key in three
// processes run the stage exactly once (with a cache, a caller that comes
// after the flight ended is served by the cache).
func TestDedupManyCallers(t *testing.T) {
	const procs, per = 3, 50
	srv := redistest.Shared(t)
	var runs atomic.Int64
	var stages []middleware.Stage[int, user]
	for range procs {
		d := mustDedup(t, redisstore.DedupConfig{Client: srv.Client(t), Name: name(t), TTL: time.Minute, Timeout: 5 * time.Second, Observer: failOnStoreError(t)})
		stages = append(stages, middleware.Apply(func(_ context.Context, id int) (user, error) {
			runs.Add(1)
			time.Sleep(20 * time.Millisecond) // a stage that takes a while
			return user{ID: id}, nil
		}, redisstore.DedupMiddleware[int, user](d, strconv.Itoa)))
	}
	var wg sync.WaitGroup
	for i := range procs * per {
		wg.Go(func() {
			if u, err := stages[i%procs](context.Background(), 9); err != nil || u.ID != 9 {
				t.Errorf("caller %d: %+v, %v", i, u, err)
			}
		})
	}
	wg.Wait()
	if n := runs.Load(); n != 1 {
		t.Errorf("stage ran %d times, want 1", n)
	}
}

// TestDedupWaits: a call waits for a live leader at most MaxWait, then
// runs the stage itself; a waiting call whose context ends returns at
// once without running the stage.
func TestDedupWaits(t *testing.T) {
	c, _ := client(t)
	ctx := context.Background()
	const maxWait = 60 * time.Millisecond
	d := mustDedup(t, redisstore.DedupConfig{Client: c, MaxWait: maxWait, Timeout: time.Second})
	lock := strings.TrimSuffix(d.Key("k"), ":v") + ":lock"
	c.Set(ctx, lock, "live-leader.1", time.Minute) // a leader that runs long
	var runs atomic.Int64
	get := middleware.Apply(func(context.Context, string) (string, error) {
		runs.Add(1)
		return "mine", nil
	}, redisstore.DedupMiddleware[string, string](d, func(k string) string { return k }))
	start := time.Now()
	if got, err := get(ctx, "k"); err != nil || got != "mine" {
		t.Fatalf("%q, %v", got, err)
	}
	if el := time.Since(start); el < maxWait || el > maxWait+200*time.Millisecond {
		t.Errorf("ran after waiting %v, want MaxWait %v", el, maxWait)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if _, err := get(cctx, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting call whose context ended: %v, want context.DeadlineExceeded", err)
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("stage ran %d times, want 1", n)
	}
}

// TestDedupRoundTrips counts commands: a cache hit is one round trip, a
// leader two (the step, the publication).
func TestDedupRoundTrips(t *testing.T) {
	c, n := client(t)
	d := mustDedup(t, redisstore.DedupConfig{Client: c, TTL: time.Minute, Timeout: time.Second})
	get := middleware.Apply(func(_ context.Context, id int) (int, error) { return id, nil },
		redisstore.DedupMiddleware[int, int](d, strconv.Itoa))
	ctx := context.Background()
	get(ctx, 0) // loads the scripts
	n.take()
	get(ctx, 1)
	if got, names := n.take(); got != 2 {
		t.Errorf("leader: %d round trips %v, want 2", got, names)
	}
	get(ctx, 1)
	if got, names := n.take(); got != 1 {
		t.Errorf("cache hit: %d round trips %v, want 1", got, names)
	}
}

// TestDedupSkippedNoAlloc: while the store is skipped, a call goes
// straight to the stage: no round trip, no allocation.
func TestDedupSkippedNoAlloc(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocations are not measured under the race detector")
	}
	srv := redistest.Start(t)
	c := srv.Client(t)
	d := mustDedup(t, redisstore.DedupConfig{Client: c, Name: name(t)})
	get := middleware.Apply(func(_ context.Context, id int) (int, error) { return id, nil },
		redisstore.DedupMiddleware[int, int](d, func(int) string { return "k" }))
	srv.Stop()
	ctx := context.Background()
	for range redisstore.DownAfter {
		get(ctx, 1)
	}
	if !d.Stats().Down {
		t.Fatal("not down after DownAfter failures")
	}
	if a := testing.AllocsPerRun(100, func() { get(ctx, 1) }); a != 0 {
		t.Errorf("%v allocations per call while the store is skipped, want 0", a)
	}
}

// TestDedupAwkwardKeys: keys that look like key syntax ("", "}", "{",
// "k}:lock", ":v") under two names whose name:key read alike are all
// distinct: concurrent calls of each run its stage once and get their own
// key's result.
func TestDedupAwkwardKeys(t *testing.T) {
	c, _ := client(t)
	keys := []string{"", "}", "{", "k}:lock", ":v", "a:b", "2:a"}
	var runs sync.Map // name+"\x00"+key -> *atomic.Int64
	var wg sync.WaitGroup
	for _, n := range []string{name(t) + ":a", name(t)} {
		d := mustDedup(t, redisstore.DedupConfig{Client: c, Name: n, TTL: time.Minute, Timeout: 5 * time.Second, Observer: failOnStoreError(t)})
		get := middleware.Apply(func(_ context.Context, k string) (string, error) {
			v, _ := runs.LoadOrStore(n+"\x00"+k, new(atomic.Int64))
			v.(*atomic.Int64).Add(1)
			return n + "|" + k, nil
		}, redisstore.DedupMiddleware[string, string](d, func(k string) string { return k }))
		for _, k := range keys {
			for range 5 {
				wg.Go(func() {
					if got, err := get(context.Background(), k); err != nil || got != n+"|"+k {
						t.Errorf("%q %q: %q, %v", n, k, got, err)
					}
				})
			}
		}
	}
	wg.Wait()
	runs.Range(func(k, v any) bool {
		if n := v.(*atomic.Int64).Load(); n != 1 {
			t.Errorf("%q: stage ran %d times, want 1", k, n)
		}
		return true
	})
}

// TestDedupLateLeader: a leader whose lock was lost (here deleted) while
// it ran, and taken by another call, does not release the new leader's
// lock when it publishes.
func TestDedupLateLeader(t *testing.T) {
	c, _ := client(t)
	d := mustDedup(t, redisstore.DedupConfig{Client: c, Timeout: time.Second})
	ctx := context.Background()
	lock := strings.TrimSuffix(d.Key("k"), ":v") + ":lock"
	entered, release := make(chan struct{}), make(chan struct{})
	slow := middleware.Apply(func(context.Context, string) (string, error) {
		close(entered)
		<-release
		return "old", nil
	}, redisstore.DedupMiddleware[string, string](d, func(k string) string { return k }))
	done := make(chan struct{})
	go func() {
		defer close(done)
		slow(ctx, "k")
	}()
	<-entered
	c.Set(ctx, lock, "new-leader.1", time.Minute) // the old lock is gone; another leads
	close(release)
	<-done
	if got := c.Get(ctx, lock).Val(); got != "new-leader.1" {
		t.Errorf("lock holds %q after the late leader published, want the new leader's token", got)
	}
}

// TestDedupObservers: a panicking observer leaves the dedup consistent
// (the call still gets its result, the counts are right), and one that
// calls back into it does not deadlock.
func TestDedupObservers(t *testing.T) {
	c, _ := client(t)
	var d *redisstore.Dedup
	var get middleware.Stage[int, int]
	var depth atomic.Int64
	obs := middleware.ObserverFunc(func(ctx context.Context, e middleware.Event) {
		d.Stats()
		if depth.Add(1) == 1 {
			get(ctx, 1) // a nested cache hit: another Joined
		}
		panic("observer")
	})
	d = mustDedup(t, redisstore.DedupConfig{Client: c, TTL: time.Minute, Observer: obs, Timeout: time.Second})
	get = middleware.Apply(func(_ context.Context, id int) (int, error) { return id * 10, nil },
		redisstore.DedupMiddleware[int, int](d, strconv.Itoa))
	ctx := context.Background()
	for range 3 {
		if got, err := get(ctx, 1); err != nil || got != 10 {
			t.Errorf("%d, %v", got, err)
		}
	}
	if got := d.Stats().Joined; got != 3 {
		t.Errorf("Joined = %d, want 3 (two hits and the observer's)", got)
	}
}

// TestDedupCacheExpires: an entry is served for TTL, then fetched again.
func TestDedupCacheExpires(t *testing.T) {
	c, _ := client(t)
	const ttl = 50 * time.Millisecond
	d := mustDedup(t, redisstore.DedupConfig{Client: c, TTL: ttl, Timeout: time.Second})
	var runs atomic.Int64
	get := middleware.Apply(func(_ context.Context, id int) (int64, error) { return runs.Add(1), nil },
		redisstore.DedupMiddleware[int, int64](d, strconv.Itoa))
	ctx := context.Background()
	get(ctx, 1)
	if got, _ := get(ctx, 1); got != 1 {
		t.Fatalf("within the TTL: run %d, want the cached 1", got)
	}
	if d := c.PTTL(ctx, d.Key("1")).Val(); d <= 0 || d > ttl {
		t.Errorf("entry PTTL %v, want within TTL %v", d, ttl)
	}
	eventually(t, 2*time.Second, "a fresh run after the TTL", func() bool {
		got, _ := get(ctx, 1)
		return got == 2
	})
}

// TestDedupLeaderResults: what a follower does with its leader's
// published value: a failure marker, a corrupt value or one too large
// make it run the stage itself (the last two reported); a good one is
// returned.
func TestDedupLeaderResults(t *testing.T) {
	c, _ := client(t)
	ctx := context.Background()
	for _, tt := range []struct {
		name     string
		val      string
		want     string
		reported error
	}{
		{"result", `v"theirs"`, "theirs", nil},
		{"leader failed", "e", "mine", nil},
		{"corrupt", "v{", "mine", redisstore.ErrCorrupt},
		{"too large", "v\"" + strings.Repeat("x", 2000) + "\"", "mine", redisstore.ErrTooLarge},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var rec recorder
			d := mustDedup(t, redisstore.DedupConfig{Client: c, MaxValueBytes: 1000, Observer: &rec, Timeout: time.Second})
			base := strings.TrimSuffix(d.Key("k"), ":v")
			c.Set(ctx, base+":lock", "leader.1", time.Minute)
			get := middleware.Apply(func(context.Context, string) (string, error) { return "mine", nil },
				redisstore.DedupMiddleware[string, string](d, func(k string) string { return k }))
			time.AfterFunc(5*time.Millisecond, func() { c.Set(ctx, base+":r:leader.1", tt.val, time.Minute) })
			got, err := get(ctx, "k")
			if err != nil || got != tt.want {
				t.Errorf("%q, %v; want %q", got, err, tt.want)
			}
			f := rec.of(middleware.StoreFailed)
			switch {
			case tt.reported == nil && len(f) != 0:
				t.Errorf("StoreFailed %+v, want none", f)
			case tt.reported != nil && (len(f) != 1 || !errors.Is(f[0].Err, tt.reported)):
				t.Errorf("StoreFailed %+v, want one matching %v", f, tt.reported)
			}
		})
	}
}
