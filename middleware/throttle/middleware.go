package throttle

import (
	"context"

	"github.com/brace-go/brace/middleware"
)

// Middleware returns a middleware that throttles stages with t, built on
// the same steps as [Throttler.Acquire] and [Permit.Done]: a call the
// throttler rejects returns a [*RejectedError] without calling the stage;
// an admitted call's error is classified when the stage returns. A stage
// that panics (or calls runtime.Goexit) is counted for nothing, and the
// panic goes on.
//
// One throttler may guard stages of different types: call Middleware once
// per type with the same t. A nil t panics: it is a programmer error, most
// often New's ignored error.
func Middleware[In, Out any](t *Throttler) middleware.Middleware[In, Out] {
	if t == nil {
		panic("throttle: nil *Throttler (was New's error ignored?)")
	}
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		if next == nil {
			panic("throttle: nil stage")
		}
		return func(ctx context.Context, in In) (Out, error) {
			if err := ctx.Err(); err != nil {
				var zero Out
				return zero, err
			}
			l, err := t.admit(ctx)
			if err != nil {
				var zero Out
				return zero, err
			}
			out, err := next(ctx, in)
			t.record(ctx, l, err)
			return out, err
		}
	}
}
