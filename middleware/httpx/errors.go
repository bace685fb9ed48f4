package httpx

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// StatusError is how a failed response travels through Brace middlewares,
// which understand errors, not statuses. Inside a [Transport] every
// response whose status is 5xx or retryable (429, 502, 503 and 504 by
// default) becomes a *StatusError, so a breaker counts it as a failure and
// the Retrier retries it, waiting at least its Retry-After; the Transport
// turns it back into the response before returning (see the package doc).
// Inside a [Protector], a response the handler wrote with a failure status
// (5xx by default) is reported to the breaker as a *StatusError.
//
// A breaker's Classify or OpenDelay can read it with errors.As:
//
//	OpenDelay: func(err error) time.Duration {
//		var se *httpx.StatusError
//		if errors.As(err, &se) {
//			return se.Delay // the server's Retry-After
//		}
//		return 0
//	}
type StatusError struct {
	StatusCode int           // the response's status code
	Delay      time.Duration // the response's Retry-After, else the reset of a RateLimit policy with r=0 (ParseRateLimit); 0 if it had neither

	retryable bool
	res       *result // the response, owned by the Transport; nil in a Protector
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("httpx: response status %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.Delay > 0 {
		msg += fmt.Sprintf(" (Retry-After %v)", e.Delay)
	}
	return msg
}

// Retryable reports whether the status is one the Transport retries
// (TransportConfig.RetryStatus). It is the contract retry.DefaultRetryable
// follows. A long Retry-After does not make it false: the Retrier waits for
// it, or gives up at once with retry.ReasonHint when the wait would not fit
// in its limits.
func (e *StatusError) Retryable() bool { return e.retryable }

// RetryAfter returns Delay: a Retrier never starts the next attempt before
// it.
func (e *StatusError) RetryAfter() time.Duration { return e.Delay }

// ErrNotReplayable is returned for a second attempt at a request that may
// be sent only once: it is not idempotent (see
// TransportConfig.Idempotent), or its body cannot be rewound (Body set,
// GetBody nil). The Transport itself never retries such a request; this
// error stops a middleware that would send it again, such as a hedge.
var ErrNotReplayable = errors.New("httpx: request cannot be sent again")
