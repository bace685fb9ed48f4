package middleware

import (
	"context"
	"fmt"
	"slices"
)

// Stage is one typed step of work: it takes a context and an input and
// returns an output or an error. Any func with this shape is a Stage.
type Stage[In, Out any] func(ctx context.Context, in In) (Out, error)

// Middleware decorates a Stage with a concern (retry, breaker, ...) and
// returns a Stage of the same type. A Middleware is applied once, when a
// chain is built; the Stage it returns is what runs on every call.
type Middleware[In, Out any] func(next Stage[In, Out]) Stage[In, Out]

// Chain composes middlewares into one. The first middleware is the
// outermost: Chain(a, b, c)(s) is a(b(c(s))), so a call enters a, then b,
// then c, then s. Chain() is the identity.
//
// A nil middleware is a programmer error, most often a constructor's
// ignored error: Chain panics with "middleware: nil middleware", as
// net/http panics on a nil handler, rather than build a chain that
// silently lost its retry or its breaker, or one whose every call fails
// with an error that a retry would retry and a fallback would hide.
func Chain[In, Out any](mws ...Middleware[In, Out]) Middleware[In, Out] {
	checkNil(mws)
	mws = slices.Clone(mws) // the caller may reuse its slice
	return func(next Stage[In, Out]) Stage[In, Out] {
		return wrap(next, mws)
	}
}

// Apply decorates s with mws, the first being the outermost. It is
// Chain(mws...)(s). A nil s, a nil middleware, or a middleware that
// returns a nil stage is a programmer error, and Apply panics with a
// message that names it.
func Apply[In, Out any](s Stage[In, Out], mws ...Middleware[In, Out]) Stage[In, Out] {
	checkNil(mws)
	return wrap(s, mws)
}

// wrap applies mws (free of nils) around s, innermost last.
func wrap[In, Out any](s Stage[In, Out], mws []Middleware[In, Out]) Stage[In, Out] {
	if s == nil {
		panic("middleware: nil stage")
	}
	for i := len(mws) - 1; i >= 0; i-- {
		if s = mws[i](s); s == nil {
			panic(fmt.Sprintf("middleware: middleware %d of %d returned a nil stage", i+1, len(mws)))
		}
	}
	return s
}

func checkNil[In, Out any](mws []Middleware[In, Out]) {
	if i := slices.IndexFunc(mws, func(m Middleware[In, Out]) bool { return m == nil }); i >= 0 {
		panic(fmt.Sprintf("middleware: nil middleware (argument %d of %d; was a constructor's error ignored?)", i+1, len(mws)))
	}
}
