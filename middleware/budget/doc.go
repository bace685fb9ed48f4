// Package budget provides a retry budget: a token bucket, shared by many
// callers, that caps extra attempts (retries, hedges) at a fraction of the
// calls made plus a small reserve per second, so that one outage cannot
// multiply the load on a downstream.
//
// # Use
//
// Build one [Budget] per downstream and give it to every middleware that
// sends extra attempts there, for example retry.Config.Budget. Each call
// deposits once ([Budget.Deposit]); each extra attempt withdraws once
// ([Budget.Withdraw]) and is not made when the withdrawal fails:
//
//	b, err := budget.New(budget.Config{Ratio: 0.1})
//
// allows retries worth 10% of the calls of the last 10 s, plus 10 per second.
// This is the model of tower's and finagle's retry budgets.
//
// # Defaults and zero value
//
// A zero [Config] means Ratio 0.2, MinPerSecond 10, Window 10 s. Use [None]
// to switch the ratio term or the reserve off. A zero Budget is not usable;
// build one with [New], which rejects invalid fields with an error naming
// the field.
//
// # Time
//
// The window is kept as ten buckets that age out one at a time, so the
// budget slides rather than resetting. Time is read from the time package
// when a method is called: nothing runs in the background, and under
// testing/synctest the budget follows the bubble's fake clock (build it
// inside the bubble).
//
// # Concurrency and cost
//
// A Budget is safe for concurrent use. Each method reads the clock once and
// holds a mutex briefly; none allocates (TestAllocs). Measured on the project
// machine (2 cores, uncontended): Deposit 39 ns against 33 ns for a bare
// clock read plus lock (BenchmarkMutex), Deposit+Withdraw 81 ns.
package budget
