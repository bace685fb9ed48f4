// Package bracetest is a test kit for chains built with Brace: fake
// downstreams and fault injection, a recorder for the events of any
// concern, and chaos middleware for staging. docs/testing.md is the
// guide, and guide_test.go in this package is its worked example.
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
// recovers: FirstN(n, FailWith(err)) fails the first n calls). Put a fault innermost to
// fake a misbehaving downstream, or anywhere in a chain to see how the
// layers outside it react. A nil fault or delay func is a programmer
// error: FirstN and LatencyFunc panic when the chain is built.
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
// A [Recorder] is a middleware.Observer that records the events of every
// concern it is given to, in order, to compare with go-cmp. No adaptor
// per concern or per hook is needed: every concern reports through
// Config.Observer.
//
//	rec := new(bracetest.Recorder)
//	b, _ := breaker.New(breaker.Config{Name: "db", Observer: rec})
//	...
//	want := []middleware.Event{{Kind: middleware.StateChanged, Concern: "breaker", Name: "db", From: "closed", To: "open", Failures: 3}}
//	if diff := cmp.Diff(want, rec.Events(), cmpopts.EquateErrors()); diff != "" { ... }
//
// Log records are made from the same events by middleware.Log, so a
// recorder of events sees everything the log would; combine both with
// middleware.Observers(rec, middleware.Log(logger)) to see the records
// too.
//
// # Chaos
//
// A [Chaos], built with [NewChaos] from a [ChaosConfig], applies a fault to
// a random share of the calls (InjectionRate, required, in (0, 1]) while
// an Enabled func says so, like Polly's chaos strategies;
// [ChaosMiddleware] puts it into a chain with any fault. One Chaos serves
// stages of any types, which share its random source and its
// [Chaos.Stats]. Each injection is reported to ChaosConfig.Observer as a
// middleware.Rejected event with Concern "bracetest" and Reason "chaos",
// before the fault runs.
//
// # Time
//
// Everything here waits with the time package and the call's context, so
// under testing/synctest a Latency of an hour takes no real time, and a
// test can assert the exact fake time a chain took.
//
// # Concurrency and cost
//
// Every fault, Script, Chaos and Recorder is safe for concurrent use.
// FirstN picks exactly n calls however many goroutines call at once. The
// random source of Chaos and Uniform is lock-free; the same seed gives
// the same sequence of draws, so the number of calls a Chaos injects into
// among N is fixed by the seed (which calls they are depends on arrival
// order). A call that a Chaos does not pick costs a check of its context,
// one call of Enabled, one atomic add and no allocation
// (TestChaosAllocs). A Recorder takes a mutex per event and keeps every
// event until Reset: it is for tests, not for production.
package bracetest
