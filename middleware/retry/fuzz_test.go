package retry

import (
	"math"
	"testing"
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
		s, _ := cfg.schedule(false)
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
