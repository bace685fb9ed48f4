package httpx

import (
	"math"
	"testing"
	"time"
)

func TestFormatRetryAfter(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "1"},
		{-time.Second, "1"},
		{time.Nanosecond, "1"},
		{time.Second, "1"},
		{time.Second + time.Nanosecond, "2"},
		{2500 * time.Millisecond, "3"},
		{30 * time.Second, "30"},
		{time.Duration(math.MaxInt64), "9223372037"},
	}
	for _, tt := range tests {
		if got := formatRetryAfter(tt.d); got != tt.want {
			t.Errorf("formatRetryAfter(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}
