// Package otelbrace publishes the counters and gauges of Brace's concerns
// as OpenTelemetry metrics. It is the only Brace package that imports
// OpenTelemetry: programs that do not import it do not build it.
//
// Each concern counts through an opt-in Counter set in its Config
// (retry.Config.Counter, breaker.Config.Counter, ...). Hand the same
// Counter — and, for the concerns with gauges, the shared instance — to the
// matching Register function with an instance name:
//
//	var rc retry.Counter
//	mw, err := retry.New[Req, Resp](retry.Config{Counter: &rc})
//	...
//	reg, err := otelbrace.RegisterRetry(meter, "payments", &rc)
//	defer reg.Unregister()
//
// # Instruments
//
// Register functions create observable instruments and one callback that
// reads a Stats snapshot (and the gauges) when the SDK collects; nothing
// is added to the calls themselves beyond the Counter's atomic adds.
// Counters are cumulative and monotonic; gauges are read live. Every data
// point carries the attribute "name" ([NameKey]) with the instance name,
// so several instances share one set of instruments; some carry one more
// attribute ("outcome", "state", "to", "served"). The names and units are
// stable:
//
//	brace.retry.calls              counter {call}    name, outcome=success|failure
//	brace.retry.retries            counter {retry}   name
//	brace.retry.exhausted          counter {call}    name
//	brace.breaker.state            gauge   {state}   name, state=closed|open|half-open|forced-open|forced-closed (1 for the current state)
//	brace.breaker.results          counter {call}    name, outcome=success|failure|ignored
//	brace.breaker.rejections       counter {call}    name
//	brace.breaker.transitions      counter {change}  name, to=<state entered>
//	brace.backpressure.depth       gauge   {weight}  name
//	brace.backpressure.capacity    gauge   {weight}  name
//	brace.backpressure.queued      gauge   {call}    name
//	brace.backpressure.admitted    counter {call}    name
//	brace.backpressure.waited      counter {call}    name
//	brace.backpressure.shed        counter {call}    name
//	brace.backpressure.canceled    counter {call}    name
//	brace.dedup.calls              counter {call}    name, served=executed|joined|cached
//	brace.timeout.calls            counter {call}    name
//	brace.timeout.timeouts         counter {call}    name
//	brace.ratelimit.admitted       counter {call}    name
//	brace.ratelimit.limited        counter {call}    name
//	brace.adaptive.limit           gauge   {call}    name
//	brace.adaptive.inflight        gauge   {call}    name
//	brace.adaptive.admitted        counter {call}    name
//	brace.adaptive.rejected        counter {call}    name
//	brace.adaptive.limit_changes   counter {change}  name
//	brace.hedge.delay              gauge   s         name
//	brace.hedge.calls              counter {call}    name
//	brace.hedge.hedges             counter {hedge}   name
//	brace.hedge.wins               counter {call}    name
//	brace.hedge.refused            counter {hedge}   name
//	brace.fallback.calls           counter {call}    name
//	brace.fallback.fallbacks       counter {call}    name
//	brace.fallback.failures        counter {call}    name
//
// TestAllConcerns drives every concern and reads each of these back
// through the SDK's manual reader. docs/observability.md says what each
// count means and lists the log records and hooks beside them.
//
// # Errors and lifetime
//
// A nil meter, or a nil Counter where one is required, is an error naming
// the function; for concerns with gauges either the instance or the
// Counter may be nil, not both. Instrument and callback errors from the
// SDK are returned wrapped. Unregister the returned metric.Registration
// to stop publishing; the Counter keeps counting.
//
// # Concurrency and cost
//
// The callbacks only read atomics (and, for a breaker without a Store or
// an adaptive limiter, take their mutex once), so collection never blocks
// calls for long and calls never wait for collection. Register may be
// called from several goroutines; instruments of the same name are shared
// by the SDK.
package otelbrace
