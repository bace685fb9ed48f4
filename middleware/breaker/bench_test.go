package breaker_test

import (
	"context"
	"fmt"
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
		"Keyed":       middleware.Apply(ok, breaker.Keyed[int, int](mustNewTB(tb, breaker.Config{}), intKey)),
		"KeyedRate":   middleware.Apply(ok, breaker.Keyed[int, int](mustNewTB(tb, breaker.Config{FailureRate: 0.5}), intKey)),
		"KeyedOpen":   keyedOpen(tb),
	}
}

// intKey is the key of the keyed benchmarks: one of 64 keys.
func intKey(i int) string { return keyNames[i&63] }

var keyNames = func() (k [64]string) {
	for i := range k {
		k[i] = "key" + string(rune('0'+i/10)) + string(rune('0'+i%10))
	}
	return k
}()

// keyedOpen returns a keyed stage whose key 0 is open.
func keyedOpen(tb testing.TB) middleware.Stage[int, int] {
	b := mustNewTB(tb, breaker.Config{Threshold: 1})
	middleware.Apply(fail, breaker.Keyed[int, int](b, intKey))(context.Background(), 0)
	return middleware.Apply(ok, breaker.Keyed[int, int](b, intKey))
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
	for _, name := range []string{"Direct", "Consecutive", "Rate", "Open", "Keyed", "KeyedRate", "KeyedOpen"} {
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

// BenchmarkKeyedSpread: parallel successes spread over n known keys, each
// goroutine walking through them.
func BenchmarkKeyedSpread(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{4, 64} {
		b.Run(fmt.Sprint("keys=", n), func(b *testing.B) {
			s := middleware.Apply(ok, breaker.Keyed[int, int](mustNewTB(b, breaker.Config{}), intKey))
			for i := range n {
				s(ctx, i)
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					s(ctx, i)
					i = (i + 1) & (n - 1) // n is a power of two
				}
			})
		})
	}
}
