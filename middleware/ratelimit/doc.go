// Package ratelimit limits the rate of calls with token buckets: one
// shared bucket for a downstream, or one bucket per tenant, user or client;
// a call may cost one unit or its own cost (tokens, bytes), and several
// limits (requests and tokens per minute) may be held together.
//
//	l, err := ratelimit.New(ratelimit.Config{Name: "users-api", Rate: 100, Burst: 20})
//	...
//	get := middleware.Apply(getUser, ratelimit.Middleware[UserID, User](l))
//	put := middleware.Apply(putUser, ratelimit.Middleware[User, struct{}](l)) // same bucket
//	perTenant := middleware.Apply(handle, ratelimit.Keyed[Request, Response](l, func(r Request) string { return r.Tenant }))
//
// # One Limiter, four adapters
//
// [New] builds a non-generic [*Limiter] from a [Config]: Rate and Burst
// (one limit) or Limits (several), the mode (MaxWait), the bounds of keyed
// tables (MaxKeys, IdleTimeout), Name and Observer. [Middleware] draws
// every call from the Limiter's shared buckets, whatever the stage's
// types, at a cost of 1. [Costed] does the same at the cost its cost func
// computes from the input, and [Settled] settles that estimate to the real
// cost computed from the outcome. [Keyed] takes a key func and draws each
// call from its key's own buckets, with the same limits; all Keyed
// adapters of one Limiter with the same key type share one table of
// buckets, apart from the shared ones. A nil *Limiter, key, cost or actual
// func is a programmer error: the adapters panic.
//
// # Several limits
//
// Config.Limits holds limits that every call must satisfy together, as an
// LLM provider imposes requests per minute and tokens per minute:
//
//	l, err := ratelimit.New(ratelimit.Config{Limits: []ratelimit.Limit{
//		{Name: "requests", Rate: 60, Per: time.Minute, PerCall: true},
//		{Name: "tokens", Rate: 10_000, Per: time.Minute},
//	}})
//	chat := middleware.Apply(complete, ratelimit.Settled[Prompt, Answer](l,
//		func(p Prompt) int64 { return p.Tokens + p.MaxTokens },   // charged before the call
//		func(p Prompt, a Answer, err error) int64 { return p.Tokens + a.Tokens })) // settled after it
//
// A limit marked PerCall costs 1 per call; the others cost the call's
// cost. A call is admitted only when every limit has room, and then takes
// from all of them under one lock: a refusal by one limit takes nothing
// from the others. The refusal names the limit that needs the longest
// wait, and its retry-after is when every limit will have room.
//
// # Acquire, AcquireN, Settle and Done
//
// [Limiter.Acquire] takes one unit from the shared buckets for work that
// is not a Stage and returns a [Permit]; [Limiter.AcquireN] takes a call
// of cost n (rate.Limiter.ReserveN, .NET's AcquireAsync(permitCount),
// resilience4j's acquirePermission(permits), Envoy's hits_addend). When
// the real cost is known, [Permit.Settle] corrects the charge: the
// difference is charged or refunded at once. A refund never fills a
// bucket above its burst; a charge may leave it in debt, and later calls
// wait, or are refused with a retry-after that includes the debt, until it
// has refilled. Finish the permit with [Permit.Done] and the work's error.
// The adapters are built on the same calls. A Permit is a small value;
// Done zeroes it, so a second Done, or a Settle after Done, does nothing.
//
// # Modes
//
// With MaxWait zero (the default) a call that finds the bucket empty is
// refused at once. With a positive MaxWait it reserves its tokens and
// waits for them, unless the wait would exceed MaxWait or the caller's
// context deadline, in which case it is refused at once instead of failing
// later. A waiter whose context ends returns ctx.Err() immediately and its
// tokens go back to the bucket. With several limits a waiting call
// reserves nothing: it sleeps until every limit would have room, then
// tries again (so what a limit admits is never taken before it is there),
// and is refused once MaxWait, counted from its first try, or its
// deadline would be passed; a costly call may be overtaken by cheap ones
// meanwhile. A call whose context has already ended
// fails with ctx.Err(), takes no token and runs nothing.
//
// # Errors
//
// A refusal is a *[LimitedError]: errors.Is(err, [ErrLimited]) holds,
// Rejected() is true, and RetryAfter() (its Delay) is when capacity
// returns, so a retry placed around the limiter waits at least that long.
// It names the limit that refused (Limit), with its Quota (burst) and
// Window (the time the quota takes to refill): what the IETF RateLimit
// header fields carry (httpx.SetRateLimitFields). In reject mode the
// retry-after is rounded up to a step of 1ms, or of 1/256 of the time one
// token takes when that is longer (or, for a costly call that waits for
// more than one token, 1/1024 of the Window rounded up to 1, 2 or 5 ms
// times a power of ten), so
// that one shared *LimitedError per step and limit serves every refusal
// without allocating; treat it as read-only. Only a retry-after longer
// than the Window, which a debt left by Settle may cause, allocates its
// refusal. A cost that could never be admitted — negative, or larger than
// the burst of a limit it is charged to — is refused at once, without
// waiting and taking nothing, with a *[CostError] naming the cost, the
// limit and its burst (Rejected() true, Retryable() false; it does not
// match ErrLimited). A key that is not equal to itself (a NaN) is
// refused with [ErrNaNKey] (Rejected() true, Retryable() false), without
// running the stage or storing the key.
//
// # Per-key tables
//
// A Keyed table holds at most MaxKeys keys (default 10,000): a
// new key beyond it evicts the least recently used one, which starts
// again with a full bucket if it comes back. A key unused for IdleTimeout
// (default one minute) whose bucket has refilled is forgotten
// when a later call finds it at the cold end of the list; since a full
// bucket is exactly a new one, this forgetting never changes what a key
// is allowed. There is no background goroutine: each call does at most
// one such check.
//
// # Events and Stats
//
// Config.Observer receives a [middleware.Rejected] event for each refusal
// (Reason "rate" and Delay the retry-after; Reason "cost" for a
// *CostError; Reason "key" for a NaN key)
// and a [middleware.Waited] event (Wait) for each call admitted after
// waiting, on the caller's goroutine and outside any lock. [Limiter.Stats]
// counts the same (Rejected, Waited) and measures the keys held (Keys); it
// is pure. An admitted call that did not wait is not counted.
//
// # Defaults and zero value
//
// Rate has no default and must be positive (rate.Inf admits everything),
// unless Limits is set instead (then Rate and Burst must be zero). Burst
// defaults to one second's worth of Rate, rounded up, at least 1; a
// Limit's Burst to one Per's worth of its Rate. Every Limit needs a
// unique Name, and a positive Rate (+Inf for none).
// MaxWait defaults to zero: reject at once. Invalid fields are reported by
// [New], for example "ratelimit: Rate must be positive (or rate.Inf),
// got 0".
//
// # Concurrency
//
// A Limiter and its adapters are safe for concurrent use. The shared
// bucket and each Keyed table have one mutex, taken once per admitted or
// refused call; tokens are taken under a table's mutex so that forgetting
// a bucket can never race with a call that is using it. The buckets follow
// golang.org/x/time/rate's arithmetic (refill, reservation, cancellation)
// but are Brace's own, so that a refusal computes its retry-after under
// the same lock that found the bucket empty.
//
// # Cost
//
// An admitted call reads the clock and takes one mutex, and allocates
// nothing; through Keyed, it adds a map lookup; each further limit adds
// one bucket's arithmetic under the same mutex; Settle takes the mutex
// once more. A refusal in reject mode costs the same plus one atomic add,
// and allocates nothing. Waiting costs a timer.
package ratelimit
