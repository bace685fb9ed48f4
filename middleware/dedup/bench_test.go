package dedup_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/dedup"
)

// The baselines against golang.org/x/sync/singleflight live in
// internal/benchcmp, a module of its own, so that this module does not
// depend on x/sync.

var sink int

func noop(_ context.Context, in int) (int, error) { return in, nil }

func mustStage(b *testing.B, cfg dedup.Config) middleware.Stage[int, int] {
	g, err := dedup.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return middleware.Apply(noop, dedup.Middleware[int, int](g, func(i int) int { return i }))
}

// BenchmarkUncontended measures a call that finds no other call with its
// key: it runs the stage on a goroutine of its own and waits for it.
func BenchmarkUncontended(b *testing.B) {
	ctx := context.Background()
	b.Run("dedup", func(b *testing.B) {
		s := mustStage(b, dedup.Config{})
		b.ReportAllocs()
		for b.Loop() {
			sink, _ = s(ctx, 1)
		}
	})
	b.Run("dedup/cancellable-ctx", func(b *testing.B) {
		s := mustStage(b, dedup.Config{})
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		b.ReportAllocs()
		for b.Loop() {
			sink, _ = s(ctx, 1)
		}
	})
}

// BenchmarkCacheHit measures a call served from the TTL cache.
func BenchmarkCacheHit(b *testing.B) {
	s := mustStage(b, dedup.Config{TTL: time.Hour})
	ctx := context.Background()
	sink, _ = s(ctx, 1)
	b.ReportAllocs()
	for b.Loop() {
		sink, _ = s(ctx, 1)
	}
}

// BenchmarkContended runs 8 callers per key at once: most of them join.
func BenchmarkContended(b *testing.B) {
	ctx := context.Background()
	s := mustStage(b, dedup.Config{})
	b.ReportAllocs()
	var wg sync.WaitGroup
	for b.Loop() {
		for range 8 {
			wg.Go(func() { _, _ = s(ctx, 1) })
		}
		wg.Wait()
	}
}
