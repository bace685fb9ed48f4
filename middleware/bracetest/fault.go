package bracetest

import (
	"context"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/brace-go/brace/internal/xrand"
	"github.com/brace-go/brace/middleware"
)

// FailWith returns a fault that fails every call with err, without calling
// the stage.
func FailWith[In, Out any](err error) middleware.Middleware[In, Out] {
	return Outcome[In](*new(Out), err)
}

// Outcome returns a fault that answers every call with out and err,
// without calling the stage: an injected result, such as a degraded value
// or an HTTP 503 response.
func Outcome[In, Out any](out Out, err error) middleware.Middleware[In, Out] {
	return func(middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		return func(context.Context, In) (Out, error) { return out, err }
	}
}

// Latency returns a fault that delays every call by d before calling the
// stage. If the context ends first, the call returns ctx.Err() at once and
// the stage is not called. A d of zero or less adds nothing.
func Latency[In, Out any](d time.Duration) middleware.Middleware[In, Out] {
	return LatencyFunc[In, Out](func() time.Duration { return d })
}

// LatencyFunc is [Latency] with a delay drawn per call from f, for example
// [Uniform]. f is called concurrently when the stage is. LatencyFunc
// panics if f is nil.
func LatencyFunc[In, Out any](f func() time.Duration) middleware.Middleware[In, Out] {
	if f == nil {
		panic("bracetest: nil delay func")
	}
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		next = middleware.Apply(next)
		return func(ctx context.Context, in In) (Out, error) {
			if err := sleep(ctx, f()); err != nil {
				var zero Out
				return zero, err
			}
			return next(ctx, in)
		}
	}
}

// sleep waits d or until ctx ends, and reports ctx.Err() in that case.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Uniform returns a func that draws durations uniformly from [lo, hi),
// for [LatencyFunc]. It is safe for concurrent use, lock-free, and the same
// seed gives the same sequence of draws (zero means a random seed). If hi
// ≤ lo it always returns lo.
func Uniform(lo, hi time.Duration, seed uint64) func() time.Duration {
	if seed == 0 {
		seed = rand.Uint64()
	}
	src := xrand.New(seed)
	return func() time.Duration {
		if hi <= lo {
			return lo
		}
		return lo + time.Duration(src.Float64()*float64(hi-lo))
	}
}

// PanicWith returns a fault that panics with v on every call, without
// calling the stage.
func PanicWith[In, Out any](v any) middleware.Middleware[In, Out] {
	return func(middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		return func(context.Context, In) (Out, error) { panic(v) }
	}
}

// Hang returns a fault that blocks every call until its context ends and
// then returns ctx.Err(), without calling the stage: a downstream that
// never answers. A call whose context never ends hangs for ever, so use it
// under a timeout or a context with a deadline.
func Hang[In, Out any]() middleware.Middleware[In, Out] {
	return func(middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		return func(ctx context.Context, _ In) (Out, error) {
			<-ctx.Done()
			var zero Out
			return zero, ctx.Err()
		}
	}
}

// FirstN applies fault to the first n calls and passes every later call
// straight to the stage: a downstream that recovers. Exactly n calls get
// the fault however many goroutines call at once. n ≤ 0 injects nothing.
// FirstN panics if fault is nil.
func FirstN[In, Out any](n int, fault middleware.Middleware[In, Out]) middleware.Middleware[In, Out] {
	if fault == nil {
		panic("bracetest: nil fault middleware")
	}
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		next = middleware.Apply(next)
		if n <= 0 {
			return next
		}
		faulty := middleware.Apply(next, fault)
		var calls atomic.Int64
		return func(ctx context.Context, in In) (Out, error) {
			if calls.Add(1) <= int64(n) {
				return faulty(ctx, in)
			}
			return next(ctx, in)
		}
	}
}
