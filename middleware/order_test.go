package middleware_test

// Tests for the claims in docs/ordering.md: what each concern sees depends
// on where it sits in the chain.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/adaptive"
	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/budget"
	"github.com/brace-go/brace/middleware/dedup"
	"github.com/brace-go/brace/middleware/fallback"
	"github.com/brace-go/brace/middleware/ratelimit"
	"github.com/brace-go/brace/middleware/retry"
	"github.com/brace-go/brace/middleware/timeout"
)

var errDown = errors.New("downstream down")

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// failing returns a stage that always fails and counts its calls.
func failing(calls *atomic.Int64) middleware.Stage[int, int] {
	return func(context.Context, int) (int, error) {
		calls.Add(1)
		return 0, errDown
	}
}

func quickRetry(attempts int) middleware.Middleware[int, int] {
	return retry.Middleware[int, int](must(retry.New(retry.Config{MaxAttempts: attempts, BaseDelay: time.Millisecond, Jitter: retry.NoJitter})))
}

func TestOrderBreakerInsideRetrySeesEveryAttempt(t *testing.T) {
	for _, tt := range []struct {
		name           string
		breakerInside  bool
		wantState      breaker.State
		wantDownstream int64
	}{
		// Retry → Breaker: three failed attempts reach the threshold.
		{"Retry outside Breaker", true, breaker.Open, 3},
		// Breaker → Retry: the breaker sees one failed call.
		{"Breaker outside Retry", false, breaker.Closed, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := must(breaker.New(breaker.Config{Threshold: 3}))
				var calls atomic.Int64
				mws := []middleware.Middleware[int, int]{quickRetry(3), breaker.Middleware[int, int](b)}
				if !tt.breakerInside {
					mws[0], mws[1] = mws[1], mws[0]
				}
				_, _ = middleware.Apply(failing(&calls), mws...)(context.Background(), 1)
				if got := b.State(); got != tt.wantState {
					t.Errorf("after one call the breaker is %v, want %v", got, tt.wantState)
				}
				if got := calls.Load(); got != tt.wantDownstream {
					t.Errorf("downstream calls = %d, want %d", got, tt.wantDownstream)
				}
			})
		})
	}
}

func TestOrderBackpressureInsideRetryHoldsNoSlotWhileSleeping(t *testing.T) {
	for _, tt := range []struct {
		name      string
		bpInside  bool
		wantDepth int64
		wantShed  bool
	}{
		{"Retry outside Backpressure", true, 0, false},
		{"Backpressure outside Retry", false, 1, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				lim := must(backpressure.New(backpressure.Config{Capacity: 1}))
				slow := retry.Middleware[int, int](must(retry.New(retry.Config{MaxAttempts: 2, BaseDelay: time.Second, Jitter: retry.NoJitter})))
				mws := []middleware.Middleware[int, int]{slow, backpressure.Middleware[int, int](lim)}
				if !tt.bpInside {
					mws[0], mws[1] = mws[1], mws[0]
				}
				var first atomic.Bool
				first.Store(true)
				stage := middleware.Apply(func(_ context.Context, in int) (int, error) {
					if in == 1 && first.Swap(false) {
						return 0, errDown // the first attempt fails; Retry sleeps 1s
					}
					return in, nil
				}, mws...)

				var wg sync.WaitGroup
				wg.Go(func() { _, _ = stage(context.Background(), 1) })
				synctest.Wait() // the first call is asleep between attempts
				if got := lim.Stats().InFlight; got != tt.wantDepth {
					t.Errorf("depth while Retry sleeps = %d, want %d", got, tt.wantDepth)
				}
				_, err := stage(context.Background(), 2)
				if shed := errors.Is(err, backpressure.ErrShed); shed != tt.wantShed {
					t.Errorf("second call: err = %v, want shed %v", err, tt.wantShed)
				}
				wg.Wait()
			})
		})
	}
}

