package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"math"
	"sync/atomic"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/redisstore"
	"github.com/brace-go/brace/middleware/redisstore/internal/redistest"
	"github.com/redis/go-redis/v9"
)

func mustLimiter(t *testing.T, cfg redisstore.LimiterConfig) *redisstore.Limiter {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = name(t)
	}
	l, err := redisstore.NewLimiter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestLimiterConfigErrors(t *testing.T) {
	c := redistest.Shared(t).Client(t)
	for _, tt := range []struct {
		name string
		cfg  redisstore.LimiterConfig
		want string
	}{
		{"zero capacity", redisstore.LimiterConfig{Client: c, Name: "x"}, "redisstore: Capacity must be between 1 and 1099511627776, got 0"},
		{"nil client", redisstore.LimiterConfig{Name: "x", Capacity: 1}, "redisstore: Client must not be nil"},
		{"no name", redisstore.LimiterConfig{Client: c, Capacity: 1}, "redisstore: Name must not be empty"},
		{"negative lease", redisstore.LimiterConfig{Client: c, Name: "x", Capacity: 1, Lease: -1}, "redisstore: Lease must be at least 3ms, got -1ns"},
		{"tiny lease", redisstore.LimiterConfig{Client: c, Name: "x", Capacity: 1, Lease: time.Millisecond}, "redisstore: Lease must be at least 3ms, got 1ms"},
		{"negative local capacity", redisstore.LimiterConfig{Client: c, Name: "x", Capacity: 1, LocalCapacity: -1}, "redisstore: LocalCapacity must be between 0 and 1099511627776, got -1"},
		{"negative batch", redisstore.LimiterConfig{Client: c, Name: "x", Capacity: 4, Batch: -1}, "redisstore: Batch must be between 0 and Capacity (4), got -1"},
		{"batch above capacity", redisstore.LimiterConfig{Client: c, Name: "x", Capacity: 4, Batch: 5}, "redisstore: Batch must be between 0 and Capacity (4), got 5"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := redisstore.NewLimiter(tt.cfg)
			if err == nil || err.Error() != tt.want {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestLimiterMiddlewarePanicsOnNil(t *testing.T) {
	defer func() {
		if r := recover(); r != "redisstore: nil *Limiter (was NewLimiter's error ignored?)" {
			t.Errorf("recovered %v", r)
		}
	}()
	redisstore.LimiterMiddleware[int, int](nil)
}

// TestGlobalLimit sends 300 concurrent calls through three limiters on
// three clients (three processes) sharing a capacity of 5: exactly 5 run,
// the others are shed with a *backpressure.ShedError, and the slots come
// back when the calls return.
func TestGlobalLimit(t *testing.T) {
	const capacity, procs, calls = 5, 3, 300
	srv := redistest.Shared(t)
	var stages []middleware.Stage[int, int]
	var limiters []*redisstore.Limiter
	hold := make(chan struct{})
	for range procs {
		l := mustLimiter(t, redisstore.LimiterConfig{Client: srv.Client(t), Capacity: capacity, Timeout: 5 * time.Second,
			Observer: failOnStoreError(t)})
		limiters = append(limiters, l)
		stages = append(stages, middleware.Apply(func(ctx context.Context, i int) (int, error) {
			<-hold
			return i, nil
		}, redisstore.LimiterMiddleware[int, int](l)))
	}
	results := make(chan error, calls)
	for i := range calls {
		go func() {
			_, err := stages[i%procs](context.Background(), i)
			results <- err
		}()
	}
	// The shed calls return at once; the admitted ones hold their slots.
	for range calls - capacity {
		err := <-results
		var le *redisstore.LimitError
		if !errors.As(err, &le) || !errors.Is(err, redisstore.ErrLimited) || le.Capacity != capacity || le.InFlight != capacity || le.Local {
			t.Fatalf("err = %v, want a LimitError at %d of %d", err, capacity, capacity)
		}
	}
	if d, err := limiters[0].Depth(context.Background()); err != nil || d != capacity {
		t.Errorf("Depth = %d, %v; want %d", d, err, capacity)
	}
	close(hold)
	for range capacity {
		if err := <-results; err != nil {
			t.Errorf("admitted call: %v", err)
		}
	}
	if d, _ := limiters[1].Depth(context.Background()); d != 0 {
		t.Errorf("Depth after the calls returned = %d, want 0", d)
	}
}

// TestCrashedLeasesExpire: a lease whose process died (it is never
// released) stops counting once its expiry, on the server's clock, has
// passed. The test writes such a lease directly, expired.
func TestCrashedLeasesExpire(t *testing.T) {
	c := redistest.Shared(t).Client(t)
	l := mustLimiter(t, redisstore.LimiterConfig{Client: c, Capacity: 1, Lease: time.Minute})
	ctx := context.Background()
	now, _ := c.Time(ctx).Result()
	c.ZAdd(ctx, l.Key(), redis.Z{Score: float64(now.UnixMicro() - 1), Member: "crashed:1"})
	s := middleware.Apply(func(_ context.Context, i int) (int, error) {
		// While the call runs, its lease expires a Lease from now.
		z, err := c.ZRangeWithScores(ctx, l.Key(), 0, -1).Result()
		if err != nil || len(z) != 1 {
			return 0, fmt.Errorf("leases %v, %v; want one", z, err)
		}
		left := time.Duration(int64(z[0].Score)-now.UnixMicro()) * time.Microsecond
		if left <= 50*time.Second || left > time.Minute+10*time.Second {
			return 0, fmt.Errorf("lease expires in %v, want about 1m", left)
		}
		return i, nil
	}, redisstore.LimiterMiddleware[int, int](l))
	if _, err := s(ctx, 1); err != nil {
		t.Fatalf("call with only an expired lease in the set: %v", err)
	}
	if ttl := c.PTTL(ctx, l.Key()).Val(); ttl > 2*time.Minute {
		t.Errorf("key PTTL %v, want at most 2 × Lease", ttl)
	}
}

// TestLimiterFallback: with Redis stopped, calls go through the local
// limit (capacity LocalCapacity), and the error is reported with its
// cause.
func TestLimiterFallback(t *testing.T) {
	srv := redistest.Start(t)
	var rec recorder
	l := mustLimiter(t, redisstore.LimiterConfig{Client: srv.Client(t), Capacity: 10, LocalCapacity: 1, Observer: &rec})
	ctx := context.Background()
	srv.Stop()
	inner := make(chan error, 1)
	var s middleware.Stage[int, int]
	s = middleware.Apply(func(_ context.Context, i int) (int, error) {
		if i == 0 {
			_, err := s(ctx, 1) // a second call while the first holds the local slot
			inner <- err
		}
		return i, nil
	}, redisstore.LimiterMiddleware[int, int](l))
	if _, err := s(ctx, 0); err != nil {
		t.Fatalf("first call with Redis down: %v", err)
	}
	var le *redisstore.LimitError
	if err := <-inner; !errors.As(err, &le) || !le.Local {
		t.Errorf("second call beyond LocalCapacity: %v, want a local LimitError", err)
	}
	errs := rec.of(middleware.StoreFailed)
	if len(errs) < 2 {
		t.Errorf("store errors reported %d, want at least 2", len(errs))
	}
	for _, e := range errs {
		if errors.Is(e.Err, context.Canceled) || !strings.Contains(e.Err.Error(), "connection refused") {
			t.Errorf("store error %q: want the cause (connection refused), not a context error", e.Err)
		}
	}
	if got := l.Stats(); got.Rejected != 1 || got.LocalInFlight != 0 {
		t.Errorf("Stats %+v, want 1 rejected and no local slot held", got)
	}
	if r := rec.of(middleware.Rejected); len(r) != 1 || r[0].Reason != "limit" || r[0].Limit != 1 {
		t.Errorf("Rejected events %+v, want one with Reason limit and Limit 1", r)
	}
}

// TestLimiterWrongTypeRepaired (issue 15 item 9): a limiter key of the
// wrong Redis type is repaired (deleted and used again), reported as
// ErrCorrupt, and the call is admitted in Redis.
func TestLimiterWrongTypeRepaired(t *testing.T) {
	c := redistest.Shared(t).Client(t)
	var rec recorder
	l := mustLimiter(t, redisstore.LimiterConfig{Client: c, Capacity: 10, Observer: &rec})
	ctx := context.Background()
	if err := c.Set(ctx, l.Key(), "not a sorted set", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	p, err := l.Acquire(ctx)
	if err != nil {
		t.Fatalf("Acquire with a key of the wrong type: %v", err)
	}
	if d, err := l.Depth(ctx); err != nil || d != 1 {
		t.Errorf("Depth = %d, %v; want 1: the slot taken in Redis, the key repaired", d, err)
	}
	p.Done(nil)
	errs := rec.of(middleware.StoreFailed)
	if len(errs) != 1 || !errors.Is(errs[0].Err, redisstore.ErrCorrupt) || !strings.Contains(errs[0].Err.Error(), "wrong type string") {
		t.Errorf("store errors %+v, want one ErrCorrupt naming the wrong type", errs)
	}
}

// TestLimiterEverlastingLeasesRepaired (issue 15 item 9): leases that end
// far in the future (+inf, or years ahead: not written by a limiter with
// this Lease) are dropped; they never hold the capacity.
func TestLimiterEverlastingLeasesRepaired(t *testing.T) {
	c := redistest.Shared(t).Client(t)
	var rec recorder
	l := mustLimiter(t, redisstore.LimiterConfig{Client: c, Capacity: 2, Observer: &rec})
	ctx := context.Background()
	c.ZAdd(ctx, l.Key(), redis.Z{Score: math.Inf(1), Member: "forever"}, redis.Z{Score: 1e17, Member: "in-3000-years"})
	p, err := l.Acquire(ctx)
	if err != nil {
		t.Fatalf("Acquire with the capacity held by everlasting leases: %v", err)
	}
	defer p.Done(nil)
	if n := c.ZCard(ctx, l.Key()).Val(); n != 1 {
		t.Errorf("%d leases, want only the new one", n)
	}
	if errs := rec.of(middleware.StoreFailed); len(errs) != 1 || !errors.Is(errs[0].Err, redisstore.ErrCorrupt) {
		t.Errorf("store errors %+v, want one ErrCorrupt", errs)
	}
}

// TestLimiterLeaseRenewed: a call running longer than Lease keeps its
// slot (renewed every Lease/3); a slot that nobody renews (its process
// crashed) comes back within Lease.
func TestLimiterLeaseRenewed(t *testing.T) {
	c := redistest.Shared(t).Client(t)
	const lease = 150 * time.Millisecond
	l := mustLimiter(t, redisstore.LimiterConfig{Client: c, Capacity: 1, Lease: lease, Timeout: time.Second})
	ctx := context.Background()
	p, err := l.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for time.Since(start) < 5*lease {
		<-tick.C
		if d, err := l.Depth(ctx); err != nil || d != 1 {
			t.Fatalf("after %v of a %v lease: Depth %d, %v; want the running call's slot held", time.Since(start), lease, d, err)
		}
	}
	p.Done(nil)
	if d, _ := l.Depth(ctx); d != 0 {
		t.Fatalf("Depth after Done = %d, want 0", d)
	}
	// A crashed holder: a lease taken by another limiter that never
	// renews or releases it.
	now, _ := c.Time(ctx).Result()
	c.ZAdd(ctx, l.Key(), redis.Z{Score: float64(now.Add(lease).UnixMicro()), Member: "crashed"})
	d := eventually(t, 10*lease, "the crashed holder's slot back", func() bool {
		p, err := l.Acquire(ctx)
		if err != nil {
			return false
		}
		p.Done(nil)
		return true
	})
	if d > lease+100*time.Millisecond {
		t.Errorf("crashed holder's slot back after %v, want within Lease %v", d, lease)
	}
}

// TestLimiterLostRepliesRecover (issue 15 item 2): replies to acquires are
// lost (the scripts ran: ghost leases hold the whole capacity); once
// replies flow again, the next acquire releases the ghosts: calls are
// admitted at once, not after a lease length.
func TestLimiterLostRepliesRecover(t *testing.T) {
	srv := redistest.Shared(t)
	px := startProxy(t, srv.Addr)
	opts := srv.Options()
	opts.Addr = px.Addr
	c := redisNewClient(t, opts)
	const capacity = 1
	l := mustLimiter(t, redisstore.LimiterConfig{Client: c, Capacity: capacity, Lease: time.Minute, Timeout: 50 * time.Millisecond})
	other := mustLimiter(t, redisstore.LimiterConfig{Client: srv.Client(t), Name: name(t), Capacity: capacity, Lease: time.Minute})
	ctx := context.Background()
	if p, err := l.Acquire(ctx); err != nil { // loads the script, connects
		t.Fatal(err)
	} else {
		p.Done(nil)
	}
	px.Drop(true)
	p, err := l.Acquire(ctx) // its reply is lost: admitted locally
	if err != nil {
		t.Fatalf("Acquire with replies lost: %v, want a local slot", err)
	}
	p.Done(nil)
	if d, _ := other.Depth(ctx); d != capacity {
		t.Fatalf("Depth = %d, want %d ghost lease (the script ran)", d, capacity)
	}
	if _, err := other.Acquire(ctx); !errors.Is(err, redisstore.ErrLimited) {
		t.Fatalf("another process while the ghost lease holds the capacity: %v, want ErrLimited", err)
	}
	px.Drop(false)
	start := time.Now()
	eventually(t, redisstore.DownFor+time.Second, "a slot in Redis after the hiccup", func() bool {
		p, err := l.Acquire(ctx)
		if err == nil {
			p.Done(nil)
		}
		d, _ := other.Depth(ctx)
		return err == nil && d == 0
	})
	t.Logf("ghost leases released %v after replies flowed again (Lease 1m)", time.Since(start))
	p, err = other.Acquire(ctx)
	if err != nil {
		t.Fatalf("another process after recovery: %v, want admitted", err)
	}
	p.Done(nil)
}

func TestLimitPanicReleases(t *testing.T) {
	c := redistest.Shared(t).Client(t)
	l := mustLimiter(t, redisstore.LimiterConfig{Client: c, Capacity: 1})
	s := middleware.Apply(func(context.Context, int) (int, error) { panic("boom") }, redisstore.LimiterMiddleware[int, int](l))
	func() {
		defer func() { recover() }()
		s(context.Background(), 1)
	}()
	if d, err := l.Depth(context.Background()); err != nil || d != 0 {
		t.Errorf("Depth after a panic = %d, %v; want 0", d, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller: %v, want context.Canceled", err)
	}
	if d, _ := l.Depth(context.Background()); d != 0 {
		t.Errorf("a cancelled caller took a slot")
	}
}

// TestPermitDoneTwice: a second Done does nothing (it must not give back
// another call's slot).
func TestPermitDoneTwice(t *testing.T) {
	c := redistest.Shared(t).Client(t)
	l := mustLimiter(t, redisstore.LimiterConfig{Client: c, Capacity: 2})
	ctx := context.Background()
	p1, _ := l.Acquire(ctx)
	p2, _ := l.Acquire(ctx)
	p1.Done(nil)
	p1.Done(nil)
	if d, _ := l.Depth(ctx); d != 1 {
		t.Errorf("Depth = %d after one call finished twice, want 1", d)
	}
	p2.Done(nil)
	var zero redisstore.Permit
	zero.Done(nil)
}

// TestLimiterObservers: a panicking observer leaves the limiter
// consistent, and one that calls back into it does not deadlock.
func TestLimiterObservers(t *testing.T) {
	c := redistest.Shared(t).Client(t)
	var l *redisstore.Limiter
	var reentered atomic.Int64
	obs := middleware.ObserverFunc(func(ctx context.Context, e middleware.Event) {
		l.Stats()
		if reentered.Add(1) == 1 {
			if p, err := l.Acquire(ctx); err == nil {
				p.Done(nil)
			}
		}
		panic("observer")
	})
	l = mustLimiter(t, redisstore.LimiterConfig{Client: c, Capacity: 1, Observer: obs})
	ctx := context.Background()
	p, err := l.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Acquire(ctx); !errors.Is(err, redisstore.ErrLimited) { // Rejected: the observer panics
		t.Errorf("second Acquire: %v, want ErrLimited", err)
	}
	p.Done(nil)
	if d, _ := l.Depth(ctx); d != 0 {
		t.Errorf("Depth = %d, want 0", d)
	}
	if got := l.Stats().Rejected; got < 1 {
		t.Errorf("Rejected = %d, want at least 1", got)
	}
}

// TestLimiterLocalAllocs: while the store is skipped, an admitted call
// allocates nothing and a refused one (no observer) only its error.
func TestLimiterLocalAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocations are not measured under the race detector")
	}
	srv := redistest.Start(t)
	l := mustLimiter(t, redisstore.LimiterConfig{Client: srv.Client(t), Capacity: 1})
	srv.Stop()
	ctx := context.Background()
	for range redisstore.DownAfter {
		if p, err := l.Acquire(ctx); err == nil {
			p.Done(nil)
		}
	}
	if !l.Stats().Down {
		t.Fatal("not down after DownAfter failures")
	}
	if a := testing.AllocsPerRun(100, func() {
		p, err := l.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		p.Done(nil)
	}); a != 0 {
		t.Errorf("admitted locally: %v allocations, want 0", a)
	}
	held, _ := l.Acquire(ctx)
	defer held.Done(nil)
	if a := testing.AllocsPerRun(100, func() { l.Acquire(ctx) }); a > 1 {
		t.Errorf("refused locally: %v allocations, want at most 1 (the *LimitError)", a)
	}
}
