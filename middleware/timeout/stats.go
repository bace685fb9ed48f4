package timeout

import "sync/atomic"

// Counter counts what the Timeout middlewares it is given to
// (Config.Counter) do. The zero value is ready to use, a Counter is safe
// for concurrent use, and one Counter may be shared by several middlewares
// to count them together. A nil Config.Counter costs one nil check per
// call.
type Counter struct {
	calls, timeouts atomic.Uint64
}

// Stats is a snapshot of a [Counter].
type Stats struct {
	Calls    uint64 // calls started, timed out or not (counted on entry)
	Timeouts uint64 // calls whose deadline passed before the stage returned (as OnTimeout sees them)
}

// Stats returns the counts so far. A nil Counter returns zero Stats.
func (c *Counter) Stats() Stats {
	if c == nil {
		return Stats{}
	}
	return Stats{Calls: c.calls.Load(), Timeouts: c.timeouts.Load()}
}
