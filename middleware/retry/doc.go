// Package retry provides a middleware that retries a failed stage with
// exponential, jittered delays, within limits on attempts, elapsed time, the
// context deadline and an optional shared retry budget.
//
//	r, err := retry.New(retry.Config{Name: "users", MaxAttempts: 5})
//	if err != nil { ... }
//	call := middleware.Apply(stage, retry.Middleware[Req, Resp](r))
//
// A [Retrier] is built once from a [Config] and may guard stages of any
// types; [Middleware] adapts it to one stage type, and takes an optional
// typed result check.
//
// # Schedule
//
// The delay before attempt n (n ≥ 2; attempt 1 is the first call) is
// BaseDelay × Multiplier^(n−2), capped at MaxDelay, then jittered (see
// [Jitter]). Delays are computed in floating point and capped, so no
// attempt number overflows: attempt 34, 64, 1<<31 or math.MaxInt gets
// MaxDelay, never zero or a negative delay. Config.DelayFunc replaces the
// schedule and sees the attempt and the error.
//
// # Defaults and zero value
//
// The zero [Config] is valid: MaxAttempts 3, BaseDelay 100 ms, Multiplier 2,
// MaxDelay 60 s, FullJitter, no MaxElapsed, classification by
// [DefaultRetryable], no budget, no name, no observer. A zero-valued field
// means its default, so MaxAttempts 0 means 3 (use [Unlimited] for no limit
// and 1 to disable retrying); values that make no sense (MaxAttempts −2, a
// negative delay, Multiplier below 1, MaxDelay below BaseDelay) are rejected
// by [New] with an error that names the field.
//
// # Classification
//
// [DefaultRetryable] retries every error except context.Canceled and
// context.DeadlineExceeded, errors marked with [Permanent], and errors that
// say so themselves through a Retryable() bool method — the contract by
// which other packages classify their errors without importing this one.
// Brace's local rejections (an open breaker, a shed, an empty budget)
// report false: they mean "send less", and retrying them would defeat the
// protection. The timeout middleware's error reports true, so a
// per-attempt timeout inside the retry is retried while the caller's
// context lives. Config.Retryable replaces the classification; a result
// check given to [Middleware] replaces it for that middleware's stages, so
// a value such as an HTTP 503 can trigger a retry. Permanent marks win over
// both.
//
// # Limits and hints
//
// Retrying stops when MaxAttempts attempts were made, when the next retry
// would start more than MaxElapsed after the first attempt started, when
// the next delay would end at or after the context's deadline (the call
// returns at once instead of sleeping into the deadline), when the budget
// refuses, or when the context ends (a sleep ends at once, and its timer
// is stopped). A call whose context has already ended when it starts
// returns ctx.Err() and makes no attempt.
//
// An error with a method RetryAfter() time.Duration (a server's
// Retry-After) sets a floor on the next delay: the retry never starts
// before the hint, even when the hint is above MaxDelay (MaxDelay caps the
// schedule, not the server). If waiting for the hint fits within
// MaxElapsed and the context deadline, the retry waits for it; otherwise
// the call stops at once with [ReasonHint], the hint in ExhaustedError.Delay
// and an error text that says the hint exceeded the limit — it neither
// retries early, nor sleeps past the budget, nor silently stops retrying.
// A hint with no deadline and no MaxElapsed is waited for however long it
// is; give calls a deadline.
//
// # Errors
//
// A success returns the result. A non-retryable error comes back exactly as
// the stage returned it, except that a [Permanent] mark returned as is is
// removed. When retrying stops for one of the limits above, the call
// returns a *[ExhaustedError] that says why ([Reason]) and how many
// attempts were made. It unwraps to the last attempt's error only (and, if
// the context ended, to ctx.Err() and its cause): errors.Is matches the
// failure that ended the call, never an earlier attempt's, so a call is
// counted once under one cause. Earlier errors are kept in
// ExhaustedError.Earlier, bounded (the first and the three most recent),
// so unlimited attempts keep bounded memory. MaxAttempts 1 is no
// exception: the single failed attempt comes back as an ExhaustedError.
//
// # Events and stats
//
// With Config.Observer set, a [middleware.Retry] event (Attempt: the
// attempt that failed, Delay, Err) is emitted when a retry will really
// follow, just before its delay; a [middleware.GaveUp] event (Attempt:
// attempts made, Reason, Err: what the caller gets) when the call stops on
// a failure after a retry or because a retryable failure could not be
// retried. A first attempt that fails with a non-retryable error passes
// through without an event. [Retrier.Stats] counts the same two events
// (Retries, GaveUp) over every middleware built from the Retrier; it has no
// side effects. Use [middleware.Log] as the Observer for log records.
// docs/retry.md tables the events and their fields.
//
// # Concurrency
//
// A Retrier, its middlewares and the stages they return are safe for
// concurrent use; each call keeps its own attempt state on its stack. The
// random source is shared, lock-free and seedable (Config.Seed). A
// budget.Budget may be shared by many retriers.
//
// # Cost
//
// A call that succeeds at once costs a check of its context (one atomic
// load for the standard contexts), a nil check and the call: no
// allocation, no clock read, no random draw and no shared counter.
// MaxElapsed adds a clock read per call, a Budget a clock read and a short
// lock (its deposit), a result check its call. A failure followed by a
// successful retry after a zero delay allocates nothing; giving up
// allocates the *ExhaustedError. docs/performance.md has the measurements.
package retry
