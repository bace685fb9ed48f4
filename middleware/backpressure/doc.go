// Package backpressure bounds the work in flight and sheds or queues the
// rest, so that an overloaded dependency fails fast instead of slowly.
//
// A [Limiter] is shared, non-generic state: create it once with [New] for
// the resource it protects, and decorate stages of any types with
// [Middleware] (each call weighs 1) or [Weighted] (each call weighs what a
// func of its input says):
//
//	db, err := backpressure.New(backpressure.Config{Name: "db", Capacity: 32, SoftLimit: 24, Observer: obs})
//	...
//	query := middleware.Apply(rawQuery, backpressure.Middleware[Query, Rows](db))
//	insert := middleware.Apply(rawInsert, backpressure.Weighted[[]Row, int](db, batchSize))
//
// Work that is not a stage takes a [Permit] with [Limiter.Acquire] (or
// [Limiter.AcquireN] for a weight) and finishes it with [Permit.Done]:
//
//	p, err := db.Acquire(ctx)
//	if err != nil {
//		return err // backpressure.ErrShed, or ctx.Err()
//	}
//	defer p.Done(nil)
//
// # Admission
//
// A call is admitted while the weight in flight plus its own weight stays
// within Config.Capacity, and its weight goes back when the stage returns
// — exactly once, also when the stage panics. What happens at capacity
// depends on Config.Mode:
//
//   - [Shed] (the default) fails the call at once with [ErrShed].
//   - [Wait] queues the call until a slot frees, for at most MaxWait and
//     behind at most MaxQueue others, and then sheds it with [ErrShed].
//
// The queue is first in, first out by default (see Queue disciplines):
// while a call waits, a new call of its level queues behind it even if it
// would fit, so a heavy call is never starved by a stream of light ones
// (the rule of golang.org/x/sync/semaphore). A caller
// whose context ends while it waits returns ctx.Err() and leaves the queue,
// letting the calls behind it in when they fit. A caller whose context has
// already ended is never admitted, even with capacity free. A weight below
// 1 or above the capacity fails at once with a *[WeightError]: such a call
// could never be admitted.
//
// # Priorities
//
// With Config.Priorities on, each call's level is read from its context
// with [priority.From], and a call of level l is admitted only while the
// weight in flight — of every level, its own included — stays within
// Config.Shares.Limit(l, Capacity): by default half the capacity for a
// sheddable call, 90% for a default one, all of it for a critical one.
// Under overload sheddable calls are shed first, and critical calls use
// what the others leave. The level only picks the limit: the admission is
// the same single atomic step, so no interleaving of levels lets the
// total exceed the capacity. In Wait mode waiters are served by level,
// highest first, each within its own level's share, and a full queue
// makes room for a call by shedding the oldest waiter of a lower level.
// With Priorities off (the default) no level is read and every call may
// fill the whole capacity.
//
// # Queue disciplines
//
// Config.Queue orders the waiters of one level in Wait mode: [FIFO] (the
// default); [LIFO], adaptive LIFO, which serves the newest waiter once the
// queue has been non-empty for longer than Config.Interval; or [CoDel],
// which lets a call queued while the queue has stood that long wait only
// Config.Target, any other only Interval, and then drops it with
// [ErrShed] (a Rejected event with Reason "codel"). Both are from
// Facebook's "Fail at Scale" (ACM Queue, 2015), with its defaults of 5ms
// and 100ms: under standing overload a FIFO queue serves the calls that
// waited longest, whose callers have most likely gone.
//
// # Soft limit
//
// Config.SoftLimit is a weight in flight, below the capacity, at which the
// limiter still admits but changes state: from [StateNormal] to
// [StateOverSoftLimit] when the weight in flight rises to the soft limit,
// and back when it falls below. Each change is one
// [middleware.StateChanged] event, not one event per call above the line.
//
// # Observing
//
// Config.Observer receives [middleware.Rejected] events (Reason "shed",
// "codel" or "weight", with the call's Priority), [middleware.Waited]
// events for calls admitted after queueing,
// and the soft limit's StateChanged events; docs/backpressure.md lists
// their fields. [Limiter.Stats] returns the weight in flight, the queue
// length, the capacity and the counts of rejected and waited calls.
// No observer is called while a lock is held, nor between an admission and
// the code that guarantees its release: an observer that panics or calls
// back into the Limiter cannot lose a slot or deadlock it.
//
// # Defaults and the zero value
//
// Capacity, between 1 and [MaxCapacity], has no default: only the caller
// knows what the protected resource can take, and New returns an error
// naming it when it is missing. Every other field's zero value is its
// default: Shed mode, no soft limit, no priorities, FIFO, no observer. In
// Wait mode a zero MaxWait means a call waits as long as its context
// allows, a zero MaxQueue means the capacity, and zero Target and
// Interval mean [DefaultTarget] and [DefaultInterval]. Invalid values are rejected by New with an
// error naming the field. The zero Limiter is not usable; use New.
//
// # Errors
//
// [ErrShed] is a plain sentinel, so a shed call allocates nothing. It and
// *[WeightError] have a method Rejected() bool that reports true (the call
// never reached the downstream, so a circuit breaker does not count it)
// and a method Retryable() bool that reports false (retrying a shed at once
// adds load where there is too much already), so the breaker and retry
// packages classify them without importing this one.
//
// # Concurrency
//
// A Limiter is safe for concurrent use.
//
// # Cost
//
// The Limiter is a weighted semaphore with the semantics of
// golang.org/x/sync/semaphore, on one word that packs the weight in flight
// with the number of waiters. A call of weight 1 with no soft limit is
// admitted by one atomic load and one atomic add, which never retries, so
// that two CPUs do not make each other fail as they would with a
// compare-and-swap; a heavier call, or one with a soft limit, by a
// compare-and-swap. Release is one atomic add. The uncontended path takes
// no lock and allocates nothing, and Stats costs nothing on the call path.
// A shed call allocates nothing, only reads the word, and adds one atomic
// add to count it. With Priorities on, a call adds one context lookup,
// and nothing else; off, nothing reads the context. A queued call
// allocates its place in the queue and, with MaxWait or CoDel, a timer. Measured numbers are in
// docs/performance.md.
package backpressure
