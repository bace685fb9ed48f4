// Package adaptive is a concurrency limit that finds itself: it admits
// calls while fewer than the limit are in flight, sheds the rest at once
// with [ErrLimitExceeded], and moves the limit with the latency it
// observes, so that it settles near what the downstream can serve without
// queueing.
//
//	l, err := adaptive.New(adaptive.Config{Name: "search", Min: 5, Max: 500, Observer: obs})
//	...
//	call := middleware.Apply(call, adaptive.Middleware[Req, Resp](l))
//
// Work that is not a stage takes a [Permit] with [Limiter.Acquire] and
// finishes it with [Permit.Done], passing the work's error:
//
//	p, err := l.Acquire(ctx)
//	if err != nil {
//		return err // adaptive.ErrLimitExceeded, or ctx.Err()
//	}
//	err = work()
//	p.Done(err) // only a success is a latency sample
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
// only if the window used at least half of it (80% with priorities, see
// below), so an idle service does not inflate its limit; above 6·log10(L) it shrinks by as much, and far above
// it drops straight to the limit that leaves that many queued. The limit
// stays within [Min, Max].
//
// So that B can rise when a downstream becomes slower for good, the
// limiter probes: after the first 5 windows and then every 50, it admits
// only half of the calls in flight for one window and takes the mean latency
// of the calls admitted during it as the new B (BBR's ProbeRTT).
// Stats().Limit shows the halved limit while a probe runs. A probe that is
// due waits for a window that saw calls queue (by the B in force): a
// window at B says B is not too low, and a probe then would shed calls
// for nothing.
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
// # Priorities
//
// With Config.Priorities on, each call's level is read from its context
// with [priority.From], and a call of level l is admitted only while fewer
// calls than Config.Shares.Limit(l, limit) are in flight, calls of every
// level counted: by default a sheddable call within half the limit, a
// default one within 90%, a critical one within all of it. The decision
// is the one made without priorities, under the same lock, against
// another number. Under overload sheddable calls are refused first, and
// critical calls use what the others leave. With priorities the limit
// grows only after a window that used 80% of it, not half: a limit that
// floated to twice the calls in flight would let sheddable calls, within
// half of it, double the load and push the downstream into the overload
// whose cut falls on every level. With Priorities off (the default) no
// level is read.
//
// The limiter never queues, so it has no queue discipline; put a
// backpressure.Limiter in Wait mode in front of it for one.
//
// # Defaults and zero value
//
// The zero [Config] means Min 1, Max 1000, Initial 20 and no observer.
// [New] rejects invalid fields with an error naming them, for example
// "adaptive: Max must be at least Min (10), got 5". A zero Limiter is not
// usable.
//
// # Observing
//
// Config.Observer receives a [middleware.LimitChanged] event (Limit set)
// each time the enforced limit changes, and a [middleware.Rejected] event
// (Reason "limit", InFlight, Limit, Priority) for each refused call;
// docs/adaptive.md lists their fields. No observer is called while the
// limiter's lock is held: an observer may call back into the Limiter. The
// limit changes are reported in order by one goroutine at a time, so the
// last event carries the limit in force; changes made while one is being
// reported may arrive as one event. [Limiter.Stats] returns the calls in
// flight, the limit, and the counts of rejections and reported limit
// changes.
//
// # Errors
//
// [ErrLimitExceeded] is a plain sentinel, so a rejection allocates nothing.
// It has a method Rejected() bool that reports true (a circuit breaker
// does not count it) and a method Retryable() bool that reports false
// (retrying at once defeats the limit).
//
// # Concurrency
//
// A Limiter is safe for concurrent use and may guard stages of any types.
//
// # Cost
//
// An admitted call takes a mutex twice (once to admit, once to finish)
// and reads the clock twice, and allocates nothing (with Priorities on,
// one context lookup more); a rejection takes the
// mutex once and allocates nothing, so shedding stays cheap under
// overload. Measured numbers are in docs/performance.md.
package adaptive
