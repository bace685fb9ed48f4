package retry

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/brace-go/brace/internal/xrand"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/budget"
)

// Defaults used for zero-valued [Config] fields.
const (
	defaultMaxAttempts = 3
	defaultBaseDelay   = 100 * time.Millisecond
	defaultMultiplier  = 2.0
	defaultMaxDelay    = 60 * time.Second
)

// Unlimited, as Config.MaxAttempts, removes the attempt limit. Retries then
// end only on success, a non-retryable error, MaxElapsed, the context, or
// the budget. Memory stays bounded: an [ExhaustedError] keeps at most four
// earlier errors.
const Unlimited = -1

// Jitter selects how a delay is randomised. With d the delay of the
// exponential schedule for an attempt (see [Config]) and u a uniform
// random number in [0, 1):
//
//	FullJitter          u × d                           in [0, d]
//	NoJitter            d                               exactly d
//	EqualJitter         d/2 + u × d/2                   in [d/2, d]
//	DecorrelatedJitter  base + u × (3 × prev − base)    in [base, 3 × prev], at most MaxDelay
//
// where prev is the delay before the previous attempt (base for the first
// retry). Decorrelated jitter is AWS's "decorrelated" variant; it ignores
// the Multiplier. No mode ever exceeds MaxDelay.
type Jitter int

const (
	FullJitter Jitter = iota // the default: spreads retries the most
	NoJitter
	EqualJitter
	DecorrelatedJitter
)

func (j Jitter) String() string {
	switch j {
	case FullJitter:
		return "full"
	case NoJitter:
		return "none"
	case EqualJitter:
		return "equal"
	case DecorrelatedJitter:
		return "decorrelated"
	}
	return fmt.Sprintf("Jitter(%d)", int(j))
}

// Config configures a [Retrier]. The zero value is valid: 3 attempts,
// full-jittered exponential delays from 100 ms doubling up to 60 s, every
// error retried except those [DefaultRetryable] rejects, no budget, no
// name, no observer.
type Config struct {
	// Name is the retrier's name in its events. Optional.
	Name string

	// MaxAttempts is the number of attempts, counting the first one: 3
	// means one call and at most two retries, 1 disables retrying. Zero
	// means 3; use Unlimited for no limit. Other values
	// below 1 are rejected.
	MaxAttempts int

	// BaseDelay is the delay before the first retry (attempt 2). Zero
	// means 100 ms.
	BaseDelay time.Duration

	// Multiplier is the factor between consecutive delays: the delay
	// before attempt n is BaseDelay × Multiplier^(n−2). Zero means
	// 2; 1 gives constant delays; below 1 is rejected.
	Multiplier float64

	// MaxDelay caps every delay of the schedule, including jittered ones
	// and custom ones from DelayFunc, for any attempt number (the
	// schedule is computed without overflow). It does not cap a server's hint
	// (an error's RetryAfter): a retry never starts before the hint.
	// Zero means 60 s. It must not be below BaseDelay.
	MaxDelay time.Duration

	// Jitter selects the randomisation; the zero value is FullJitter.
	Jitter Jitter

	// Seed seeds the retrier's random source, for reproducible tests.
	// Zero means a random seed. The source is shared by all calls and
	// safe for concurrent use.
	Seed uint64

	// MaxElapsed, if positive, bounds the time from the start of the
	// first attempt to the start of the last: a retry that would start
	// later is not made. Zero means no bound. Setting it costs one clock
	// read per call.
	MaxElapsed time.Duration

	// DelayFunc, if set, replaces the schedule (BaseDelay, Multiplier,
	// Jitter): it returns the delay before attempt (≥ 2), given the error
	// of the attempt before it. Negative results count as 0; results are
	// capped by MaxDelay, and server hints still apply.
	DelayFunc func(attempt int, err error) time.Duration

	// Retryable reports whether an error is worth retrying. Nil means
	// DefaultRetryable. Errors marked with Permanent are never retried,
	// whatever Retryable says. A result check given to [Middleware]
	// replaces it for that middleware's stages.
	Retryable func(err error) bool

	// Budget, if set, is drawn from before every retry (budget.Acquire);
	// when it is empty the retry is not made (ReasonBudget). Each call
	// deposits once. One budget may be shared by many retriers, and with
	// hedging.
	Budget *budget.Budget

	// Observer, if set, receives a [middleware.Retry] event before each
	// retry's delay and a [middleware.GaveUp] event when retrying stops
	// on a failure. Nil means none.
	Observer middleware.Observer
}

