// Package throttle provides client-side adaptive throttling, as described
// in the Google SRE book's chapter "Handling Overload": a client that sees
// its downstream refusing work rejects a share of its own calls locally,
// before they cost the downstream anything.
//
// # Use
//
// Build one [Throttler] per downstream and wrap the calls to it:
//
//	th, err := throttle.New(throttle.Config{Name: "inventory"})
//	if err != nil { ... }                       // an invalid field: an error naming it
//	get := middleware.Apply(fetch, throttle.Middleware[Req, Resp](th))
//
// or, for work that is not a Stage, take a [Permit] with
// [Throttler.Acquire] and finish it with [Permit.Done]:
//
//	p, err := th.Acquire(ctx)
//	if err != nil {
//		return err // a *throttle.RejectedError, or ctx.Err()
//	}
//	err = call(ctx)
//	p.Done(err)
//
// # The rule
//
// Over a rolling window the throttler counts requests (calls its caller
// attempted, including the ones it rejected) and accepts (calls the
// downstream accepted), and rejects each new call with probability
//
//	max(0, (requests − K·accepts) / (requests + 1))
//
// capped at MaxProbability, and zero while the window holds fewer than
// MinRequests requests. In a steady overload the downstream therefore sees
// about K calls for each call it accepts; the rest are refused locally.
// The zero [Config] means K 2, a 10 s window of 10 buckets, MinRequests
// 10 and MaxProbability 0.9.
//
// Which results count as accepted is [Config].Accepted's decision. By
// default ([DefaultAccepted]) nil and errors that say the call must not be
// retried are accepted; retryable errors, timeouts and plain errors are
// not. A local
// rejection from an inner concern (Rejected() true) and context.Canceled
// count neither as requests nor as accepts.
//
// # Recovery
//
// Local rejections count as requests, as the SRE book wants, and that is
// what kept go-zero's breaker rejecting for minutes after its dependency
// recovered (zeromicro/go-zero#4101): after a long outage the pass rate is
// about 1/requests, and grows by about a factor of K per window. Here
// MaxProbability keeps the pass rate at least 1 − MaxProbability, so once
// the downstream accepts again the probability is zero within
//
//	ceil(log_K(1 / (1 − MaxProbability))) windows
//
// (4 windows, 40 s, with the defaults; 16 to 18 s measured).
// docs/throttle.md has the proof and TestGoZero4101 checks it.
//
// # Priorities
//
// With Config.Priorities on, the throttler reads each call's
// [priority.Level] and gives the rejections the formula asks for to the
// lowest levels first: sheddable calls are rejected entirely before any
// default call is, and default calls before any critical call. The total
// sent to the downstream is the same. Without priorities no call pays for
// a context lookup.
//
// # Errors
//
// A rejected call gets a [*RejectedError], which matches [ErrThrottled]
// and reports Rejected() true (an outer breaker ignores it), Retryable()
// false (retrying a throttled call at once defeats the throttle) and
// RetryAfter() one bucket of the window. The throttler builds one per
// percent of probability when it is made, so a rejection allocates
// nothing. An Acquire on a context that has already ended returns
// ctx.Err() unchanged and counts nothing.
//
// # Events and stats
//
// With Config.Observer set, each rejection is a [middleware.Rejected]
// event (Reason "throttle", Probability the call's rejection probability,
// Priority its level when priorities are on, Delay the RetryAfter), and
// throttling starting or stopping is one [middleware.StateChanged] event
// (From and To [StatePassing] and [StateThrottling], at most one per
// bucket), so logs show it once, not per call. [Throttler.Stats] and
// [Throttler.Probability] have no side effects. docs/throttle.md lists
// both.
//
// # Time
//
// The window is a ring of buckets that age out one at a time. Time is read
// when a call is counted (and, while throttling, when one is admitted);
// nothing runs in the background, and under
// testing/synctest the throttler follows the bubble's clock (build it
// inside the bubble).
//
// # Concurrency and cost
//
// A Throttler is safe for concurrent use. Admitting a call is one atomic
// load while nothing is being rejected (plus one context lookup with
// priorities on); finishing it reads the clock once and holds a mutex for
// a few additions (the window's totals are kept as it slides, not summed
// per call). While throttling, each admission also reads the clock and
// draws a random number from a lock-free source, and a rejection takes the
// mutex to count itself. Nothing allocates unless an Observer is set. A
// stage that panics is counted for nothing, and the panic goes on.
package throttle
