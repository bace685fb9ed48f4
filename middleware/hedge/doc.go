// Package hedge cuts tail latency by sending a second copy of a slow call:
// if no attempt has succeeded after a delay, another starts, and the first
// success wins.
//
//	h, err := hedge.New(hedge.Config{Budget: retryBudget}) // p95 delay, 1 hedge
//	...
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
//
// # Budget
//
// Hedges draw from a [budget.Budget], the same kind as Retry's: each call
// deposits once, each hedge withdraws once, and a hedge the budget refuses
// is not sent. In an outage where every call is slow, hedging therefore adds
// at most the budget's ratio (20% by default, plus a small reserve) to the
// load instead of doubling it. Give Hedge the budget your Retry middlewares
// for the same downstream use; a nil Budget means a private one with the
// budget package's defaults. When Retry and Hedge wrap the same calls, both
// deposit per call, so the effective ratio is per attempt Retry makes.
//
// # Outcome
//
// The first success is returned. A failure does not start a hedge (that is
// Retry's job); when every attempt started has failed, a single attempt's
// error comes back unchanged and several are returned joined with
// errors.Join in the order they were started, so errors.Is finds any of
// them. If the caller's context ends, the call returns ctx.Err().
//
// # Goroutines and contexts
//
// Each attempt runs in its own goroutine on its own context derived from
// the caller's. When the call returns — won, failed or cancelled — every
// attempt's context is cancelled and every attempt has returned: no
// goroutine outlives the call, and the losers see context.Canceled. This
// includes the winner's context, so a result tied to it (an http.Response
// body) must be consumed inside the stage — except through
// httpx.Transport, which keeps a returned body readable (docs/http.md).
// A call returns only when its
// cancelled attempts have; a stage that ignores its context delays the
// return. A panic in an attempt is re-raised in the caller's goroutine,
// with the original value, once the other attempts have returned;
// runtime.Goexit in an attempt becomes an error.
//
// # Defaults and zero value
//
// The zero [Config] means: one hedge after the 95th percentile of recent
// latencies (100ms until 20 are known), a private budget, no hooks, no
// logging. [New] rejects invalid fields, for example
// "hedge: Percentile must be in (0, 1) or Fixed, got 1".
//
// # Observability
//
// OnHedge is called with the attempt number (2 for the first hedge). A
// Logger receives Debug records "hedge: attempt" ("attempt", "delay") and
// "hedge: budget exhausted" ("attempt"), each with "name" when Config.Name
// is set (all of Brace's events are listed in docs/observability.md). A
// [Counter] set as Config.Counter counts calls, hedges, hedges that won and
// hedges the budget refused; [Counter.Stats] returns a snapshot, and
// package otelbrace publishes it with [Hedger.Delay] as OpenTelemetry
// metrics. A Counter adds a few atomic adds to a call that costs a
// microsecond.
//
// # Concurrency
//
// A [Hedger] is safe for concurrent use and may serve stages of different
// types calling the same downstream.
//
// # Cost
//
// Measured on a 2-core x86-64 VM (go test -bench . -benchmem): a call
// whose first attempt succeeds before the delay costs about 1.2 µs and 9
// allocations (about 700 B), against 0.55 µs and 6 allocations for the
// floor of any hedging — a goroutine, a cancellable context and a channel
// (BenchmarkGoroutine) — and 1.4 ns for a direct call. Hedging suits calls
// that take milliseconds, not nanoseconds.
package hedge
