// Package fallback answers a failed call with an alternative: a fixed
// value, another stage with the same signature (a replica, a cache), or a
// value computed from the error.
//
//	f, err := fallback.New(fallback.Config{
//		Name: "prices",
//		When: func(err error) bool { return !errors.Is(err, ErrNotFound) },
//	})
//	...
//	getPrice = middleware.Apply(getPrice, fallback.Middleware(f,
//		func(context.Context, string, error) (Price, error) { return Price{}, nil }))
//
// # One Fallback, one adapter
//
// [New] builds a non-generic [*Fallback] from a [Config]: which failures
// fall back (When), its Name and its Observer. [Middleware] takes the
// alternative, typed for the stage it guards, so one Fallback may guard
// stages of different types, and its [Stats] add up over all of them. The
// alternative gets the call's context, its input and the primary error. A
// nil *Fallback or a nil alternative is a programmer error: Middleware
// panics when the chain is built.
//
// # Which failures fall back
//
// [Config.When] classifies the primary error; nil means every error. One
// rule overrides it: when the caller's own context has ended, the primary
// error comes back unchanged and the alternative is not run, because
// nobody is waiting for a substitute and the caller must get its context
// error. A timeout set by an inner timeout middleware is an ordinary
// failure and does fall back. A call whose context has ended before it
// starts returns ctx.Err() and runs nothing.
//
// # When the alternative fails
//
// The call returns a *[Error] that holds both failures; its Unwrap returns
// the primary error and then the alternative's, so errors.Is and errors.As
// find either. A panic in the alternative propagates like any panic; put
// [middleware.Recover] around it if needed.
//
// # Events and Stats
//
// Config.Observer receives a [middleware.FellBack] event, with Err set to
// the primary error, each time the alternative is about to run, on the
// caller's goroutine. [Fallback.Stats] counts those calls (FellBack) and
// those whose alternative failed too (AltFailures); it is pure. A call
// that succeeds is not counted.
//
// # Defaults and zero value
//
// The zero [Config] falls back on every error (except a gone caller's) and
// observes nothing. There is nothing to validate: New's error is always
// nil, and is there so that every concern is built the same way.
//
// # Concurrency
//
// A Fallback is safe for concurrent use; it takes no lock. The alternative
// and the observer run on the caller's goroutine.
//
// # Cost
//
// A successful call costs two reads of the context's error around the
// stage, touches no shared counter and allocates nothing. A call
// that falls back adds one atomic add and the alternative, and allocates
// nothing unless the alternative fails too, which costs one *Error.
package fallback
