package adaptive_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/adaptive"
	"github.com/google/go-cmp/cmp"
)

func TestCounter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var c adaptive.Counter
		var changes atomic.Uint64
		l := mustNew(t, adaptive.Config{Min: 1, Max: 50, Initial: 5, Counter: &c,
			OnLimitChange: func(int, int) { changes.Add(1) }})
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
		want := adaptive.Stats{Admitted: ok.Load(), Rejected: rejected.Load(), LimitChanges: changes.Load()}
		if diff := cmp.Diff(want, c.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
		if want.Admitted == 0 || want.Rejected == 0 {
			t.Errorf("Stats %+v; want both admitted and rejected calls", want)
		}
	})
}

func TestNilCounterStats(t *testing.T) {
	var c *adaptive.Counter
	if diff := cmp.Diff(adaptive.Stats{}, c.Stats()); diff != "" {
		t.Errorf("nil Counter Stats (-want +got):\n%s", diff)
	}
}

func TestCounterAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	l := mustNew(t, adaptive.Config{Counter: new(adaptive.Counter)})
	s := middleware.Apply(func(_ context.Context, in int) (int, error) { return in, nil }, adaptive.Middleware[int, int](l))
	ctx := context.Background()
	if n := testing.AllocsPerRun(1000, func() { _, _ = s(ctx, 1) }); n != 0 {
		t.Errorf("%v allocs per call with a Counter, want 0", n)
	}
}

func BenchmarkMiddlewareCounter(b *testing.B) {
	for _, bc := range []struct {
		name string
		c    *adaptive.Counter
	}{{"counter=off", nil}, {"counter=on", new(adaptive.Counter)}} {
		l, _ := adaptive.New(adaptive.Config{Initial: 1000, Counter: bc.c})
		s := middleware.Apply(direct, adaptive.Middleware[int, int](l))
		ctx := context.Background()
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				sink, _ = s(ctx, i)
			}
		})
	}
}
