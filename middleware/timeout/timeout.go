package timeout

import (
	"context"
	"fmt"
	"log/slog"
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

// Config configures a Timeout middleware. Duration is required.
type Config struct {
	// Duration is how long the stage may run; it must be positive.
	Duration time.Duration

	// Name identifies the middleware in log records ("name"). Optional.
	Name string

	// OnTimeout, if set, is called when the deadline passed before the
	// stage returned, after it returned: elapsed is how long it ran (more
	// than Duration when the stage ignored its context) and err is what the
	// middleware returns (nil for a late success, see the package doc). It
	// runs on the caller's goroutine.
	OnTimeout func(elapsed time.Duration, err error)

	// Logger, if set, receives a warn record ("timeout: timed out":
	// "name", "timeout", "elapsed", "err") whenever OnTimeout would be
	// called.
	Logger *slog.Logger

	// Counter, if set, counts calls and timeouts (see [Counter]). Nil
	// means no counting.
	Counter *Counter
}

// New returns a middleware that runs each call of the stage on a context
// that ends after cfg.Duration, or an error if the duration is not
// positive. See the package doc for what happens when the stage ignores its
// context.
func New[In, Out any](cfg Config) (middleware.Middleware[In, Out], error) {
	if cfg.Duration <= 0 {
		return nil, fmt.Errorf("timeout: Duration must be positive, got %v", cfg.Duration)
	}
	d, counter := cfg.Duration, cfg.Counter
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		if next == nil {
			next = middleware.Apply[In, Out](nil) // fails with middleware.ErrNilStage
		}
		return func(ctx context.Context, in In) (Out, error) {
			if counter != nil {
				counter.calls.Add(1)
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
			if counter != nil {
				counter.timeouts.Add(1)
			}
			if cfg.OnTimeout != nil || cfg.Logger != nil {
				elapsed := time.Since(start)
				if cfg.OnTimeout != nil {
					cfg.OnTimeout(elapsed, err)
				}
				if cfg.Logger != nil {
					attrs := []slog.Attr{slog.Duration("timeout", d), slog.Duration("elapsed", elapsed), slog.Any("err", err)}
					if cfg.Name != "" {
						attrs = append([]slog.Attr{slog.String("name", cfg.Name)}, attrs...)
					}
					cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "timeout: timed out", attrs...)
				}
			}
			return out, err
		}
	}, nil
}
