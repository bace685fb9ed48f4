package backpressure_test

import (
	"context"
	"testing"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/backpressure"
)

var sink int

func noop(_ context.Context, in int) (int, error) { return in, nil }

func mustNewB(b *testing.B, cfg backpressure.Config) *backpressure.Limiter {
	l, err := backpressure.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return l
}

// BenchmarkAdmit measures the admitted path: one call through the
// middleware around a noop stage. (The baselines against
// golang.org/x/sync/semaphore live in internal/benchcmp.)
func BenchmarkAdmit(b *testing.B) {
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		cfg  backpressure.Config
	}{
		{"mode=shed", backpressure.Config{}},
		{"mode=wait", backpressure.Config{Mode: backpressure.Wait}},
		{"mode=shed/soft-limit", backpressure.Config{SoftLimit: 32}},
		{"mode=shed/observer", backpressure.Config{Observer: middleware.ObserverFunc(func(context.Context, middleware.Event) {})}},
		{"mode=shed/priorities", backpressure.Config{Priorities: true}},
		{"mode=wait/priorities/codel", backpressure.Config{Priorities: true, Mode: backpressure.Wait, Queue: backpressure.CoDel}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			bc.cfg.Capacity = 64
			l := mustNewB(b, bc.cfg)
			stage := middleware.Apply(noop, backpressure.Middleware[int, int](l))
			b.ReportAllocs()
			var err error
			for i := 0; b.Loop(); i++ {
				if sink, err = stage(ctx, i); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("weighted", func(b *testing.B) {
		l := mustNewB(b, backpressure.Config{Capacity: 64})
		stage := middleware.Apply(noop, backpressure.Weighted[int, int](l, func(int) int64 { return 2 }))
		b.ReportAllocs()
		var err error
		for i := 0; b.Loop(); i++ {
			if sink, err = stage(ctx, i); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("acquire+done", func(b *testing.B) {
		l := mustNewB(b, backpressure.Config{Capacity: 64})
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			p, err := l.Acquire(ctx)
			if err != nil {
				b.Fatal(err)
			}
			sink, _ = noop(ctx, i)
			p.Done(nil)
		}
	})
}

// BenchmarkAdmitParallel measures the admitted path with every core
// contending on one Limiter.
func BenchmarkAdmitParallel(b *testing.B) {
	ctx := context.Background()
	b.Run("limiter", func(b *testing.B) {
		l := mustNewB(b, backpressure.Config{Capacity: 1 << 20})
		stage := middleware.Apply(noop, backpressure.Middleware[int, int](l))
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := stage(ctx, 1); err != nil {
					panic(err)
				}
			}
		})
	})
}

// BenchmarkShed measures a rejected call: with no observer it allocates
// nothing (ErrShed is a sentinel).
func BenchmarkShed(b *testing.B) {
	for _, bc := range []struct {
		name string
		obs  middleware.Observer
	}{
		{"observer=nil", nil},
		{"observer=noop", middleware.ObserverFunc(func(context.Context, middleware.Event) {})},
	} {
		b.Run(bc.name, func(b *testing.B) {
			l := mustNewB(b, backpressure.Config{Capacity: 1, Observer: bc.obs})
			ctx := context.Background()
			p, err := l.Acquire(ctx)
			if err != nil {
				b.Fatal(err)
			}
			defer p.Done(nil)
			stage := middleware.Apply(noop, backpressure.Middleware[int, int](l))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := stage(ctx, 1); err == nil {
					b.Fatal("admitted at capacity")
				}
			}
		})
	}
}
