package breaker

import (
	"context"

	"github.com/brace-go/brace/middleware"
)

// Middleware returns a middleware that guards stages with b: a call is
// made only when b admits it, and its result is reported to b. A rejected
// call returns b's [*OpenError] without calling the stage. A stage that
// panics is recorded as a failure and the panic goes on.
//
// One breaker may guard stages of different types: call Middleware once
// per type with the same b.
func Middleware[In, Out any](b *Breaker) middleware.Middleware[In, Out] {
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		if next == nil {
			next = middleware.Apply[In, Out](nil)
		}
		return func(ctx context.Context, in In) (Out, error) {
			t, err := b.Allow(ctx)
			if err != nil {
				var zero Out
				return zero, err
			}
			defer b.abandon(ctx, &t)
			out, err := next(ctx, in)
			b.Done(ctx, t, err)
			t = Ticket{} // reported; abandon has nothing to do
			return out, err
		}
	}
}

// abandon records a call that ended without returning (a panic or
// runtime.Goexit) as a failure, so that a probe slot is never lost.
func (b *Breaker) abandon(ctx context.Context, t *Ticket) {
	if t.gen != 0 {
		b.Record(ctx, *t, Failure)
	}
}
