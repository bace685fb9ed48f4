package ratelimit

import (
	"context"

	"github.com/brace-go/brace/middleware"
)

// Costed returns a middleware that admits each call through l's shared
// buckets ([Limiter.AcquireN]) with the cost cost(in) computes — the
// tokens in a prompt, the bytes in a body — before running the stage.
// Limits charged per call ([Limit].PerCall) take 1 whatever the cost.
// A call whose cost is negative or larger than a burst gets a
// *[CostError] without running; a refused one gets l's *[LimitedError].
// cost runs once per call, before anything is taken: a panic in it
// propagates to the caller with nothing taken. A nil l or cost is a
// programmer error: Costed panics.
func Costed[In, Out any](l *Limiter, cost func(In) int64) middleware.Middleware[In, Out] {
	if l == nil {
		panic("ratelimit: nil *Limiter (was New's error ignored?)")
	}
	if cost == nil {
		panic("ratelimit: nil cost func")
	}
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		if next == nil {
			panic("middleware: nil stage")
		}
		return func(ctx context.Context, in In) (out Out, err error) {
			if err := ctx.Err(); err != nil {
				return out, err
			}
			p, err := l.AcquireN(ctx, cost(in))
			if err != nil {
				return out, err
			}
			defer func() { p.Done(err) }()
			return next(ctx, in)
		}
	}
}

// Settled is [Costed] with a settlement: after the stage returns,
// actual(in, out, err) is the call's real cost (the tokens the model
// really produced, the bytes really sent), and the permit is settled to
// it ([Permit.Settle]): the difference from the estimate is charged, or
// refunded, at once. Settlement is skipped when the stage panics (the
// estimate stands). A panic in actual propagates to the caller; the
// permit is finished and the estimate stands. A nil l, estimate or
// actual is a programmer error: Settled panics.
func Settled[In, Out any](l *Limiter, estimate func(In) int64, actual func(In, Out, error) int64) middleware.Middleware[In, Out] {
	if l == nil {
		panic("ratelimit: nil *Limiter (was New's error ignored?)")
	}
	if estimate == nil {
		panic("ratelimit: nil estimate func")
	}
	if actual == nil {
		panic("ratelimit: nil actual func")
	}
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		if next == nil {
			panic("middleware: nil stage")
		}
		return func(ctx context.Context, in In) (out Out, err error) {
			if err := ctx.Err(); err != nil {
				return out, err
			}
			p, err := l.AcquireN(ctx, estimate(in))
			if err != nil {
				return out, err
			}
			defer func() { p.Done(err) }()
			out, err = next(ctx, in)
			p.Settle(actual(in, out, err))
			return out, err
		}
	}
}
