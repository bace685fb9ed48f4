package adaptive

// Stats is a snapshot of a [Limiter], from [Limiter.Stats].
type Stats struct {
	InFlight int64 // calls admitted and not yet done
	Limit    int64 // the limit enforced now (halved while a probe runs)

	Rejected     uint64 // calls refused with ErrLimitExceeded
	LimitChanged uint64 // changes of the limit reported (LimitChanged events)
}

// Stats returns the limiter's gauges and counts. It is pure: one short
// lock, no side effect.
func (l *Limiter) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Stats{InFlight: int64(l.inflight), Limit: int64(l.limit), Rejected: l.rejected, LimitChanged: l.changes}
}
