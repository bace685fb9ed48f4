// Package otelbrace records the events of Brace's concerns as
// OpenTelemetry metrics and span events. It is one [middleware.Observer]
// for every concern: give the same *[Observer] to each concern's
// Config.Observer, and every rejection, retry, timeout, state change, ...
// becomes a data point and an event on the caller's span. Two middlewares
// add what events cannot tell: [Measure] (call duration, attempts per
// call) and [Attempts] (attempt duration, a child span per attempt). It is
// the only Brace package that imports OpenTelemetry, and a module of its
// own, so programs that do not import it do not build it.
//
//	obs, err := otelbrace.New(otelbrace.Config{MeterProvider: mp, TracerProvider: tp}) // nil: the global ones
//	if err != nil { ... }
//	b, err := breaker.New(breaker.Config{Name: "payments", Observer: obs})
//	r, err := retry.New(retry.Config{Name: "payments", Observer: obs})
//	call := middleware.Apply(pay,
//		otelbrace.Measure[Req, Resp](obs, "pay"),  // outermost
//		retry.Middleware[Req, Resp](r),
//		otelbrace.Attempts[Req, Resp](obs, "pay"), // inside the retry
//		breaker.Middleware[Req, Resp](b))
//
// To log the events as well, combine observers:
// middleware.Observers(obs, middleware.Log(logger)).
//
// # Instruments
//
// The meter is named "github.com/brace-go/brace/middleware/otelbrace". The names, units and attributes are
// stable:
//
//	brace.events                counter    {event}  brace.concern, brace.name, brace.event, brace.reason, brace.state, error.type, brace.priority
//	brace.retry.delay           histogram  s        brace.concern, brace.name   (Retry: the backoff before the retry)
//	brace.queue.wait            histogram  s        brace.concern, brace.name   (Waited: the time spent queued)
//	brace.hedge.delay           histogram  s        brace.concern, brace.name   (Hedged: when the hedge started)
//	brace.state                 gauge      {state}  brace.concern, brace.name, brace.state
//	brace.limit                 gauge      {call}   brace.concern, brace.name
//	brace.throttle.probability  gauge      1        brace.concern, brace.name   (a throttler's rejection probability)
//
// and, recorded by the middlewares rather than from events:
//
//	brace.call.duration     histogram  s          brace.name, error.type  (Measure: each call, retries included)
//	brace.call.attempts     histogram  {attempt}  brace.name, error.type  (Measure: 1 + the call's Retry and Hedged events)
//	brace.attempt.duration  histogram  s          brace.name, error.type  (Attempts: each attempt)
//
// brace.events counts every event, whatever its kind: brace.event is the
// kind's name ("rejected", "retry", "gave-up", "timed-out",
// "state-changed", "joined", "waited", "limit-changed", "hedged",
// "fell-back", "store-failed"; "unknown" for a kind this version does not
// know), brace.concern and brace.name the concern and its Config.Name,
// brace.reason the event's Reason ("open", "shed", "attempts", ...),
// brace.state the state entered by a state change, and error.type the
// type of the event's error; on a rejection only, brace.priority is the
// refused call's priority.Level when it is not the default ("critical" or
// "sheddable": two values, so the series stay bounded). An attribute whose
// value would be empty is left out. So a dashboard reads rejections per concern as
// brace.events{brace.event="rejected"} by brace.concern, and breaker trips
// as brace.events{brace.event="state-changed", brace.state="open"}.
//
// error.type is never the error's message. It is "context.Canceled" or
// "context.DeadlineExceeded" for those errors; else the value of an
// ErrorType() string method of the error or of an error it wraps (give
// your errors one to name them); else, as semconv.ErrorType does, the
// type's package path and name after fmt.Errorf wrappers, or the type's
// literal for a pointer ("*retry.ExhaustedError", "*errors.errorString").
//
// The gauges are derived from events, with no call into any concern: for
// each (brace.concern, brace.name), brace.state is 1 for the state entered
// by the last StateChanged event and 0 for the other states seen, and
// brace.limit is the Limit of the last LimitChanged event.
// brace.throttle.probability is the Probability of a throttler's last
// Rejected or StateChanged event (a change back to not throttling sets 0;
// only instances of concern "throttle", or that report a probability, have
// it). An instance
// reports no gauge until its first such event (a breaker that never left
// closed has no brace.state), and instances that share a name share the
// gauges. Reading a live value (a breaker's State, a limiter's InFlight)
// is what the concerns' Stats methods are for.
//
// # Traces
//
// When tracing is on (see [Config.TracerProvider]), Observe adds each
// event to the span of its context, if that span is recording: a retry's
// events to the span of the call it retries, a breaker's rejection to the
// span of the call (or of the attempt, under [Attempts]) it refused. The
// event is named after its kind ("brace." and the kind's name in snake case: "brace.retry",
// "brace.rejected", "brace.state_changed", ...) and carries the
// attributes of the fields that are set:
//
//	brace.concern, brace.name          string   every event
//	brace.attempt                      int      Retry (the attempt that failed), GaveUp (attempts made), Hedged, Rejected of a hedge
//	brace.delay                        float s  Retry (the backoff before the next attempt), Hedged, GaveUp
//	brace.retry_after                  float s  Rejected: when capacity returns
//	brace.timeout                      float s  TimedOut: the limit that passed
//	brace.wait                         float s  Waited
//	brace.in_flight, brace.limit       int      Rejected, Waited, LimitChanged
//	brace.previous_state, brace.state  string   StateChanged (From, To)
//	brace.failures                     int      StateChanged (breaker)
//	brace.reason                       string   Rejected, GaveUp, StateChanged, Joined
//	brace.priority                     string   any event of a call whose priority is not the default
//	brace.probability                  float    Rejected, StateChanged of a throttler
//	error.type, error.message          string   any event with an error
//
// Durations are seconds as float64, as in the histograms. Unlike the
// metrics, a span event carries the error's message (error.message): a
// span belongs to one call, so its cardinality does not matter. Observe
// never sets a span's status: whether the call failed is the caller's to
// say. docs/tracing.md has a sample trace and advice on ordering.
//
// # Zero work when off
//
// With a nil provider in Config, the Observer uses the global one, and
// does no work for its signal until the program sets one
// (otel.SetTracerProvider, otel.SetMeterProvider); with a no-op provider
// (the noop packages), none ever. With neither signal on, Observe, Measure
// and Attempts read two atomic values and return (the stage called
// directly): no context lookup, no allocation.
//
// # Cardinality
//
// No metric attribute carries a key, an input or a message: the series are
// bounded by the concerns and names a program has, times the reasons,
// states and error types they report. Give instances fixed names, not
// names built per request. The Observer caches the attribute sets it has
// built (up to 1024 combinations, 256 error types, 1024 instances with
// gauges, 16 states each); past those bounds it still counts every event
// but allocates the attributes of an uncached combination per event, and
// stops tracking gauges of new instances.
//
// # Concurrency and cost
//
// An Observer is safe for concurrent use. Observe runs on the caller's
// goroutine, as every Observer does. With metrics on and tracing off, once
// a combination of attributes has been seen, Observe allocates nothing:
// it reads the cached attributes
// with an atomic load and a map lookup (two of each for an event with an
// error), without a lock, and adds to the SDK's instruments; a state or limit change also takes the Observer's
// mutex briefly. The gauges' callback takes the same mutex and reads only
// what Observe stored. A span event costs what the SDK charges for one
// (a few allocations: the attributes and the event), plus the error's
// Error method. Measure allocates one context per call when a signal is
// on; Attempts starts and ends one span per attempt when tracing is on.
// Observe calls no user code except an error's ErrorType, Unwrap and
// Error methods; a panic there is recovered by middleware.Emit like any
// observer's panic.
package otelbrace
