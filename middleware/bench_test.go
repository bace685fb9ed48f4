package middleware_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/brace-go/brace/middleware"
)

//go:noinline
func direct(_ context.Context, in int) (int, error) { return in + 1, nil }

var sink int

func pass(next middleware.Stage[int, int]) middleware.Stage[int, int] {
	return func(ctx context.Context, in int) (int, error) { return next(ctx, in) }
}

// BenchmarkDirect is the baseline: the stage called through a func value.
func BenchmarkDirect(b *testing.B) {
	var s middleware.Stage[int, int] = direct
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		sink, _ = s(ctx, i)
	}
}

// BenchmarkChain measures a chain of 1 and 5 pass-through middlewares, so
// the per-middleware cost is (Chain5 - Direct) / 5.
func BenchmarkChain(b *testing.B) {
	for _, n := range []int{1, 5} {
		mws := make([]middleware.Middleware[int, int], n)
		for i := range mws {
			mws[i] = pass
		}
		s := middleware.Chain(mws...)(direct)
		ctx := context.Background()
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				sink, _ = s(ctx, i)
			}
		})
	}
}

func BenchmarkRecover(b *testing.B) {
	s := middleware.Apply(direct, middleware.Recover[int, int]())
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		sink, _ = s(ctx, i)
	}
}
