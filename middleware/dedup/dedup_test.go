package dedup_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/brace-go/brace/middleware/bracetest"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/dedup"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// gated is a stage whose calls block until the test releases them. Each
// run is announced on started with the context it runs on.
type gated struct {
	runs    atomic.Int64
	started chan context.Context
	release chan result
}

type result struct {
	out string
	err error
}

// recorder is bracetest.Recorder, with the views these tests read.
type recorder struct{ bracetest.Recorder }

func newGated() *gated {
	return &gated{started: make(chan context.Context, 100), release: make(chan result)}
}

func (g *gated) stage(ctx context.Context, key string) (string, error) {
	g.runs.Add(1)
	g.started <- ctx
	r := <-g.release
	return r.out, r.err
}

func mustNew(t testing.TB, cfg dedup.Config) *dedup.Group {
	t.Helper()
	g, err := dedup.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func ident(k string) string { return k }

// build returns s deduplicated by its input, and the Group.
func build(t *testing.T, cfg dedup.Config, s middleware.Stage[string, string]) (middleware.Stage[string, string], *dedup.Group) {
	t.Helper()
	g := mustNew(t, cfg)
	return middleware.Apply(s, dedup.Middleware[string, string](g, ident)), g
}

func (r *recorder) get() []middleware.Event { return r.Events() }

// reasons returns the Reason of each event, "" for a join.
func (r *recorder) reasons() []string {
	var out []string
	for _, e := range r.get() {
		out = append(out, e.Kind.String()+"/"+e.Reason)
	}
	return out
}

type outcome struct {
	Out string
	Err error
}

// goCall calls s in a goroutine and delivers the outcome on the channel.
func goCall(ctx context.Context, s middleware.Stage[string, string], key string) <-chan outcome {
	ch := make(chan outcome, 1)
	go func() {
		out, err := s(ctx, key)
		ch <- outcome{out, err}
	}()
	return ch
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  dedup.Config
		want string
	}{
		{"negative TTL", dedup.Config{TTL: -time.Second}, "dedup: TTL must not be negative, got -1s"},
		{"negative MaxEntries", dedup.Config{TTL: time.Second, MaxEntries: -1}, "dedup: MaxEntries must not be negative, got -1"},
		{"MaxEntries without TTL", dedup.Config{MaxEntries: 10}, "dedup: MaxEntries must be zero when TTL is zero (no cache), got 10"},
		{"CacheErrors without TTL", dedup.Config{CacheErrors: true}, "dedup: CacheErrors must be false when TTL is zero (no cache)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := dedup.New(tt.cfg)
			if err == nil {
				t.Fatalf("New succeeded, want error %q", tt.want)
			}
			if g != nil {
				t.Error("New returned a Group with its error")
			}
			if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
				t.Errorf("error text (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConcurrentCallsRunOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGated()
		s, grp := build(t, dedup.Config{}, g.stage)
		var calls []<-chan outcome
		for range 5 {
			calls = append(calls, goCall(context.Background(), s, "a"))
		}
		other := goCall(context.Background(), s, "b")
		synctest.Wait()
		if got := g.runs.Load(); got != 2 {
			t.Fatalf("stage ran %d times for 6 calls with 2 keys, want 2", got)
		}
		<-g.started
		<-g.started
		if got := grp.Stats().InFlight; got != 2 {
			t.Errorf("InFlight = %d with two shared calls running, want 2", got)
		}
		g.release <- result{out: "x"}
		g.release <- result{out: "x"}
		for _, ch := range append(calls, other) {
			if diff := cmp.Diff(outcome{Out: "x"}, <-ch, cmpopts.EquateErrors()); diff != "" {
				t.Errorf("outcome (-want +got):\n%s", diff)
			}
		}
		if diff := cmp.Diff(dedup.Stats{Joined: 4}, grp.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
		// The calls are over: the next one runs the stage again.
		next := goCall(context.Background(), s, "a")
		<-g.started
		g.release <- result{out: "y"}
		if got := (<-next).Out; got != "y" {
			t.Errorf("call after the shared call ended got %q, want y", got)
		}
	})
}

// PITFALLS: "Joined waiters get the leader's real error, never nil
// (redis/rueidis PR #1014)".
func TestPitfallJoinedWaitersGetTheRealError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGated()
		s, _ := build(t, dedup.Config{}, g.stage)
		var calls []<-chan outcome
		for range 4 {
			calls = append(calls, goCall(context.Background(), s, "k"))
		}
		synctest.Wait()
		<-g.started
		errBackend := &net503{}
		g.release <- result{out: "partial", err: errBackend}
		for i, ch := range calls {
			o := <-ch
			if o.Err != error(errBackend) {
				t.Errorf("caller %d: err = %v, want the leader's error %p", i, o.Err, errBackend)
			}
			if o.Out != "partial" {
				t.Errorf("caller %d: out = %q, want the leader's output", i, o.Out)
			}
		}
	})
}

type net503 struct{}

func (*net503) Error() string { return "backend: 503" }

