package hedge

// Stats is a snapshot of what a [Hedger] did since [New].
type Stats struct {
	Hedged    uint64 // hedges sent: extra attempts started ([middleware.Hedged] events)
	HedgeWins uint64 // calls whose result came from a hedge rather than the first attempt
	Rejected  uint64 // hedges not sent because the budget refused ([middleware.Rejected] events)
}

// Stats returns the counts so far. It is pure: three atomic loads. A call
// that returns before its hedge delay touches none of these counters.
func (h *Hedger) Stats() Stats {
	return Stats{Hedged: h.hedged.Load(), HedgeWins: h.wins.Load(), Rejected: h.rejected.Load()}
}
