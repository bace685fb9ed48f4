package ratelimit

import "sync/atomic"

// Counter counts what the limiters it is given to (Config.Counter,
// KeyedConfig.Counter) do. The zero value is ready to use, a Counter is
// safe for concurrent use, and one Counter may be shared by several
// limiters to count them together. A nil Counter in a config costs one nil
// check per call.
type Counter struct {
	admitted, limited atomic.Uint64
}

// Stats is a snapshot of a [Counter].
type Stats struct {
	Admitted uint64 // calls admitted, at once or after waiting for a token
	Limited  uint64 // calls refused with a *LimitedError
}

// Stats returns the counts so far. A nil Counter returns zero Stats.
func (c *Counter) Stats() Stats {
	if c == nil {
		return Stats{}
	}
	return Stats{Admitted: c.admitted.Load(), Limited: c.limited.Load()}
}

// admit counts a call admitted when err is nil. c may be nil.
func (c *Counter) admit(err error) {
	if c != nil && err == nil {
		c.admitted.Add(1)
	}
}

// limit counts a refused call. c may be nil.
func (c *Counter) limit() {
	if c != nil {
		c.limited.Add(1)
	}
}
