package backpressure

// Stats is a snapshot of a [Limiter], from [Limiter.Stats].
type Stats struct {
	InFlight int64 // weight of the calls admitted and not yet done; never above Capacity
	Queued   int64 // calls waiting for a slot (Wait mode)
	Capacity int64 // Config.Capacity

	Rejected uint64 // calls refused: shed (ErrShed) or of an impossible weight (*WeightError)
	Waited   uint64 // calls admitted after waiting in the queue
}

// Stats returns the limiter's gauges and counts. It is pure: a few atomic
// loads, no lock, no side effect. The fields are read one by one, so while
// calls run a snapshot may be a few counts apart between fields.
func (l *Limiter) Stats() Stats {
	inflight, queued := split(l.state.Load())
	return Stats{
		InFlight: min(inflight, l.capacity), // without the unit of a call that found no room and is taking it back
		Queued:   queued,
		Capacity: l.capacity,
		Rejected: l.rejected.Load(),
		Waited:   l.waited.Load(),
	}
}
