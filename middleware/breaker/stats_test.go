package breaker_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/breaker"
)

func transitions(to ...breaker.State) (t [breaker.ForcedClosed + 1]uint64) {
	for _, s := range to {
		t[s]++
	}
	return t
}

func TestCounter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var c breaker.Counter
		b := mustNew(t, breaker.Config{Threshold: 2, OpenTimeout: time.Second, Counter: &c})
		call(b, nil)
		call(b, context.Canceled) // ignored
		call(b, errBoom)
		call(b, errBoom) // opens
		call(b, nil)     // rejected
		call(b, nil)     // rejected
		time.Sleep(time.Second)
		call(b, nil) // the probe closes it
		b.ForceOpen()
		call(b, nil) // rejected
		b.Reset()

		// A panicking stage is a failure.
		s := middleware.Apply(func(context.Context, int) (int, error) { panic("boom") }, breaker.Middleware[int, int](b))
		func() {
			defer func() { recover() }()
			s(t.Context(), 0)
		}()

		want := breaker.Stats{
			Successes:   2,
			Failures:    3,
			Ignored:     1,
			Rejections:  3,
			Transitions: transitions(breaker.Open, breaker.HalfOpen, breaker.Closed, breaker.ForcedOpen, breaker.Closed),
		}
		if diff := cmp.Diff(want, c.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
}

func TestCounterWithStore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var c breaker.Counter
		store := breaker.NewMemoryStore()
		cfg := breaker.Config{Threshold: 1, Store: store, Counter: &c}
		a, b := mustNew(t, cfg), mustNew(t, cfg)
		call(a, nil)
		call(a, errBoom) // opens the shared state
		time.Sleep(2 * time.Second)
		call(b, nil) // b sees the open state
		want := breaker.Stats{Successes: 1, Failures: 1, Rejections: 1, Transitions: transitions(breaker.Open, breaker.Open)}
		if diff := cmp.Diff(want, c.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
}

func TestNilCounterStats(t *testing.T) {
	var c *breaker.Counter
	if diff := cmp.Diff(breaker.Stats{}, c.Stats()); diff != "" {
		t.Errorf("nil Counter Stats (-want +got):\n%s", diff)
	}
}

// TestCounterConcurrent: 2000 goroutines, no count lost; every call is
// either a result or a rejection.
func TestCounterConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var c breaker.Counter
		b := mustNew(t, breaker.Config{Threshold: 50, OpenTimeout: time.Millisecond, Counter: &c})
		const goroutines = 2000
		var wg sync.WaitGroup
		for i := range goroutines {
			wg.Go(func() {
				var err error
				if i%3 == 0 {
					err = errBoom
				}
				call(b, err)
			})
		}
		wg.Wait()
		s := c.Stats()
		if got := s.Successes + s.Failures + s.Ignored + s.Rejections; got != goroutines {
			t.Errorf("results + rejections = %d; want %d (%+v)", got, goroutines, s)
		}
	})
}

func TestCounterAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	ctx := context.Background()
	for name, cfg := range map[string]breaker.Config{
		"Consecutive": {Counter: new(breaker.Counter)},
		"Rate":        {FailureRate: 0.5, Counter: new(breaker.Counter)},
	} {
		s := middleware.Apply(ok, breaker.Middleware[int, int](mustNewTB(t, cfg)))
		if n := testing.AllocsPerRun(1000, func() { s(ctx, 0) }); n != 0 {
			t.Errorf("%s: %v allocations per call with a Counter, want 0", name, n)
		}
	}
	b := mustNewTB(t, breaker.Config{Threshold: 1, Counter: new(breaker.Counter)})
	call(b, errBoom)
	s := middleware.Apply(ok, breaker.Middleware[int, int](b))
	if n := testing.AllocsPerRun(1000, func() { s(ctx, 0) }); n != 0 {
		t.Errorf("open: %v allocations per rejection with a Counter, want 0", n)
	}
}

func TestLogger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
			ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
				if a.Key == slog.TimeKey {
					return slog.Attr{}
				}
				return a
			},
		}))
		named := mustNew(t, breaker.Config{Name: "db", Threshold: 1, OpenTimeout: time.Second, Logger: logger})
		call(named, errBoom)
		time.Sleep(time.Second)
		call(named, nil)
		anonymous := mustNew(t, breaker.Config{Threshold: 1, Logger: logger, Store: failingStore{}})
		call(anonymous, errBoom)
		want := `level=WARN msg="breaker: state changed" from=closed to=open failures=1 consecutive_failures=1 name=db
level=INFO msg="breaker: state changed" from=open to=half-open failures=0 consecutive_failures=0 name=db
level=INFO msg="breaker: state changed" from=half-open to=closed failures=0 consecutive_failures=0 name=db
level=WARN msg="breaker: store failed; using local state" err="store down"
level=WARN msg="breaker: state changed" from=closed to=open failures=1 consecutive_failures=1
`
		if diff := cmp.Diff(want, buf.String()); diff != "" {
			t.Errorf("log (-want +got):\n%s", diff)
		}
	})
}

type failingStore struct{}

func (failingStore) Update(context.Context, *breaker.Policy, breaker.Op) (breaker.Snapshot, error) {
	return breaker.Snapshot{}, errors.New("store down")
}

func BenchmarkBreakerCounter(b *testing.B) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		cfg  breaker.Config
	}{
		{"Consecutive", breaker.Config{}},
		{"ConsecutiveCounter", breaker.Config{Counter: new(breaker.Counter)}},
		{"Rate", breaker.Config{FailureRate: 0.5}},
		{"RateCounter", breaker.Config{FailureRate: 0.5, Counter: new(breaker.Counter)}},
	} {
		s := middleware.Apply(ok, breaker.Middleware[int, int](mustNewTB(b, tc.cfg)))
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s(ctx, 0)
			}
		})
		b.Run(tc.name+"Parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					s(ctx, 0)
				}
			})
		})
	}
}
