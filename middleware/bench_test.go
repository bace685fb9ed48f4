package middleware_test

import (
	"context"
	"errors"
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

// BenchmarkEmit is the cost an observer adds to an event: a no-op observer
// against no observer at all (the concerns test o != nil first).
func BenchmarkEmit(b *testing.B) {
	ctx := context.Background()
	err := errors.New("x")
	b.Run("nil", func(b *testing.B) {
		var obs middleware.Observer
		for b.Loop() {
			if obs != nil {
				middleware.Emit(ctx, obs, middleware.Event{Kind: middleware.Rejected, Concern: "backpressure", Err: err})
			}
		}
	})
	b.Run("no-op", func(b *testing.B) {
		obs := middleware.ObserverFunc(func(context.Context, middleware.Event) {})
		b.ReportAllocs()
		for b.Loop() {
			middleware.Emit(ctx, obs, middleware.Event{Kind: middleware.Rejected, Concern: "backpressure", Err: err})
		}
	})
}
