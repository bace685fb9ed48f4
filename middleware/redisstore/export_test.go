package redisstore

// Test-only access to values the package keeps unexported.

// DownAfter and DownFor are the client health's thresholds.
const (
	DownAfter = downAfter
	DownFor   = downFor
)

// StateKey returns the Redis key of the breaker's state.
func (s *BreakerStore) StateKey() string { return s.key }

// Key returns the Redis key of the limiter's leases.
func (l *Limiter) Key() string { return l.key }

// Key returns the Redis key of the cached result for key.
func (d *Dedup) Key(key string) string { return d.base(key) + ":v" }
