package adaptive_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/middleware/adaptive"
)

// FuzzNew checks the validator: any Config yields a working Limiter or an
// error that starts with "adaptive: " and names the field at fault, never
// a panic. A working Limiter starts with a limit in [Min, Max], never has
// more calls in flight than Max, keeps the limit in [Min, Max] as it
// adapts, and is empty when the calls have ended.
func FuzzNew(f *testing.F) {
	f.Add(0, 0, 0, uint8(30))
	f.Add(1, 1, 1, uint8(5))
	f.Add(2, 10, 50, uint8(40))
	f.Add(5, 10, 3, uint8(40))
	f.Add(-1, 0, 0, uint8(0))
	f.Add(5, 4, 0, uint8(0))
	f.Add(0, 0, -1, uint8(0))
	f.Add(2000, 0, 0, uint8(0))
	f.Fuzz(func(t *testing.T, lo, hi, initial int, calls uint8) {
		cfg := adaptive.Config{Min: lo, Max: hi, Initial: initial}
		l, err := adaptive.New(cfg)
		if err != nil {
			if l != nil {
				t.Fatalf("%+v: New returned a limiter and the error %v", cfg, err)
			}
			wantFieldError(t, err, "adaptive: ", "Min", "Max", "Initial")
			return
		}
		lo, hi = cmpOr(lo, 1), cmpOr(hi, 1000) // the defaults
		inRange := func(when string) {
			t.Helper()
			if n := int(l.Stats().Limit); n < lo || n > hi {
				t.Fatalf("%+v: limit %d %s, outside [%d, %d]", cfg, n, when, lo, hi)
			}
		}
		inRange("at start")
		synctest.Test(t, func(t *testing.T) {
			var mu sync.Mutex
			var in int
			s := adaptive.Middleware[int, int](l)(func(ctx context.Context, v int) (int, error) {
				mu.Lock()
				// The limit may fall below the calls admitted before it
				// fell; it never rises above Max.
				if in++; in > hi {
					t.Errorf("%+v: %d calls in flight, Max %d", cfg, in, hi)
				}
				n := in
				mu.Unlock()
				time.Sleep(time.Duration(n) * time.Millisecond) // slower under load
				mu.Lock()
				in--
				mu.Unlock()
				return v, nil
			})
			for round := range 4 {
				var wg sync.WaitGroup
				for i := range int(calls) {
					wg.Go(func() {
						if out, err := s(context.Background(), i); err == nil && out != i {
							t.Errorf("call %d returned %d", i, out)
						}
					})
				}
				wg.Wait()
				inRange(fmt.Sprintf("after round %d", round+1))
			}
			if n := l.Stats().InFlight; n != 0 {
				t.Fatalf("%+v: InFlight = %d after every call ended", cfg, n)
			}
		})
	})
}

func cmpOr(v, def int) int {
	if v == 0 {
		return def
	}
	return v
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
