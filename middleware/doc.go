// Package middleware defines Brace's core types: a typed [Stage] of work, the
// [Middleware] that decorates it and the helpers that compose them, and the
// one event stream every concern reports through ([Event], [Observer],
// [Log]).
//
// Every concern in Brace — retry, breaker, dedup, backpressure, timeout —
// has one shape: a value built once from a Config by its package's New,
// turned into a Middleware[In, Out] for any stage type by its package's
// Middleware adapter. The sub-packages hold the concerns; this package holds
// only what they share and has no dependency beyond the standard library.
//
// # Composing
//
// [Chain] composes middlewares into one, the first being the outermost, and
// [Apply] decorates a stage directly:
//
//	call := middleware.Apply(fetch, retry.Middleware[int, string](r), breaker.Middleware[int, string](b))
//
// runs the retry around the breaker around fetch. Chain() is the identity.
// Package [github.com/brace-go/brace/middleware/stack] composes the usual
// concerns in the recommended order in one call, with the types inferred.
//
// # Programmer errors
//
// A nil stage, a nil middleware (most often a constructor's ignored error)
// or a middleware that returns a nil stage is a programmer error, not a
// failure: Chain and Apply panic when the chain is built, with a message
// naming the mistake ("middleware: nil middleware (argument 2 of 3; ...)"),
// as net/http panics on a nil handler. Such a mistake therefore never
// reaches a call, where a retry would retry it and a fallback hide it.
//
// # Decorating plain funcs
//
// [WrapFunc] and [WrapErr] decorate funcs that take a context and hand them
// back in their own shape; the func gets the context the middlewares pass
// down, so a deadline set by one of them bounds it. There is no adapter for
// a func without a context: it could not be bounded or abandoned. For HTTP,
// use package httpx, never an adapter around (*http.Client).Do.
//
// # Events
//
// Each concern's Config has one observation field, Observer, which receives
// typed [Event]s with the call's context. [Emit] delivers them, recovering a
// panicking observer; [Observers] fans out to several; [Log] turns events
// into log/slog records, the one place where message and attribute names
// are defined. docs/observability.md lists every event.
//
// # Panics
//
// A panic in a stage propagates to the caller, as it would for any Go call.
// [Recover] turns it into a *[PanicError] that carries the value and the
// stack; where Recover sits decides who sees the panic as an error.
//
// # Cost
//
// Composition happens once, when the chain is built. Calling a chained
// stage costs one indirect call per middleware and allocates nothing
// (TestAllocs); emitting an event to an observer allocates nothing
// (TestEmitAllocs), and a call that succeeds untouched emits none.
//
// # Concurrency
//
// Stages and middlewares are plain funcs; what Chain and Apply return is
// immutable and safe for concurrent use whenever the stages and middlewares
// it was built from are. Observers must be safe for concurrent use.
package middleware