// PITFALLS: "A waiter whose context ends returns ctx.Err() at once while
// the others still get the result; its leaving must not delete the key
// and cause a duplicate run (janos/singleflight #4)". The leader leaves
// too: it started the call, but others still want it.
func TestPitfallCancelledWaiterLeavesOthersWaiting(t *testing.T) {
	for _, who := range []string{"leader", "joiner"} {
		t.Run(who+" leaves", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := newGated()
				s, grp := build(t, dedup.Config{}, g.stage)
				leaderCtx, cancelLeader := context.WithCancel(context.Background())
				joinerCtx, cancelJoiner := context.WithCancel(context.Background())
				defer cancelLeader()
				defer cancelJoiner()
				leader := goCall(leaderCtx, s, "k")
				sctx := <-g.started
				joiner := goCall(joinerCtx, s, "k")
				stayer := goCall(context.Background(), s, "k")
				synctest.Wait()

				leaving, cancel := leader, cancelLeader
				staying := joiner
				if who == "joiner" {
					leaving, cancel, staying = joiner, cancelJoiner, leader
				}
				cancel()
				if diff := cmp.Diff(outcome{Err: context.Canceled}, <-leaving, cmpopts.EquateErrors()); diff != "" {
					t.Errorf("leaving caller (-want +got):\n%s", diff)
				}
				if err := sctx.Err(); err != nil {
					t.Errorf("shared call cancelled with callers still waiting: %v", err)
				}
				late := goCall(context.Background(), s, "k") // joins: the key is still there
				synctest.Wait()
				g.release <- result{out: "v"}
				for _, ch := range []<-chan outcome{staying, stayer, late} {
					if diff := cmp.Diff(outcome{Out: "v"}, <-ch, cmpopts.EquateErrors()); diff != "" {
						t.Errorf("staying caller (-want +got):\n%s", diff)
					}
				}
				if got := g.runs.Load(); got != 1 {
					t.Errorf("stage ran %d times, want 1", got)
				}
				if diff := cmp.Diff(dedup.Stats{Joined: 3}, grp.Stats()); diff != "" {
					t.Errorf("Stats (-want +got):\n%s", diff)
				}
			})
		})
	}
}

// PITFALLS: "The shared call is cancelled only when its last waiter has
// gone."
func TestPitfallSharedCallCancelledWhenLastWaiterLeaves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sawCancel := make(chan error, 1)
		s, _ := build(t, dedup.Config{}, func(ctx context.Context, _ string) (string, error) {
			<-ctx.Done()
			sawCancel <- ctx.Err()
			return "", ctx.Err()
		})
		ctx1, cancel1 := context.WithCancel(context.Background())
		ctx2, cancel2 := context.WithCancel(context.Background())
		a := goCall(ctx1, s, "k")
		b := goCall(ctx2, s, "k")
		synctest.Wait()
		cancel1()
		<-a
		synctest.Wait()
		select {
		case err := <-sawCancel:
			t.Fatalf("shared call cancelled (%v) while a caller still waits", err)
		default:
		}
		cancel2()
		if diff := cmp.Diff(outcome{Err: context.Canceled}, <-b, cmpopts.EquateErrors()); diff != "" {
			t.Errorf("last caller (-want +got):\n%s", diff)
		}
		if err := <-sawCancel; !errors.Is(err, context.Canceled) {
			t.Errorf("shared call saw %v, want context.Canceled", err)
		}
	})
}

// PITFALLS: "a new caller must not inherit an earlier caller's cancellation
// (tailscale #18919)" and "An old call finishing must not delete a newer
// call's entry (golang/go #31420)".
func TestPitfallNewCallerDoesNotInheritCancellation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGated()
		s, grp := build(t, dedup.Config{}, func(ctx context.Context, k string) (string, error) {
			out, err := g.stage(ctx, k)
			if err == nil {
				err = ctx.Err() // like a stage that notices cancellation late
			}
			return out, err
		})
		ctx, cancel := context.WithCancel(context.Background())
		first := goCall(ctx, s, "k")
		oldCtx := <-g.started
		cancel() // the only caller leaves: the shared call is cancelled
		if diff := cmp.Diff(outcome{Err: context.Canceled}, <-first, cmpopts.EquateErrors()); diff != "" {
			t.Errorf("first caller (-want +got):\n%s", diff)
		}
		if oldCtx.Err() == nil {
			t.Fatal("abandoned shared call was not cancelled")
		}

		// The old call is still running. A new caller starts afresh on a
		// live context rather than joining the cancelled call.
		second := goCall(context.Background(), s, "k")
		newCtx := <-g.started
		if err := newCtx.Err(); err != nil {
			t.Fatalf("new shared call starts cancelled: %v", err)
		}
		g.release <- result{out: "old"} // the old call finishes (with context.Canceled)
		synctest.Wait()

		// The old call's end must not have removed the new call's entry:
		// a third caller joins the new call.
		third := goCall(context.Background(), s, "k")
		synctest.Wait()
		g.release <- result{out: "new"}
		for _, ch := range []<-chan outcome{second, third} {
			if diff := cmp.Diff(outcome{Out: "new"}, <-ch, cmpopts.EquateErrors()); diff != "" {
				t.Errorf("later caller (-want +got):\n%s", diff)
			}
		}
		if g.runs.Load() != 2 {
			t.Errorf("stage ran %d times, want 2", g.runs.Load())
		}
		if diff := cmp.Diff(dedup.Stats{Joined: 1}, grp.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
}

