package throttle

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/brace-go/brace/internal/xerrors"
)

// ErrThrottled is the error every local rejection matches:
// errors.Is(err, ErrThrottled) is true for any [*RejectedError].
var ErrThrottled = errors.New("throttle: rejected locally")

// RejectedError is returned, without running the stage, for a call the
// throttler rejects. It matches [ErrThrottled].
//
// A throttler builds its RejectedErrors when it is made, one per percent of
// rejection probability, and returns the same pointer to every call it
// rejects at that probability, so rejecting allocates nothing; treat it as
// read-only. The exact probability is in the [middleware.Rejected] event
// and in [Throttler.Stats].
type RejectedError struct {
	// Name is the throttler's Config.Name; it may be empty.
	Name string
	// Probability is the rejection probability in force when the call
	// was rejected, rounded to the nearest percent (at least 0.01).
	Probability float64

	after time.Duration
}

func (e *RejectedError) Error() string {
	s := "throttle: "
	if e.Name != "" {
		s += strconv.Quote(e.Name) + " "
	}
	return s + "rejected the call locally (rejection probability " +
		strconv.FormatFloat(e.Probability, 'f', 2, 64) + ")"
}

// Is reports whether target is [ErrThrottled].
func (e *RejectedError) Is(target error) bool { return target == ErrThrottled }

// Rejected reports true: the call was refused before it reached the
// downstream. A breaker ignores it, and an outer throttler counts it
// neither as a request nor as an accept.
func (e *RejectedError) Rejected() bool { return true }

// Retryable reports false: the throttler rejects calls because the
// downstream is refusing work, and a call retried at once would be sent
// (or rejected) again at the same probability, defeating the throttle.
func (e *RejectedError) Retryable() bool { return false }

// RetryAfter is one bucket of the window (Config.Window / Config.Buckets):
// the window moves by one bucket at a time, so the probability can fall no
// sooner for lack of newer results. It is a hint, not a promise: the
// throttler cannot know when the downstream recovers.
func (e *RejectedError) RetryAfter() time.Duration { return e.after }

// DefaultAccepted is the [Config].Accepted used when none is given. The
// throttler calls it for a non-nil error of a call that reached the
// downstream. It reports whether the downstream accepted the call —
// processed it rather than refusing it for overload or unavailability:
//
//   - an error whose chain has a Retryable() bool method reporting false
//     is accepted: the downstream answered with a definite refusal of this
//     call (invalid argument, not found, a permanent failure), which says
//     nothing about overload;
//   - every other error is not accepted: a Retryable() error (httpx's 429,
//     502, 503 and 504; grpcx's Unavailable and ResourceExhausted; a
//     timeout), context.DeadlineExceeded, and any plain error, such as a
//     refused connection.
//
// A nil error is always accepted, and two kinds of error are never given
// to Accepted at all: a local rejection (an error with Rejected() true:
// the call never reached the downstream) and context.Canceled (the caller
// left). Those calls count neither as requests nor as accepts.
func DefaultAccepted(err error) bool {
	if err == nil {
		return true
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	r, found := findRetryable(err)
	return found && !r
}

// findRetryable returns the verdict of the first Retryable() method in
// err's chain.
func findRetryable(err error) (retryable, found bool) {
	for err != nil {
		if r, ok := err.(interface{ Retryable() bool }); ok {
			return r.Retryable(), true
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if r, ok := findRetryable(e); ok {
					return r, true
				}
			}
			return false, false
		default:
			return false, false
		}
	}
	return false, false
}

// neither reports whether a call's error counts neither as a request nor
// as an accept: a local rejection (Rejected() true anywhere in the chain)
// or the caller's cancellation.
func neither(err error) bool {
	if errors.Is(err, context.Canceled) {
		return true
	}
	return xerrors.Rejected(err)
}
