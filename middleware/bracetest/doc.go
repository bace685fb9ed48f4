// Package bracetest is a test kit for chains built with Brace: fake
// downstreams and fault injection, a recorder for hooks and log records,
// and chaos middleware for staging. docs/testing.md is the guide, and
// guide_test.go in this package is its worked example.
//
// # Faults
//
// A fault is an ordinary middleware that misbehaves on every call it sees:
//
//	FailWith(err)     fail without calling the stage
//	Outcome(out, err) answer out, err without calling the stage
//	Latency(d)        wait d, then call the stage (ctx.Err() if the context ends first)
//	LatencyFunc(f)    the same with a delay drawn per call, e.g. from Uniform(lo, hi, seed)
//	PanicWith(v)      panic with v
//	Hang()            block until the context ends, then return ctx.Err()
//
// [FirstN] applies a fault to the first n calls only (a downstream that
// recovers; [FailFirst] is FirstN with FailWith), and [Chaos] to a seeded
// random share of the calls while an Enabled func says so, like Polly's
// chaos strategies. Put a fault innermost to fake a misbehaving
// downstream, or anywhere in a chain to see how the layers outside it
// react. Chaos validates its config: InjectionRate is required and must be
// in (0, 1].
//
// # Scripts
//
// A [Script] is a fake stage that plays back one [Step] per call —
// a result, an error, a delay, a panic or a hang — records the inputs, and
// fails a call beyond the last step with [ErrScriptEnded], so an
// unexpected extra attempt does not pass unnoticed.
//
// # Recording events
//
// A [Recorder] captures hook calls (typed helpers such as
// [Recorder.OnRetry], or [Hook1], [Hook2], [Hook3] for any hook) and log
// records ([Recorder.Logger]) as [Event] values, in order, to compare with
// go-cmp:
//
//	rec := bracetest.NewRecorder()
//	mw, _ := retry.New[In, Out](retry.Config{OnRetry: rec.OnRetry(), Logger: rec.Logger()})
//	...
//	if diff := cmp.Diff(want, rec.Events(), cmpopts.EquateErrors()); diff != "" { ... }
//
// Log attributes are kept as slog.Value.Any returns them (an int is an
// int64), groups flattened to "group.key", times dropped.
//
// # Time
//
// Everything here waits with the time package and the call's context, so
// under testing/synctest a Latency of an hour takes no real time, and a
// test can assert the exact fake time a chain took.
//
// # Concurrency and cost
//
// Every fault, Script, Chaos middleware and Recorder is safe for
// concurrent use. FirstN picks exactly n calls however many goroutines
// call at once. The random source of Chaos and Uniform is lock-free; the
// same seed gives the same sequence of draws, so the number of calls
// Chaos injects into among N is fixed by the seed (which calls they are
// depends on arrival order). A call that Chaos does not pick costs one
// call of Enabled, one atomic add and no allocation (TestChaosOffAllocs).
package bracetest
