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
	"github.com/brace-go/brace/middleware/priority"
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

// FuzzQueue checks the priority and queue-discipline fields: any
// combination yields a working limiter or an error naming the field at
// fault. A working limiter, offered calls of every level, some of which
// give up, never holds more than its capacity and ends empty.
func FuzzQueue(f *testing.F) {
	f.Add(int64(4), uint8(backpressure.Wait), uint8(backpressure.CoDel), int64(time.Millisecond), int64(10*time.Millisecond), true, 0.5, 0.9, 2)
	f.Add(int64(4), uint8(backpressure.Wait), uint8(backpressure.LIFO), int64(0), int64(time.Millisecond), true, 0.0, 0.0, 1)
	f.Add(int64(3), uint8(backpressure.Shed), uint8(backpressure.FIFO), int64(0), int64(0), true, 0.2, 0.1, 0)
	f.Add(int64(3), uint8(backpressure.Shed), uint8(backpressure.LIFO), int64(0), int64(0), false, 0.5, 0.0, 0)
	f.Add(int64(2), uint8(backpressure.Wait), uint8(backpressure.CoDel), int64(time.Second), int64(time.Millisecond), false, 0.0, 0.0, 0)
	f.Add(int64(2), uint8(backpressure.Wait), uint8(9), int64(-1), int64(-1), true, math.NaN(), 2.0, -1)
	f.Fuzz(func(t *testing.T, capacity int64, mode, queue uint8, target, interval int64, prio bool, shed, def float64, maxQueue int) {
		cfg := backpressure.Config{Capacity: capacity, Mode: backpressure.Mode(mode), Queue: backpressure.Discipline(queue),
			Target: time.Duration(target), Interval: time.Duration(interval), Priorities: prio,
			Shares: priority.Shares{Sheddable: shed, Default: def}}
		if cfg.Mode == backpressure.Wait {
			cfg.MaxQueue = maxQueue
		}
		l, err := backpressure.New(cfg)
		if err != nil {
			if l != nil {
				t.Fatalf("%+v: New returned a limiter and the error %v", cfg, err)
			}
			wantFieldError(t, err, "backpressure: ", "Capacity", "Mode", "MaxQueue", "Shares", "Queue", "Target", "Interval")
			return
		}
		capacity = min(capacity, 8) // keep the run small; the limiter has its own capacity
		calls := int(capacity)*3 + 2
		synctest.Test(t, func(t *testing.T) {
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
					lv := []priority.Level{priority.Sheddable, priority.Default, priority.Critical}[i%3]
					ctx, cancel := context.WithTimeout(priority.With(context.Background(), lv), time.Duration(1+i%4)*time.Millisecond)
					defer cancel()
					_, err := s(ctx, i)
					var we *backpressure.WeightError
					if err != nil && !errors.Is(err, backpressure.ErrShed) && !errors.Is(err, context.DeadlineExceeded) && !errors.As(err, &we) {
						t.Errorf("call %d: %v", i, err)
					}
				})
			}
			wg.Wait()
			if most > l.Stats().Capacity {
				t.Fatalf("%d calls in flight, capacity %d", most, l.Stats().Capacity)
			}
			if st := l.Stats(); st.InFlight != 0 || st.Queued != 0 {
				t.Fatalf("Stats() = %+v after every call ended", st)
			}
		})
	})
}
