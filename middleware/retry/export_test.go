package retry

import (
	"math"
	"time"
)

// PermanentError is the mark Permanent puts on an error.
type PermanentError = permanentError

// DefaultMaxAttempts is Config.MaxAttempts's default.
const DefaultMaxAttempts = defaultMaxAttempts

// lenient returns c's schedule with every invalid field, which New would
// reject, replaced by its default (an invalid MaxDelay below BaseDelay by
// BaseDelay), so that the schedule can be fuzzed with any Config.
func (c Config) lenient() schedule {
	if c.BaseDelay < 0 {
		c.BaseDelay = 0
	}
	if c.Multiplier != 0 && (!(c.Multiplier >= 1) || math.IsInf(c.Multiplier, 0)) {
		c.Multiplier = 0
	}
	if c.MaxDelay < 0 {
		c.MaxDelay = 0
	}
	if c.Jitter < FullJitter || c.Jitter > DecorrelatedJitter {
		c.Jitter = FullJitter
	}
	base := c.BaseDelay
	if base == 0 {
		base = defaultBaseDelay
	}
	if c.MaxDelay == 0 && defaultMaxDelay < base || c.MaxDelay != 0 && c.MaxDelay < base {
		c.MaxDelay = base
	}
	s, err := c.schedule()
	if err != nil {
		panic(err) // every invalid field was replaced above
	}
	return s
}

// Delay returns the delay of the exponential schedule before the given
// attempt, without jitter: 0 for attempt 1 and below, BaseDelay for attempt
// 2, then BaseDelay × Multiplier^(attempt−2), capped at MaxDelay. It is
// correct for every int (no overflow) and is the upper bound of the full
// and equal jitter modes. Zero fields mean their defaults; invalid fields,
// which New would reject, are replaced by defaults.
func (c Config) Delay(attempt int) time.Duration { return c.lenient().delay(attempt) }

// JitteredDelay returns the delay before attempt as the middleware computes
// it for the random draw u in [0, 1) (clamped into that range), where prev
// is the delay that preceded the previous attempt (used only by
// DecorrelatedJitter; ≤ 0 means BaseDelay). The result is never negative
// and never above MaxDelay.
func (c Config) JitteredDelay(attempt int, prev time.Duration, u float64) time.Duration {
	return c.lenient().jittered(attempt, prev, u)
}