// Retrier retries failed stages as its Config says. Build one with [New]
// and turn it into a middleware with [Middleware]; one Retrier may guard
// stages of any types, and its [Retrier.Stats] count them together. A
// Retrier is safe for concurrent use and never changes after New.
type Retrier struct {
	schedule
	name        string
	obs         middleware.Observer
	maxAttempts int // Unlimited or ≥ 1
	maxElapsed  time.Duration
	rnd         *xrand.Source
	delayFunc   func(int, error) time.Duration
	retryable   func(error) bool
	budget      *budget.Budget

	// Counted on the retry and give-up paths only, on their own cache
	// line so that failing calls do not slow the fields above, which
	// every call reads.
	_       [64]byte
	retries atomic.Uint64
	gaveUp  atomic.Uint64
}

// New returns a Retrier for cfg, or an error naming the invalid Config
// field.
func New(cfg Config) (*Retrier, error) {
	s, err := cfg.schedule()
	if err != nil {
		return nil, err
	}
	r := &Retrier{
		schedule:    s,
		name:        cfg.Name,
		obs:         cfg.Observer,
		maxAttempts: cfg.MaxAttempts,
		maxElapsed:  cfg.MaxElapsed,
		delayFunc:   cfg.DelayFunc,
		retryable:   cfg.Retryable,
		budget:      cfg.Budget,
	}
	switch {
	case r.maxAttempts == 0:
		r.maxAttempts = defaultMaxAttempts
	case r.maxAttempts < 1 && r.maxAttempts != Unlimited:
		return nil, fmt.Errorf("retry: MaxAttempts must be at least 1 (or retry.Unlimited), got %d", cfg.MaxAttempts)
	}
	if r.maxElapsed < 0 {
		return nil, fmt.Errorf("retry: MaxElapsed must not be negative, got %v", cfg.MaxElapsed)
	}
	if r.retryable == nil {
		r.retryable = DefaultRetryable
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	r.rnd = xrand.New(seed)
	return r, nil
}

// schedule is the delay schedule of a Config with defaults applied.
type schedule struct {
	base, max time.Duration
	mult      float64
	jitter    Jitter
}

// schedule applies defaults, and reports an invalid field as an error.
func (c Config) schedule() (schedule, error) {
	s := schedule{base: c.BaseDelay, max: c.MaxDelay, mult: c.Multiplier, jitter: c.Jitter}
	bad := func(format string, args ...any) (schedule, error) {
		return schedule{}, fmt.Errorf("retry: "+format, args...)
	}
	switch {
	case s.base == 0:
		s.base = defaultBaseDelay
	case s.base < 0:
		return bad("BaseDelay must not be negative, got %v", c.BaseDelay)
	}
	switch {
	case s.mult == 0:
		s.mult = defaultMultiplier
	case !(s.mult >= 1) || math.IsInf(s.mult, 0): // also catches NaN
		return bad("Multiplier must be at least 1, got %v", c.Multiplier)
	}
	switch {
	case s.max == 0:
		s.max = defaultMaxDelay
	case s.max < 0:
		return bad("MaxDelay must not be negative, got %v", c.MaxDelay)
	}
	if s.max < s.base {
		return bad("MaxDelay (%v) must not be below BaseDelay (%v)", s.max, s.base)
	}
	if s.jitter < FullJitter || s.jitter > DecorrelatedJitter {
		return bad("unknown Jitter %d", int(c.Jitter))
	}
	return s, nil
}

func (s schedule) delay(attempt int) time.Duration {
	if attempt <= 1 {
		return 0
	}
	// In float64, so that no attempt number overflows: a huge power
	// becomes +Inf and is capped.
	d := float64(s.base) * math.Pow(s.mult, float64(attempt-2))
	if d >= float64(s.max) { // float64(max) rounds up, so d < it fits in an int64
		return s.max
	}
	return time.Duration(d)
}

func (s schedule) jittered(attempt int, prev time.Duration, u float64) time.Duration {
	if attempt <= 1 {
		return 0
	}
	if !(u >= 0) { // also NaN
		u = 0
	}
	if u >= 1 {
		u = math.Nextafter(1, 0)
	}
	var d float64
	switch s.jitter {
	case NoJitter:
		return s.delay(attempt)
	case FullJitter:
		d = u * float64(s.delay(attempt))
	case EqualJitter:
		half := float64(s.delay(attempt)) / 2
		d = half + u*half
	case DecorrelatedJitter:
		if prev <= 0 {
			prev = s.base
		}
		lo, hi := float64(s.base), 3*float64(prev)
		d = lo + u*max(hi-lo, 0)
	}
	if d >= float64(s.max) {
		return s.max
	}
	return time.Duration(max(d, 0))
}
