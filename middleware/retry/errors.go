package retry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/brace-go/brace/internal/xerrors"
)

// ErrRejected is the error recorded for an attempt that returned no error
// but whose result the result check given to [Middleware] rejected. It is
// what an [ExhaustedError] wraps when the last attempt failed that way.
var ErrRejected = errors.New("retry: result rejected")

// Reason says why retrying stopped. Its value is the one word that
// GaveUp events carry in Event.Reason.
type Reason string

const (
	// ReasonAttempts: MaxAttempts attempts were made.
	ReasonAttempts Reason = "attempts"
	// ReasonElapsed: the next retry would start after MaxElapsed.
	ReasonElapsed Reason = "elapsed"
	// ReasonDeadline: the next delay would end at or after the context
	// deadline, so the retry could not run; the call stops at once rather
	// than sleeping into the deadline.
	ReasonDeadline Reason = "deadline"
	// ReasonHint: the error's RetryAfter hint asked for a longer wait
	// than MaxElapsed or the context deadline leaves. The retry is not
	// made early (that would ignore the server); the call stops at once.
	ReasonHint Reason = "hint"
	// ReasonBudget: the retry budget refused the retry (budget.ErrExhausted).
	ReasonBudget Reason = "budget"
	// ReasonCanceled: the context ended (canceled, or its deadline
	// passed) before or during the delay.
	ReasonCanceled Reason = "canceled"
	// ReasonPermanent is used only in GaveUp events, never in an
	// ExhaustedError: a non-retryable (or Permanent) error ended the call
	// after at least one retry, and comes back unchanged.
	ReasonPermanent Reason = "permanent"
)

// describe is the reason's text in ExhaustedError.Error.
func (e *ExhaustedError) describe() string {
	switch e.Reason {
	case ReasonAttempts:
		return "max attempts reached"
	case ReasonElapsed:
		return fmt.Sprintf("max elapsed time reached (next delay %v)", e.Delay)
	case ReasonDeadline:
		return fmt.Sprintf("next delay passes the context deadline (next delay %v)", e.Delay)
	case ReasonHint:
		limit := e.limit
		if limit == "" {
			limit = "the time budget"
		}
		return fmt.Sprintf("retry-after hint %v exceeds %s", e.Delay, limit)
	case ReasonBudget:
		return "retry budget empty"
	case ReasonCanceled:
		if e.ctxErr != nil {
			if e.cause != nil {
				return fmt.Sprintf("%v (cause: %v)", e.ctxErr, e.cause)
			}
			return e.ctxErr.Error()
		}
		return "context done"
	}
	return string(e.Reason)
}

// keptEarlier bounds ExhaustedError.Earlier: the first error and the most
// recent ones are kept, so unlimited attempts use bounded memory.
const keptEarlier = 4

// ExhaustedError is returned when retrying stops while the last attempt had
// failed with a retryable error (or a rejected result): attempts ran out,
// time or budget ran out, a server's hint asked for more time than was
// left, or the context ended.
//
// # What errors.Is matches
//
// It unwraps to the last attempt's error — the failure the caller is left
// with — and, for ReasonCanceled, to the context's error and its cause, so
// errors.Is(err, ctx.Err()) and errors.Is(err, cause) work. It does not
// unwrap to earlier attempts' errors: a call whose first attempt timed out
// and whose last was refused is a refusal, and errors.Is(err, errTimeout)
// is false, so a caller counting failures by cause counts each call once,
// under the error that ended it. Earlier keeps a bounded sample of the
// others for logs and debugging.
//
// Non-retryable errors are never wrapped in it: they come back as the
// stage returned them.
type ExhaustedError struct {
	Reason   Reason
	Attempts int           // attempts made, counting the first
	Delay    time.Duration // the delay the refused retry needed (ReasonElapsed, ReasonDeadline, ReasonHint, ReasonBudget)
	Err      error         // the last attempt's error, or ErrRejected
	// Earlier holds up to 4 errors of earlier attempts, oldest first: the
	// first attempt's error and the most recent ones before the last. They
	// are for inspection only: errors.Is and errors.As do not see them.
	Earlier []error
	ctxErr  error  // ctx.Err() for ReasonCanceled, nil otherwise
	cause   error  // context.Cause(ctx), when it differs from ctxErr
	limit   string // ReasonHint: the limit the hint exceeds
}

func (e *ExhaustedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "retry: giving up after %d attempt", e.Attempts)
	if e.Attempts != 1 {
		b.WriteByte('s')
	}
	b.WriteString(": ")
	b.WriteString(e.describe())
	if e.Err != nil {
		b.WriteString(": last error: ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the last attempt's error and, for ReasonCanceled, the
// context's error and its cause (if it differs), for errors.Is and
// errors.As. Earlier errors are not returned; see [ExhaustedError].
func (e *ExhaustedError) Unwrap() []error {
	errs := make([]error, 0, 3)
	for _, err := range []error{e.Err, e.ctxErr, e.cause} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// permanentError marks an error as not retryable; build it with
// [Permanent]. Its text is the text of the error it marks, so a mark
// changes no message.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as not retryable, whatever Config.Retryable says. The
// mark survives wrapping (fmt.Errorf("...: %w", retry.Permanent(err))):
// the retry middleware finds it as errors.As would.
//
// The middleware gives the caller back the original error: if the stage
// returned the mark itself, the call returns err; if the mark is deeper in
// a wrapped chain, the call returns the chain unchanged, and the mark in it is
// transparent (same text, unwraps to err). Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// DefaultRetryable is the classification used when Config.Retryable is
// nil. It reports false for:
//
//   - nil and errors marked with [Permanent];
//   - errors whose chain holds an error with a method Retryable() bool: its
//     answer decides (this is how other packages classify their errors
//     without importing retry; see below);
//   - otherwise, context.Canceled and context.DeadlineExceeded: the
//     caller's context ended, or the stage gave up on its own deadline;
//
// and true for every other error.
//
// # The Retryable() contract
//
// An error type opts in by having a method Retryable() bool, found as
// errors.As would find it anywhere in the chain (the first one found
// decides). Brace's own local rejections follow it: the breaker's open
// rejection, backpressure's shed error and budget.ErrExhausted report
// false (they mean the downstream must get less traffic; retrying would
// defeat the protection and burn the attempts in a fast loop), and
// timeout's error reports true (a per-attempt timeout is worth retrying
// while the caller's context lives, although it satisfies
// errors.Is(err, context.DeadlineExceeded)). Pass your own Retryable to
// change any of this; it can call DefaultRetryable.
func DefaultRetryable(err error) bool {
	if err == nil {
		return false
	}
	if _, ok := xerrors.Find[*permanentError](err); ok {
		return false
	}
	if r, ok := xerrors.Find[interface{ Retryable() bool }](err); ok {
		return r.Retryable()
	}
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// history keeps a bounded sample of earlier errors: the first and the
// keptEarlier-1 most recent.
type history struct {
	first  error
	recent [keptEarlier - 1]error
	n      int // errors added
}

func (h *history) add(err error) {
	if h.n == 0 {
		h.first = err
	} else {
		h.recent[(h.n-1)%len(h.recent)] = err
	}
	h.n++
}

// slice returns the kept errors, oldest first.
func (h *history) slice() []error {
	if h.n == 0 {
		return nil
	}
	out := []error{h.first}
	k := min(h.n-1, len(h.recent)) // recent errors kept
	for i := h.n - 1 - k; i < h.n-1; i++ {
		out = append(out, h.recent[i%len(h.recent)])
	}
	return out
}
