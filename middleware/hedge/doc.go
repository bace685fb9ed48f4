// Package hedge cuts tail latency by sending a second copy of a slow call:
// if no attempt has succeeded after a delay, another starts, and the first
// success wins.
//
//	h, err := hedge.New(hedge.Config{Name: "users", Budget: retryBudget}) // p95 delay, 1 hedge
//	if err != nil { ... }
//	get := middleware.Apply(get, hedge.Middleware[Key, Value](h))
//
// Only idempotent calls may be hedged: the downstream may see every
// attempt.
//
// # Delay
//
// By default the delay is the 95th percentile ([Config.Percentile]) of the
// latencies of the last 200 successful attempts ([Config.Samples]), kept in
// a ring buffer and re-sorted every 10 samples; until 20 are known it is
// [Config.Delay] (100ms by default). Percentile: [Fixed] uses Delay always.
// Up to [Config.MaxHedges] hedges (default 1) start one delay apart.
// [Hedger.Delay] returns the delay in force.
//
// # Budget
//
// Hedges draw from a [budget.Budget], the same kind as Retry's: each call
// deposits once ([budget.Budget.Deposit]), each hedge takes a token
// ([budget.Budget.Acquire]), and a hedge the budget refuses is not sent;
// the call then sends no further hedges and waits for the attempts it has.
// In an outage where every call is slow, hedging therefore adds at most
// the budget's ratio (20% by default, plus a small reserve) to the load
// instead of doubling it. Give Hedge the budget your Retry middlewares for
// the same downstream use; a nil Budget means a private one with the
// budget package's defaults. When Retry and Hedge wrap the same calls, both
// deposit per call, so the effective ratio is per attempt Retry makes.
//
// # Outcome
//
// The first success is returned. A failure does not start a hedge (that is
// Retry's job); when every attempt started has failed, a single attempt's
// error comes back unchanged and several are returned joined with
// errors.Join in the order they were started, so errors.Is finds any of
// them. If the caller's context ends before an attempt succeeds, the call
// returns ctx.Err(); if it has ended before the call starts, the call returns ctx.Err() at once,
// runs nothing and deposits nothing.
//
// # Goroutines and contexts
//
// The first attempt runs on the caller's goroutine. The call arms a timer;
// if it fires before an attempt has succeeded, the timer's goroutine asks
// the budget for a token and runs the hedge, and arms the timer again for
// the next one. A call that is answered before its delay therefore starts
// no goroutine at all.
//
// Every attempt runs on its own context derived from the caller's. When the
// call returns — won, failed or cancelled — the timer is stopped, every
// attempt's context is cancelled and every attempt has returned: no attempt
// outlives the call, and the losers see context.Canceled. This includes the
// winner's context, so a result tied to it (an http.Response body) must be
// consumed inside the stage — except through httpx.Transport, which keeps
// a returned body readable (docs/http.md). A call returns only when its
// cancelled attempts have; a stage that ignores its context delays the
// return.
//
// A panic in the first attempt continues on the caller's goroutine, and
// runtime.Goexit there ends it, as without hedging; a panic in a hedge is
// re-raised in the caller's goroutine with the original value, even when
// another attempt had already won, and runtime.Goexit in a hedge makes
// that attempt fail with an error. In every case the other attempts are
// cancelled and have returned first.
//
// # Defaults and zero value
//
// The zero [Config] means: one hedge after the 95th percentile of recent
// latencies (100ms until 20 are known), a private budget, no name, no
// observer. [New] rejects invalid fields, for example
// "hedge: Percentile must be in (0, 1) or Fixed, got 1". [Middleware]
// panics on a nil *Hedger (New's error ignored).
//
// # Observability
//
// [Config.Observer] receives a [middleware.Hedged] event when a hedge
// starts (Attempt: 2 for the first hedge; Delay: when it was due, counted
// from the call's start) and a [middleware.Rejected] event with Reason
// "budget" when the budget refused one (Attempt: the hedge not sent; Err:
// [budget.ErrExhausted]). Both carry Concern "hedge" and Config.Name, and
// are delivered on the timer's goroutine, before the call returns.
// [middleware.Log] turns them into Debug records. [Hedger.Stats] counts
// hedges sent, calls a hedge won and hedges the budget refused; the
// counters are touched only when a hedge is due.
//
// # Concurrency
//
// A [Hedger] is safe for concurrent use and may serve stages of different
// types calling the same downstream.
//
// # Cost
//
// A call answered before its delay costs a deposit in the budget (a short
// mutex), a cancellable context for the first attempt, and a timer armed
// and stopped: five small allocations and no goroutine. In percentile mode
// it also reads the clock twice and records the latency under a mutex. A
// hedge adds a goroutine, a context and a token from the budget. Hedging
// suits calls that take milliseconds, not nanoseconds; measured numbers
// are in docs/performance.md.
package hedge
