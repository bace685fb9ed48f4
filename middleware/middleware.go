package middleware

import (
	"context"
	"errors"
	"slices"
)

// Stage is one typed step of work: it takes a context and an input and
// returns an output or an error. Any func with this shape is a Stage.
type Stage[In, Out any] func(ctx context.Context, in In) (Out, error)

// Middleware decorates a Stage with a concern (retry, breaker, ...) and
// returns a Stage of the same type. A Middleware is applied once, when a
// chain is built; the Stage it returns is what runs on every call.
type Middleware[In, Out any] func(next Stage[In, Out]) Stage[In, Out]

// ErrNilStage is returned by every call of a Stage built from a nil func by
// [Apply], [Chain] or one of the Wrap adapters. Building never panics;
// calling such a stage reports the mistake instead.
var ErrNilStage = errors.New("middleware: nil stage")

// ErrNilMiddleware is returned by every call of a Stage that [Chain],
// [Apply] or a Wrap adapter built with a nil Middleware among its
// arguments. A nil middleware is most often the result of a constructor
// whose error was ignored, so it is reported rather than skipped: a chain
// that silently lost its retry or its breaker would be worse than one that
// fails. Use Chain() for "no middleware".
var ErrNilMiddleware = errors.New("middleware: nil middleware (was a constructor's error ignored?)")

// Chain composes middlewares into one. The first middleware is the
// outermost: Chain(a, b, c)(s) is a(b(c(s))), so a call enters a, then b,
// then c, then s. Chain() is the identity. If any middleware is nil, the
// stage Chain builds fails every call with [ErrNilMiddleware].
func Chain[In, Out any](mws ...Middleware[In, Out]) Middleware[In, Out] {
	if hasNil(mws) {
		return func(Stage[In, Out]) Stage[In, Out] { return fail[In, Out](ErrNilMiddleware) }
	}
	mws = slices.Clone(mws) // the caller may reuse its slice
	return func(next Stage[In, Out]) Stage[In, Out] {
		return wrap(next, mws)
	}
}

// Apply decorates s with mws, the first being the outermost. It is
// Chain(mws...)(s). A nil s becomes a Stage that returns [ErrNilStage]; a
// nil middleware, one that returns [ErrNilMiddleware].
func Apply[In, Out any](s Stage[In, Out], mws ...Middleware[In, Out]) Stage[In, Out] {
	if hasNil(mws) {
		return fail[In, Out](ErrNilMiddleware)
	}
	return wrap(s, mws)
}

// wrap applies mws (free of nils) around s, innermost last.
func wrap[In, Out any](s Stage[In, Out], mws []Middleware[In, Out]) Stage[In, Out] {
	s = orNil(s)
	for i := len(mws) - 1; i >= 0; i-- {
		s = orNil(mws[i](s))
	}
	return s
}

func hasNil[In, Out any](mws []Middleware[In, Out]) bool {
	return slices.ContainsFunc(mws, func(m Middleware[In, Out]) bool { return m == nil })
}

// orNil replaces a nil stage by one that fails with ErrNilStage.
func orNil[In, Out any](s Stage[In, Out]) Stage[In, Out] {
	if s != nil {
		return s
	}
	return fail[In, Out](ErrNilStage)
}

// fail returns a stage that fails every call with err.
func fail[In, Out any](err error) Stage[In, Out] {
	return func(context.Context, In) (Out, error) {
		var zero Out
		return zero, err
	}
}
