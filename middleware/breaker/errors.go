package breaker

import (
	"errors"
	"strconv"
	"time"
)

// ErrOpen is the error every rejected call matches: errors.Is(err, ErrOpen)
// is true for any [*OpenError].
var ErrOpen = errors.New("breaker: open")

// OpenError is returned by a breaker that rejects a call: it is open, forced
// open, or half-open with every probe slot taken. It matches [ErrOpen].
//
// A breaker builds one OpenError per state and returns the same pointer to
// every call it rejects in that state, so rejecting allocates nothing;
// treat it as read-only.
type OpenError struct {
	Name  string    // Config.Name; may be empty
	State State     // Open, ForcedOpen or HalfOpen
	Until time.Time // Open: when probes may start; zero otherwise
}

func (e *OpenError) Error() string {
	s := "breaker: "
	if e.Name != "" {
		s += strconv.Quote(e.Name) + " is "
	}
	switch e.State {
	case HalfOpen:
		return s + "half-open with every probe slot taken"
	case ForcedOpen:
		return s + "forced open"
	}
	return s + "open"
}

// Is reports whether target is [ErrOpen].
func (e *OpenError) Is(target error) bool { return target == ErrOpen }

// RetryAfter is how long until the breaker lets probes through: the time
// left until Until, or zero when the breaker gives no hint (half-open,
// forced open). Retry policies read it through an interface.
func (e *OpenError) RetryAfter() time.Duration {
	if e.Until.IsZero() {
		return 0
	}
	return max(time.Until(e.Until), 0)
}

// Retryable reports false: a rejection means the downstream must get less
// traffic, so retrying it at once would defeat the breaker. Retry policies
// (Brace's retry package among them) read it through an interface.
func (e *OpenError) Retryable() bool { return false }

// Rejected reports true: the call was refused before it reached the
// downstream. An outer breaker's [DefaultClassify] ignores it.
func (e *OpenError) Rejected() bool { return true }
