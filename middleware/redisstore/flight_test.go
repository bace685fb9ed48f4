package redisstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brace-go/brace/internal/redistest"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/dedup"
	"github.com/brace-go/brace/middleware/redisstore"
	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
)

// bound is what the tests allow for anything that should take
// milliseconds: generous, for the race detector on a busy 2-core machine.
// It is an upper bound that a hang or an unbounded wait exceeds, never a
// timing the tests expect.
const bound = 5 * time.Second

// calm is a FlightConfig for tests that are not about faults: commands get
// a long Timeout, so a busy machine does not turn a slow reply into a
// fallback.
func calm(cfg redisstore.FlightConfig) redisstore.FlightConfig {
	if cfg.Timeout == 0 {
		cfg.Timeout = bound
	}
	return cfg
}

// callerKey marks a caller in its context; arrivals reads it in commands'
// contexts.
type callerKey struct{}

func caller(id string) context.Context {
	return context.WithValue(context.Background(), callerKey{}, id)
}

// arrivals is a go-redis hook that notes the callers (by their context's
// callerKey) whose first command has completed: from then on a caller is
// a leader or a follower, so a test can hold a leader until every caller
// it expects has joined — without sleeping.
type arrivals struct {
	mu   sync.Mutex
	seen map[any]bool
	ch   chan struct{} // a token per new caller
}

func newArrivals() *arrivals {
	return &arrivals{seen: map[any]bool{}, ch: make(chan struct{}, 10000)}
}

func (a *arrivals) DialHook(next redis.DialHook) redis.DialHook { return next }

func (a *arrivals) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		// Only scripts: a new connection's handshake (HELLO, CLIENT)
		// runs with the context of the command that needed it.
		if id := ctx.Value(callerKey{}); id != nil && strings.HasPrefix(cmd.Name(), "eval") {
			a.mu.Lock()
			isNew := !a.seen[id]
			a.seen[id] = true
			a.mu.Unlock()
			if isNew {
				a.ch <- struct{}{}
			}
		}
		return err
	}
}

func (a *arrivals) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// wait returns when every id has arrived, or fails the test after bound.
func (a *arrivals) wait(t *testing.T, ids ...string) {
	t.Helper()
	timeout := time.NewTimer(bound)
	defer timeout.Stop()
	for {
		a.mu.Lock()
		missing := slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return a.seen[id] })
		a.mu.Unlock()
		if len(missing) == 0 {
			return
		}
		select {
		case <-a.ch:
		case <-timeout.C:
			t.Fatalf("callers %v did not reach Redis within %v", missing, bound)
		}
	}
}

// outcomes records a Flights' OnFlight calls.
type outcomes struct {
	mu  sync.Mutex
	got []redisstore.FlightOutcome
}

func (o *outcomes) add(_ string, x redisstore.FlightOutcome) {
	o.mu.Lock()
	o.got = append(o.got, x)
	o.mu.Unlock()
}

// take returns the outcomes since the last take, sorted.
func (o *outcomes) take() []redisstore.FlightOutcome {
	o.mu.Lock()
	defer o.mu.Unlock()
	g := o.got
	o.got = nil
	slices.Sort(g)
	return g
}

// fproc is one "process" sharing flights: its own client, Flights and
// stage. The stage reports its key on entered, waits until release is
// closed and returns do(key), by default user{ID: id, Name: key}.
type fproc struct {
	id      int
	client  *redis.Client
	flights *redisstore.Flights[user]
	call    middleware.Stage[string, user]
	runs    atomic.Int64
	entered chan string
	release chan struct{}
	do      func(key string) (user, error)
	out     outcomes
	rep     reports
}

func newFproc(t *testing.T, srv *redistest.Server, arr *arrivals, id int, name string, cfg redisstore.FlightConfig) *fproc {
	t.Helper()
	p := &fproc{id: id, client: srv.Client(t), entered: make(chan string, 10000), release: make(chan struct{})}
	if arr != nil {
		p.client.AddHook(arr)
	}
	cfg.OnFlight, cfg.OnError = p.out.add, p.rep.add
	f, err := redisstore.NewFlights[user](p.client, name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.flights = f
	p.call = middleware.Apply(p.stage, redisstore.Deduplicated(f, func(k string) string { return k }))
	return p
}

func (p *fproc) stage(_ context.Context, key string) (user, error) {
	p.runs.Add(1)
	p.entered <- key
	<-p.release
	if p.do != nil {
		return p.do(key)
	}
	return user{ID: p.id, Name: key}, nil
}

type result struct {
	u   user
	err error
	d   time.Duration
}

// start calls p in a goroutine; the result arrives on the channel.
func (p *fproc) start(ctx context.Context, key string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		t0 := time.Now()
		u, err := p.call(ctx, key)
		ch <- result{u, err, time.Since(t0)}
	}()
	return ch
}

