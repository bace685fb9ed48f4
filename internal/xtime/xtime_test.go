package xtime

import (
	"math"
	"testing"
	"time"
)

func TestAdd(t *testing.T) {
	for _, tc := range []struct{ a, b, want int64 }{
		{1, 2, 3},
		{math.MaxInt64 - 1, 5, math.MaxInt64},
		{5, math.MaxInt64, math.MaxInt64},
		{math.MinInt64 + 1, -5, math.MinInt64},
		{-5, 3, -2},
	} {
		if got := Add(tc.a, tc.b); got != tc.want {
			t.Errorf("Add(%d, %d) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestMul(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		n    int64
		want time.Duration
	}{
		{time.Second, 3, 3 * time.Second},
		{time.Duration(math.MaxInt64), 2, math.MaxInt64},
		{time.Hour, math.MaxInt64, math.MaxInt64},
		{-time.Hour, math.MaxInt64, math.MinInt64},
		{0, 7, 0},
	} {
		if got := Mul(tc.d, tc.n); got != tc.want {
			t.Errorf("Mul(%v, %d) = %v, want %v", tc.d, tc.n, got, tc.want)
		}
	}
}
