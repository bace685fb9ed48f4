package timeout

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/brace-go/brace/middleware"
)

// ErrTimeout is the cause of the context a stage runs on when the timeout
// middleware's deadline passes (context.Cause(ctx) == ErrTimeout inside the
// stage), and every [*Error] matches it. It also matches
// context.DeadlineExceeded: errors.Is(ErrTimeout, context.DeadlineExceeded)
// is true.
var ErrTimeout error = timeoutError{}

type timeoutError struct{}

func (timeoutError) Error() string        { return "timeout: deadline exceeded" }
func (timeoutError) Is(target error) bool { return target == context.DeadlineExceeded }
func (timeoutError) Timeout() bool        { return true }

// Error is returned when the middleware's deadline passed before the stage
// returned, and the stage returned an error. It matches [ErrTimeout] and
// context.DeadlineExceeded, and unwraps to the stage's own error.
type Error struct {
	Duration time.Duration // the configured timeout
	Err      error         // what the stage returned
}

func (e *Error) Error() string {
	return fmt.Sprintf("timeout: stage did not finish within %v: %v", e.Duration, e.Err)
}

// Unwrap returns ErrTimeout and the stage's error.
func (e *Error) Unwrap() []error { return []error{ErrTimeout, e.Err} }

// Timeout reports true, as net.Error does for timeouts.
func (e *Error) Timeout() bool { return true }

// Retryable reports true: a timed-out attempt is worth retrying while the
// caller's context lives. This is the contract retry.DefaultRetryable
// follows; without it the error, which matches context.DeadlineExceeded,
// would not be retried.
func (e *Error) Retryable() bool { return true }

// Config configures a [Timeout]. Duration is required; every other field
// is optional and its zero value means none.
type Config struct {
	// Name is the timeout's name in its events. Optional.
	Name string

	// Duration is how long the stage may run. Required: New rejects
	// zero and negative durations.
	Duration time.Duration

	// Observer, if set, receives a [middleware.TimedOut] event for every
	// call whose deadline passed before the stage returned. Nil means
	// none.
	Observer middleware.Observer
}

// Timeout bounds how long a stage may run. Build one with [New] and turn
// it into a middleware with [Middleware]; one Timeout may guard stages of
// any types. It is safe for concurrent use.
type Timeout struct {
	d    time.Duration
	name string
	obs  middleware.Observer

	timedOut atomic.Uint64 // counted on the timed-out path only
}

// New returns a Timeout for cfg, or an error if cfg.Duration is not
// positive.
func New(cfg Config) (*Timeout, error) {
	if cfg.Duration <= 0 {
		return nil, fmt.Errorf("timeout: Duration must be positive, got %v", cfg.Duration)
	}
	return &Timeout{d: cfg.Duration, name: cfg.Name, obs: cfg.Observer}, nil
}

// Stats is a snapshot of a [Timeout]'s counts.
type Stats struct {
	// TimedOut counts the calls whose deadline passed before the stage
	// returned (one per TimedOut event), late successes included.
	TimedOut uint64
}

// Stats returns the counts so far. It has no side effects.
func (t *Timeout) Stats() Stats { return Stats{TimedOut: t.timedOut.Load()} }

// Middleware returns a middleware that runs each call of the stage on a
// context that ends after t's Duration. See the package doc for what
// happens when the stage ignores its context. It panics if t is nil (New's
// error was ignored) or, when applied, if the stage is nil.
func Middleware[In, Out any](t *Timeout) middleware.Middleware[In, Out] {
	if t == nil {
		panic("timeout: nil *Timeout (was New's error ignored?)")
	}
	d := t.d
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		if next == nil {
			panic("timeout: nil stage")
		}
		return func(ctx context.Context, in In) (Out, error) {
			if err := ctx.Err(); err != nil {
				var zero Out
				return zero, err // the call's context has ended: run nothing
			}
			start := time.Now()
			if dl, ok := ctx.Deadline(); ok && !dl.After(start.Add(d)) {
				// The caller's deadline comes first: it is the one that
				// applies, and its error is the caller's.
				return next(ctx, in)
			}
			tctx, cancel := context.WithDeadlineCause(ctx, start.Add(d), ErrTimeout)
			defer cancel()
			out, err := next(tctx, in)
			if context.Cause(tctx) != ErrTimeout {
				// Our deadline did not pass, or the caller's context
				// ended first: the stage's outcome stands as it is.
				return out, err
			}
			if err != nil {
				err = &Error{Duration: d, Err: err}
			}
			t.timedOut.Add(1)
			if t.obs != nil {
				middleware.Emit(ctx, t.obs, middleware.Event{
					Kind: middleware.TimedOut, Concern: "timeout", Name: t.name, Delay: d, Err: err,
				})
			}
			return out, err
		}
	}
}