func TestOrderFallbackInsideBreakerHidesFailures(t *testing.T) {
	for _, tt := range []struct {
		name     string
		fbInside bool
		want     breaker.State
	}{
		{"Fallback outside Breaker", false, breaker.Open},
		{"Fallback inside Breaker", true, breaker.Closed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := must(breaker.New(breaker.Config{Threshold: 2}))
			fb := fallback.Middleware(must(fallback.New(fallback.Config{})), func(context.Context, int, error) (int, error) { return -1, nil })
			mws := []middleware.Middleware[int, int]{fb, breaker.Middleware[int, int](b)}
			if tt.fbInside {
				mws[0], mws[1] = mws[1], mws[0]
			}
			var calls atomic.Int64
			stage := middleware.Apply(failing(&calls), mws...)
			for range 5 {
				if out, err := stage(context.Background(), 1); out != -1 || err != nil {
					t.Fatalf("got (%d, %v), want the fallback (-1, nil)", out, err)
				}
			}
			if got := b.State(); got != tt.want {
				t.Errorf("breaker is %v, want %v", got, tt.want)
			}
		})
	}
}

func TestOrderNestedRetryMultipliesAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int64
		_, err := middleware.Apply(failing(&calls), quickRetry(3), quickRetry(3))(context.Background(), 1)
		if !errors.Is(err, errDown) {
			t.Fatalf("err = %v", err)
		}
		if got := calls.Load(); got != 9 {
			t.Errorf("downstream calls = %d, want 3 × 3 = 9", got)
		}
	})
}

func TestOrderRecoverInnermostIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int64
		stage := middleware.Apply(func(context.Context, int) (int, error) {
			if calls.Add(1) == 1 {
				panic("first attempt panics")
			}
			return 7, nil
		}, quickRetry(3), middleware.Recover[int, int]())
		out, err := stage(context.Background(), 1)
		if out != 7 || err != nil || calls.Load() != 2 {
			t.Errorf("got (%d, %v) after %d calls, want (7, nil) after 2", out, err, calls.Load())
		}
	})
}

// The success path of the composed Retry → Breaker → Backpressure chain
// allocates nothing, and neither does a call that fails once and succeeds
// on its retry (with the delay zeroed). Timing is measured in benchmarks
// (internal/benchcmp); this guards the allocations in every CI run.
func TestComposedAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	rt := retry.Middleware[int, int](must(retry.New(retry.Config{MaxAttempts: 3, DelayFunc: func(int, error) time.Duration { return 0 }})))
	br := must(breaker.New(breaker.Config{Threshold: 5}))
	bp := must(backpressure.New(backpressure.Config{Capacity: 8}))
	fail := true
	stage := middleware.Apply(func(_ context.Context, in int) (int, error) {
		if in < 0 && fail {
			fail = false
			return 0, errDown
		}
		fail = true
		return in, nil
	}, rt, breaker.Middleware[int, int](br), backpressure.Middleware[int, int](bp))
	ctx := context.Background()
	for _, tt := range []struct {
		name string
		in   int
	}{{"success", 1}, {"one retry", -1}} {
		if n := testing.AllocsPerRun(1000, func() {
			if _, err := stage(ctx, tt.in); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%s: %v allocs per call, want 0", tt.name, n)
		}
	}
}

func TestOrderFallbackInsideDedupCachesTheDegradedAnswer(t *testing.T) {
	for _, tt := range []struct {
		name     string
		fbInside bool
		want     string // the second call's answer, after the downstream recovered
	}{
		{"Fallback outside Dedup", false, "fresh"},
		{"Fallback inside Dedup", true, "stale"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				down := true
				stage := func(context.Context, string) (string, error) {
					if down {
						return "", errDown
					}
					return "fresh", nil
				}
				dd := dedup.Middleware[string, string](must(dedup.New(dedup.Config{TTL: time.Minute})), func(k string) string { return k })
				fb := fallback.Middleware(must(fallback.New(fallback.Config{})), func(context.Context, string, error) (string, error) { return "stale", nil })
				mws := []middleware.Middleware[string, string]{fb, dd}
				if tt.fbInside {
					mws[0], mws[1] = mws[1], mws[0]
				}
				call := middleware.Apply(stage, mws...)
				if got, _ := call(context.Background(), "k"); got != "stale" {
					t.Fatalf("during the outage got %q, want the fallback", got)
				}
				down = false
				time.Sleep(time.Second) // well within the TTL
				if got, _ := call(context.Background(), "k"); got != tt.want {
					t.Errorf("after recovery got %q, want %q", got, tt.want)
				}
			})
		})
	}
}