// PITFALLS: "Plain singleflight.Do waiters ignore their own context
// deadline." Each caller here stops waiting at its own deadline.
func TestPitfallWaiterHonoursItsOwnDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGated()
		s, _ := build(t, dedup.Config{}, g.stage)
		leader := goCall(context.Background(), s, "k")
		<-g.started
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := s(ctx, "k")
		if diff := cmp.Diff(context.DeadlineExceeded, err, cmpopts.EquateErrors()); diff != "" {
			t.Errorf("joiner (-want +got):\n%s", diff)
		}
		if got := time.Since(start); got != 3*time.Second {
			t.Errorf("joiner returned after %v, want 3s", got)
		}
		g.release <- result{out: "v"}
		if diff := cmp.Diff(outcome{Out: "v"}, <-leader, cmpopts.EquateErrors()); diff != "" {
			t.Errorf("leader (-want +got):\n%s", diff)
		}
	})
}

// The shared call runs detached from its first caller's deadline, so a
// short deadline of the first caller does not fail everyone else.
func TestSharedCallIgnoresFirstCallersDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGated()
		s, _ := build(t, dedup.Config{}, g.stage)
		ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), ctxKey{}, "v"), time.Second)
		defer cancel()
		first := goCall(ctx, s, "k")
		sctx := <-g.started
		if _, ok := sctx.Deadline(); ok {
			t.Error("shared call has the first caller's deadline")
		}
		if got := sctx.Value(ctxKey{}); got != "v" {
			t.Errorf("shared call context value = %v, want the first caller's", got)
		}
		second := goCall(context.Background(), s, "k")
		time.Sleep(2 * time.Second)
		if diff := cmp.Diff(outcome{Err: context.DeadlineExceeded}, <-first, cmpopts.EquateErrors()); diff != "" {
			t.Errorf("first caller (-want +got):\n%s", diff)
		}
		if err := sctx.Err(); err != nil {
			t.Errorf("shared call cancelled at the first caller's deadline: %v", err)
		}
		g.release <- result{out: "late"}
		if diff := cmp.Diff(outcome{Out: "late"}, <-second, cmpopts.EquateErrors()); diff != "" {
			t.Errorf("second caller (-want +got):\n%s", diff)
		}
	})
}

type ctxKey struct{}

// Issue 14 item 9: a caller whose context has already ended gets
// ctx.Err(), starts nothing, joins nothing and is not served from the
// cache; the key func is not even called.
func TestAlreadyCancelledCallerStartsNothing(t *testing.T) {
	for _, ttl := range []time.Duration{0, time.Hour} {
		t.Run(fmt.Sprint("TTL=", ttl), func(t *testing.T) {
			var runs, keys atomic.Int64
			var rec recorder
			g := mustNew(t, dedup.Config{TTL: ttl, Observer: &rec})
			s := middleware.Apply(func(context.Context, string) (string, error) {
				runs.Add(1)
				return "v", nil
			}, dedup.Middleware[string, string](g, func(k string) string { keys.Add(1); return k }))
			if ttl > 0 {
				s(context.Background(), "k") // cached
				runs.Store(0)
				keys.Store(0)
			}
			before := g.Stats()
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if out, err := s(ctx, "k"); err != context.Canceled || out != "" {
				t.Errorf("call = %q, %v; want \"\", context.Canceled", out, err)
			}
			if runs.Load() != 0 || keys.Load() != 0 || g.Stats() != before || len(rec.get()) != 0 {
				t.Errorf("runs = %d, key calls = %d, stats = %+v, events %v; want nothing", runs.Load(), keys.Load(), g.Stats(), rec.get())
			}
		})
	}
}

// PITFALLS: "A panic in the shared call: every waiter must get it
// (re-panicked or as an error, documented), none may hang, and the next
// call starts fresh. singleflight.DoChan turns a panic into a process
// crash (golang/go #75748)". Dedup re-panics in every waiting caller with
// a *middleware.PanicError; the process survives when callers recover.
func TestPitfallPanicReachesEveryWaiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var runs atomic.Int64
		s, grp := build(t, dedup.Config{TTL: time.Minute, CacheErrors: true}, func(_ context.Context, k string) (string, error) {
			if runs.Add(1) == 1 {
				<-release
				panic(errBoom)
			}
			return "fresh", nil
		})
		const callers = 5
		got := make(chan any, callers)
		for range callers {
			go func() {
				defer func() { got <- recover() }()
				s(context.Background(), "k")
			}()
		}
		synctest.Wait()
		close(release)
		for range callers {
			v := <-got
			err, _ := v.(error)
			var pe *middleware.PanicError
			if !errors.As(err, &pe) {
				t.Fatalf("caller recovered %T %v, want an error wrapping a *middleware.PanicError", v, v)
			}
			if !errors.Is(pe, errBoom) {
				t.Errorf("panic %v does not wrap the stage's value", pe)
			}
			if !strings.Contains(string(pe.Stack), "dedup_test.TestPitfallPanicReachesEveryWaiter") {
				t.Errorf("PanicError.Stack is not the shared call's stack:\n%s", pe.Stack)
			}
		}
		if out, err := s(context.Background(), "k"); out != "fresh" || err != nil {
			t.Errorf("call after the panic = %q, %v; want a fresh run (a panic is never cached)", out, err)
		}
		if diff := cmp.Diff(dedup.Stats{Joined: callers - 1, CacheEntries: 1}, grp.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
}

var errBoom = errors.New("boom")

