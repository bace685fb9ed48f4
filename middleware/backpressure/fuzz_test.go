package backpressure_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/middleware/backpressure"
)

// FuzzNew checks the validator: any Config yields a working
// limiter or an error that starts with "backpressure: " and names the
// field at fault, never a panic. A working limiter runs calls up to its
// capacity at once, never more, and is empty when they have ended.
func FuzzNew(f *testing.F) {
	f.Add(int64(1), uint8(0), int64(0), 0, int64(0))
	f.Add(int64(4), uint8(backpressure.Wait), int64(time.Millisecond), 2, int64(3))
	f.Add(int64(4), uint8(backpressure.Wait), int64(0), 0, int64(0))
	f.Add(int64(0), uint8(0), int64(0), 0, int64(0))
	f.Add(int64(-1), uint8(0), int64(0), 0, int64(0))
	f.Add(int64(math.MaxInt64), uint8(0), int64(0), 0, int64(0))
	f.Add(int64(2), uint8(7), int64(0), 0, int64(0))
	f.Add(int64(2), uint8(0), int64(time.Second), 0, int64(0))
	f.Add(int64(2), uint8(0), int64(0), 3, int64(0))
	f.Add(int64(2), uint8(backpressure.Wait), int64(-1), -1, int64(0))
	f.Add(int64(2), uint8(0), int64(0), 0, int64(2))
	f.Add(int64(2), uint8(0), int64(0), 0, int64(-2))
	f.Fuzz(func(t *testing.T, capacity int64, mode uint8, maxWait int64, maxQueue int, soft int64) {
		cfg := backpressure.Config{Capacity: capacity, Mode: backpressure.Mode(mode), MaxWait: time.Duration(maxWait), MaxQueue: maxQueue, SoftLimit: soft}
		l, err := backpressure.New(cfg)
		if err != nil {
			if l != nil {
				t.Fatalf("%+v: New returned a limiter and the error %v", cfg, err)
			}
			wantFieldError(t, err, "backpressure: ", "Capacity", "Mode", "MaxWait", "MaxQueue", "SoftLimit")
			return
		}
		if got := l.Stats().Capacity; got != capacity {
			t.Fatalf("Stats().Capacity = %d, want %d", got, capacity)
		}
		// Offer more calls than the capacity, all at once, each holding
		// its slot for a while.
		calls := int(min(capacity, 8)) + 3
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var mu sync.Mutex
			in, most := int64(0), int64(0)
			s := backpressure.Middleware[int, int](l)(func(ctx context.Context, v int) (int, error) {
				mu.Lock()
				in++
				most = max(most, in)
				mu.Unlock()
				time.Sleep(time.Millisecond)
				mu.Lock()
				in--
				mu.Unlock()
				return v, nil
			})
			var wg sync.WaitGroup
			for i := range calls {
				wg.Go(func() {
					out, err := s(ctx, i)
					if err == nil && out != i {
						t.Errorf("call %d returned %d", i, out)
					}
					if err != nil && !errors.Is(err, backpressure.ErrShed) {
						t.Errorf("call %d: %v, want nil or ErrShed", i, err)
					}
				})
			}
			wg.Wait()
			if most > capacity {
				t.Fatalf("%d calls in flight, capacity %d", most, capacity)
			}
			if st := l.Stats(); st.InFlight != 0 || st.Queued != 0 {
				t.Fatalf("Stats() = %+v after every call ended", st)
			}
		})
	})
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
