package fallback

import (
	"context"
	"sync/atomic"

	"github.com/brace-go/brace/middleware"
)

// Config configures a [Fallback]. The zero value is ready to use: every
// failure of the primary stage falls back, except one whose caller has
// gone (see When), and nothing is observed.
type Config struct {
	// When reports whether a failure of the primary stage should be
	// answered by the alternative. It sees only non-nil errors. Nil means
	// every error.
	//
	// Whatever When says, a failure is returned unchanged, without running
	// the alternative, once the caller's own context has ended: a caller
	// that has gone gets its context error, not a substitute value.
	When func(err error) bool

	// Name is the instance's name in its events ([middleware.Event].Name).
	Name string

	// Observer, if not nil, receives a [middleware.FellBack] event each
	// time the alternative is about to run, with Err set to the primary
	// error, on the caller's goroutine.
	Observer middleware.Observer
}

// Stats is a snapshot of what a [Fallback] has done, over every stage it
// guards.
type Stats struct {
	FellBack    uint64 // calls whose failure was handed to the alternative (FellBack events)
	AltFailures uint64 // of those, calls whose alternative failed too (a *Error was returned)
}

// Fallback answers a failed call with an alternative. Build it with [New]
// and apply it with [Middleware]; one Fallback may guard stages of
// different types, each with its own alternative. It is safe for
// concurrent use.
type Fallback struct {
	when func(error) bool
	name string
	obs  middleware.Observer

	fellBack, altFailures atomic.Uint64
}

// New returns a Fallback for cfg. Every Config is valid, so the error is
// always nil; it is there so that every concern is built the same way.
func New(cfg Config) (*Fallback, error) {
	return &Fallback{when: cfg.When, name: cfg.Name, obs: cfg.Observer}, nil
}

// Stats returns the counts so far. It has no side effects.
func (f *Fallback) Stats() Stats {
	return Stats{FellBack: f.fellBack.Load(), AltFailures: f.altFailures.Load()}
}

// Error is returned when the alternative fails too. Both failures stay
// reachable: errors.Is and errors.As look at the primary error first, then
// at the alternative's.
type Error struct {
	Primary  error // what the primary stage returned
	Fallback error // what the alternative returned
}

func (e *Error) Error() string {
	return "fallback: primary failed: " + e.Primary.Error() + "; fallback failed: " + e.Fallback.Error()
}

// Unwrap returns the primary and the alternative's error, in that order.
func (e *Error) Unwrap() []error { return []error{e.Primary, e.Fallback} }

// Middleware returns a middleware that runs the stage and, when it fails
// with an error that f's Config.When accepts and the caller's context has
// not ended, calls alt with the same context, the same input and the
// primary error. alt's answer is the call's answer; if alt fails too, the
// call returns a *[Error] holding both errors. A fixed value is the
// one-line alt
//
//	func(context.Context, In, error) (Out, error) { return v, nil }
//
// and another stage s (a replica, a cache) is
//
//	func(ctx context.Context, in In, _ error) (Out, error) { return s(ctx, in) }
//
// A call whose context has already ended returns ctx.Err() and runs
// nothing. A nil f or alt is a programmer error: Middleware panics.
func Middleware[In, Out any](f *Fallback, alt func(ctx context.Context, in In, err error) (Out, error)) middleware.Middleware[In, Out] {
	if f == nil {
		panic("fallback: nil *Fallback (was New's error ignored?)")
	}
	if alt == nil {
		panic("fallback: nil alt func")
	}
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		if next == nil {
			panic("middleware: nil stage")
		}
		return func(ctx context.Context, in In) (Out, error) {
			if err := ctx.Err(); err != nil {
				var zero Out
				return zero, err
			}
			out, err := next(ctx, in)
			if err == nil || ctx.Err() != nil || (f.when != nil && !f.when(err)) {
				return out, err
			}
			return fallBack(ctx, f, in, err, alt)
		}
	}
}

// fallBack is the failure path: count, observe, run alt. It is out of
// line so that the success path stays small.
func fallBack[In, Out any](ctx context.Context, f *Fallback, in In, err error, alt func(context.Context, In, error) (Out, error)) (Out, error) {
	f.fellBack.Add(1)
	if f.obs != nil {
		middleware.Emit(ctx, f.obs, middleware.Event{Kind: middleware.FellBack, Concern: "fallback", Name: f.name, Err: err})
	}
	out, aerr := alt(ctx, in, err)
	if aerr == nil {
		return out, nil
	}
	f.altFailures.Add(1)
	var zero Out
	return zero, &Error{Primary: err, Fallback: aerr}
}
