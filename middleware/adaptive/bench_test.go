package adaptive_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/adaptive"
)

//go:noinline
func direct(_ context.Context, in int) (int, error) { return in + 1, nil }

var sink int

// BenchmarkDirect is the baseline: the stage called through a func value.
func BenchmarkDirect(b *testing.B) {
	var s middleware.Stage[int, int] = direct
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		sink, _ = s(ctx, i)
	}
}

// BenchmarkMutexCounter is the primitive underneath: a mutex-guarded
// counter taken and given back, with one clock read per side.
func BenchmarkMutexCounter(b *testing.B) {
	var mu sync.Mutex
	n := 0
	b.ReportAllocs()
	var start time.Time
	for b.Loop() {
		mu.Lock()
		n++
		mu.Unlock()
		start = time.Now()
		d := time.Since(start)
		mu.Lock()
		n--
		mu.Unlock()
		sink = int(d)
	}
}

func BenchmarkMiddleware(b *testing.B) {
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		obs  middleware.Observer
	}{
		{"", nil},
		{"observer=noop/", middleware.ObserverFunc(func(context.Context, middleware.Event) {})},
	} {
		l, _ := adaptive.New(adaptive.Config{Initial: 1000, Observer: bc.obs})
		s := middleware.Apply(direct, adaptive.Middleware[int, int](l))
		b.Run(bc.name+"admitted", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				sink, _ = s(ctx, i)
			}
		})
		b.Run(bc.name+"admitted-parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for i := 0; pb.Next(); i++ {
					sink, _ = s(ctx, i)
				}
			})
		})
		full, _ := adaptive.New(adaptive.Config{Min: 1, Max: 1, Initial: 1, Observer: bc.obs})
		_, _ = full.Acquire(ctx)
		shed := middleware.Apply(direct, adaptive.Middleware[int, int](full))
		b.Run(bc.name+"rejected", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				sink, _ = shed(ctx, i)
			}
		})
	}
	b.Run("acquire+done", func(b *testing.B) {
		l, _ := adaptive.New(adaptive.Config{Initial: 1000})
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			p, _ := l.Acquire(ctx)
			sink, _ = direct(ctx, i)
			p.Done(nil)
		}
	})
}
