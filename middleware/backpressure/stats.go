package backpressure

import "sync/atomic"

// Counter counts what the limiters it is given to (Config.Counter) do:
// calls admitted, calls that queued, calls shed. The zero value is ready to
// use, a Counter is safe for concurrent use, and one Counter may be shared
// by several limiters to count them together. A nil Config.Counter costs
// one nil check per call. The limiter's own gauges are [Limiter.Depth],
// [Limiter.Queued] and [Limiter.Capacity].
type Counter struct {
	admitted, waited, shed, canceled atomic.Uint64
}

// Stats is a snapshot of a [Counter].
type Stats struct {
	Admitted uint64 // calls admitted, at once or after waiting
	Waited   uint64 // calls that joined the queue (Wait mode), whatever came of it
	Shed     uint64 // calls shed with a *ShedError
	Canceled uint64 // calls whose context ended while they waited in the queue
}

// Stats returns the counts so far. A nil Counter returns zero Stats. The
// fields are read one by one, so while calls are running a snapshot may
// be a few counts apart between fields.
func (c *Counter) Stats() Stats {
	if c == nil {
		return Stats{}
	}
	return Stats{
		Admitted: c.admitted.Load(),
		Waited:   c.waited.Load(),
		Shed:     c.shed.Load(),
		Canceled: c.canceled.Load(),
	}
}
