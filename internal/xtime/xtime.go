// Package xtime holds saturating time arithmetic: a huge duration (a
// Retry-After of 10^18 seconds, math.MaxInt64 nanoseconds) stays huge
// instead of wrapping into the past.
package xtime

import (
	"math"
	"time"
)

// Add returns a+b, clamped to [math.MinInt64, math.MaxInt64] instead of
// wrapping. Use it for nanosecond clocks kept as int64 (time.Time.Add
// already saturates; int64 arithmetic does not).
func Add(a, b int64) int64 {
	s := a + b
	switch {
	case b > 0 && s < a:
		return math.MaxInt64
	case b < 0 && s > a:
		return math.MinInt64
	}
	return s
}

// Mul returns d*n, saturating at math.MaxInt64 (or MinInt64).
func Mul(d time.Duration, n int64) time.Duration {
	if d == 0 || n == 0 {
		return 0
	}
	p := d * time.Duration(n)
	if p/time.Duration(n) != d {
		if (d > 0) == (n > 0) {
			return math.MaxInt64
		}
		return math.MinInt64
	}
	return p
}
