// Package fallback replaces a failed call's error by a substitute result:
// a fixed value, the result of another stage with the same signature, or a
// value computed from the error.
//
//	mw := fallback.Value[string, Price](Price{}, fallback.Config{
//		When: func(err error) bool { return !errors.Is(err, ErrNotFound) },
//	})
//	getPrice = middleware.Apply(getPrice, mw)
//
// # Constructors
//
// [Value] answers a fixed value. [Stage] calls another stage with the same
// context and input (a secondary service, a cache). [Func] is the same with
// the primary error passed in. A nil fallback stage or func does not panic:
// it fails with [middleware.ErrNilStage], like nil stages everywhere in
// Brace.
//
// # Which failures fall back
//
// [Config.When] classifies the primary error; nil means every error. One
// rule overrides it: when the caller's own context has ended, the primary
// error comes back unchanged and the fallback is not run, because nobody is
// waiting for a substitute and the caller must get its context error. A
// timeout set by an inner Timeout middleware is an ordinary failure and does
// fall back.
//
// # When the fallback fails
//
// The call returns a *[Error] that holds both failures; its Unwrap returns
// the primary error and then the fallback's, so errors.Is and errors.As
// find either. A panic in the fallback propagates like any panic; put
// [middleware.Recover] around it if needed.
//
// # Events and counting
//
// OnFallback is called with the primary error before the fallback runs. A
// Logger receives "fallback: used" (warn, "err") and "fallback: failed"
// (error, "err", "primary"), with "name" when Config.Name is set (all of
// Brace's events are listed in docs/observability.md). A [Counter] set as
// Config.Counter counts calls, fallbacks and failed fallbacks;
// [Counter.Stats] returns a snapshot, and package otelbrace publishes it
// as OpenTelemetry metrics.
//
// # Defaults and zero value
//
// The zero [Config] falls back on every error, logs nothing and calls no
// hook. There is nothing to validate, so the constructors return no error.
//
// # Concurrency
//
// The middleware keeps no state of its own; it is safe for concurrent use
// whenever the stages, the fallback and the hooks are.
//
// # Cost
//
// Measured on a 2-core x86-64 VM (go test -bench . -benchmem): a successful
// call costs about 1 ns over the direct call (2.9 ns against 1.7 ns) and
// allocates nothing; a call that falls back to a [Value] takes about 6 ns and
// also allocates nothing. Only a failing fallback allocates: one 32-byte
// *Error (see BenchmarkFallback and TestAllocs). A Config.Counter adds
// one atomic add per call and no allocation: a success then costs about
// 10 ns against 3.5 ns without (BenchmarkFallbackCounter).
package fallback
