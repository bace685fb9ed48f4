package backpressure_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/backpressure"
	"golang.org/x/sync/semaphore"
)

var sink int

func noop(_ context.Context, in int) (int, error) { return in, nil }

// BenchmarkAdmit compares the admitted path with the raw primitive it
// replaces: a semaphore.Weighted TryAcquire and Release around the same
// stage call. Run them in one invocation and compare the ratio.
func BenchmarkAdmit(b *testing.B) {
	ctx := context.Background()
	b.Run("baseline=semaphore.TryAcquire+Release", func(b *testing.B) {
		sem := semaphore.NewWeighted(64)
		stage := middleware.Stage[int, int](noop)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if !sem.TryAcquire(1) {
				b.Fatal("TryAcquire failed")
			}
			sink, _ = stage(ctx, i)
			sem.Release(1)
		}
	})
	// The design the Limiter replaced: the semaphore plus an atomic
	// counter beside it, so that the depth can be read.
	b.Run("alternative=semaphore+atomic-depth", func(b *testing.B) {
		sem := semaphore.NewWeighted(64)
		var depth atomic.Int64
		stage := middleware.Stage[int, int](noop)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if !sem.TryAcquire(1) {
				b.Fatal("TryAcquire failed")
			}
			depth.Add(1)
			sink, _ = stage(ctx, i)
			depth.Add(-1)
			sem.Release(1)
		}
	})
	for _, bc := range []struct {
		name string
		cfg  backpressure.Config
	}{
		{"mode=shed", backpressure.Config{}},
		{"mode=wait", backpressure.Config{Mode: backpressure.Wait}},
		{"mode=shed/soft-limit", backpressure.Config{SoftLimit: 32}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			l, err := backpressure.New(64, bc.cfg)
			if err != nil {
				b.Fatal(err)
			}
			stage := middleware.Apply(noop, backpressure.Middleware[int, int](l))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if sink, err = stage(ctx, i); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("weighted", func(b *testing.B) {
		l, err := backpressure.New(64, backpressure.Config{})
		if err != nil {
			b.Fatal(err)
		}
		stage := middleware.Apply(noop, backpressure.Weighted[int, int](l, func(int) int64 { return 2 }))
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if sink, err = stage(ctx, i); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAdmitParallel measures the admitted path with both cores
// contending, beside the raw semaphore doing the same.
func BenchmarkAdmitParallel(b *testing.B) {
	ctx := context.Background()
	b.Run("baseline=semaphore.TryAcquire+Release", func(b *testing.B) {
		sem := semaphore.NewWeighted(1 << 20)
		stage := middleware.Stage[int, int](noop)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if !sem.TryAcquire(1) {
					panic("TryAcquire failed")
				}
				_, _ = stage(ctx, 1)
				sem.Release(1)
			}
		})
	})
	b.Run("limiter", func(b *testing.B) {
		l, err := backpressure.New(1<<20, backpressure.Config{})
		if err != nil {
			b.Fatal(err)
		}
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

// BenchmarkShed measures a rejected call: it allocates its *ShedError.
func BenchmarkShed(b *testing.B) {
	l, err := backpressure.New(1, backpressure.Config{})
	if err != nil {
		b.Fatal(err)
	}
	block := make(chan struct{})
	started := make(chan struct{})
	hold := middleware.Apply(func(context.Context, int) (int, error) {
		close(started)
		<-block
		return 0, nil
	}, backpressure.Middleware[int, int](l))
	done := make(chan struct{})
	go func() { hold(context.Background(), 0); close(done) }()
	<-started
	stage := middleware.Apply(noop, backpressure.Middleware[int, int](l))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := stage(ctx, 1); err == nil {
			b.Fatal("admitted at capacity")
		}
	}
	close(block)
	<-done
}
