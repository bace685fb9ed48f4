package ratelimit_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/ratelimit"
)

// FuzzNew checks the validator: any Config yields a working limiter (used
// through Middleware and Keyed) or an error that starts with "ratelimit: " and names the
// field at fault, never a panic. A working limiter admits a full burst at
// once and then either refuses with a positive RetryAfter or, when it may
// wait, admits after waiting no longer than MaxWait.
func FuzzNew(f *testing.F) {
	f.Add(10.0, 0, int64(0), 0, int64(0))
	f.Add(0.5, 3, int64(time.Second), 2, int64(time.Minute))
	f.Add(inf, 0, int64(0), 0, int64(0))
	f.Add(1e9, 0, int64(0), 0, int64(0))
	f.Add(1e-9, 1, int64(time.Hour), 1, int64(1))
	f.Add(0.0, 0, int64(0), 0, int64(0))
	f.Add(-1.0, 0, int64(0), 0, int64(0))
	f.Add(math.NaN(), 0, int64(0), 0, int64(0))
	f.Add(1.0, -1, int64(0), 0, int64(0))
	f.Add(1.0, 0, int64(-1), 0, int64(0))
	f.Add(1.0, 0, int64(0), -1, int64(0))
	f.Add(1.0, 0, int64(0), 0, int64(-1))
	f.Fuzz(func(t *testing.T, r float64, burst int, maxWait int64, maxKeys int, idle int64) {
		cfg := withRate(ratelimit.Config{Burst: burst, MaxWait: time.Duration(maxWait), MaxKeys: maxKeys, IdleTimeout: time.Duration(idle)}, r)
		fields := []string{"Rate", "Burst", "MaxWait", "MaxKeys", "IdleTimeout"}
		synctest.Test(t, func(t *testing.T) {
			l, err := ratelimit.New(cfg)
			if err != nil {
				if l != nil {
					t.Fatalf("%+v: New returned a limiter and the error %v", cfg, err)
				}
				wantFieldError(t, err, "ratelimit: ", fields...)
				return
			}
			exercise(t, cfg, l.Burst(), ratelimit.Middleware[int, int](l))
			l2 := mustNew(t, cfg)
			exercise(t, cfg, l2.Burst(), ratelimit.Keyed[int, int](l2, func(in int) int { return in % 2 }))
		})
	})
}

// exercise makes a burst of calls and one more through mw.
func exercise(t *testing.T, cfg ratelimit.Config, burst int, mw middleware.Middleware[int, int]) {
	t.Helper()
	if burst < 1 {
		t.Fatalf("%+v: Burst() = %d", cfg, burst)
	}
	s := mw(func(_ context.Context, in int) (int, error) { return in, nil })
	ctx := context.Background()
	for i := range min(burst, 100) {
		if out, err := s(ctx, 0); out != 0 || err != nil {
			t.Fatalf("%+v: call %d of a burst of %d: %d, %v", cfg, i+1, burst, out, err)
		}
	}
	if burst > 100 || float64(cfg.Rate) == inf {
		return
	}
	start := time.Now()
	_, err := s(ctx, 0)
	waited := time.Since(start)
	if waited > cfg.MaxWait {
		t.Fatalf("%+v: waited %v, above MaxWait", cfg, waited)
	}
	var le *ratelimit.LimitedError
	if err != nil && (!errors.As(err, &le) || le.RetryAfter() <= 0 || !errors.Is(err, ratelimit.ErrLimited)) {
		t.Fatalf("%+v: refusal %v is not a *LimitedError with a positive RetryAfter", cfg, err)
	}
}

// wantFieldError fails unless err's text starts with prefix and names one
// of fields.
func wantFieldError(t *testing.T, err error, prefix string, fields ...string) {
	t.Helper()
	msg := err.Error()
	if !strings.HasPrefix(msg, prefix) {
		t.Fatalf("error %q does not start with %q", msg, prefix)
	}
	for _, f := range fields {
		if strings.Contains(msg, f) {
			return
		}
	}
	t.Fatalf("error %q names none of the fields %v", msg, fields)
}

// FuzzLimits checks Config.Limits and AcquireN: any limit yields a working
// limiter or an error naming a Limits field, never a panic; a cost is
// admitted, refused with a positive retry-after, or refused as a
// *CostError exactly when it is negative or above the burst of a limit
// charged by cost; and a refusal takes nothing.
func FuzzLimits(f *testing.F) {
	f.Add(60.0, int64(time.Minute), int64(0), true, int64(5), int64(100))
	f.Add(10_000.0, int64(time.Minute), int64(0), false, int64(10_001), int64(1))
	f.Add(1.0, int64(0), int64(3), false, int64(-1), int64(0))
	f.Add(inf, int64(0), int64(0), false, int64(1<<40), int64(7))
	f.Add(math.NaN(), int64(-1), int64(-1), false, int64(0), int64(0))
	f.Add(5e-324, int64(math.MaxInt64), int64(0), false, int64(1), int64(1))
	f.Fuzz(func(t *testing.T, r float64, per, burst int64, perCall bool, first, second int64) {
		cfg := ratelimit.Config{Limits: []ratelimit.Limit{
			{Name: "requests", Rate: 100, PerCall: true},
			{Name: "units", Rate: r, Per: time.Duration(per), Burst: burst, PerCall: perCall},
		}}
		synctest.Test(t, func(t *testing.T) {
			l, err := ratelimit.New(cfg)
			if err != nil {
				wantFieldError(t, err, "ratelimit: ", "Limits[1].Rate", "Limits[1].Per", "Limits[1].Burst")
				return
			}
			q := l.Policies()[1].Quota
			ctx := context.Background()
			for _, n := range []int64{first, second} {
				_, err := l.AcquireN(ctx, n)
				var ce *ratelimit.CostError
				never := n < 0 || (!perCall && q > 0 && n > q)
				switch {
				case errors.As(err, &ce) != never:
					t.Fatalf("%+v: AcquireN(%d) = %v; quota %d", cfg.Limits[1], n, err, q)
				case err != nil && !never:
					var le *ratelimit.LimitedError
					if !errors.As(err, &le) || le.RetryAfter() <= 0 {
						t.Fatalf("%+v: AcquireN(%d) = %v, want a refusal with a positive retry-after", cfg.Limits[1], n, err)
					}
				}
			}
		})
	})
}
