package retry

import (
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"time"

	"github.com/brace-go/brace/middleware/budget"
)

// Defaults used for zero-valued [Config] fields.
const (
	DefaultMaxAttempts = 3
	DefaultBaseDelay   = 100 * time.Millisecond
	DefaultMultiplier  = 2.0
	DefaultMaxDelay    = 60 * time.Second
)

// Unlimited, as Config.MaxAttempts, removes the attempt limit. Retries then
// end only on success, a non-retryable error, MaxElapsed, the context, or
// the budget.
const Unlimited = -1

// Jitter selects how a delay is randomised. With d the delay of the
// exponential schedule for an attempt (see [Config.Delay]) and u a uniform
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

// Config configures a Retry middleware. The zero value is valid: 3 attempts,
// full-jittered exponential delays from 100 ms doubling up to 60 s, every
// error retried except those [DefaultRetryable] rejects.
type Config struct {
	// Name identifies the middleware in log records ("name"). Optional.
	Name string

	// MaxAttempts is the number of attempts, counting the first one: 3
	// means one call and at most two retries, 1 disables retrying. Zero
	// means DefaultMaxAttempts; use Unlimited for no limit. Other values
	// below 1 are rejected.
	MaxAttempts int

	// BaseDelay is the delay before the first retry (attempt 2). Zero
	// means DefaultBaseDelay.
	BaseDelay time.Duration

	// Multiplier is the factor between consecutive delays: the delay
	// before attempt n is BaseDelay × Multiplier^(n−2). Zero means
	// DefaultMultiplier; 1 gives constant delays; below 1 is rejected.
	Multiplier float64

	// MaxDelay caps every delay, including jittered ones, custom ones
	// from DelayFunc and server hints. Zero means DefaultMaxDelay. It
	// must not be below BaseDelay.
	MaxDelay time.Duration

	// Jitter selects the randomisation; the zero value is FullJitter.
	Jitter Jitter

	// Seed seeds the middleware's random source, for reproducible tests.
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
	// whatever Retryable says.
	Retryable func(err error) bool

	// Budget, if set, is drawn from before every retry; when it is empty
	// the retry is not made (ReasonBudget). Each call deposits once. One
	// budget may be shared by many middlewares.
	Budget *budget.Budget

	// OnRetry, if set, is called when a retry will really follow, just
	// before the delay: attempt is the number of the attempt about to
	// start (2 for the first retry), err the error that caused it, delay
	// the wait before it. It runs on the caller's goroutine. The only
	// case in which no attempt follows OnRetry is the context ending
	// during the delay (the call then returns ReasonContext).
	OnRetry func(attempt int, err error, delay time.Duration)

	// Logger, if set, receives a debug record per retry and a warn record
	// when retries run out. Nil means silent.
	Logger *slog.Logger

	// Counter, if set, counts calls, retries and exhaustions (see
	// [Counter]). Nil means no counting, at the cost of one nil check per
	// call; counting costs one atomic add per call.
	Counter *Counter
}

// policy is a validated Config with defaults applied. It never changes.
type policy struct {
	schedule
	name        string
	maxAttempts int // Unlimited or ≥ 1
	maxElapsed  time.Duration
	rnd         *source
	delayFunc   func(int, error) time.Duration
	retryable   func(error) bool
	budget      *budget.Budget
	onRetry     func(int, error, time.Duration)
	logger      *slog.Logger
	counter     *Counter
}

func newPolicy(cfg Config) (*policy, error) {
	s, err := cfg.schedule(true)
	if err != nil {
		return nil, err
	}
	p := &policy{
		schedule:    s,
		name:        cfg.Name,
		maxAttempts: cfg.MaxAttempts,
		maxElapsed:  cfg.MaxElapsed,
		delayFunc:   cfg.DelayFunc,
		retryable:   cfg.Retryable,
		budget:      cfg.Budget,
		onRetry:     cfg.OnRetry,
		logger:      cfg.Logger,
		counter:     cfg.Counter,
	}
	switch {
	case p.maxAttempts == 0:
		p.maxAttempts = DefaultMaxAttempts
	case p.maxAttempts < 1 && p.maxAttempts != Unlimited:
		return nil, fmt.Errorf("retry: MaxAttempts must be at least 1 (or retry.Unlimited), got %d", cfg.MaxAttempts)
	}
	if p.maxElapsed < 0 {
		return nil, fmt.Errorf("retry: MaxElapsed must not be negative, got %v", cfg.MaxElapsed)
	}
	if p.retryable == nil {
		p.retryable = DefaultRetryable
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	p.rnd = newSource(seed)
	return p, nil
}

// schedule is the delay schedule of a Config with defaults applied.
type schedule struct {
	base, max time.Duration
	mult      float64
	jitter    Jitter
}

// schedule applies defaults. If strict, invalid fields are an error;
// otherwise they are replaced by defaults (for the pure Delay methods).
func (c Config) schedule(strict bool) (schedule, error) {
	s := schedule{base: c.BaseDelay, max: c.MaxDelay, mult: c.Multiplier, jitter: c.Jitter}
	bad := func(format string, args ...any) (schedule, error) {
		return schedule{}, fmt.Errorf("retry: "+format, args...)
	}
	switch {
	case s.base == 0:
		s.base = DefaultBaseDelay
	case s.base < 0:
		if strict {
			return bad("BaseDelay must not be negative, got %v", c.BaseDelay)
		}
		s.base = DefaultBaseDelay
	}
	switch {
	case s.mult == 0:
		s.mult = DefaultMultiplier
	case !(s.mult >= 1) || math.IsInf(s.mult, 0): // also catches NaN
		if strict {
			return bad("Multiplier must be at least 1, got %v", c.Multiplier)
		}
		s.mult = DefaultMultiplier
	}
	switch {
	case s.max == 0:
		s.max = DefaultMaxDelay
	case s.max < 0:
		if strict {
			return bad("MaxDelay must not be negative, got %v", c.MaxDelay)
		}
		s.max = DefaultMaxDelay
	}
	if s.max < s.base {
		if strict {
			return bad("MaxDelay (%v) must not be below BaseDelay (%v)", s.max, s.base)
		}
		s.max = s.base
	}
	if s.jitter < FullJitter || s.jitter > DecorrelatedJitter {
		if strict {
			return bad("unknown Jitter %d", int(c.Jitter))
		}
		s.jitter = FullJitter
	}
	return s, nil
}

// Delay returns the delay of the exponential schedule before the given
// attempt, without jitter: 0 for attempt 1 and below, BaseDelay for attempt
// 2, then BaseDelay × Multiplier^(attempt−2), capped at MaxDelay. It is
// correct for every int (no overflow) and is the upper bound of the full
// and equal jitter modes. Zero fields mean their defaults; invalid fields,
// which New would reject, are replaced by defaults.
//
// Delay is pure: it is for table-testing a policy.
func (c Config) Delay(attempt int) time.Duration {
	s, _ := c.schedule(false)
	return s.delay(attempt)
}

// JitteredDelay returns the delay before attempt as the middleware computes
// it for the random draw u in [0, 1) (clamped into that range), where prev
// is the delay that preceded the previous attempt (used only by
// DecorrelatedJitter; ≤ 0 means BaseDelay). The result is never negative
// and never above MaxDelay. Like Delay it is pure, for table tests.
func (c Config) JitteredDelay(attempt int, prev time.Duration, u float64) time.Duration {
	s, _ := c.schedule(false)
	return s.jittered(attempt, prev, u)
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
