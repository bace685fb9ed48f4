package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/brace-go/brace/internal/redistest"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/redisstore"
	"github.com/redis/go-redis/v9"
)

func mustLimiter(t *testing.T, c redis.UniversalClient, capacity int64, cfg redisstore.LimiterConfig) *redisstore.Limiter {
	t.Helper()
	l, err := redisstore.NewLimiter(c, name(t), capacity, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestLimiterConfigErrors(t *testing.T) {
	c := redistest.Shared(t).Client(t)
	for _, tt := range []struct {
		name     string
		capacity int64
		cfg      redisstore.LimiterConfig
		want     string
	}{
		{"zero capacity", 0, redisstore.LimiterConfig{}, "redisstore: capacity must be between 1 and 2147483647, got 0"},
		{"negative lease", 1, redisstore.LimiterConfig{Lease: -1}, "redisstore: Lease must be positive, got -1ns"},
		{"tiny lease", 1, redisstore.LimiterConfig{Lease: time.Microsecond}, "redisstore: Lease must be at least 1ms, got 1µs"},
		{"negative local capacity", 1, redisstore.LimiterConfig{LocalCapacity: -1}, "redisstore: LocalCapacity must not be negative, got -1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := redisstore.NewLimiter(c, "x", tt.capacity, tt.cfg)
			if err == nil || err.Error() != tt.want {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
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
		l := mustLimiter(t, srv.Client(t), capacity, redisstore.LimiterConfig{Timeout: 5 * time.Second,
			OnStoreError: func(err error) { t.Errorf("store error: %v", err) }})
		limiters = append(limiters, l)
		stages = append(stages, middleware.Apply(func(ctx context.Context, i int) (int, error) {
			<-hold
			return i, nil
		}, redisstore.Limit[int, int](l)))
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
		var se *backpressure.ShedError
		if !errors.As(err, &se) || !errors.Is(err, backpressure.ErrShed) || se.Capacity != capacity || se.Depth != capacity {
			t.Fatalf("err = %v, want a ShedError at depth %d of %d", err, capacity, capacity)
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
	l := mustLimiter(t, c, 1, redisstore.LimiterConfig{Lease: time.Minute})
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
	}, redisstore.Limit[int, int](l))
	if _, err := s(ctx, 1); err != nil {
		t.Fatalf("call with only an expired lease in the set: %v", err)
	}
	if ttl := c.PTTL(ctx, l.Key()).Val(); ttl > 2*time.Minute {
		t.Errorf("key PTTL %v, want at most 2 × Lease", ttl)
	}
}

// TestLimiterFallback: with Redis stopped, calls go through the local
// limiter (capacity LocalCapacity), and the error is reported.
func TestLimiterFallback(t *testing.T) {
	srv := redistest.Start(t)
	var storeErrs []error
	l := mustLimiter(t, srv.Client(t), 10, redisstore.LimiterConfig{LocalCapacity: 1, OnStoreError: func(err error) { storeErrs = append(storeErrs, err) }})
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
	}, redisstore.Limit[int, int](l))
	if _, err := s(ctx, 0); err != nil {
		t.Fatalf("first call with Redis down: %v", err)
	}
	if err := <-inner; !errors.Is(err, backpressure.ErrShed) {
		t.Errorf("second call beyond LocalCapacity: %v, want shed", err)
	}
	if len(storeErrs) != 2 {
		t.Errorf("store errors reported %d, want 2", len(storeErrs))
	}
	// Nobody cancelled anything: the error must not say so.
	for _, err := range storeErrs {
		if errors.Is(err, context.Canceled) {
			t.Errorf("store error %q matches context.Canceled; want Redis's own", err)
		}
	}
}

// TestLimiterStoreErrorIsRedis: a key of the wrong type makes Redis fail
// the acquire at once; the call goes through the local limiter and the
// reported error is Redis's, not a context error nobody caused.
func TestLimiterStoreErrorIsRedis(t *testing.T) {
	c := redistest.Shared(t).Client(t)
	var storeErrs []error
	l := mustLimiter(t, c, 10, redisstore.LimiterConfig{OnStoreError: func(err error) { storeErrs = append(storeErrs, err) }})
	ctx := context.Background()
	if err := c.Set(ctx, l.Key(), "not a sorted set", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	s := middleware.Apply(func(_ context.Context, i int) (int, error) { return i, nil }, redisstore.Limit[int, int](l))
	if _, err := s(ctx, 1); err != nil {
		t.Fatalf("call with the store failing: %v, want admitted locally", err)
	}
	if len(storeErrs) != 1 {
		t.Fatalf("store errors reported: %v, want one", storeErrs)
	}
	if err := storeErrs[0]; !strings.Contains(err.Error(), "WRONGTYPE") || errors.Is(err, context.Canceled) {
		t.Errorf("store error %q, want Redis's WRONGTYPE and not context.Canceled", err)
	}
}

func TestLimitPanicReleases(t *testing.T) {
	c := redistest.Shared(t).Client(t)
	l := mustLimiter(t, c, 1, redisstore.LimiterConfig{})
	s := middleware.Apply(func(context.Context, int) (int, error) { panic("boom") }, redisstore.Limit[int, int](l))
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
}
