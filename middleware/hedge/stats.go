package hedge

import "sync/atomic"

// Counter counts what the Hedgers it is given to (Config.Counter) do. The
// zero value is ready to use, a Counter is safe for concurrent use, and one
// Counter may be shared by several Hedgers to count them together.
type Counter struct {
	calls, hedges, wins, refused atomic.Uint64
}

// Stats is a snapshot of a [Counter].
type Stats struct {
	Calls   uint64 // calls started
	Hedges  uint64 // extra attempts started (as OnHedge sees them)
	Wins    uint64 // calls whose result came from a hedge rather than the first attempt
	Refused uint64 // hedges not sent because the budget was empty
}

// Stats returns the counts so far. A nil Counter returns zero Stats.
func (c *Counter) Stats() Stats {
	if c == nil {
		return Stats{}
	}
	return Stats{Calls: c.calls.Load(), Hedges: c.hedges.Load(), Wins: c.wins.Load(), Refused: c.refused.Load()}
}
