// Package ratelimit limits the rate of calls with token buckets: one
// shared bucket for a downstream, or one bucket per tenant, user or client.
//
//	l, err := ratelimit.New(ratelimit.Config{Name: "users-api", Rate: 100, Burst: 20})
//	...
//	get := middleware.Apply(getUser, ratelimit.Middleware[UserID, User](l))
//	put := middleware.Apply(putUser, ratelimit.Middleware[User, struct{}](l)) // same bucket
//	perTenant := middleware.Apply(handle, ratelimit.Keyed[Request, Response](l, func(r Request) string { return r.Tenant }))
//
// # One Limiter, two adapters
//
// [New] builds a non-generic [*Limiter] from a [Config]: Rate, Burst, the
// mode (MaxWait), the bounds of keyed tables (MaxKeys, IdleTimeout), Name
// and Observer. [Middleware] draws every call from the Limiter's one
// shared bucket, whatever the stage's types. [Keyed] takes a key func and
// draws each call from its key's own bucket, with the same Rate and Burst;
// all Keyed adapters of one Limiter with the same key type share one table
// of buckets, apart from the shared bucket. A nil *Limiter or key func is
// a programmer error: the adapters panic.
//
// # Acquire and Done
//
// [Limiter.Acquire] takes a token from the shared bucket for work that is
// not a Stage and returns a [Permit]; finish it with [Permit.Done] and the
// work's error. Middleware is built on the same two calls. A Permit is a
// small value; Done zeroes it, so a second Done does nothing. A rate
// limiter has nothing to settle today: Done is where a cost-based limiter
// will settle the cost.
//
// # Modes
//
// With MaxWait zero (the default) a call that finds the bucket empty is
// refused at once. With a positive MaxWait it reserves the next token and
// waits for it, unless the wait would exceed MaxWait or the caller's
// context deadline, in which case it is refused at once instead of failing
// later. A waiter whose context ends returns ctx.Err() immediately and its
// token goes back to the bucket. A call whose context has already ended
// fails with ctx.Err(), takes no token and runs nothing.
//
// # Errors
//
// A refusal is a *[LimitedError]: errors.Is(err, [ErrLimited]) holds,
// Rejected() is true, and RetryAfter() (its Delay) is when capacity
// returns, so a retry placed around the limiter waits at least that long.
// In reject mode the retry-after is rounded up to a step of 1ms, or of
// 1/256 of the time one token takes when that is longer, so that one
// shared *LimitedError per step serves every refusal without allocating;
// treat it as read-only. A key that is not equal to itself (a NaN) is
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
// (Reason "rate" and Delay the retry-after; Reason "key" for a NaN key)
// and a [middleware.Waited] event (Wait) for each call admitted after
// waiting, on the caller's goroutine and outside any lock. [Limiter.Stats]
// counts the same (Rejected, Waited) and measures the keys held (Keys); it
// is pure. An admitted call that did not wait is not counted.
//
// # Defaults and zero value
//
// Rate has no default and must be positive (rate.Inf admits everything).
// Burst defaults to one second's worth of Rate, rounded up, at least 1.
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
// nothing; through Keyed, it adds a map lookup. A refusal in reject mode
// costs the same plus one atomic add, and allocates nothing. Waiting costs
// a timer.
package ratelimit
