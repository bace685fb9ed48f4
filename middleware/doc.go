// Package middleware defines Brace's core types: a typed [Stage] of work and
// the [Middleware] that decorates it, plus the helpers that compose them.
//
// Every concern in Brace — retry, breaker, dedup, backpressure, timeout — is
// a Middleware[In, Out] built once from a Config and applied to any number
// of stages. The sub-packages hold the concerns; this package holds only the
// shapes they share and has no dependency beyond the standard library.
//
// # Composing
//
// [Chain] composes middlewares into one, the first being the outermost, and
// [Apply] decorates a stage directly:
//
//	call := middleware.Apply(fetch, retryMW, breakerMW, timeoutMW)
//
// runs retry around breaker around timeout around fetch. Chain() is the
// identity. Nothing panics on bad input: a nil stage becomes one that
// returns [ErrNilStage] when called, and a nil middleware (most often a
// constructor's ignored error) one that returns [ErrNilMiddleware].
//
// # Decorating plain funcs
//
// [Wrap], [WrapFunc], [WrapCtx], [WrapCtxErr] and [WrapErr] decorate funcs of
// other shapes and hand them back in their own shape, so a method value such
// as client.Do can be decorated without a hand-written closure. Inputs and
// outputs the func does not have are struct{}.
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
// (see BenchmarkChain and TestAllocs).
//
// # Concurrency
//
// Stages and middlewares are plain funcs; what Chain and Apply return is
// immutable and safe for concurrent use whenever the stages and middlewares
// it was built from are.
package middleware