// PITFALLS: "runtime.Goexit inside the func leaves DoChan waiters hanging
// forever (golang/go #52557)". Every caller gets ErrGoexit, and the next
// call starts fresh.
func TestPitfallGoexitDoesNotHangWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var runs atomic.Int64
		s, _ := build(t, dedup.Config{TTL: time.Minute, CacheErrors: true}, func(context.Context, string) (string, error) {
			if runs.Add(1) == 1 {
				<-release
				runtime.Goexit()
			}
			return "fresh", nil
		})
		var calls []<-chan outcome
		for range 3 {
			calls = append(calls, goCall(context.Background(), s, "k"))
		}
		synctest.Wait()
		close(release)
		for _, ch := range calls {
			if diff := cmp.Diff(outcome{Err: dedup.ErrGoexit}, <-ch, cmpopts.EquateErrors()); diff != "" {
				t.Errorf("caller (-want +got):\n%s", diff)
			}
		}
		if out, err := s(context.Background(), "k"); out != "fresh" || err != nil {
			t.Errorf("call after Goexit = %q, %v; want a fresh run (Goexit is never cached)", out, err)
		}
	})
}

// A caller that does not recover crashes, as it would without Dedup, with
// the shared call's stack in the report. Run in a subprocess.
func TestUnrecoveredPanicCrashesWithTheSharedCallsStack(t *testing.T) {
	if os.Getenv("DEDUP_CRASH") == "1" {
		g, _ := dedup.New(dedup.Config{})
		s := middleware.Apply(panicky, dedup.Middleware[string, string](g, ident))
		s(context.Background(), "k")
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestUnrecoveredPanicCrashesWithTheSharedCallsStack$")
	cmd.Env = append(os.Environ(), "DEDUP_CRASH=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("subprocess did not crash:\n%s", out)
	}
	for _, want := range []string{"dedup: shared call panicked: kaboom", "dedup_test.panicky"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("crash output lacks %q:\n%s", want, out)
		}
	}
}

func panicky(context.Context, string) (string, error) { panic("kaboom") }

func TestTTLCache(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var runs atomic.Int64
		var rec recorder
		s, grp := build(t, dedup.Config{TTL: time.Minute, Observer: &rec}, func(_ context.Context, k string) (string, error) {
			return fmt.Sprintf("%s#%d", k, runs.Add(1)), nil
		})
		var got []string
		call := func(k string) {
			t.Helper()
			out, err := s(context.Background(), k)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, out)
		}
		call("a")
		time.Sleep(time.Minute - time.Nanosecond)
		call("a") // still live
		time.Sleep(time.Nanosecond)
		call("a") // expired exactly at TTL
		call("a")
		if diff := cmp.Diff([]string{"a#1", "a#1", "a#2", "a#2"}, got); diff != "" {
			t.Errorf("calls (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"joined/cache", "joined/cache"}, rec.reasons()); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(dedup.Stats{CacheHits: 2, CacheEntries: 1}, grp.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
}

func TestCacheErrors(t *testing.T) {
	for _, cacheErrors := range []bool{false, true} {
		t.Run(fmt.Sprintf("CacheErrors=%v", cacheErrors), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var runs atomic.Int64
				s, _ := build(t, dedup.Config{TTL: time.Minute, CacheErrors: cacheErrors}, func(context.Context, string) (string, error) {
					runs.Add(1)
					return "", errBoom
				})
				for range 3 {
					if _, err := s(context.Background(), "k"); err != errBoom {
						t.Fatalf("err = %v, want errBoom", err)
					}
				}
				want := int64(3)
				if cacheErrors {
					want = 1
				}
				if got := runs.Load(); got != want {
					t.Errorf("stage ran %d times for 3 failing calls, want %d", got, want)
				}
			})
		})
	}
}

// An abandoned shared call (all callers left) is never cached.
// (TestPitfallPanicReachesEveryWaiter shows a panicking one is not.)
func TestAbandonedCallsAreNotCached(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGated()
		s, grp := build(t, dedup.Config{TTL: time.Minute, CacheErrors: true}, g.stage)
		ctx, cancel := context.WithCancel(context.Background())
		first := goCall(ctx, s, "k")
		<-g.started
		cancel()
		<-first
		g.release <- result{out: "abandoned"}
		synctest.Wait()
		if got := grp.Stats(); got.InFlight != 0 || got.CacheEntries != 0 {
			t.Errorf("after an abandoned call Stats = %+v, want nothing in flight or cached", got)
		}
		second := goCall(context.Background(), s, "k")
		<-g.started
		g.release <- result{out: "kept"}
		if got := (<-second).Out; got != "kept" {
			t.Errorf("after an abandoned call got %q, want a fresh run", got)
		}
	})
}

