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

// Chain composes middlewares into one. The first middleware is the
// outermost: Chain(a, b, c)(s) is a(b(c(s))), so a call enters a, then b,
// then c, then s. Chain() is the identity. Nil middlewares are skipped.
func Chain[In, Out any](mws ...Middleware[In, Out]) Middleware[In, Out] {
	mws = slices.Clone(compact(mws)) // the caller may reuse its slice
	switch len(mws) {
	case 0:
		return identity[In, Out]
	case 1:
		return mws[0]
	}
	return func(next Stage[In, Out]) Stage[In, Out] {
		return wrap(next, mws)
	}
}

// Apply decorates s with mws, the first being the outermost. It is
// Chain(mws...)(s). A nil s becomes a Stage that returns [ErrNilStage].
func Apply[In, Out any](s Stage[In, Out], mws ...Middleware[In, Out]) Stage[In, Out] {
	return wrap(s, compact(mws))
}

// wrap applies mws (already free of nils) around s, innermost last.
func wrap[In, Out any](s Stage[In, Out], mws []Middleware[In, Out]) Stage[In, Out] {
	s = orNil(s)
	for i := len(mws) - 1; i >= 0; i-- {
		s = orNil(mws[i](s))
	}
	return s
}

func identity[In, Out any](next Stage[In, Out]) Stage[In, Out] { return orNil(next) }

// compact returns mws without nil entries. It copies only when it must, so
// the caller's slice is never modified.
func compact[In, Out any](mws []Middleware[In, Out]) []Middleware[In, Out] {
	for i, m := range mws {
		if m == nil {
			out := make([]Middleware[In, Out], 0, len(mws)-1)
			out = append(out, mws[:i]...)
			for _, m := range mws[i+1:] {
				if m != nil {
					out = append(out, m)
				}
			}
			return out
		}
	}
	return mws
}

// orNil replaces a nil stage by one that fails with ErrNilStage.
func orNil[In, Out any](s Stage[In, Out]) Stage[In, Out] {
	if s != nil {
		return s
	}
	return func(context.Context, In) (Out, error) {
		var zero Out
		return zero, ErrNilStage
	}
}
