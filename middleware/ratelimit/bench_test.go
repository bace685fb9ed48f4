package ratelimit_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/ratelimit"
)

//go:noinline
func direct(_ context.Context, in int) (int, error) { return in + 1, nil }

var sink int

// A rate no benchmark can reach, so every call is admitted.
const huge = 1e12

// BenchmarkDirect is the baseline: the stage called through a func value.
func BenchmarkDirect(b *testing.B) {
	var s middleware.Stage[int, int] = direct
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		sink, _ = s(ctx, i)
	}
}

func BenchmarkMiddleware(b *testing.B) {
	l := mustNew(b, ratelimit.Config{Rate: huge, Burst: 1 << 30})
	s := middleware.Apply(direct, ratelimit.Middleware[int, int](l))
	ctx := context.Background()
	b.Run("admitted", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			sink, _ = s(ctx, i)
		}
	})
	b.Run("admitted-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for i := 0; pb.Next(); i++ {
				sink, _ = s(ctx, i)
			}
		})
	})
	rl := mustNew(b, ratelimit.Config{Rate: 1e-9, Burst: 1})
	rs := middleware.Apply(direct, ratelimit.Middleware[int, int](rl))
	b.Run("refused", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			sink, _ = rs(ctx, i)
		}
	})
}

func BenchmarkPerKey(b *testing.B) {
	l := mustNew(b, ratelimit.Config{Rate: huge, Burst: 1 << 30})
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = "tenant-" + strconv.Itoa(i)
	}
	s := middleware.Apply(direct, ratelimit.Keyed[int, int](l, func(i int) string { return keys[i%len(keys)] }))
	ctx := context.Background()
	b.Run("admitted", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			sink, _ = s(ctx, i)
		}
	})
	b.Run("admitted-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for i := 0; pb.Next(); i++ {
				sink, _ = s(ctx, i)
			}
		})
	})
}
