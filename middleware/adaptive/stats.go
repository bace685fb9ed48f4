package adaptive

import "sync/atomic"

// Counter counts what the limiters it is given to (Config.Counter) do. The
// zero value is ready to use, a Counter is safe for concurrent use, and one
// Counter may be shared by several limiters to count them together. The
// limiter's own gauges are [Limiter.Limit] and [Limiter.Inflight].
type Counter struct {
	admitted, rejected, changes atomic.Uint64
}

// Stats is a snapshot of a [Counter].
type Stats struct {
	Admitted     uint64 // calls admitted
	Rejected     uint64 // calls rejected with ErrLimitExceeded
	LimitChanges uint64 // changes of the enforced limit (as OnLimitChange sees them)
}

// Stats returns the counts so far. A nil Counter returns zero Stats.
func (c *Counter) Stats() Stats {
	if c == nil {
		return Stats{}
	}
	return Stats{Admitted: c.admitted.Load(), Rejected: c.rejected.Load(), LimitChanges: c.changes.Load()}
}
