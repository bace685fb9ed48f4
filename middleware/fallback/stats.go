package fallback

import "sync/atomic"

// Counter counts what the fallbacks it is given to (Config.Counter) do.
// The zero value is ready to use, a Counter is safe for concurrent use, and
// one Counter may be shared by several middlewares to count them together.
type Counter struct {
	calls, fallbacks, failures atomic.Uint64
}

// Stats is a snapshot of a [Counter].
type Stats struct {
	Calls            uint64 // calls started
	Fallbacks        uint64 // calls answered by the fallback, or that tried to be (as OnFallback sees them)
	FallbackFailures uint64 // fallbacks that failed too, returning a *Error
}

// Stats returns the counts so far. A nil Counter returns zero Stats.
func (c *Counter) Stats() Stats {
	if c == nil {
		return Stats{}
	}
	return Stats{Calls: c.calls.Load(), Fallbacks: c.fallbacks.Load(), FallbackFailures: c.failures.Load()}
}
