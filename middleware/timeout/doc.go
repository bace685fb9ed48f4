// Package timeout provides a middleware that bounds how long a stage may
// run: each call runs the stage on a context that ends after
// Config.Duration.
//
//	mw, err := timeout.New[Req, Resp](timeout.Config{Duration: 2 * time.Second})
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
// OnTimeout and the log record report every call that ran past the
// deadline, with how long it ran, so a stage that ignores its context shows
// up.
//
// # Events and counting
//
// The log record is "timeout: timed out" at warn level, with "timeout",
// "elapsed", "err" and, when Config.Name is set, "name" (all of Brace's
// events are listed in docs/observability.md). Config.Counter, a
// *[Counter], counts calls and timeouts; [Counter.Stats] returns a
// snapshot, and package otelbrace publishes it as OpenTelemetry metrics.
// A Counter adds one atomic add per call (two for a timeout) to a path
// that already costs hundreds of nanoseconds.
//
// # Errors
//
// When the middleware's own deadline passed before the stage returned an
// error, the error is a *[Error] that matches both context.DeadlineExceeded
// and [ErrTimeout] and unwraps to the stage's error. When the caller's
// deadline is earlier than Duration, the middleware adds no deadline of its
// own and the caller's context errors come back unchanged, never as
// ErrTimeout, so the two cases can be told apart. A *Error has a
// Retryable() method reporting true, which retry.DefaultRetryable honours.
//
// # Configuration
//
// Duration is required: zero or negative is rejected by [New]. Name,
// OnTimeout and Logger are optional; a nil Logger is silent.
//
// # Concurrency and cost
//
// The middleware is safe for concurrent use. Each call derives one context
// with context.WithDeadlineCause, which allocates. Measured on the project
// machine (2 cores, noisy): about 520 ns and 4 allocations (272 B) per call,
// against about 490 ns and the same allocations for a hand-written
// context.WithTimeout around the call (BenchmarkTimeout beside
// BenchmarkWithTimeout) and 2 ns for the call alone. When the caller's
// deadline is earlier, no context is derived: one clock read, about 60 ns,
// nothing allocated (BenchmarkTimeoutParentFirst, TestAllocs).
package timeout
