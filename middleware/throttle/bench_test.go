package throttle_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/priority"
	"github.com/brace-go/brace/middleware/throttle"
)

func okStage(context.Context, int) (int, error) { return 1, nil }

// rejecting returns a throttler whose probability is nearly 1, so that
// almost every call takes the rejection path.
func rejecting(tb testing.TB) *throttle.Throttler {
	th := mustNew(tb, throttle.Config{Window: time.Hour, MinRequests: 1, MaxProbability: 1, Seed: 1})
	ctx := context.Background()
	for range 100000 {
		if p, err := th.Acquire(ctx); err == nil {
			p.Done(errUnavailable)
		}
	}
	return th
}

// BenchmarkDirect is the baseline: the stage alone.
func BenchmarkDirect(b *testing.B) {
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		okStage(ctx, 0)
	}
}

// BenchmarkSuccess: the middleware's success path, no observer: one
// atomic load on admission, the clock, the lock and the window on Done.
func BenchmarkSuccess(b *testing.B) {
	stage := middleware.Apply(okStage, throttle.Middleware[int, int](mustNew(b, throttle.Config{})))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		stage(ctx, 0)
	}
}

// BenchmarkSuccessPriorities: the same with priorities on (a context
// lookup more).
func BenchmarkSuccessPriorities(b *testing.B) {
	stage := middleware.Apply(okStage, throttle.Middleware[int, int](mustNew(b, throttle.Config{Priorities: true})))
	ctx := priority.With(context.Background(), priority.Critical)
	b.ReportAllocs()
	for b.Loop() {
		stage(ctx, 0)
	}
}

// BenchmarkAcquireDone: the two-step form's success path.
func BenchmarkAcquireDone(b *testing.B) {
	th := mustNew(b, throttle.Config{})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		p, _ := th.Acquire(ctx)
		p.Done(nil)
	}
}

// BenchmarkRejection: the rejection path, no observer.
func BenchmarkRejection(b *testing.B) {
	stage := middleware.Apply(okStage, throttle.Middleware[int, int](rejecting(b)))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		stage(ctx, 0)
	}
}

// BenchmarkSuccessParallel: the success path from every P at once (the
// window's lock is shared).
func BenchmarkSuccessParallel(b *testing.B) {
	stage := middleware.Apply(okStage, throttle.Middleware[int, int](mustNew(b, throttle.Config{})))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			stage(ctx, 0)
		}
	})
}

// BenchmarkMutexClock is a baseline: an uncontended lock and a clock
// read, the least a windowed count can cost.
func BenchmarkMutexClock(b *testing.B) {
	var mu sync.Mutex
	var n int64
	start := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		d := time.Since(start)
		mu.Lock()
		n += int64(d)
		mu.Unlock()
	}
}