// PITFALLS: "Results are shared between callers: document it; a TTL cache
// must be bounded in size." The cache holds at most MaxEntries; when full,
// expired entries go first, then the oldest.
func TestPitfallCacheIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		runs := map[string]int{}
		var mu sync.Mutex
		s, grp := build(t, dedup.Config{TTL: time.Minute, MaxEntries: 2}, func(_ context.Context, k string) (string, error) {
			mu.Lock()
			defer mu.Unlock()
			runs[k]++
			return k, nil
		})
		// call reports whether k was served from the cache.
		call := func(k string) string {
			before := grp.Stats().CacheHits
			if _, err := s(context.Background(), k); err != nil {
				t.Fatal(err)
			}
			if grp.Stats().CacheHits > before {
				return "cached"
			}
			return "new"
		}
		var got []string
		step := func(k string) { got = append(got, k+":"+call(k)) }
		step("a")
		time.Sleep(30 * time.Second)
		step("b")
		time.Sleep(31 * time.Second) // a has expired, b has not
		step("c")                    // drops the expired a; b stays
		step("b")
		step("c")
		step("a") // full: evicts b, the oldest
		step("c")
		step("b")
		want := []string{"a:new", "b:new", "c:new", "b:cached", "c:cached", "a:new", "c:cached", "b:new"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("calls (-want +got):\n%s", diff)
		}

		// Many distinct keys: the cache never grows past its bound, which
		// shows as every earlier key having been evicted.
		for i := range 10000 {
			call(fmt.Sprint("k", i))
		}
		if got := call("k9999"); got != "cached" {
			t.Errorf("newest key served %v, want cached", got)
		}
		if got := call("k9997"); got != "new" {
			t.Errorf("third-newest key served %v, want new (evicted by the bound of 2)", got)
		}
		if got := grp.Stats().CacheEntries; got != 2 {
			t.Errorf("CacheEntries = %d, want the bound, 2", got)
		}
	})
}

// Results are shared values: every caller of a shared call gets the very
// same Out, so a pointer result must be treated as read-only.
func TestResultsAreShared(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		g := mustNew(t, dedup.Config{})
		s := middleware.Apply(func(context.Context, string) (*[]int, error) {
			<-release
			return &[]int{1, 2}, nil
		}, dedup.Middleware[string, *[]int](g, ident))
		ptrs := make(chan *[]int, 3)
		for range 3 {
			go func() { p, _ := s(context.Background(), "k"); ptrs <- p }()
		}
		synctest.Wait()
		close(release)
		a, b, c := <-ptrs, <-ptrs, <-ptrs
		if a != b || b != c {
			t.Errorf("callers got different values %p %p %p, want one shared value", a, b, c)
		}
	})
}

// Joined events: one per joining caller, one per cache hit (Reason
// "cache"); the caller that starts the shared call has none. Each event
// arrives with the joining caller's context.
func TestEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGated()
		var rec recorder
		s, _ := build(t, dedup.Config{TTL: time.Second, Name: "users", Observer: &rec}, g.stage)
		leader := goCall(context.Background(), s, "k")
		<-g.started
		joiner := goCall(context.Background(), s, "k")
		synctest.Wait()
		g.release <- result{out: "v"}
		<-leader
		<-joiner
		if _, err := s(context.Background(), "k"); err != nil {
			t.Fatal(err)
		}
		want := []middleware.Event{
			{Kind: middleware.Joined, Concern: "dedup", Name: "users"},
			{Kind: middleware.Joined, Concern: "dedup", Name: "users", Reason: "cache"},
		}
		if diff := cmp.Diff(want, rec.get()); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
	})
}

// middleware.Log turns the events into Debug records.
func TestLog(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	s, _ := build(t, dedup.Config{TTL: time.Minute, Observer: middleware.Log(logger), Name: "users"},
		func(_ context.Context, k string) (string, error) { return k, nil })
	s(context.Background(), "a")
	s(context.Background(), "a")
	want := "level=DEBUG msg=\"dedup joined\" concern=dedup name=users reason=cache\n"
	if diff := cmp.Diff(want, buf.String()); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
}

// Programmer errors panic when the chain is built.
func TestNilArgumentsPanic(t *testing.T) {
	g := mustNew(t, dedup.Config{})
	for _, tt := range []struct {
		name  string
		build func()
		want  string
	}{
		{"nil Group", func() { dedup.Middleware[string, string](nil, ident) }, "dedup: nil *Group (was New's error ignored?)"},
		{"nil key", func() { dedup.Middleware[string, string, string](g, nil) }, "dedup: nil key func"},
		{"nil stage", func() { middleware.Apply(nil, dedup.Middleware[string, string](g, ident)) }, "middleware: nil stage"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if got := fmt.Sprint(recover()); got != tt.want {
					t.Errorf("panic = %q, want %q", got, tt.want)
				}
			}()
			tt.build()
		})
	}
}

