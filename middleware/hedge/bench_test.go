package hedge_test

import (
	"context"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/hedge"
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

// BenchmarkGoroutine is what running an attempt in a goroutine of its own
// costs: the stage on a cancellable context, its result sent back on a
// channel. Hedge pays it only for hedges; the first attempt runs on the
// caller's goroutine.
func BenchmarkGoroutine(b *testing.B) {
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c := make(chan int, 1)
		actx, cancel := context.WithCancel(ctx)
		go func() { v, _ := direct(actx, i); c <- v }()
		sink = <-c
		cancel()
	}
}

// BenchmarkHedge measures a call whose first attempt succeeds before the
// delay, the common case: no hedge is sent, no goroutine started.
func BenchmarkHedge(b *testing.B) {
	for _, bb := range []struct {
		name string
		cfg  hedge.Config
	}{
		{"fixed", hedge.Config{Delay: time.Second, Percentile: hedge.Fixed}},
		{"percentile", hedge.Config{Delay: time.Second}},
	} {
		h, err := hedge.New(bb.cfg)
		if err != nil {
			b.Fatal(err)
		}
		s := middleware.Apply(direct, hedge.Middleware[int, int](h))
		ctx := context.Background()
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				sink, _ = s(ctx, i)
			}
		})
	}
}
