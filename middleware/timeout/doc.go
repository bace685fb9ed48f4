// Package timeout provides a middleware that bounds how long a stage may
// run: each call runs the stage on a context that ends after
// Config.Duration.
//
//	to, err := timeout.New(timeout.Config{Name: "search", Duration: 2 * time.Second})
//	if err != nil { ... }
//	call := middleware.Apply(stage, timeout.Middleware[Req, Resp](to))
//
// # Configuration
//
// Duration is required: zero or negative is rejected by [New] with an
// error naming the field. Name and Observer are optional; their zero
// values mean no name and no events. One [Timeout] may guard stages of
// any types.
//
// # Where it sits
//
// Its position in a chain decides what it bounds. Inside Retry
// (middleware.Apply(stage, retryMW, timeoutMW)) every attempt gets its own
// Duration, and a timed-out attempt is retried. Outside Retry
// (middleware.Apply(stage, timeoutMW, retryMW)) one deadline covers all
// attempts and the delays between them, and Retry does not start a delay
// that would end after it. Both together are common; see the examples and
// docs/timeout.md.
//
// # Cooperative cancellation
//
// The stage gets a context whose deadline is Duration from now and whose
// cause (context.Cause) is [ErrTimeout]. A stage that watches its context
// returns at the deadline, and so does the middleware. Go cannot stop a
// goroutine from outside, so a stage that ignores its context keeps running;
// the middleware then waits for it, in the caller's goroutine, rather than
// abandoning it. The rule is:
//
//   - no goroutine is started, so none outlives the call, and nothing races
//     on the stage's result;
//   - the call returns when the stage returns, however late;
//   - a late success is returned as a success (the work is done and its
//     result is not thrown away); a late error, like an error at the
//     deadline, is returned as a *[Error].
//
// # Results tied to the context
//
// The derived context is cancelled when the middleware returns. A result
// tied to that context (an HTTP response body read through it) can then no
// longer be read by the caller: a stage whose result outlives the call must
// finish reading it before returning, or the timeout must sit where the
// caller owns the context (outside the code that reads the result).
//
// # Errors
//
// When the middleware's own deadline passed before the stage returned an
// error, the error is a *[Error] that matches both context.DeadlineExceeded
// and [ErrTimeout] and unwraps to the stage's error. When the caller's
// deadline is earlier than Duration, the middleware adds no deadline of its
// own and the caller's context errors come back unchanged, never as
// ErrTimeout, so the two cases can be told apart. A call whose context has
// already ended returns ctx.Err() and does not run the stage. A *Error has
// a Retryable() method reporting true, which retry.DefaultRetryable honours.
//
// # Events and stats
//
// With Config.Observer set, every call whose deadline passed before the
// stage returned is a [middleware.TimedOut] event, emitted after the stage
// returned, with Delay the configured Duration and Err what the call
// returns (nil for a late success), so a stage that ignores its context
// shows up. [Timeout.Stats] counts those calls (TimedOut); calls that
// finish in time are not counted. Use [middleware.Log] as the Observer for
// log records.
//
// # Concurrency and cost
//
// A Timeout and its middlewares are safe for concurrent use. Each call
// derives one context with context.WithDeadlineCause, which allocates, as a
// hand-written context.WithTimeout does. When the caller's deadline is
// earlier, no context is derived: one clock read and no allocation. A call
// whose context has ended costs one check and no allocation; a timeout
// adds one atomic add.
package timeout
