package breaker_test

import (
	"context"
	"testing"
	"time"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/breaker"
)

var clockSink time.Duration

func ok(context.Context, int) (int, error) { return 1, nil }

func fail(context.Context, int) (int, error) { return 0, errBoom }

func opened(tb testing.TB) *breaker.Breaker {
	b := mustNewTB(tb, breaker.Config{Threshold: 1})
	call(b, errBoom)
	return b
}

func mustNewTB(tb testing.TB, cfg breaker.Config) *breaker.Breaker { return mustNew(tb, cfg) }

// stages returns the guarded stages whose success paths are measured.
func stages(tb testing.TB) map[string]middleware.Stage[int, int] {
	return map[string]middleware.Stage[int, int]{
		"Direct":      ok,
		"Consecutive": middleware.Apply(ok, breaker.Middleware[int, int](mustNewTB(tb, breaker.Config{}))),
		"Rate":        middleware.Apply(ok, breaker.Middleware[int, int](mustNewTB(tb, breaker.Config{FailureRate: 0.5}))),
		"Open":        middleware.Apply(ok, breaker.Middleware[int, int](opened(tb))),
	}
}

func TestAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	ctx := context.Background()
	for name, s := range stages(t) {
		t.Run(name, func(t *testing.T) {
			if n := testing.AllocsPerRun(1000, func() { s(ctx, 0) }); n != 0 {
				t.Errorf("%v allocations per call, want 0", n)
			}
		})
	}
	t.Run("Failure", func(t *testing.T) {
		s := middleware.Apply(fail, breaker.Middleware[int, int](mustNewTB(t, breaker.Config{Threshold: 1 << 30})))
		if n := testing.AllocsPerRun(1000, func() { s(ctx, 0) }); n != 0 {
			t.Errorf("%v allocations per failed call, want 0", n)
		}
	})
	t.Run("TwoStep", func(t *testing.T) {
		b := mustNewTB(t, breaker.Config{})
		if n := testing.AllocsPerRun(1000, func() {
			p, err := b.Acquire(ctx)
			p.Done(err)
		}); n != 0 {
			t.Errorf("%v allocations per call, want 0", n)
		}
	})
	t.Run("TwoStepRejected", func(t *testing.T) {
		b := opened(t)
		if n := testing.AllocsPerRun(1000, func() {
			if _, err := b.Acquire(ctx); err == nil {
				t.Fatal("admitted")
			}
		}); n != 0 {
			t.Errorf("%v allocations per rejection, want 0", n)
		}
	})
	t.Run("SharedClosed", func(t *testing.T) {
		s := middleware.Apply(ok, breaker.Middleware[int, int](mustNewTB(t, breaker.Config{Store: breaker.NewMemoryStore(), StoreSync: time.Hour})))
		s(ctx, 0) // the first call reads the store
		if n := testing.AllocsPerRun(1000, func() { s(ctx, 0) }); n != 0 {
			t.Errorf("%v allocations per call, want 0", n)
		}
	})
}

func BenchmarkBreaker(b *testing.B) {
	ctx := context.Background()
	// Baseline for the paths that must read the clock (rate mode, open
	// rejections): one monotonic clock read, as the breaker does it.
	b.Run("Clock", func(b *testing.B) {
		base := time.Now()
		b.ReportAllocs()
		for b.Loop() {
			clockSink = time.Since(base)
		}
	})
	for _, name := range []string{"Direct", "Consecutive", "Rate", "Open"} {
		s := stages(b)[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s(ctx, 0)
			}
		})
		b.Run(name+"Parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					s(ctx, 0)
				}
			})
		})
	}
}
