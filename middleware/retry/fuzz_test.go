package retry

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// FuzzDelay checks the schedule for any configuration and attempt: a delay
// is never negative and never above the effective MaxDelay, and the first
// attempt has none.
func FuzzDelay(f *testing.F) {
	f.Add(2, int64(time.Second), int64(60*time.Second), 2.0, 0, int64(0), 0.5)
	f.Add(34, int64(time.Second), int64(60*time.Second), 2.0, 1, int64(0), 0.0)
	f.Add(64, int64(100*time.Millisecond), int64(0), 0.0, 2, int64(0), 0.999)
	f.Add(1<<31, int64(1), int64(math.MaxInt64), 10.0, 3, int64(math.MaxInt64), 1.0)
	f.Add(math.MaxInt, int64(math.MaxInt64), int64(math.MaxInt64), 1e300, 3, int64(-1), -1.0)
	f.Add(math.MinInt, int64(-5), int64(-5), math.NaN(), 9, int64(5), math.NaN())
	f.Fuzz(func(t *testing.T, attempt int, base, maxDelay int64, mult float64, jitter int, prev int64, u float64) {
		cfg := Config{BaseDelay: time.Duration(base), MaxDelay: time.Duration(maxDelay), Multiplier: mult, Jitter: Jitter(jitter)}
		s := cfg.lenient()
		for _, d := range []time.Duration{cfg.Delay(attempt), cfg.JitteredDelay(attempt, time.Duration(prev), u)} {
			if d < 0 || d > s.max {
				t.Fatalf("%+v attempt %d: delay %v outside [0, %v]", cfg, attempt, d, s.max)
			}
			if attempt <= 1 && d != 0 {
				t.Fatalf("%+v attempt %d: delay %v; want 0", cfg, attempt, d)
			}
		}
		// The schedule never decreases.
		if attempt > 1 && attempt < math.MaxInt && cfg.Delay(attempt+1) < cfg.Delay(attempt) {
			t.Fatalf("%+v: Delay(%d) = %v > Delay(%d) = %v", cfg, attempt, cfg.Delay(attempt), attempt+1, cfg.Delay(attempt+1))
		}
	})
}

// FuzzNew checks the validator: any Config yields a working Retrier or
// an error that starts with "retry: " and names the field at fault, never
// a panic. Its middleware is run against a stage that fails twice:
// it either succeeds on the third attempt or says why it stopped, and it
// never makes more attempts than configured nor sleeps past the context.
func FuzzNew(f *testing.F) {
	f.Add(0, int64(0), 0.0, int64(0), 0, int64(0))
	f.Add(Unlimited, int64(time.Millisecond), 1.0, int64(time.Millisecond), int(NoJitter), int64(0))
	f.Add(1, int64(0), 0.0, int64(0), 0, int64(0))
	f.Add(-2, int64(0), 0.0, int64(0), 0, int64(0))
	f.Add(3, int64(-1), 0.0, int64(0), 0, int64(0))
	f.Add(3, int64(time.Second), 0.5, int64(0), 0, int64(0))
	f.Add(3, int64(time.Second), math.Inf(1), int64(0), 0, int64(0))
	f.Add(3, int64(time.Second), math.NaN(), int64(0), 0, int64(0))
	f.Add(3, int64(time.Second), 2.0, int64(time.Millisecond), 0, int64(0))
	f.Add(3, int64(time.Second), 2.0, int64(-1), 0, int64(0))
	f.Add(3, int64(0), 0.0, int64(0), 7, int64(0))
	f.Add(5, int64(0), 0.0, int64(0), int(DecorrelatedJitter), int64(-time.Second))
	f.Add(math.MaxInt, int64(math.MaxInt64), 1e308, int64(math.MaxInt64), 1, int64(math.MaxInt64))
	f.Fuzz(func(t *testing.T, attempts int, base int64, mult float64, maxDelay int64, jitter int, maxElapsed int64) {
		cfg := Config{
			MaxAttempts: attempts, BaseDelay: time.Duration(base), Multiplier: mult,
			MaxDelay: time.Duration(maxDelay), Jitter: Jitter(jitter), MaxElapsed: time.Duration(maxElapsed), Seed: 1,
		}
		r, err := New(cfg)
		if err != nil {
			if r != nil {
				t.Fatalf("%+v: New returned a Retrier and the error %v", cfg, err)
			}
			wantFieldError(t, err, "retry: ", "MaxAttempts", "BaseDelay", "Multiplier", "MaxDelay", "Jitter", "MaxElapsed")
			return
		}
		synctest.Test(t, func(t *testing.T) {
			calls := 0
			s := Middleware[int, int](r)(func(context.Context, int) (int, error) {
				if calls++; calls < 3 {
					return 0, errFuzz
				}
				return 42, nil
			})
			const limit = time.Hour
			ctx, cancel := context.WithTimeout(context.Background(), limit)
			defer cancel()
			start := time.Now()
			out, err := s(ctx, 0)
			if elapsed := time.Since(start); elapsed > limit {
				t.Fatalf("%+v: the call took %v, past its context's deadline %v", cfg, elapsed, limit)
			}
			if attempts > 0 && calls > attempts || attempts == 0 && calls > DefaultMaxAttempts {
				t.Fatalf("%+v: %d attempts", cfg, calls)
			}
			if err == nil {
				if out != 42 || calls != 3 {
					t.Fatalf("%+v: got %d after %d attempts, want 42 after 3", cfg, out, calls)
				}
				return
			}
			var ex *ExhaustedError
			if !errors.As(err, &ex) || !errors.Is(err, errFuzz) || ex.Attempts != calls {
				t.Fatalf("%+v: after %d attempts got %v, want an *ExhaustedError wrapping %v", cfg, calls, err, errFuzz)
			}
		})
	})
}

var errFuzz = errors.New("fuzz: flaky")

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
