package backpressure

import (
	"context"

	"github.com/brace-go/brace/middleware"
)

// Middleware returns a middleware that admits each call through l with
// weight 1: calls beyond l's capacity are shed or queued, as l's Mode says.
// The slot is released when the stage returns, exactly once, also when it
// panics. A nil l makes every call fail with [ErrNilLimiter].
func Middleware[In, Out any](l *Limiter) middleware.Middleware[In, Out] {
	return Weighted[In, Out](l, nil)
}

// Weighted is like [Middleware], but each call's weight is weight(in): a
// call of weight n occupies n of l's capacity. A weight below 1 or above the
// capacity fails the call with a *[WeightError] without waiting. A nil
// weight func means weight 1.
func Weighted[In, Out any](l *Limiter, weight func(In) int64) middleware.Middleware[In, Out] {
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		if l == nil {
			return func(context.Context, In) (Out, error) {
				var zero Out
				return zero, ErrNilLimiter
			}
		}
		if next == nil {
			next = middleware.Apply[In, Out](nil) // fails with middleware.ErrNilStage
		}
		return func(ctx context.Context, in In) (Out, error) {
			w := int64(1)
			if weight != nil {
				w = weight(in)
			}
			if err := l.acquire(ctx, w); err != nil {
				var zero Out
				return zero, err
			}
			defer l.release(w)
			return next(ctx, in)
		}
	}
}