// Each decorated stage has its own table: the same key on two stages
// runs both. Stats add up over both.
func TestStagesDoNotShareCalls(t *testing.T) {
	g := mustNew(t, dedup.Config{TTL: time.Hour})
	mw := dedup.Middleware[string, string](g, ident)
	upper := middleware.Apply(func(_ context.Context, k string) (string, error) { return strings.ToUpper(k), nil }, mw)
	twice := middleware.Apply(func(_ context.Context, k string) (string, error) { return k + k, nil }, mw)
	length := middleware.Apply(func(_ context.Context, k string) (int, error) { return len(k), nil },
		dedup.Middleware[string, int](g, ident))
	a, _ := upper(context.Background(), "k")
	b, _ := twice(context.Background(), "k")
	n, _ := length(context.Background(), "k")
	if a != "K" || b != "kk" || n != 1 {
		t.Errorf("upper, twice, length = %q, %q, %d; want K, kk, 1", a, b, n)
	}
	upper(context.Background(), "k")
	length(context.Background(), "k")
	if diff := cmp.Diff(dedup.Stats{CacheHits: 2, CacheEntries: 3}, g.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

func TestComparableKey(t *testing.T) {
	type req struct {
		User int
		Page int
	}
	type pageKey struct{ user, page int }
	var runs atomic.Int64
	g := mustNew(t, dedup.Config{TTL: time.Hour})
	s := middleware.Apply(func(_ context.Context, r req) (string, error) {
		runs.Add(1)
		return fmt.Sprint(r.User, "/", r.Page), nil
	}, dedup.Middleware[req, string](g, func(r req) pageKey { return pageKey{r.User, r.Page} }))
	for _, r := range []req{{1, 1}, {1, 2}, {1, 1}, {2, 1}, {1, 2}} {
		s(context.Background(), r)
	}
	if got := runs.Load(); got != 3 {
		t.Errorf("stage ran %d times for 3 distinct keys, want 3", got)
	}
}

// Issue 14 item 3: a key that is not equal to itself is refused, the
// stage does not run and nothing is stored. With a TTL cache the old code
// dereferenced nil in the shared call's goroutine and killed the process
// once the cache was full; without one it kept every NaN call's entry
// (about 60 MB per 200,000 calls).
func TestNaNKeyRefused(t *testing.T) {
	type key struct {
		name string
		f    float64
	}
	for _, ttl := range []time.Duration{0, time.Hour} {
		t.Run(fmt.Sprint("TTL=", ttl), func(t *testing.T) {
			var sizes []func() int
			var events atomic.Int64
			var first atomic.Pointer[middleware.Event]
			obs := middleware.ObserverFunc(func(_ context.Context, e middleware.Event) {
				events.Add(1)
				first.CompareAndSwap(nil, &e)
			})
			g := mustNew(t, dedup.Config{TTL: ttl, MaxEntries: map[bool]int{true: 4}[ttl > 0], Observer: obs})
			dedup.OnNewTable(g, func(size func() int) { sizes = append(sizes, size) })
			var runs atomic.Int64
			byFloat := middleware.Apply(func(_ context.Context, f float64) (float64, error) {
				runs.Add(1)
				return f, nil
			}, dedup.Middleware[float64, float64](g, func(f float64) float64 { return f }))
			byStruct := middleware.Apply(func(_ context.Context, f float64) (string, error) {
				runs.Add(1)
				return "", nil
			}, dedup.Middleware[float64, string](g, func(f float64) key { return key{"x", f} }))
			byAny := middleware.Apply(func(_ context.Context, f float64) (string, error) {
				runs.Add(1)
				return "", nil
			}, dedup.Middleware[float64, string](g, func(f float64) any { return f }))

			const calls = 200_000
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			nan := math.NaN()
			for range calls {
				_, err := byFloat(context.Background(), nan)
				if err != dedup.ErrNaNKey {
					t.Fatalf("err = %v, want ErrNaNKey", err)
				}
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 4<<20 {
				t.Errorf("heap grew by %d bytes over %d NaN calls, want (almost) nothing", grown, calls)
			}
			for _, s := range []func() error{
				func() error { _, err := byStruct(context.Background(), nan); return err },
				func() error { _, err := byAny(context.Background(), nan); return err },
			} {
				if err := s(); err != dedup.ErrNaNKey {
					t.Errorf("err = %v, want ErrNaNKey", err)
				}
			}
			if n := runs.Load(); n != 0 {
				t.Errorf("stage ran %d times for NaN keys, want 0", n)
			}
			for i, size := range sizes {
				if n := size(); n != 0 {
					t.Errorf("table %d holds %d entries after NaN calls, want 0", i, n)
				}
			}
			if len(sizes) != 3 {
				t.Errorf("saw %d tables, want 3", len(sizes))
			}
			if diff := cmp.Diff(dedup.Stats{Rejected: calls + 2}, g.Stats()); diff != "" {
				t.Errorf("Stats (-want +got):\n%s", diff)
			}
			if e := first.Load(); e.Kind != middleware.Rejected || e.Reason != "key" || e.Err != dedup.ErrNaNKey {
				t.Errorf("event = %+v, want Rejected, Reason key, Err ErrNaNKey", e)
			}
			if n := events.Load(); n != calls+2 {
				t.Errorf("%d events, want one per call, %d", n, calls+2)
			}
			// An ordinary key still works after all that.
			if out, err := byFloat(context.Background(), 1.5); out != 1.5 || err != nil {
				t.Errorf("call with key 1.5 = %v, %v; want 1.5, nil", out, err)
			}
		})
	}
}

func TestNaNKeyError(t *testing.T) {
	err := dedup.ErrNaNKey
	type rejecter interface{ Rejected() bool }
	type retryable interface{ Retryable() bool }
	r, ok1 := err.(rejecter)
	q, ok2 := err.(retryable)
	if !ok1 || !ok2 || !r.Rejected() || q.Retryable() {
		t.Errorf("ErrNaNKey: Rejected %v, Retryable %v; want a rejection that is not retryable", ok1 && r.Rejected(), ok2 && q.Retryable())
	}
	if got, want := err.Error(), "dedup: key is not equal to itself (NaN)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// A panicking key func is the caller's panic; nothing is left behind.
func TestKeyFuncPanics(t *testing.T) {
	var sizes []func() int
	g := mustNew(t, dedup.Config{TTL: time.Hour})
	dedup.OnNewTable(g, func(size func() int) { sizes = append(sizes, size) })
	s := middleware.Apply(func(_ context.Context, k string) (string, error) { return k, nil },
		dedup.Middleware[string, string](g, func(k string) string {
			if k == "bad" {
				panic("bad key")
			}
			return k
		}))
	func() {
		defer func() {
			if v := recover(); v != "bad key" {
				t.Errorf("recovered %v, want the key func's panic", v)
			}
		}()
		s(context.Background(), "bad")
	}()
	if out, err := s(context.Background(), "good"); out != "good" || err != nil {
		t.Errorf("next call = %q, %v; want good, nil", out, err)
	}
	if n := sizes[0](); n != 1 {
		t.Errorf("table holds %d entries, want only the good key's", n)
	}
}

// A panicking observer leaves dedup consistent: every caller gets its
// result, the counts are right, and nothing is left in flight.
func TestPanickingObserver(t *testing.T) {
	quiet(t)
	synctest.Test(t, func(t *testing.T) {
		g := newGated()
		s, grp := build(t, dedup.Config{TTL: time.Minute, Observer: middleware.ObserverFunc(func(context.Context, middleware.Event) {
			panic("observer")
		})}, g.stage)
		var calls []<-chan outcome
		for range 3 {
			calls = append(calls, goCall(context.Background(), s, "k"))
		}
		synctest.Wait()
		<-g.started
		g.release <- result{out: "v"}
		for _, ch := range calls {
			if diff := cmp.Diff(outcome{Out: "v"}, <-ch, cmpopts.EquateErrors()); diff != "" {
				t.Errorf("caller (-want +got):\n%s", diff)
			}
		}
		if out, err := s(context.Background(), "k"); out != "v" || err != nil {
			t.Errorf("cache hit = %q, %v; want v, nil", out, err)
		}
		if diff := cmp.Diff(dedup.Stats{Joined: 2, CacheHits: 1, CacheEntries: 1}, grp.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
}

// An observer that calls back into dedup (Stats, or the same stage with
// the same key) does not deadlock.
func TestReentrantObserver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var s middleware.Stage[string, string]
		var grp *dedup.Group
		var seen []dedup.Stats
		var nested []string
		var mu sync.Mutex
		var nestedOnce atomic.Bool
		obs := middleware.ObserverFunc(func(ctx context.Context, e middleware.Event) {
			mu.Lock()
			seen = append(seen, grp.Stats())
			mu.Unlock()
			if !nestedOnce.CompareAndSwap(false, true) {
				return
			}
			out, err := s(ctx, "k") // joins the call this event is about, or hits the cache
			mu.Lock()
			nested = append(nested, fmt.Sprintf("%v %v", out, err))
			mu.Unlock()
		})
		g := newGated()
		s, grp = build(t, dedup.Config{TTL: time.Minute, Observer: obs}, g.stage)
		leader := goCall(context.Background(), s, "k")
		<-g.started
		joiner := goCall(context.Background(), s, "k")
		synctest.Wait()
		g.release <- result{out: "v"}
		for _, ch := range []<-chan outcome{leader, joiner} {
			if diff := cmp.Diff(outcome{Out: "v"}, <-ch, cmpopts.EquateErrors()); diff != "" {
				t.Errorf("caller (-want +got):\n%s", diff)
			}
		}
		if diff := cmp.Diff([]string{"v <nil>"}, nested); diff != "" {
			t.Errorf("nested calls (-want +got):\n%s", diff)
		}
		if len(seen) != 2 {
			t.Errorf("observer saw %d events, want 2 (the join, and the nested call's join or cache hit)", len(seen))
		}
	})
}

// Thousands of callers over a few keys, some giving up early: a key never
// has two shared calls running at once unless all callers of the first
// have left, every caller returns exactly once with its key's result or
// its own context error, and no goroutine is left behind (goleak).
func TestConcurrentInvariants(t *testing.T) {
	const (
		callers = 5000
		keys    = 7
	)
	for _, ttl := range []time.Duration{0, time.Millisecond} {
		t.Run(fmt.Sprint("TTL=", ttl), func(t *testing.T) {
			var running [keys]atomic.Int64
			var overlaps, runs atomic.Int64
			g, err := dedup.New(dedup.Config{TTL: ttl})
			if err != nil {
				t.Fatal(err)
			}
			s := middleware.Apply(func(ctx context.Context, i int) (int, error) {
				k := i % keys
				runs.Add(1)
				if running[k].Add(1) > 1 {
					overlaps.Add(1) // allowed only after a cancelled call was abandoned
				}
				defer running[k].Add(-1)
				runtime.Gosched()
				return k * 10, nil
			}, dedup.Middleware[int, int](g, func(i int) int { return i % keys }))
			var wg sync.WaitGroup
			var returned, ok, cancelled atomic.Int64
			start := make(chan struct{})
			for i := range callers {
				wg.Go(func() {
					<-start
					ctx := context.Background()
					if i%10 == 0 {
						var cancel context.CancelFunc
						ctx, cancel = context.WithCancel(ctx)
						defer cancel()
						go cancel()
					}
					out, err := s(ctx, i)
					returned.Add(1)
					switch {
					case err == nil && out == (i%keys)*10:
						ok.Add(1)
					case errors.Is(err, context.Canceled):
						cancelled.Add(1)
					default:
						t.Errorf("caller %d: got (%d, %v), want (%d, nil)", i, out, err, (i%keys)*10)
					}
				})
			}
			close(start)
			wg.Wait()
			st := g.Stats()
			if r := returned.Load(); r != callers || ok.Load()+cancelled.Load() != callers {
				t.Errorf("returned %d, ok %d + cancelled %d; want %d", r, ok.Load(), cancelled.Load(), callers)
			}
			if sum := uint64(runs.Load()) + st.Joined + st.CacheHits; sum+uint64(cancelled.Load()) < callers {
				t.Errorf("runs %d and stats %+v account for fewer than the %d callers that were served", runs.Load(), st, callers-cancelled.Load())
			}
			if overlaps.Load() > 0 && cancelled.Load() == 0 {
				t.Errorf("%d overlapping runs of one key without any cancellation", overlaps.Load())
			}
			t.Logf("stats %+v, runs %d, cancelled %d, overlaps %d", st, runs.Load(), cancelled.Load(), overlaps.Load())
		})
	}
}

func TestAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	var n atomic.Int64
	obs := middleware.ObserverFunc(func(context.Context, middleware.Event) { n.Add(1) })
	ctx := context.Background()
	for _, tt := range []struct {
		name string
		cfg  dedup.Config
		key  string
	}{
		{"cache hit", dedup.Config{TTL: time.Hour}, "k"},
		{"cache hit observed", dedup.Config{TTL: time.Hour, Observer: obs}, "k"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := build(t, tt.cfg, func(_ context.Context, k string) (string, error) { return k, nil })
			s(ctx, tt.key)
			if n := testing.AllocsPerRun(1000, func() { s(ctx, tt.key) }); n != 0 {
				t.Errorf("%v allocs per call, want 0", n)
			}
		})
	}
	t.Run("NaN key refused", func(t *testing.T) {
		g := mustNew(t, dedup.Config{TTL: time.Hour})
		s := middleware.Apply(func(_ context.Context, f float64) (float64, error) { return f, nil },
			dedup.Middleware[float64, float64](g, func(f float64) float64 { return f }))
		nan := math.NaN()
		if n := testing.AllocsPerRun(1000, func() { s(ctx, nan) }); n != 0 {
			t.Errorf("%v allocs per call, want 0", n)
		}
	})
}

// TestLeadingCallAllocs: a call that starts a shared call nobody joins
// reuses the previous one's record and channel: it allocates only the
// goroutine's start, plus the shared call's own context when the caller's
// can end (singleflight.DoChan allocates six times).
func TestLeadingCallAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	cctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		max  float64
	}{
		{"context that cannot end", context.Background(), 1},
		{"cancellable context", cctx, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := build(t, dedup.Config{}, func(_ context.Context, k string) (string, error) { return k, nil })
			s(tc.ctx, "k")
			n := testing.AllocsPerRun(1000, func() { s(tc.ctx, "k") })
			t.Logf("%v allocs per leading call", n)
			if n > tc.max {
				t.Errorf("%v allocs per leading call, want at most %v", n, tc.max)
			}
		})
	}
}

