package retry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrRejected is the error recorded for an attempt that returned no error
// but whose result the result check of [NewWithResult] rejected. It is
// what an [ExhaustedError] wraps when the last attempt failed that way.
var ErrRejected = errors.New("retry: result rejected")

// Reason says why retrying stopped before a success.
type Reason int

const (
	// ReasonAttempts: MaxAttempts attempts were made.
	ReasonAttempts Reason = iota + 1
	// ReasonElapsed: the next retry would start after MaxElapsed.
	ReasonElapsed
	// ReasonDeadline: the next delay would end at or after the context
	// deadline, so the retry could not run; Retry stops at once rather than
	// sleeping into the deadline.
	ReasonDeadline
	// ReasonBudget: the retry budget was empty.
	ReasonBudget
	// ReasonContext: the context ended before or during the delay.
	ReasonContext
)

func (r Reason) String() string {
	switch r {
	case ReasonAttempts:
		return "max attempts reached"
	case ReasonElapsed:
		return "max elapsed time reached"
	case ReasonDeadline:
		return "next delay passes the context deadline"
	case ReasonBudget:
		return "retry budget empty"
	case ReasonContext:
		return "context done"
	}
	return fmt.Sprintf("Reason(%d)", int(r))
}

// keptEarlier bounds ExhaustedError.Earlier: the first error and the most
// recent ones are kept, so unlimited attempts use bounded memory.
const keptEarlier = 4

// ExhaustedError is returned when Retry stops while the last attempt had
// failed with a retryable error (or a rejected result): attempts ran out,
// time or budget ran out, or the context ended.
//
// It unwraps to the last error, to the earlier errors it kept, and, for
// ReasonContext, to the context's error, so errors.Is(err, ctx.Err()) and
// errors.Is(err, cause) both work. Non-retryable errors are never wrapped
// in it: they come back as the stage returned them.
type ExhaustedError struct {
	Reason   Reason
	Attempts int           // attempts made, counting the first
	Delay    time.Duration // the delay the refused retry needed (ReasonElapsed, ReasonDeadline, ReasonBudget)
	Err      error         // the last attempt's error, or ErrRejected
	// Earlier holds up to 4 errors of earlier attempts, oldest first: the
	// first attempt's error and the most recent ones before the last.
	Earlier []error
	// CtxErr is ctx.Err() for ReasonContext, nil otherwise.
	CtxErr error

	cause error // context.Cause(ctx), when it differs from CtxErr
}

func (e *ExhaustedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "retry: giving up after %d attempt", e.Attempts)
	if e.Attempts != 1 {
		b.WriteByte('s')
	}
	b.WriteString(": ")
	switch {
	case e.Reason == ReasonContext && e.CtxErr != nil:
		b.WriteString(e.CtxErr.Error())
		if e.cause != nil {
			fmt.Fprintf(&b, " (cause: %v)", e.cause)
		}
	case e.Reason == ReasonElapsed || e.Reason == ReasonDeadline:
		fmt.Fprintf(&b, "%v (next delay %v)", e.Reason, e.Delay)
	default:
		b.WriteString(e.Reason.String())
	}
	if e.Err != nil {
		b.WriteString(": last error: ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the last error, the context error and cause (if any) and
// the earlier errors, most recent first, for errors.Is and errors.As.
func (e *ExhaustedError) Unwrap() []error {
	errs := make([]error, 0, 3+len(e.Earlier))
	for _, err := range []error{e.Err, e.CtxErr, e.cause} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	for i := len(e.Earlier) - 1; i >= 0; i-- { // most recent first
		errs = append(errs, e.Earlier[i])
	}
	return errs
}

// PermanentError marks an error as not retryable; build it with
// [Permanent]. Its text is the text of the error it marks, so a mark
// changes no message.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent marks err as not retryable, whatever Config.Retryable says. The
// mark survives wrapping (fmt.Errorf("...: %w", retry.Permanent(err))):
// Retry finds it with errors.As.
//
// Retry gives the caller back the original error: if the stage returned
// the mark itself, Retry returns err; if the mark is deeper in a wrapped
// chain, Retry returns the chain unchanged, and the mark in it is
// transparent (same text, unwraps to err). Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
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
// An error type opts in by having a method Retryable() bool, found with
// errors.As anywhere in the chain (the first one found decides). Brace's
// own rejections follow it: the breaker's open rejection
// (*breaker.OpenError, matching breaker.ErrOpen) and backpressure's shed
// error report false (an open breaker or a shed means the downstream must
// get less traffic; retrying would defeat the protection and burn the
// attempts in a fast loop), and timeout's error reports true (a per-attempt timeout
// is worth retrying while the caller's context lives, although it
// satisfies errors.Is(err, context.DeadlineExceeded)). Pass your own
// Retryable to change any of this; it can call DefaultRetryable.
func DefaultRetryable(err error) bool {
	if err == nil {
		return false
	}
	if _, ok := errors.AsType[*PermanentError](err); ok {
		return false
	}
	if r, ok := errors.AsType[interface {
		error
		Retryable() bool
	}](err); ok {
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
