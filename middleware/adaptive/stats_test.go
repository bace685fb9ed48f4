package adaptive_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/adaptive"
	"github.com/google/go-cmp/cmp"
)

// Under concurrent callers the Stats counts agree with what the callers
// and the observer saw, and the last LimitChanged event carries the limit
// in force.
func TestStats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var changes []int64
		var rejectedEvents atomic.Uint64
		obs := middleware.ObserverFunc(func(_ context.Context, e middleware.Event) {
			switch e.Kind {
			case middleware.LimitChanged:
				mu.Lock()
				changes = append(changes, e.Limit)
				mu.Unlock()
			case middleware.Rejected:
				rejectedEvents.Add(1)
			}
		})
		l := mustNew(t, adaptive.Config{Min: 1, Max: 50, Initial: 5, Observer: obs})
		s := middleware.Apply(func(context.Context, int) (int, error) {
			time.Sleep(10 * time.Millisecond)
			return 0, nil
		}, adaptive.Middleware[int, int](l))
		var ok, rejected atomic.Uint64
		var wg sync.WaitGroup
		for round := range 20 {
			for range 2000 / 20 {
				wg.Go(func() {
					if _, err := s(context.Background(), round); err == nil {
						ok.Add(1)
					} else {
						rejected.Add(1)
					}
				})
			}
			time.Sleep(5 * time.Millisecond)
		}
		wg.Wait()
		got := l.Stats()
		mu.Lock()
		defer mu.Unlock()
		want := adaptive.Stats{Limit: got.Limit, Rejected: rejected.Load(), LimitChanged: uint64(len(changes))}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
		if rejectedEvents.Load() != rejected.Load() {
			t.Errorf("%d Rejected events for %d rejected calls", rejectedEvents.Load(), rejected.Load())
		}
		if ok.Load() == 0 || rejected.Load() == 0 || len(changes) == 0 {
			t.Errorf("admitted %d, rejected %d, %d limit changes; the test must exercise all three", ok.Load(), rejected.Load(), len(changes))
		}
		if len(changes) > 0 && changes[len(changes)-1] != got.Limit {
			t.Errorf("last LimitChanged event carries %d, the limit in force is %d", changes[len(changes)-1], got.Limit)
		}
		for i := 1; i < len(changes); i++ {
			if changes[i] == changes[i-1] {
				t.Errorf("LimitChanged events %d and %d both carry %d", i-1, i, changes[i])
			}
		}
	})
}
