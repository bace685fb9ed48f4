package adaptive_test

import (
	"context"
	"github.com/brace-go/brace/middleware/bracetest"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/adaptive"
	"github.com/google/go-cmp/cmp"
)

// recorder is bracetest.Recorder, with the views these tests read.
type recorder struct{ bracetest.Recorder }

func (r *recorder) events() []middleware.Event { return r.Events() }

// quietPanics keeps the panics that middleware.Emit recovers and reports
// through slog.Default out of the test output.
func quietPanics(t *testing.T) {
	old := slog.Default()
	slog.SetDefault(slog.New(slog.DiscardHandler))
	t.Cleanup(func() { slog.SetDefault(old) })
}

// grow runs one caller through l, 10ms per call, n times: with no
// queueing the limit rises by one per window while the caller uses half
// of it.
func grow(t *testing.T, l *adaptive.Limiter, n int) {
	t.Helper()
	for range n {
		p, err := l.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
		p.Done(nil)
	}
}

// An observer that panics at every event leaves the limiter consistent:
// the calls work, the slots come back, the limit still moves and the
// counts are right.
func TestPanickingObserver(t *testing.T) {
	quietPanics(t)
	synctest.Test(t, func(t *testing.T) {
		obs := middleware.ObserverFunc(func(context.Context, middleware.Event) { panic("observer") })
		l := mustNew(t, adaptive.Config{Initial: 1, Observer: obs})
		grow(t, l, 25) // two limit changes, each panicking
		var ps [3]adaptive.Permit
		for i := range ps {
			var err error
			if ps[i], err = l.Acquire(context.Background()); err != nil {
				t.Fatalf("Acquire %d of 3 under the limit of 3: %v", i+1, err)
			}
		}
		if _, err := l.Acquire(context.Background()); err != adaptive.ErrLimitExceeded { // panics too
			t.Fatalf("err = %v, want ErrLimitExceeded", err)
		}
		for i := range ps {
			ps[i].Done(nil)
		}
		if diff := cmp.Diff(adaptive.Stats{Limit: 3, Rejected: 1, LimitChanged: 2}, l.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
		// The next change is still reported: no reporting flag was left set.
		got := make(chan int64, 10)
		l2 := mustNew(t, adaptive.Config{Initial: 1, Observer: middleware.ObserverFunc(func(_ context.Context, e middleware.Event) {
			got <- e.Limit
			panic("observer")
		})})
		grow(t, l2, 25)
		close(got)
		var limits []int64
		for v := range got {
			limits = append(limits, v)
		}
		if diff := cmp.Diff([]int64{2, 3}, limits); diff != "" {
			t.Errorf("limits reported (-want +got):\n%s", diff)
		}
	})
}

// An observer that calls back into the limiter — Stats, Acquire, Done —
// does not deadlock: no lock is held while it runs.
func TestReentrantObserver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var l *adaptive.Limiter
		var kinds []string
		obs := middleware.ObserverFunc(func(_ context.Context, e middleware.Event) {
			_ = l.Stats()
			kinds = append(kinds, e.Kind.String())
			if e.Kind == middleware.Rejected {
				return // an Acquire here would be rejected again, and so on
			}
			if p, err := l.Acquire(context.Background()); err == nil {
				p.Done(nil) // a sample of about 0: may itself change the limit
			}
		})
		l = mustNew(t, adaptive.Config{Initial: 1, Observer: obs})
		p, err := l.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Acquire(context.Background()); err != adaptive.ErrLimitExceeded {
			t.Fatalf("err = %v, want ErrLimitExceeded", err)
		}
		p.Done(nil)
		grow(t, l, 25)
		if got := l.Stats().InFlight; got != 0 {
			t.Errorf("InFlight = %d, want 0", got)
		}
		if len(kinds) < 2 || kinds[0] != "rejected" || kinds[1] != "limit-changed" {
			t.Errorf("events seen %v, want rejected then limit-changed ones", kinds)
		}
	})
}