// TestReusedCallRecordsDoNotMix: the record of a call nobody joined is
// reused by the next; under heavy concurrency, with callers that join,
// leave early and panic, every caller gets its own key's result, and no
// leader gets a result meant for another call (each run's result carries
// a number the caller checks against its key).
func TestReusedCallRecordsDoNotMix(t *testing.T) {
	quiet(t)
	var runs atomic.Int64
	g := mustNew(t, dedup.Config{})
	s := middleware.Apply(func(ctx context.Context, k int) (int, error) {
		runs.Add(1)
		if k%17 == 0 {
			panic(k)
		}
		if k%5 == 0 {
			runtime.Gosched()
		}
		return k * 1000, nil
	}, dedup.Middleware[int, int](g, func(k int) int { return k }))
	callers, perCaller := 16, 2000
	if testenv.RaceEnabled {
		perCaller = 300
	}
	var wg sync.WaitGroup
	var bad atomic.Int64
	for c := range callers {
		wg.Go(func() {
			for i := range perCaller {
				k := (c*perCaller + i) % 40
				ctx := context.Background()
				var cancel context.CancelFunc = func() {}
				if i%3 == 0 {
					ctx, cancel = context.WithCancel(ctx)
					if i%9 == 0 {
						go cancel() // may leave before the result
					}
				}
				func() {
					defer func() {
						if v := recover(); v != nil && k%17 != 0 {
							bad.Add(1)
							t.Errorf("key %d panicked: %v", k, v)
						}
					}()
					out, err := s(ctx, k)
					if err == nil && out != k*1000 {
						bad.Add(1)
						t.Errorf("key %d got %d", k, out)
					}
					if err != nil && !errors.Is(err, context.Canceled) {
						t.Errorf("key %d: %v", k, err)
					}
				}()
				cancel()
			}
		})
	}
	wg.Wait()
	t.Logf("%d calls, %d runs, %d joins", callers*perCaller, runs.Load(), g.Stats().Joined)
}

// quiet discards slog.Default's output (where recovered observer panics
// are reported) for the test.
func quiet(t *testing.T) {
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(func() { slog.SetDefault(old) })
}
