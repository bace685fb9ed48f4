package breaker

import "sync/atomic"

// Counter counts what the breakers it is given to (Config.Counter) do:
// results by outcome, rejections and state changes. The zero value is
// ready to use, a Counter is safe for concurrent use, and one Counter may
// be shared by several breakers to count them together. A nil
// Config.Counter costs one nil check per call. The breaker's own gauges
// are [Breaker.State] and [Breaker.Counts].
type Counter struct {
	successes, failures, ignored, rejections atomic.Uint64
	transitions                              [ForcedClosed + 1]atomic.Uint64
}

// Stats is a snapshot of a [Counter].
type Stats struct {
	Successes  uint64 // results reported as Success (Done or Record)
	Failures   uint64 // results reported as Failure, panics included
	Ignored    uint64 // results reported as Ignore
	Rejections uint64 // calls refused by Allow with an *OpenError
	// Transitions counts state changes by the state entered:
	// Transitions[Open] is how often the breaker opened.
	Transitions [ForcedClosed + 1]uint64
}

// Stats returns the counts so far. A nil Counter returns zero Stats. The
// fields are read one by one, so while calls are running a snapshot may
// be a few counts apart between fields.
func (c *Counter) Stats() Stats {
	if c == nil {
		return Stats{}
	}
	s := Stats{
		Successes:  c.successes.Load(),
		Failures:   c.failures.Load(),
		Ignored:    c.ignored.Load(),
		Rejections: c.rejections.Load(),
	}
	for i := range c.transitions {
		s.Transitions[i] = c.transitions[i].Load()
	}
	return s
}

func (c *Counter) result(o Outcome) {
	switch o {
	case Success:
		c.successes.Add(1)
	case Failure:
		c.failures.Add(1)
	default:
		c.ignored.Add(1)
	}
}
