package breaker

import (
	"context"

	"github.com/brace-go/brace/middleware"
)

// Middleware returns a middleware that guards stages with b, built on
// [Breaker.Acquire] and [Permit.Done]: a call is made only when b admits
// it, and its result is reported to b. A rejected call returns b's
// [*OpenError] without calling the stage. A stage that panics (or calls
// runtime.Goexit) is recorded as a failure and the panic goes on.
//
// One breaker may guard stages of different types: call Middleware once
// per type with the same b. A nil b panics: it is a programmer error, most
// often New's ignored error.
func Middleware[In, Out any](b *Breaker) middleware.Middleware[In, Out] {
	if b == nil {
		panic("breaker: nil *Breaker (was New's error ignored?)")
	}
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		if next == nil {
			panic("breaker: nil stage")
		}
		return func(ctx context.Context, in In) (Out, error) {
			if err := ctx.Err(); err != nil {
				var zero Out
				return zero, err
			}
			return run(ctx, b, next, in)
		}
	}
}

// run guards one call with b, whose ctx has not ended: the body of the
// stages of [Middleware] and [Keyed].
func run[In, Out any](ctx context.Context, b *Breaker, next middleware.Stage[In, Out], in In) (Out, error) {
	v := b.view.Load()
	if v.fast != 0 {
		// Closed, local, default classifier, no slow calls: what
		// Acquire and Done do, without a Permit. A success in
		// consecutive mode with no failure streak to end changes
		// nothing; one in rate mode is counted in its bucket.
		// Anything else goes the general way.
		gen, done := v.gen, false
		defer func() {
			if !done { // a panic or Goexit
				b.abandonFast(ctx, gen)
			}
		}()
		out, err := next(ctx, in)
		done = true
		if err != nil || (v.fast == fastConsecutive && b.fails.Load() != 0) ||
			(v.fast == fastRate && !b.addSuccessIn(v, b.bucketNow())) {
			b.resultFast(ctx, gen, err)
		}
		return out, err
	}
	if v.state == Open && !v.near.Load() {
		// rejectOpen, inline.
		b.rejected.add()
		if b.obs != nil {
			b.emitOpen(ctx, v)
		}
		var zero Out
		return zero, v.err
	}
	return guard(ctx, b, v, next, in)
}

// guard is the general path of Middleware: Acquire, the stage, Done.
func guard[In, Out any](ctx context.Context, b *Breaker, v *view, next middleware.Stage[In, Out], in In) (Out, error) {
	var p Permit
	var err error
	if b.sh != nil {
		err = b.sh.acquire(ctx, &p)
	} else {
		err = b.acquireLocal(ctx, v, &p)
	}
	if err != nil {
		var zero Out
		return zero, err
	}
	defer p.abandon() // a panic or Goexit: Done was not reached
	out, err := next(ctx, in)
	p.Done(err)
	return out, err
}
