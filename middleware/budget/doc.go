// Package budget provides a retry budget: a token bucket, shared by many
// callers, that caps extra attempts (retries, hedges) at a fraction of the
// calls made plus a small reserve per second, so that one outage cannot
// multiply the load on a downstream.
//
// # Use
//
// Build one [Budget] per downstream and give it to every middleware that
// sends extra attempts there, for example retry.Config.Budget or
// hedge.Config.Budget:
//
//	b, err := budget.New(budget.Config{Name: "payments", Ratio: 0.1})
//
// allows retries worth 10% of the calls of the last 10 s, plus 10 per
// second. This is the model of tower's and finagle's retry budgets.
//
// Each call records itself once with [Budget.Deposit]. Each extra attempt
// first takes a token with [Budget.Acquire], the permit form every
// admitting concern in Brace shares, and is not made when Acquire returns
// [ErrExhausted]:
//
//	b.Deposit()                       // the call's first attempt
//	...
//	p, err := b.Acquire(ctx)          // before each retry
//	if err != nil {
//		return err                // budget.ErrExhausted, or ctx.Err()
//	}
//	err = attempt(ctx)
//	p.Done(err)                       // gives nothing back; optional
//
// A deposit is not a permit: the first attempt of a call is never refused
// by a budget, so there is nothing to admit and nothing to finish. A token
// is spent when it is taken; [Permit.Done] only zeroes the permit.
//
// # Defaults and zero value
//
// A zero [Config] means Ratio 0.2, MinPerSecond 10, Window 10 s, no name and
// no observer. Use [None] to switch the ratio term or the reserve off. A
// zero Budget is not usable; build one with [New], which rejects invalid
// fields with an error naming the field.
//
// # Errors
//
// [ErrExhausted] is a sentinel whose text starts with "budget:". It has a
// method Rejected() reporting true (the attempt was refused locally and
// never reached the downstream, so a breaker ignores it) and a method
// Retryable() reporting false (retrying a refusal of the retry budget would
// defeat it). An Acquire on a context that has already ended returns
// ctx.Err() unchanged and takes nothing.
//
// # Events and stats
//
// With Config.Observer set, each refused Acquire is a [middleware.Rejected]
// event with Reason "budget" and Err [ErrExhausted], delivered after the
// budget's lock is released. [Budget.Stats] returns the refusals so far and
// the tokens available now; it has no side effects. docs/budget.md lists
// both.
//
// # Time
//
// The window is kept as ten buckets that age out one at a time, so the
// budget slides rather than resetting. Time is read from the time package
// when a method is called: nothing runs in the background, and under
// testing/synctest the budget follows the bubble's fake clock (build it
// inside the bubble).
//
// # A budget shared by a fleet
//
// With Config.Store set (redisstore.NewBudgetStore for Redis), every
// process's budget draws from one window of the whole fleet's calls and
// extra attempts, so that during an outage the fleet's retries stay within
// Ratio × the fleet's calls + MinPerSecond × Window; the reserve is then
// the fleet's, not each process's:
//
//	store, err := redisstore.NewBudgetStore(redisstore.BudgetStoreConfig{Client: rdb, Name: "payments"})
//	b, err := budget.New(budget.Config{Name: "payments", Ratio: 0.1, Store: store})
//
// A call that makes no extra attempt sends nothing: Deposit counts the
// call locally and returns. The deposits not yet sent travel in batches:
// with each Acquire (which needs the store anyway: one round trip that
// carries the batch and takes the token), and in a background flush that
// a Deposit starts when the batch's oldest deposit is FlushAfter old
// (Window/10 by default; at most one flush in flight per budget, bounded
// by the store's timeout; none started at construction; the Deposit never
// waits for it). A batch is counted from its oldest deposit's time, so
// batching never makes a call count for longer than it would locally; it
// can only delay a call's deposit reaching the fleet (by at most
// FlushAfter while calls keep coming), which errs toward fewer extra
// attempts.
//
// When the store fails (down, slow beyond its timeout, a corrupt value),
// Acquire decides from the local window, this process's own calls and
// extra attempts under its own Ratio and reserve, and reports a
// [middleware.StoreFailed] event; the batch of that operation is dropped,
// never sent twice. The local window is kept whether or not the store is
// used, so the fallback is exact for the process. See docs/budget.md,
// "Shared budget", for the protocol and the bounds.
//
// # Concurrency and cost
//
// A Budget is safe for concurrent use. Deposit and Acquire each read the
// clock once and hold a mutex briefly; the window's totals are kept as
// it slides, so neither sums its buckets, and a refusal is counted under
// the same lock (a refusal by a Store adds one atomic add). None of them
// allocates. With a Store, Deposit also adds to the batch
// under the same lock (and, once per FlushAfter, starts the flush
// goroutine); Acquire is one store operation.
package budget
