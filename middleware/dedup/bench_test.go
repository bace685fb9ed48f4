package dedup_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/dedup"
	"golang.org/x/sync/singleflight"
)

var sink int

func noop(_ context.Context, in int) (int, error) { return in, nil }

func mustStage(b *testing.B, cfg dedup.Config) middleware.Stage[int, int] {
	mw, err := dedup.New[int, int](func(i int) int { return i }, cfg)
	if err != nil {
		b.Fatal(err)
	}
	return middleware.Apply(noop, mw)
}

// BenchmarkUncontended measures a call that finds no other call with its
// key: it runs the stage on a goroutine of its own and waits for it. The
// baselines are singleflight.Do, which runs the func on the caller's
// goroutine, and singleflight.DoChan, which, like Dedup, runs it on a new
// goroutine so the caller can stop waiting. Run them together and compare.
func BenchmarkUncontended(b *testing.B) {
	ctx := context.Background()
	b.Run("baseline=singleflight.Do", func(b *testing.B) {
		var g singleflight.Group
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			v, _, _ := g.Do("k", func() (any, error) { return noop(ctx, i) })
			sink = v.(int)
		}
	})
	b.Run("baseline=singleflight.DoChan", func(b *testing.B) {
		var g singleflight.Group
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			select {
			case r := <-g.DoChan("k", func() (any, error) { return noop(ctx, i) }):
				sink = r.Val.(int)
			case <-ctx.Done():
			}
		}
	})
	b.Run("dedup", func(b *testing.B) {
		s := mustStage(b, dedup.Config{})
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			sink, _ = s(ctx, 1)
		}
	})
	b.Run("dedup/cancellable-ctx", func(b *testing.B) {
		s := mustStage(b, dedup.Config{})
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			sink, _ = s(ctx, 1)
		}
	})
	b.Run("dedup/tracked", func(b *testing.B) {
		s := mustStage(b, dedup.Config{})
		ctx, _ := dedup.Track(ctx)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
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
	b.Run("baseline=singleflight.DoChan", func(b *testing.B) {
		var g singleflight.Group
		b.ReportAllocs()
		var wg sync.WaitGroup
		for b.Loop() {
			for range 8 {
				wg.Go(func() { r := <-g.DoChan("k", func() (any, error) { return noop(ctx, 1) }); _ = r })
			}
			wg.Wait()
		}
	})
	b.Run("dedup", func(b *testing.B) {
		s := mustStage(b, dedup.Config{})
		b.ReportAllocs()
		var wg sync.WaitGroup
		for b.Loop() {
			for range 8 {
				wg.Go(func() { _, _ = s(ctx, 1) })
			}
			wg.Wait()
		}
	})
}
