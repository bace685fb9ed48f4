package backpressure

import (
	"context"

	"github.com/brace-go/brace/middleware"
)

// Middleware returns a middleware that admits each call through l with
// weight 1, as [Limiter.Acquire] does: calls beyond l's capacity are shed
// or queued, as l's Mode says, without running the stage. The weight goes
// back when the stage returns, exactly once, also when it panics.
//
// It panics if l is nil (most often New's ignored error).
func Middleware[In, Out any](l *Limiter) middleware.Middleware[In, Out] {
	if l == nil {
		panic("backpressure: nil *Limiter (was New's error ignored?)")
	}
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		return func(ctx context.Context, in In) (Out, error) {
			p, err := l.AcquireN(ctx, 1)
			if err != nil {
				var zero Out
				return zero, err
			}
			defer p.Done(nil)
			return next(ctx, in)
		}
	}
}

// Weighted is [Middleware] for calls of different sizes: each call weighs
// weight(in), and occupies that much of l's capacity, as
// [Limiter.AcquireN] does. A weight below 1 or above the capacity fails the
// call with a *[WeightError] without waiting. weight is called once per
// call, before admission; if it panics, nothing is held.
//
// It panics if l or weight is nil.
func Weighted[In, Out any](l *Limiter, weight func(In) int64) middleware.Middleware[In, Out] {
	if l == nil {
		panic("backpressure: nil *Limiter (was New's error ignored?)")
	}
	if weight == nil {
		panic("backpressure: nil weight func")
	}
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		return func(ctx context.Context, in In) (Out, error) {
			p, err := l.AcquireN(ctx, weight(in))
			if err != nil {
				var zero Out
				return zero, err
			}
			defer p.Done(nil)
			return next(ctx, in)
		}
	}
}
