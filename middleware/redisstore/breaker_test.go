package redisstore_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/redisstore"
	"github.com/brace-go/brace/middleware/redisstore/internal/redistest"
	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
)

func TestBreakerStoreConfigErrors(t *testing.T) {
	good := redistest.Shared(t).Client(t)
	noCtx := redis.NewClient(&redis.Options{Addr: good.Options().Addr})
	defer noCtx.Close()
	short := redis.NewClient(&redis.Options{Addr: good.Options().Addr, ReadTimeout: 50 * time.Millisecond, WriteTimeout: 50 * time.Millisecond})
	defer short.Close()
	tests := []struct {
		name string
		cfg  redisstore.BreakerStoreConfig
		want string
	}{
		{"nil client", redisstore.BreakerStoreConfig{Name: "x"}, "redisstore: Client must not be nil"},
		{"empty name", redisstore.BreakerStoreConfig{Client: good}, "redisstore: Name must not be empty"},
		{"brace in name", redisstore.BreakerStoreConfig{Client: good, Name: "a{b"}, `redisstore: Name must not contain '{' or '}' (they delimit the hash tag), got "a{b"`},
		{"brace in prefix", redisstore.BreakerStoreConfig{Client: good, Name: "x", Prefix: "}"}, `redisstore: Prefix must not contain '{' or '}' (they delimit the hash tag), got "}"`},
		{"negative timeout", redisstore.BreakerStoreConfig{Client: good, Name: "x", Timeout: -1}, "redisstore: Timeout must not be negative, got -1ns"},
		{"tiny timeout", redisstore.BreakerStoreConfig{Client: good, Name: "x", Timeout: time.Microsecond}, "redisstore: Timeout must be at least 1ms, got 1µs"},
		{"negative TTL", redisstore.BreakerStoreConfig{Client: good, Name: "x", TTL: -time.Second}, "redisstore: TTL must not be negative, got -1s"},
		{"client ignores context deadlines", redisstore.BreakerStoreConfig{Client: noCtx, Name: "x"},
			"redisstore: Client must set ContextTimeoutEnabled (or ReadTimeout and WriteTimeout of at most Timeout, 100ms), or a hung Redis blocks calls for ReadTimeout; got ContextTimeoutEnabled false, ReadTimeout 5s, WriteTimeout 5s"},
		{"short socket timeouts are enough", redisstore.BreakerStoreConfig{Client: short, Name: "x"}, ""},
		{"zero config", redisstore.BreakerStoreConfig{Client: good, Name: "x"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := redisstore.NewBreakerStore(tt.cfg)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("error:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// TestBind checks that a store takes one policy: binding it again with an
// equal one is fine, with another one an error; an unbound store refuses
// to work.
func TestBind(t *testing.T) {
	c, _ := client(t)
	s := mustStore(t, c, name(t))
	if _, err := s.Update(context.Background(), breaker.Op{}); err == nil {
		t.Error("Update before Bind: no error")
	}
	p := *consecutive(3, time.Second)
	if err := s.Bind(p); err != nil {
		t.Fatal(err)
	}
	if err := s.Bind(p); err != nil {
		t.Errorf("Bind with the same policy: %v", err)
	}
	q := p
	q.Threshold = 4
	if err := s.Bind(q); err == nil {
		t.Error("Bind with another policy: no error")
	}
	// Through breaker.New: a second breaker with another policy is refused.
	s2 := mustStore(t, c, name(t))
	mustBreaker(t, breaker.Config{Threshold: 3, Store: s2})
	if _, err := breaker.New(breaker.Config{Threshold: 4, Store: s2}); err == nil {
		t.Error("breaker.New with a store bound to another policy: no error")
	}
}

func TestBreakerKeyLayout(t *testing.T) {
	c, _ := client(t)
	for _, tt := range []struct{ prefix, want string }{
		{"", "brace:{breaker:payments}:state"},
		{"svc", "svc:{breaker:payments}:state"},
	} {
		s, err := redisstore.NewBreakerStore(redisstore.BreakerStoreConfig{Client: c, Name: "payments", Prefix: tt.prefix})
		if err != nil {
			t.Fatal(err)
		}
		if got := s.StateKey(); got != tt.want {
			t.Errorf("StateKey() = %q, want %q", got, tt.want)
		}
	}
}

// consecutive is the policy breaker.New derives from
// Config{Threshold: n, OpenTimeout: open}.
func consecutive(n int, open time.Duration) *breaker.Policy {
	return &breaker.Policy{Threshold: n, OpenTimeout: open, Probes: 1, SuccessThreshold: 1, ProbeLease: 10 * time.Second}
}

// TestSharedFailuresAreExact makes thousands of failing calls at once
// through four breakers on four clients that share one Redis breaker, and
// checks that every failure was counted exactly once: the replies of the
// failures that did not open the breaker carry the consecutive counts
// 1..Threshold-1, each exactly once, and exactly one failure opened it.
func TestSharedFailuresAreExact(t *testing.T) {
	const threshold, calls, breakers = 1500, 2000, 4
	srv := redistest.Shared(t)
	var mu sync.Mutex
	var closedCounts []int
	opened := 0
	var bs []*breaker.Breaker
	for range breakers {
		c := srv.Client(t)
		s, err := redisstore.NewBreakerStore(redisstore.BreakerStoreConfig{Client: c, Name: name(t), Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		rec := storeFunc{s, func(ctx context.Context, op breaker.Op) (breaker.Snapshot, error) {
			snap, err := s.Update(ctx, op)
			if err == nil && op.Kind == breaker.OpResult && op.Failures == 1 {
				mu.Lock()
				switch {
				case snap.State == breaker.Closed && snap.Gen == 1:
					closedCounts = append(closedCounts, snap.Counts.ConsecutiveFailures)
				case snap.State == breaker.Open && snap.Gen == 2 && op.Gen == 1:
					opened++ // this failure or a later, ignored one
				}
				mu.Unlock()
			}
			return snap, err
		}}
		bs = append(bs, mustBreaker(t, breaker.Config{
			Threshold: threshold, OpenTimeout: time.Hour, Store: rec, StoreSync: time.Hour,
			Observer: middleware.ObserverFunc(func(_ context.Context, e middleware.Event) {
				if e.Kind == middleware.StoreFailed {
					t.Errorf("store error: %v", e.Err)
				}
			}),
		}))
	}
	// Admit every call first, so all of them run in the closed state.
	ctx := context.Background()
	permits := make([]breaker.Permit, calls)
	for i := range permits {
		p, err := bs[i%breakers].Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		permits[i] = p
	}
	var wg sync.WaitGroup
	for i := range permits {
		wg.Go(func() { permits[i].Done(errBoom) })
	}
	wg.Wait()

	slices.Sort(closedCounts)
	want := make([]int, threshold-1)
	for i := range want {
		want[i] = i + 1
	}
	if diff := cmp.Diff(want, closedCounts); diff != "" {
		t.Errorf("consecutive counts returned while closed (-want +got):\n%s", diff)
	}
	// The failures after the threshold arrive with generation 1 while the
	// store is at 2: they see it open and are not counted.
	if opened != calls-(threshold-1) {
		t.Errorf("%d failures saw it open, want %d", opened, calls-(threshold-1))
	}
	if got := read(t, bound(t, srv.Client(t), name(t), *consecutive(threshold, time.Hour))); got.State != breaker.Open || got.Gen != 2 {
		t.Errorf("shared state %v at generation %d, want open at 2", got.State, got.Gen)
	}
	for i, b := range bs {
		if err := call(b, nil); !errors.Is(err, breaker.ErrOpen) {
			t.Errorf("breaker %d: %v, want ErrOpen", i, err)
		}
	}
}

// TestProbeSlotsAreGlobal lets hundreds of calls through four breakers on
// four clients ask for the half-open probe slots at once: exactly
// HalfOpenProbes of them are admitted, across all breakers.
func TestProbeSlotsAreGlobal(t *testing.T) {
	const probes, breakers, callers = 3, 4, 400
	srv := redistest.Shared(t)
	var bs []*breaker.Breaker
	var stores []*redisstore.BreakerStore
	for range breakers {
		// A generous Timeout: 400 concurrent scripts on a busy machine must
		// not time out (the store would be skipped, and the local
		// breakers, closed, would admit).
		s, err := redisstore.NewBreakerStore(redisstore.BreakerStoreConfig{Client: srv.Client(t), Name: name(t), Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		stores = append(stores, s)
		bs = append(bs, mustBreaker(t, breaker.Config{
			Threshold: 1, HalfOpenProbes: probes,
			// One microsecond on the Redis clock: by the next operation
			// the breaker is half-open.
			OpenTimeout: time.Microsecond,
			Store:       stores[len(stores)-1], StoreSync: time.Hour,
		}))
	}
	if err := call(bs[0], errBoom); !errors.Is(err, errBoom) {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var admitted []breaker.Permit
	var wg sync.WaitGroup
	ctx := context.Background()
	for i := range callers {
		wg.Go(func() {
			p, err := bs[i%breakers].Acquire(ctx)
			switch {
			case err == nil:
				mu.Lock()
				admitted = append(admitted, p)
				mu.Unlock()
			case !errors.Is(err, breaker.ErrOpen):
				t.Errorf("Allow: %v", err)
			}
		})
	}
	wg.Wait()
	if len(admitted) != probes {
		t.Fatalf("%d calls admitted while half-open, want %d", len(admitted), probes)
	}
	got := read(t, stores[0])
	if got.State != breaker.HalfOpen || got.Counts.Probes != probes {
		t.Errorf("shared state %v with %d probes, want half-open with %d", got.State, got.Counts.Probes, probes)
	}
}

// TestNewcomerJoins starts a breaker (a new process, with a client and a
// store of its own) after others have recorded failures: it adopts their
// state and never resets it.
func TestNewcomerJoins(t *testing.T) {
	srv := redistest.Shared(t)
	newBreaker := func() *breaker.Breaker {
		return mustBreaker(t, breaker.Config{Threshold: 3, OpenTimeout: time.Hour, Store: mustStore(t, srv.Client(t), name(t)), StoreSync: time.Hour})
	}
	a := newBreaker()
	call(a, errBoom)
	call(a, errBoom)
	b := newBreaker() // joins with two failures counted
	if err := call(b, errBoom); !errors.Is(err, errBoom) {
		t.Fatalf("b's first call: %v", err)
	}
	if err := call(b, nil); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("b after the third shared failure: %v, want ErrOpen", err)
	}
	c := newBreaker() // joins an open breaker
	err := call(c, nil)
	if !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("c's first call: %v, want ErrOpen", err)
	}
	// The open deadline comes from the server's clock: about an hour
	// left, never more.
	if ra := err.(*breaker.OpenError).RetryAfter(); ra <= 59*time.Minute || ra > time.Hour {
		t.Errorf("c: RetryAfter = %v, want just under 1h", ra)
	}
	if got := read(t, bound(t, srv.Client(t), name(t), *consecutive(3, time.Hour))); got.State != breaker.Open || got.Gen != 2 {
		t.Errorf("shared state %v at generation %d, want open at 2", got.State, got.Gen)
	}
}

// TestRoundTrips counts the commands a breaker sends with a go-redis hook:
// none for a closed-state success, one for a failure.
func TestRoundTrips(t *testing.T) {
	ctx := context.Background()
	t.Run("consecutive", func(t *testing.T) {
		c, n := client(t)
		b := mustBreaker(t, breaker.Config{Threshold: 1000, Store: mustStore(t, c, name(t)), StoreSync: time.Hour})
		steps := []struct {
			name string
			do   func()
			want int64
		}{
			{"first call reads the store", func() { call(b, nil) }, 1},
			{"1000 closed successes", func() {
				for range 1000 {
					call(b, nil)
				}
			}, 0},
			{"a failure", func() { call(b, errBoom) }, 1},
			{"a success resets the failure count", func() { call(b, nil) }, 1},
			{"then successes are free again", func() { call(b, nil); call(b, nil) }, 0},
			{"through the middleware", func() {
				f := breaker.Middleware[int, int](b)(func(_ context.Context, i int) (int, error) { return i, nil })
				for i := range 100 {
					f(ctx, i)
				}
			}, 0},
		}
		for _, st := range steps {
			n.take()
			st.do()
			if got, names := n.take(); got != st.want {
				t.Errorf("%s: %d round trips %v, want %d", st.name, got, names, st.want)
			}
		}
	})
	t.Run("rate", func(t *testing.T) {
		c, n := client(t)
		s := mustStore(t, c, name(t))
		b := mustBreaker(t, breaker.Config{FailureRate: 0.5, MinCalls: 10000, Window: time.Hour, Buckets: 1, Store: s, StoreSync: time.Hour})
		call(b, nil)
		n.take()
		for range 999 {
			call(b, nil)
		}
		if got, names := n.take(); got != 0 {
			t.Errorf("999 successes: %d round trips %v, want 0", got, names)
		}
		call(b, errBoom) // carries the 999 successes with it
		if got, names := n.take(); got != 1 {
			t.Errorf("a failure: %d round trips %v, want 1", got, names)
		}
		got := read(t, s).Counts
		if got.Successes != 1000 || got.Failures != 1 {
			t.Errorf("shared counts %+v, want 1000 successes and 1 failure", got)
		}
	})
}

// TestScriptFlush checks that the store survives SCRIPT FLUSH (as after a
// restart or failover): EVALSHA answers NOSCRIPT, the store sends EVAL
// once, and EVALSHA works again after it.
func TestScriptFlush(t *testing.T) {
	c, n := client(t)
	s := bound(t, c, name(t), *consecutive(5, time.Minute))
	ctx := context.Background()
	fail := breaker.Op{Kind: breaker.OpResult, Gen: 1, Failures: 1}
	flush := func() (breaker.Snapshot, error) { return breaker.Snapshot{}, c.ScriptFlush(ctx).Err() }
	update := func() (breaker.Snapshot, error) { return s.Update(ctx, fail) }
	steps := []struct {
		do   func() (breaker.Snapshot, error)
		want []string
	}{
		{flush, []string{"script"}},
		{update, []string{"evalsha", "eval"}}, // NOSCRIPT, then EVAL loads it
		{update, []string{"evalsha"}},
		{flush, []string{"script"}},
		{update, []string{"evalsha", "eval"}},
		{update, []string{"evalsha"}},
	}
	var last breaker.Snapshot
	for i, st := range steps {
		n.take()
		snap, err := st.do()
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		last = snap
		if _, names := n.take(); !slices.Equal(names, st.want) {
			t.Errorf("step %d: commands %v, want %v", i, names, st.want)
		}
	}
	if last.Counts.ConsecutiveFailures != 4 {
		t.Errorf("consecutive failures %d, want 4: each Update applied exactly once", last.Counts.ConsecutiveFailures)
	}
}

// TestExpiry checks the keys' time to live: a breaker that never changed
// leaves no key, a used one expires after TTL, an open one not before its
// open time has passed.
func TestExpiry(t *testing.T) {
	c, _ := client(t)
	ctx := context.Background()
	store := func(p *breaker.Policy) *redisstore.BreakerStore {
		s, err := redisstore.NewBreakerStore(redisstore.BreakerStoreConfig{Client: c, Name: name(t), TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Bind(*p); err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := store(consecutive(2, 10*time.Minute))
	short := store(consecutive(2, time.Second)) // TTL stays 1m: 2 × OpenTimeout is less
	pttl := func() time.Duration {
		d, err := c.PTTL(ctx, s.StateKey()).Result()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if _, err := s.Update(ctx, breaker.Op{Kind: breaker.OpAcquire}); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.Exists(ctx, s.StateKey()).Result(); n != 0 {
		t.Fatal("an unchanged breaker wrote a key")
	}
	short.Update(ctx, breaker.Op{Kind: breaker.OpResult, Gen: 1, Failures: 1})
	if d := pttl(); d <= 50*time.Second || d > time.Minute {
		t.Errorf("PTTL after a failure = %v, want about TTL (1m)", d)
	}
	// 2 × OpenTimeout (20m) exceeds TTL; an open breaker also keeps its
	// state until its open time (10m) has passed, plus that.
	s.Update(ctx, breaker.Op{Kind: breaker.OpResult, Gen: 1, Failures: 1})
	if d := pttl(); d <= 29*time.Minute || d > 30*time.Minute {
		t.Errorf("PTTL when open = %v, want about 20m + 10m", d)
	}
	// An expired (here deleted) state reads as a fresh breaker.
	if err := s.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	got := read(t, s)
	if got.State != breaker.Closed || got.Gen != 1 {
		t.Errorf("after expiry: %v at generation %d, want closed at 1", got.State, got.Gen)
	}
}

// Issue 14 item 5 on Redis: an OpenDelay of the largest time.Duration (what
// httpx.ParseRetryAfter gives for an absurd Retry-After) keeps a shared
// breaker open, in this process and in another, and tells callers to retry
// after a huge delay, never after 0.
func TestHugeOpenDelayStaysOpen(t *testing.T) {
	c, _ := client(t)
	n := name(t)
	cfg := breaker.Config{
		Name: n, Threshold: 1,
		OpenDelay: func(error) time.Duration { return time.Duration(math.MaxInt64) },
	}
	cfg.Store = mustStore(t, c, n)
	a := mustBreaker(t, cfg)
	cfg.Store = mustStore(t, c, n)
	b := mustBreaker(t, cfg)
	if err := call(a, errBoom); !errors.Is(err, errBoom) {
		t.Fatalf("the failing call: %v", err)
	}
	for name, br := range map[string]*breaker.Breaker{"this process": a, "another process": b} {
		err := call(br, nil)
		var oe *breaker.OpenError
		if !errors.As(err, &oe) {
			t.Fatalf("%s: err = %v, want the breaker's rejection", name, err)
		}
		if d := oe.RetryAfter(); d < 100*365*24*time.Hour {
			t.Errorf("%s: retry after %v, want a huge delay", name, d)
		}
	}
}