func TestOrderLimiterOutsideBreakerSpendsTokensOnRejections(t *testing.T) {
	for _, tt := range []struct {
		name       string
		rlOutside  bool
		wantTokens bool // a token is left once the breaker closes again
	}{
		{"Breaker outside RateLimit", false, true},
		{"RateLimit outside Breaker", true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rl := must(ratelimit.New(ratelimit.Config{Rate: 1, Burst: 3})) // 3 calls, then 1 a second
				br := must(breaker.New(breaker.Config{Threshold: 1}))
				mws := []middleware.Middleware[int, int]{breaker.Middleware[int, int](br), ratelimit.Middleware[int, int](rl)}
				if tt.rlOutside {
					mws[0], mws[1] = mws[1], mws[0]
				}
				var calls atomic.Int64
				stage := middleware.Apply(failing(&calls), mws...)
				_, _ = stage(context.Background(), 1) // fails: the breaker opens
				for range 2 {
					if _, err := stage(context.Background(), 1); !errors.Is(err, breaker.ErrOpen) {
						t.Fatalf("err = %v, want the breaker's rejection", err)
					}
				}
				if calls.Load() != 1 {
					t.Fatalf("downstream calls = %d, want 1", calls.Load())
				}
				if err := br.Reset(context.Background()); err != nil {
					t.Fatal(err)
				}
				_, err := stage(context.Background(), 1)
				if limited := errors.Is(err, ratelimit.ErrLimited); limited == tt.wantTokens {
					t.Errorf("after the reset: err = %v; want a token left: %v", err, tt.wantTokens)
				}
			})
		})
	}
}

func TestOrderTimeoutOutsideRetryOnlyLeavesNoTimeToRetry(t *testing.T) {
	for _, tt := range []struct {
		name       string
		perAttempt bool
		wantCalls  int64
		wantOK     bool
	}{
		{"Timeout inside Retry", true, 2, true},
		{"Timeout outside Retry only", false, 1, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				to := timeout.Middleware[int, int](must(timeout.New(timeout.Config{Duration: time.Second})))
				mws := []middleware.Middleware[int, int]{quickRetry(3), to}
				if !tt.perAttempt {
					mws[0], mws[1] = mws[1], mws[0]
				}
				var calls atomic.Int64
				stage := middleware.Apply(func(ctx context.Context, in int) (int, error) {
					if calls.Add(1) == 1 {
						<-ctx.Done() // the first attempt hangs until its deadline
						return 0, ctx.Err()
					}
					return in, nil
				}, mws...)
				_, err := stage(context.Background(), 1)
				if (err == nil) != tt.wantOK || calls.Load() != tt.wantCalls {
					t.Errorf("err = %v after %d calls; want success %v after %d", err, calls.Load(), tt.wantOK, tt.wantCalls)
				}
			})
		})
	}
}

func TestOrderRetryOutsideDedupRunsALoopPerCaller(t *testing.T) {
	for _, tt := range []struct {
		name         string
		dedupOutside bool
	}{
		{"Dedup outside Retry", true},
		{"Retry outside Dedup", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const callers, attempts = 10, 3
				var runs atomic.Int64
				stage := func(context.Context, string) (string, error) {
					runs.Add(1)
					time.Sleep(10 * time.Millisecond) // slow enough for callers to join
					return "", errDown
				}
				rt := retry.Middleware[string, string](must(retry.New(retry.Config{MaxAttempts: attempts, BaseDelay: 100 * time.Millisecond, Seed: 1})))
				dd := dedup.Middleware[string, string](must(dedup.New(dedup.Config{})), func(k string) string { return k })
				mws := []middleware.Middleware[string, string]{dd, rt}
				if !tt.dedupOutside {
					mws[0], mws[1] = mws[1], mws[0]
				}
				call := middleware.Apply(stage, mws...)
				var wg sync.WaitGroup
				for range callers {
					wg.Go(func() { _, _ = call(context.Background(), "k") })
				}
				wg.Wait()
				got := runs.Load()
				if tt.dedupOutside && got != attempts {
					t.Errorf("the stage ran %d times, want %d: one shared retry loop", got, attempts)
				}
				if !tt.dedupOutside && got <= attempts {
					t.Errorf("the stage ran %d times; with a loop per caller and jittered delays it runs more than %d", got, attempts)
				}
			})
		})
	}
}

