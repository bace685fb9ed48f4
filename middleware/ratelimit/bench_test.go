package ratelimit_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/ratelimit"
	"golang.org/x/time/rate"
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

// BenchmarkCosted: a cost per call through one limit, and through a
// requests limit and a tokens limit held together, with and without a
// settlement.
func BenchmarkCosted(b *testing.B) {
	one := mustNew(b, ratelimit.Config{Rate: huge, Burst: 1 << 30})
	two := mustNew(b, ratelimit.Config{Limits: []ratelimit.Limit{
		{Name: "requests", Rate: huge, Burst: 1 << 30, PerCall: true},
		{Name: "tokens", Rate: huge, Burst: 1 << 40},
	}})
	cost := func(i int) int64 { return int64(i%1000) + 1 }
	actual := func(i, _ int, _ error) int64 { return int64(i % 700) }
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		s    middleware.Stage[int, int]
	}{
		{"one-limit", middleware.Apply(direct, ratelimit.Costed[int, int](one, cost))},
		{"two-limits", middleware.Apply(direct, ratelimit.Costed[int, int](two, cost))},
		{"two-limits-settled", middleware.Apply(direct, ratelimit.Settled[int, int](two, cost, actual))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				sink, _ = bc.s(ctx, i)
			}
		})
	}
	shut := mustNew(b, ratelimit.Config{Limits: []ratelimit.Limit{
		{Name: "requests", Rate: 1, Per: time.Hour, Burst: 1, PerCall: true},
		{Name: "tokens", Rate: 1000, Per: time.Hour, Burst: 1000},
	}})
	_, _ = shut.AcquireN(ctx, 1000)
	rs := middleware.Apply(direct, ratelimit.Costed[int, int](shut, cost))
	b.Run("two-limits-refused", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			sink, _ = rs(ctx, i)
		}
	})
}

// BenchmarkXRate is the raw primitive beside Middleware: x/time/rate's
// Allow, admitted and refused, called inline.
func BenchmarkXRate(b *testing.B) {
	l := rate.NewLimiter(rate.Limit(huge), 1<<30)
	b.Run("admitted", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if l.Allow() {
				sink, _ = direct(context.Background(), i)
			}
		}
	})
	rl := rate.NewLimiter(rate.Limit(1e-9), 1)
	rl.Allow()
	b.Run("refused", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if rl.Allow() {
				sink, _ = direct(context.Background(), i)
			}
		}
	})
}
