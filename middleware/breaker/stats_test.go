package breaker_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/breaker"
)

func TestStats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec recorder
		b := mustNew(t, breaker.Config{Threshold: 2, OpenTimeout: time.Second, Observer: &rec})
		ctx := context.Background()
		call(b, nil)
		call(b, context.Canceled) // ignored
		call(b, errBoom)
		if diff := cmp.Diff(breaker.Stats{State: breaker.Closed, Counts: breaker.Counts{Failures: 1, ConsecutiveFailures: 1}}, b.Stats()); diff != "" {
			t.Errorf("Stats after one failure (-want +got):\n%s", diff)
		}
		call(b, errBoom) // opens
		call(b, nil)     // rejected
		call(b, nil)     // rejected
		time.Sleep(time.Second)
		call(b, nil) // the probe closes it
		b.ForceOpen(ctx)
		call(b, nil) // rejected
		b.Reset(ctx)

		// A panicking stage is a failure.
		s := middleware.Apply(func(context.Context, int) (int, error) { panic("boom") }, breaker.Middleware[int, int](b))
		func() {
			defer func() { recover() }()
			s(ctx, 0)
		}()

		want := breaker.Stats{
			State:       breaker.Closed,
			Counts:      breaker.Counts{Failures: 1, ConsecutiveFailures: 1},
			Transitions: 5, // open, half-open, closed, forced-open, closed
			Rejected:    3,
		}
		if diff := cmp.Diff(want, b.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
		if got := uint64(len(rec.changes())); got != want.Transitions {
			t.Errorf("%d StateChanged events, Stats counts %d", got, want.Transitions)
		}
		if got := uint64(len(rec.events(middleware.Rejected))); got != want.Rejected {
			t.Errorf("%d Rejected events, Stats counts %d", got, want.Rejected)
		}
	})
}

func TestStatsWithStore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &flakyStore{Store: breaker.NewMemoryStore()}
		cfg := breaker.Config{Threshold: 3, Store: store}
		a, b := mustNew(t, cfg), mustNew(t, cfg)
		call(a, errBoom)
		call(b, errBoom)
		// b's counts are the store's, as of its last operation.
		if diff := cmp.Diff(breaker.Stats{State: breaker.Closed, Counts: breaker.Counts{Failures: 2, ConsecutiveFailures: 2}}, b.Stats()); diff != "" {
			t.Errorf("b's Stats (-want +got):\n%s", diff)
		}
		call(a, errBoom) // opens the shared state
		time.Sleep(2 * time.Second)
		call(b, nil) // b sees the open state: rejected
		store.down.Store(true)
		time.Sleep(time.Hour)
		call(b, nil) // the store fails: the local state, past its open time, admits a probe, which closes it
		want := breaker.Stats{State: breaker.Closed, Transitions: 3, Rejected: 1, StoreFailures: 1}
		got := b.Stats()
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("b's Stats (-want +got):\n%s", diff)
		}
	})
}

// TestStatsConcurrent: 2000 goroutines; every rejection a caller saw is
// counted, none twice.
func TestStatsConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := mustNew(t, breaker.Config{Threshold: 50, OpenTimeout: time.Millisecond})
		var rejected atomic.Uint64
		var wg sync.WaitGroup
		for i := range goroutines {
			wg.Go(func() {
				var err error
				if i%3 == 0 {
					err = errBoom
				}
				if errors.Is(call(b, err), breaker.ErrOpen) {
					rejected.Add(1)
				}
			})
		}
		wg.Wait()
		if got, want := b.Stats().Rejected, rejected.Load(); got != want {
			t.Errorf("Stats().Rejected = %d, callers saw %d rejections", got, want)
		}
	})
}