// Local refusals from inside the breaker — a shed, a rate limit, a
// concurrency limit — never reached the downstream: they must neither open
// the breaker nor count as failures, while the call holding the slot counts
// once (re-homed from breaker's compose tests).
func TestOrderShedsInsideBreakerDoNotOpenIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		br := must(breaker.New(breaker.Config{Threshold: 1}))
		bp := must(backpressure.New(backpressure.Config{Capacity: 1}))
		release := make(chan struct{})
		stage := middleware.Apply(func(_ context.Context, in int) (int, error) {
			if in == 0 {
				<-release
				return 0, errDown
			}
			return in, nil
		}, breaker.Middleware[int, int](br), backpressure.Middleware[int, int](bp))
		var wg sync.WaitGroup
		wg.Go(func() { _, _ = stage(context.Background(), 0) }) // holds the only slot
		synctest.Wait()
		for range 10 {
			if _, err := stage(context.Background(), 1); !errors.Is(err, backpressure.ErrShed) {
				t.Fatalf("err = %v, want a shed", err)
			}
		}
		if got := br.State(); got != breaker.Closed {
			t.Fatalf("ten sheds moved the breaker to %v", got)
		}
		if got := br.Stats().Counts.Failures; got != 0 {
			t.Errorf("failures = %d after ten sheds, want 0", got)
		}
		close(release)
		wg.Wait()
		if got := br.State(); got != breaker.Open {
			t.Errorf("the held call's failure did not open the breaker: %v", got)
		}
	})
}

// breaker.DefaultClassify ignores every local refusal Brace makes, wrapped
// or not: they carry Rejected() true.
func TestOrderBraceRejectionsAreIgnoredByTheBreaker(t *testing.T) {
	ctx := context.Background()
	bp := must(backpressure.New(backpressure.Config{Capacity: 1}))
	hold, err := bp.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, shed := bp.Acquire(ctx)
	hold.Done(nil)
	rl := must(ratelimit.New(ratelimit.Config{Rate: 1, Burst: 1}))
	p, _ := rl.Acquire(ctx)
	p.Done(nil)
	_, limited := rl.Acquire(ctx)
	ad := must(adaptive.New(adaptive.Config{Initial: 1, Min: 1, Max: 1}))
	ap, _ := ad.Acquire(ctx)
	_, overLimit := ad.Acquire(ctx)
	ap.Done(nil)
	ob := must(breaker.New(breaker.Config{Threshold: 1}))
	if err := ob.ForceOpen(ctx); err != nil {
		t.Fatal(err)
	}
	_, open := ob.Acquire(ctx)
	b := must(budget.New(budget.Config{Ratio: budget.None, MinPerSecond: budget.None}))
	_, exhausted := b.Acquire(ctx)
	for name, err := range map[string]error{
		"shed": shed, "rate limited": limited, "adaptive limit": overLimit, "breaker open": open, "budget": exhausted,
	} {
		if err == nil {
			t.Errorf("%s: no rejection to classify", name)
			continue
		}
		for _, e := range []error{err, fmt.Errorf("wrapped: %w", err)} {
			if got := breaker.DefaultClassify(e); got != breaker.Ignore {
				t.Errorf("DefaultClassify(%s: %v) = %v, want Ignore", name, e, got)
			}
		}
	}
}