// recv receives a result, or fails the test after bound.
func recv(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(bound):
		t.Fatalf("no result within %v", bound)
		return result{}
	}
}

func wantOutcomes(t *testing.T, who string, o *outcomes, want ...redisstore.FlightOutcome) {
	t.Helper()
	slices.Sort(want)
	if diff := cmp.Diff(want, o.take()); diff != "" {
		t.Errorf("%s outcomes (-want +got):\n%s", who, diff)
	}
}

func TestFlightsConfigErrors(t *testing.T) {
	c := redistest.Shared(t).Client(t)
	for _, tt := range []struct {
		name string
		cfg  redisstore.FlightConfig
		want string
	}{
		{"negative lease", redisstore.FlightConfig{Lease: -1}, "redisstore: Lease must be at least 1ms, got -1ns"},
		{"tiny lease", redisstore.FlightConfig{Lease: time.Microsecond}, "redisstore: Lease must be at least 1ms, got 1µs"},
		{"negative max wait", redisstore.FlightConfig{MaxWait: -time.Second}, "redisstore: MaxWait must not be negative, got -1s"},
		{"tiny poll", redisstore.FlightConfig{PollInterval: time.Microsecond}, "redisstore: PollInterval must be at least 1ms, got 1µs"},
		{"negative result TTL", redisstore.FlightConfig{ResultTTL: -1}, "redisstore: ResultTTL must not be negative, got -1ns"},
		{"result TTL within a poll gap", redisstore.FlightConfig{ResultTTL: 100 * time.Millisecond}, "redisstore: ResultTTL must exceed PollInterval + Timeout (120ms), got 100ms"},
		{"negative size", redisstore.FlightConfig{MaxEntrySize: -1}, "redisstore: MaxEntrySize must not be negative, got -1"},
		{"bad prefix", redisstore.FlightConfig{Prefix: "}"}, `redisstore: Prefix must not contain '{' or '}' (they delimit the hash tag), got "}"`},
		{"negative timeout", redisstore.FlightConfig{Timeout: -1}, "redisstore: Timeout must be positive, got -1ns"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := redisstore.NewFlights[int](c, "x", tt.cfg)
			if err == nil || err.Error() != tt.want {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := redisstore.NewFlights[int](c, "x{", redisstore.FlightConfig{}); err == nil {
		t.Error("a name with '{': no error")
	}
	if _, err := redisstore.NewFlights[int](c, "x", redisstore.FlightConfig{Timeout: 2 * time.Second}); err != nil {
		t.Errorf("a long Timeout: %v; the default ResultTTL should follow it", err)
	}
	s := middleware.Apply(nil, redisstore.Deduplicated[int, int](nil, nil))
	if _, err := s(context.Background(), 1); err == nil || !strings.HasPrefix(err.Error(), "redisstore: ") {
		t.Errorf("Deduplicated(nil, nil): %v, want a redisstore error", err)
	}
}

// TestFlightsKeyLayout: the lock's key, as documented. (Its slot, shared
// with the results, is checked in TestFlightsCluster; expiry in
// TestFlightsTwoProcesses.)
func TestFlightsKeyLayout(t *testing.T) {
	c := redistest.Shared(t).Client(t)
	f, err := redisstore.NewFlights[int](c, "users", redisstore.FlightConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := f.Key("42"), "brace:flight:users:{key:42}:lock"; got != want {
		t.Errorf("Key(42) = %q, want %q", got, want)
	}
}

// TestFlightsTwoProcesses: a call in one process leads; a call with the
// same key in another process (another client) waits for it and gets its
// result; the stage runs once. While the flight runs, its lock expires
// within Lease; after it, the lock is gone and the result expires within
// ResultTTL.
func TestFlightsTwoProcesses(t *testing.T) {
	srv := redistest.Shared(t)
	arr := newArrivals()
	cfg := calm(redisstore.FlightConfig{Lease: time.Minute})
	a, b := newFproc(t, srv, arr, 1, name(t), cfg), newFproc(t, srv, arr, 2, name(t), cfg)
	close(b.release) // b runs only after the flight
	ctx := context.Background()

	ra := a.start(caller("a"), "k")
	<-a.entered
	if d := a.client.PTTL(ctx, a.flights.Key("k")).Val(); d <= 0 || d > time.Minute {
		t.Errorf("lock PTTL while the leader runs = %v, want within the lease (1m)", d)
	}
	rb := b.start(caller("b"), "k")
	arr.wait(t, "b")
	close(a.release)
	want := user{ID: 1, Name: "k"}
	for who, ch := range map[string]<-chan result{"leader": ra, "follower": rb} {
		if r := recv(t, ch); r.err != nil || !cmp.Equal(want, r.u) {
			t.Errorf("%s: %+v, %v; want %+v", who, r.u, r.err, want)
		}
	}
	if n1, n2 := a.runs.Load(), b.runs.Load(); n1 != 1 || n2 != 0 {
		t.Errorf("runs %d and %d, want 1 and 0", n1, n2)
	}
	wantOutcomes(t, "a", &a.out, redisstore.FlightLed)
	wantOutcomes(t, "b", &b.out, redisstore.FlightFollowed)

	if n := a.client.Exists(ctx, a.flights.Key("k")).Val(); n != 0 {
		t.Errorf("lock still there after the flight")
	}
	results := a.client.Keys(ctx, strings.TrimSuffix(a.flights.Key("k"), "lock")+"result:*").Val()
	if len(results) != 1 {
		t.Fatalf("result keys %v, want one", results)
	}
	if d := a.client.PTTL(ctx, results[0]).Val(); d <= 0 || d > 2*(20*time.Millisecond+bound) {
		t.Errorf("result PTTL = %v, want within ResultTTL", d)
	}
	// A call after the flight ended runs afresh: Flights share calls in
	// flight, not results (that is Cache's job).
	if r, err := b.call(ctx, "k"); err != nil || r.ID != 2 {
		t.Errorf("after the flight: %+v, %v; want its own run", r, err)
	}
	wantOutcomes(t, "b", &b.out, redisstore.FlightLed)
	for _, p := range []*fproc{a, b} {
		if errs := p.rep.take(); len(errs) != 0 {
			t.Errorf("process %d reported %v", p.id, errs)
		}
	}
}

// TestFlightsManyCallers: concurrent callers in three processes run the
// stage exactly once and all get its result — 300 callers that each go to
// Redis, and 3000 behind dedup.New, which collapses each process's callers
// into one flight first.
func TestFlightsManyCallers(t *testing.T) {
	const procs = 3
	srv := redistest.Shared(t)

	t.Run("each caller in Redis", func(t *testing.T) {
		const per = 100
		arr := newArrivals()
		var ps []*fproc
		for i := range procs {
			ps = append(ps, newFproc(t, srv, arr, i+1, name(t), calm(redisstore.FlightConfig{})))
		}
		var ids []string
		var chans []<-chan result
		for i := range procs * per {
			id := fmt.Sprint("caller-", i)
			ids = append(ids, id)
			chans = append(chans, ps[i%procs].start(caller(id), "k"))
		}
		arr.wait(t, ids...)
		for _, p := range ps {
			close(p.release)
		}
		checkOneRun(t, ps, chans)
		var all outcomes
		for _, p := range ps {
			for _, o := range p.out.take() {
				all.add("", o)
			}
		}
		want := []redisstore.FlightOutcome{redisstore.FlightLed}
		for range procs*per - 1 {
			want = append(want, redisstore.FlightFollowed)
		}
		wantOutcomes(t, "all", &all, want...)
	})

	t.Run("behind dedup", func(t *testing.T) {
		const per = 1000
		arr := newArrivals()
		var ps []*fproc
		var counters []*dedup.Counter
		joined := make(chan struct{}, procs*per)
		for i := range procs {
			p := newFproc(t, srv, arr, i+1, name(t), calm(redisstore.FlightConfig{}))
			var c dedup.Counter
			inproc, err := dedup.New[string, user](func(k string) string { return k }, dedup.Config{
				Counter: &c,
				OnServe: func(s dedup.Served) {
					if s == dedup.Joined {
						joined <- struct{}{}
					}
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			p.call = middleware.Apply(p.stage, inproc, redisstore.Deduplicated(p.flights, func(k string) string { return k }))
			ps, counters = append(ps, p), append(counters, &c)
		}
		var chans []<-chan result
		for i := range procs * per {
			// Every caller of a process carries the process's id: the
			// shared call, which makes the process's commands, keeps
			// the first caller's values.
			chans = append(chans, ps[i%procs].start(caller(fmt.Sprint("process-", i%procs)), "k"))
		}
		for range procs * (per - 1) {
			<-joined
		}
		arr.wait(t, "process-0", "process-1", "process-2")
		for _, p := range ps {
			close(p.release)
		}
		checkOneRun(t, ps, chans)
		for i, c := range counters {
			if diff := cmp.Diff(dedup.Stats{Executions: 1, Joins: per - 1}, c.Stats()); diff != "" {
				t.Errorf("process %d's dedup (-want +got):\n%s", i+1, diff)
			}
		}
		var all outcomes
		for _, p := range ps {
			for _, o := range p.out.take() {
				all.add("", o)
			}
		}
		wantOutcomes(t, "all", &all, redisstore.FlightLed, redisstore.FlightFollowed, redisstore.FlightFollowed)
	})
}

// checkOneRun: the stage ran once in all processes, and every caller got
// that run's result.
func checkOneRun(t *testing.T, ps []*fproc, chans []<-chan result) {
	t.Helper()
	var runs int64
	leader := 0
	for _, p := range ps {
		if n := p.runs.Load(); n > 0 {
			runs += n
			leader = p.id
		}
	}
	if runs != 1 {
		t.Errorf("the stage ran %d times in all, want 1", runs)
	}
	want := user{ID: leader, Name: "k"}
	bad := 0
	for _, ch := range chans {
		if r := recv(t, ch); r.err != nil || !cmp.Equal(want, r.u) {
			if bad++; bad <= 3 {
				t.Errorf("a caller got %+v, %v; want %+v", r.u, r.err, want)
			}
		}
	}
	for _, p := range ps {
		if errs := p.rep.take(); len(errs) != 0 {
			t.Errorf("process %d reported %v", p.id, errs)
		}
	}
}

// gate is a go-redis hook that holds every script command after the
// first until open is closed: a caller that looks at Redis late.
type gate struct {
	n    atomic.Int64
	open chan struct{}
}

func (g *gate) DialHook(next redis.DialHook) redis.DialHook { return next }

func (g *gate) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if strings.HasPrefix(cmd.Name(), "eval") && g.n.Add(1) > 1 {
			<-g.open
		}
		return next(ctx, cmd)
	}
}

func (g *gate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestFlightsTakeOver: a leader that never publishes — it hangs past its
// lease, or its lock is gone as if Redis lost it — is replaced by one of
// its followers, without waiting for MaxWait. Another follower, which
// looks at Redis only after the new leader has come and gone, still gets
// the new leader's result (published for the old leader's followers too),
// so the stage runs once more, not once per follower. The old leader, when
// it finally returns, reports that its lease expired.
func TestFlightsTakeOver(t *testing.T) {
	srv := redistest.Shared(t)
	for _, tt := range []struct {
		name  string
		lease time.Duration
		crash func(a *fproc) // makes a's lock go away
	}{
		{"lease expires", 50 * time.Millisecond, func(*fproc) {}},
		{"lock deleted", time.Minute, func(a *fproc) {
			if err := a.client.Del(context.Background(), a.flights.Key("k")).Err(); err != nil {
				t.Error(err)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			arr := newArrivals()
			cfg := calm(redisstore.FlightConfig{Lease: tt.lease, MaxWait: time.Minute})
			a := newFproc(t, srv, arr, 1, name(t), cfg)
			b, c := newFproc(t, srv, arr, 2, name(t), cfg), newFproc(t, srv, arr, 3, name(t), cfg)
			late := &gate{open: make(chan struct{})}
			c.client.AddHook(late)
			close(b.release)
			close(c.release)
			ra := a.start(caller("a"), "k")
			<-a.entered
			rb, rc := b.start(caller("b"), "k"), c.start(caller("c"), "k")
			arr.wait(t, "b", "c")
			tt.crash(a)
			r1 := recv(t, rb) // b took over, ran and published
			close(late.open)  // c looks again, still following a
			r2 := recv(t, rc)
			if r1.err != nil || r2.err != nil || !cmp.Equal(r1.u, r2.u) || r1.u.ID != 2 {
				t.Errorf("followers got %+v, %v and %+v, %v; want b's result for both", r1.u, r1.err, r2.u, r2.err)
			}
			if nb, nc := b.runs.Load(), c.runs.Load(); nb != 1 || nc != 0 {
				t.Errorf("runs after the leader was gone: %d and %d, want 1 and 0", nb, nc)
			}
			wantOutcomes(t, "b", &b.out, redisstore.FlightTookOver)
			wantOutcomes(t, "c", &c.out, redisstore.FlightFollowed)

			close(a.release)
			if r := recv(t, ra); r.err != nil || r.u.ID != 1 {
				t.Errorf("old leader: %+v, %v; want its own result", r.u, r.err)
			}
			if errs := a.rep.take(); len(errs) != 1 || !errors.Is(errs[0], redisstore.ErrLeaseExpired) {
				t.Errorf("old leader reported %v, want ErrLeaseExpired", errs)
			}
		})
	}
}

// TestFlightsMaxWait: a follower whose leader takes longer than MaxWait
// runs the stage itself, unshared, and returns its own result.
func TestFlightsMaxWait(t *testing.T) {
	srv := redistest.Shared(t)
	const maxWait = 50 * time.Millisecond
	arr := newArrivals()
	cfg := calm(redisstore.FlightConfig{Lease: time.Minute, MaxWait: maxWait})
	a, b := newFproc(t, srv, arr, 1, name(t), cfg), newFproc(t, srv, arr, 2, name(t), cfg)
	close(b.release)
	ra := a.start(caller("a"), "k")
	<-a.entered
	r := recv(t, b.start(caller("b"), "k"))
	if r.err != nil || r.u.ID != 2 {
		t.Errorf("follower: %+v, %v; want its own result", r.u, r.err)
	}
	if r.d < maxWait || r.d > bound {
		t.Errorf("follower returned after %v, want at least MaxWait (%v) and within %v", r.d, maxWait, bound)
	}
	wantOutcomes(t, "b", &b.out, redisstore.FlightWaitedOut)
	close(a.release)
	if r := recv(t, ra); r.err != nil || r.u.ID != 1 {
		t.Errorf("leader: %+v, %v", r.u, r.err)
	}
	for _, p := range []*fproc{a, b} {
		if errs := p.rep.take(); len(errs) != 0 {
			t.Errorf("process %d reported %v", p.id, errs)
		}
	}
}

// TestFlightsLeaderFails: a leader that fails — an error, a panic, a
// result too large to share — publishes that it failed; its follower then
// runs the stage itself at once (not after the lease) and returns its own
// result or its own, real error.
func TestFlightsLeaderFails(t *testing.T) {
	srv := redistest.Shared(t)
	errFollower := errors.New("the follower's own error")
	for _, tt := range []struct {
		name      string
		do        func(string) (user, error) // the leader's stage
		follower  func(string) (user, error)
		wantErr   error // the follower's
		reported  error // by the leader
		panicking bool
	}{
		{name: "error", do: func(string) (user, error) { return user{}, errBoom },
			follower: func(string) (user, error) { return user{}, errFollower }, wantErr: errFollower},
		{name: "panic", do: func(string) (user, error) { panic("leader bug") }, panicking: true},
		{name: "too large", do: func(k string) (user, error) { return user{Name: strings.Repeat("x", 100)}, nil },
			reported: redisstore.ErrEntryTooLarge},
	} {
		t.Run(tt.name, func(t *testing.T) {
			arr := newArrivals()
			cfg := calm(redisstore.FlightConfig{Lease: time.Minute, MaxEntrySize: 64})
			a, b := newFproc(t, srv, arr, 1, name(t), cfg), newFproc(t, srv, arr, 2, name(t), cfg)
			a.do, b.do = tt.do, tt.follower
			close(b.release)
			panicked := make(chan any, 1)
			go func() {
				defer func() { panicked <- recover() }()
				a.call(caller("a"), "k")
			}()
			<-a.entered
			rb := b.start(caller("b"), "k")
			arr.wait(t, "b")
			close(a.release)
			r := recv(t, rb)
			switch {
			case tt.wantErr != nil:
				if !errors.Is(r.err, tt.wantErr) {
					t.Errorf("follower: %v, want its own error %v", r.err, tt.wantErr)
				}
			case r.err != nil || r.u.ID != 2:
				t.Errorf("follower: %+v, %v; want its own result", r.u, r.err)
			}
			if p := <-panicked; (p != nil) != tt.panicking {
				t.Errorf("leader panicked with %v, want a panic: %v", p, tt.panicking)
			}
			wantOutcomes(t, "b", &b.out, redisstore.FlightLeaderFailed)
			errs := a.rep.take()
			if tt.reported == nil && len(errs) != 0 || tt.reported != nil && (len(errs) != 1 || !errors.Is(errs[0], tt.reported)) {
				t.Errorf("leader reported %v, want %v", errs, tt.reported)
			}
			if n := a.client.Exists(context.Background(), a.flights.Key("k")).Val(); n != 0 {
				t.Error("the failed leader's lock is still there")
			}
		})
	}
}

// TestFlightsCancelledFollower: a follower whose context ends returns
// ctx.Err() at once without running the stage; the leader is unaffected.
func TestFlightsCancelledFollower(t *testing.T) {
	srv := redistest.Shared(t)
	arr := newArrivals()
	cfg := calm(redisstore.FlightConfig{Lease: time.Minute})
	a, b := newFproc(t, srv, arr, 1, name(t), cfg), newFproc(t, srv, arr, 2, name(t), cfg)
	ra := a.start(caller("a"), "k")
	<-a.entered
	ctx, cancel := context.WithCancel(caller("b"))
	rb := b.start(ctx, "k")
	arr.wait(t, "b")
	cancel()
	if r := recv(t, rb); !errors.Is(r.err, context.Canceled) {
		t.Errorf("cancelled follower: %+v, %v; want context.Canceled", r.u, r.err)
	}
	if n := b.runs.Load(); n != 0 {
		t.Errorf("the cancelled follower ran the stage %d times", n)
	}
	close(a.release)
	if r := recv(t, ra); r.err != nil || r.u.ID != 1 {
		t.Errorf("leader: %+v, %v", r.u, r.err)
	}
	// A caller whose context has already ended does nothing.
	done, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if _, err := b.call(done, "k"); !errors.Is(err, context.Canceled) || b.runs.Load() != 0 {
		t.Errorf("an ended context: %v, %d runs; want context.Canceled and no run", err, b.runs.Load())
	}
}

// TestFlightsCorruptResult: a published result that does not decode is
// reported and the follower runs the stage itself; never a panic, never
// the garbage.
func TestFlightsCorruptResult(t *testing.T) {
	srv := redistest.Shared(t)
	for _, tt := range []struct {
		name   string
		stored string
		codec  redisstore.Codec // the follower's
		want   error
	}{
		{"not JSON", "v\x00garbage", nil, redisstore.ErrCorruptEntry},
		{"wrong shape", `v{"ID":"not a number"}`, nil, redisstore.ErrCorruptEntry},
		{"unknown tag", `x{"ID":1}`, nil, redisstore.ErrCorruptEntry},
		{"larger than MaxEntrySize", `v{"Name":"` + strings.Repeat("a", 100) + `"}`, nil, redisstore.ErrEntryTooLarge},
		{"codec panics", `v{"ID":1}`, panicky{}, redisstore.ErrCorruptEntry},
	} {
		t.Run(tt.name, func(t *testing.T) {
			arr := newArrivals()
			cfg := calm(redisstore.FlightConfig{Lease: time.Minute, MaxEntrySize: 64})
			a := newFproc(t, srv, arr, 1, name(t), cfg)
			cfg.Codec = tt.codec
			var logs bytes.Buffer
			cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			b := newFproc(t, srv, arr, 2, name(t), cfg)
			close(b.release)
			ctx := context.Background()
			ra := a.start(caller("a"), "k")
			<-a.entered
			rb := b.start(caller("b"), "k")
			arr.wait(t, "b")
			// Publish garbage in a's name, as a's publish would.
			lock := a.flights.Key("k")
			token := a.client.Get(ctx, lock).Val()
			res := strings.TrimSuffix(lock, "lock") + "result:" + token
			if err := a.client.Set(ctx, res, tt.stored, time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
			a.client.Del(ctx, lock)
			if r := recv(t, rb); r.err != nil || r.u.ID != 2 {
				t.Errorf("follower: %+v, %v; want its own result", r.u, r.err)
			}
			wantOutcomes(t, "b", &b.out, redisstore.FlightStoreFailed)
			if errs := b.rep.take(); len(errs) != 1 || !errors.Is(errs[0], tt.want) {
				t.Errorf("follower reported %v, want one error matching %v", errs, tt.want)
			}
			for _, want := range []string{"level=WARN", "level=DEBUG", `outcome="store failed"`, "name=" + name(t), "key=k", "err="} {
				if !strings.Contains(logs.String(), want) {
					t.Errorf("log does not contain %q:\n%s", want, logs.String())
				}
			}
			close(a.release)
			recv(t, ra)
		})
	}
}

// TestFlightsRightKey: concurrent flights for many keys — keys with
// braces, colons and the suffixes of the layout, the empty key, and two
// names whose name:key read alike — through three processes: each runs
// once, and every caller gets the result of its own name and key.
func TestFlightsRightKey(t *testing.T) {
	srv := redistest.Shared(t)
	keys := []string{"", "7", "}", "{", "a}b", "{x}", "k}:lock", "k}:result:1", "b:c", "c", ":", "k:{key:7}"}
	names := []string{name(t) + "-a", name(t) + "-a:b"}
	arr := newArrivals()
	type flight struct{ name, key string }
	procs := map[string][]*fproc{}
	for _, n := range names {
		for i := range 3 {
			p := newFproc(t, srv, arr, i+1, n, calm(redisstore.FlightConfig{}))
			p.do = func(k string) (user, error) { return user{Name: n + "|" + k}, nil }
			procs[n] = append(procs[n], p)
		}
	}
	var ids []string
	chans := map[flight][]<-chan result{}
	for _, n := range names {
		for _, k := range keys {
			for i, p := range procs[n] {
				id := fmt.Sprintf("%s|%s|%d", n, k, i)
				ids = append(ids, id)
				chans[flight{n, k}] = append(chans[flight{n, k}], p.start(caller(id), k))
			}
		}
	}
	arr.wait(t, ids...)
	for _, n := range names {
		for _, p := range procs[n] {
			close(p.release)
		}
	}
	for fl, cs := range chans {
		for _, ch := range cs {
			if r := recv(t, ch); r.err != nil || r.u.Name != fl.name+"|"+fl.key {
				t.Errorf("%q of %s: %+v, %v; want %q", fl.key, fl.name, r.u, r.err, fl.name+"|"+fl.key)
			}
		}
	}
	for _, n := range names {
		var runs int64
		for _, p := range procs[n] {
			runs += p.runs.Load()
			if errs := p.rep.take(); len(errs) != 0 {
				t.Errorf("%s reported %v", n, errs)
			}
		}
		if runs != int64(len(keys)) {
			t.Errorf("%s: %d runs for %d keys, want one each", n, runs, len(keys))
		}
	}
}

// TestFlightsRoundTrips counts commands: a leader sends two (take the
// lease, publish); a follower one plus one per look.
func TestFlightsRoundTrips(t *testing.T) {
	srv := redistest.Shared(t)
	arr := newArrivals()
	cfg := calm(redisstore.FlightConfig{})
	a, b := newFproc(t, srv, arr, 1, name(t), cfg), newFproc(t, srv, arr, 2, name(t), cfg)
	for _, p := range []*fproc{a, b} {
		// Connect first: the handshake is not a round trip of a call.
		if err := p.client.Ping(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
	}
	var ca, cb counter
	a.client.AddHook(&ca)
	b.client.AddHook(&cb)
	close(a.release)
	if _, err := a.call(context.Background(), "alone"); err != nil {
		t.Fatal(err)
	}
	if n, names := ca.take(); n != 2 {
		t.Errorf("uncontended leader: %d round trips %v, want 2", n, names)
	}
	<-a.entered
	a.release = make(chan struct{})
	close(b.release) // b must not run; if it did, it would not hang
	ra := a.start(caller("a"), "k")
	<-a.entered
	rb := b.start(caller("b"), "k")
	arr.wait(t, "b")
	close(a.release)
	recv(t, ra)
	recv(t, rb)
	if n := b.runs.Load(); n != 0 {
		t.Errorf("the follower ran the stage %d times", n)
	}
	n, names := cb.take()
	if n < 2 {
		t.Errorf("follower: %d round trips %v, want at least 2 (join, then read the result)", n, names)
	}
	for _, c := range names {
		if c != "evalsha" {
			t.Errorf("follower sent %v, want only evalsha", names)
			break
		}
	}
	t.Logf("follower: %d round trips", n)
}

// TestFlightsRedisDown: with Redis stopped or frozen, every call runs the
// stage unshared within the bound, and the error is reported; a follower
// whose Redis dies while it waits does the same; when Redis is back,
// calls share flights again.
func TestFlightsRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	const timeout = 50 * time.Millisecond
	arr := newArrivals()
	cfg := redisstore.FlightConfig{Timeout: timeout, Lease: time.Minute}
	a, b := newFproc(t, srv, arr, 1, name(t), cfg), newFproc(t, srv, arr, 2, name(t), cfg)
	close(b.release)

	// Redis dies while b waits for a.
	ra := a.start(caller("a"), "k")
	<-a.entered
	rb := b.start(caller("b"), "k")
	arr.wait(t, "b")
	srv.Stop()
	if r := recv(t, rb); r.err != nil || r.u.ID != 2 {
		t.Errorf("follower, Redis gone: %+v, %v; want its own result", r.u, r.err)
	}
	wantOutcomes(t, "b", &b.out, redisstore.FlightStoreFailed)
	if errs := b.rep.take(); len(errs) != 1 {
		t.Errorf("follower reported %v, want one error", errs)
	}
	close(a.release)
	if r := recv(t, ra); r.err != nil || r.u.ID != 1 {
		t.Errorf("leader, Redis gone: %+v, %v; want its result", r.u, r.err)
	}
	if errs := a.rep.take(); len(errs) != 1 {
		t.Errorf("leader reported %v, want its publish failing", errs)
	}

	// Stopped, then frozen (nothing answers): every call runs at once or
	// within the Timeout.
	check := func(state string) {
		t.Helper()
		for i := range 3 {
			r := recv(t, b.start(context.Background(), fmt.Sprint("k", i)))
			if r.err != nil || r.u.ID != 2 || r.d > bound {
				t.Errorf("%s: %+v, %v after %v; want its own result within %v", state, r.u, r.err, r.d, bound)
			}
		}
		wantOutcomes(t, "b", &b.out, redisstore.FlightStoreFailed, redisstore.FlightStoreFailed, redisstore.FlightStoreFailed)
		if errs := b.rep.take(); len(errs) != 3 {
			t.Errorf("%s: reported %v, want three errors", state, errs)
		}
	}
	check("stopped")
	srv.Restart(t)
	b.call(context.Background(), "warm") // reconnect
	b.out.take()
	b.rep.take()
	srv.Freeze(t)
	check("frozen")
	srv.Thaw(t)

	// Back: shared again (a stale pooled connection may fail one call).
	for i := range 3 {
		b.call(context.Background(), "back")
		if o := b.out.take(); len(o) == 1 && o[0] == redisstore.FlightLed {
			break
		} else if i == 2 {
			t.Errorf("after Redis came back: outcomes %v, want led", o)
		}
	}
}

// TestFlightsCluster: on a Redis Cluster of three masters, a key's lock
// and results are in one slot, whatever the key holds, different keys
// spread over the masters, and two processes (two cluster clients) share
// a flight on each master.
func TestFlightsCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	cl := redistest.StartCluster(t)
	ctx := context.Background()
	a, b := cl.Client(t), cl.Client(t)
	for _, c := range []*redis.ClusterClient{a, b} {
		if err := c.ForEachShard(ctx, func(ctx context.Context, n *redis.Client) error { return n.Ping(ctx).Err() }); err != nil {
			t.Fatal(err)
		}
	}
	arr := newArrivals()
	b.AddHook(arr)
	cfg := calm(redisstore.FlightConfig{Lease: time.Minute})
	newFlights := func(c redis.UniversalClient, out *outcomes, rep *reports) *redisstore.Flights[user] {
		cfg := cfg
		if out != nil {
			cfg.OnFlight = out.add
		}
		cfg.OnError = rep.add
		f, err := redisstore.NewFlights[user](c, "users", cfg)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	var rep reports
	f := newFlights(a, nil, &rep)
	masters := map[string]string{} // master -> a key on it
	for _, k := range []string{"", "}", "a}b", "{x}", "k}:lock"} {
		lock := f.Key(k)
		res := strings.TrimSuffix(lock, "lock") + "result:0123.1"
		s1, err1 := a.ClusterKeySlot(ctx, lock).Result()
		s2, err2 := a.ClusterKeySlot(ctx, res).Result()
		if err1 != nil || err2 != nil || s1 != s2 {
			t.Errorf("key %q: lock in slot %d (%v), result in slot %d (%v); want one slot", k, s1, err1, s2, err2)
		}
	}
	for i := 0; len(masters) < redistest.ClusterNodes; i++ {
		if i == 1000 {
			t.Fatalf("1000 keys reached only masters %v", masters)
		}
		k := fmt.Sprint("user-", i)
		n, err := a.MasterForKey(ctx, f.Key(k))
		if err != nil {
			t.Fatal(err)
		}
		if masters[n.Options().Addr] == "" {
			masters[n.Options().Addr] = k
		}
	}
	for m, k := range masters {
		var outA, outB outcomes
		fa, fb := newFlights(a, &outA, &rep), newFlights(b, &outB, &rep)
		var runs atomic.Int64
		entered, release := make(chan struct{}, 1), make(chan struct{})
		stage := func(_ context.Context, k string) (user, error) {
			runs.Add(1)
			entered <- struct{}{}
			<-release
			return user{Name: k}, nil
		}
		id := func(k string) string { return k }
		sa := middleware.Apply(stage, redisstore.Deduplicated(fa, id))
		sb := middleware.Apply(stage, redisstore.Deduplicated(fb, id))
		var wg sync.WaitGroup
		wg.Go(func() {
			if u, err := sa(ctx, k); err != nil || u.Name != k {
				t.Errorf("%s on %s: leader %+v, %v", k, m, u, err)
			}
		})
		<-entered
		wg.Go(func() {
			if u, err := sb(caller("b:"+k), k); err != nil || u.Name != k {
				t.Errorf("%s on %s: follower %+v, %v", k, m, u, err)
			}
		})
		arr.wait(t, "b:"+k)
		close(release)
		wg.Wait()
		if n := runs.Load(); n != 1 {
			t.Errorf("%s on %s: %d runs, want 1", k, m, n)
		}
		wantOutcomes(t, k+" leader", &outA, redisstore.FlightLed)
		wantOutcomes(t, k+" follower", &outB, redisstore.FlightFollowed)
	}
	if errs := rep.take(); len(errs) != 0 {
		t.Errorf("errors reported: %v", errs)
	}
}

// TestFlightsLateLeader: a leader that returns after its lease expired and
// another caller took over never releases the new leader's lease; callers
// arriving meanwhile follow the new leader and get its result.
func TestFlightsLateLeader(t *testing.T) {
	srv := redistest.Shared(t)
	arr := newArrivals()
	ctx := context.Background()
	cfg := calm(redisstore.FlightConfig{Lease: 50 * time.Millisecond, MaxWait: time.Minute})
	a, b := newFproc(t, srv, arr, 1, name(t), cfg), newFproc(t, srv, arr, 2, name(t), cfg)
	cfg.Lease = time.Minute // c must not take over from b
	c := newFproc(t, srv, arr, 3, name(t), cfg)
	close(c.release)
	ra := a.start(caller("a"), "k")
	<-a.entered
	rb := b.start(caller("b"), "k")
	<-b.entered // b took over when a's lease expired
	lock := a.flights.Key("k")
	holder := a.client.Get(ctx, lock).Val()
	close(a.release)
	if r := recv(t, ra); r.err != nil || r.u.ID != 1 {
		t.Errorf("late leader: %+v, %v", r.u, r.err)
	}
	if got := a.client.Get(ctx, lock).Val(); got != holder || got == "" {
		t.Errorf("after the late leader returned, the lock holds %q, want the new leader's %q", got, holder)
	}
	rc := c.start(caller("c"), "k")
	arr.wait(t, "c")
	close(b.release)
	for who, ch := range map[string]<-chan result{"new leader": rb, "newcomer": rc} {
		if r := recv(t, ch); r.err != nil || r.u.ID != 2 {
			t.Errorf("%s: %+v, %v; want the new leader's result", who, r.u, r.err)
		}
	}
	wantOutcomes(t, "b", &b.out, redisstore.FlightTookOver)
	wantOutcomes(t, "c", &c.out, redisstore.FlightFollowed)
	if n := c.runs.Load(); n != 0 {
		t.Errorf("the newcomer ran the stage %d times", n)
	}
}
