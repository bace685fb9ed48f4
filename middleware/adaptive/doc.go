// Package adaptive is a concurrency limit that finds itself: it admits
// calls while fewer than Limit() are in flight, sheds the rest at once with
// [ErrLimitExceeded], and moves the limit with the latency it observes, so
// that it settles near what the downstream can serve without queueing.
//
//	l, err := adaptive.New(adaptive.Config{Min: 5, Max: 500})
//	...
//	call := middleware.Apply(call, adaptive.Middleware[Req, Resp](l))
//
// Backpressure needs a capacity chosen in advance; the right number moves
// with the downstream's health, its other clients and its deployments. An
// adaptive limit measures it instead.
//
// # Algorithm
//
// TCP Vegas, as in Netflix's concurrency-limits. Latencies are averaged
// over windows of max(10, limit) successful calls. With the no-load
// latency B (the lowest window mean seen) and the window's mean M, about
// N·(1 − B/M) of the N calls in flight are queued rather than served. Under
// 3·log10(L) queued calls the limit L grows by log10(L) (at least 1), but
// only if the window used at least half of it, so an idle service does not
// inflate its limit; above 6·log10(L) it shrinks by as much, and far above
// it drops straight to the limit that leaves that many queued. The limit
// stays within [Min, Max].
//
// So that B can rise when a downstream becomes slower for good, the
// limiter probes: after the first 5 windows and then every 50, it admits
// only half of the calls in flight for one window and takes the mean latency
// of the calls admitted during it as the new B (BBR's ProbeRTT). Limit()
// shows the halved limit while a probe runs.
//
// Only successful calls are samples: a failure, a cancellation or a panic
// gives its slot back but says nothing about the latency under load (a
// fast failure would otherwise look like spare capacity).
//
// TestConvergence drives a simulated downstream whose latency grows by 2ms
// per call beyond its capacity: the limit settles within about 10–40%
// above the capacity, from a start far below or far above it, and follows
// the capacity when it falls or rises and the no-load latency when it
// quadruples.
//
// # Defaults and zero value
//
// The zero [Config] means Min 1, Max 1000, Initial 20. [New] rejects
// invalid fields, for example "adaptive: Max must be at least Min (10),
// got 5". A zero Limiter is not usable.
//
// # Observability
//
// OnLimitChange is called with the old and new enforced limit, and
// OnReject with the limit at each rejection, both outside the lock. A
// Logger receives a Debug record "adaptive: limit changed" with "from",
// "to", "latency" and, when Config.Name is set, "name" at each change (all
// of Brace's events are listed in docs/observability.md). A [Counter] set
// as Config.Counter counts admitted and rejected calls and limit changes;
// [Counter.Stats] returns a snapshot, and package otelbrace publishes it
// with the gauges [Limiter.Limit] and [Limiter.Inflight] as OpenTelemetry
// metrics.
//
// # Concurrency
//
// A Limiter is safe for concurrent use and may guard stages of any types.
// [Limiter.Acquire] and [Permit.Release] are the two-step form for code that
// is not a stage; a Permit must be released exactly once.
//
// # Cost
//
// Measured on a 2-core x86-64 VM (go test -bench . -benchmem): an admitted
// call costs about 100 ns against 87 ns for its primitives alone (two
// mutex sections and a clock read around the call, BenchmarkMutexCounter;
// a direct call is 1.7 ns) and allocates nothing. A rejection costs about
// 13 ns and allocates nothing, so shedding stays cheap under overload.
// A Counter adds one atomic add per call and no allocation: about 96 ns
// against 91 ns without, same run (BenchmarkMiddlewareCounter).
package adaptive
