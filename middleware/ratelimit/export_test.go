package ratelimit

// TableLen returns the number of entries in the map of l's Keyed table
// for key type K (0 if there is none yet).
func TableLen[K comparable](l *Limiter) int { return tableFor[K](l).size() }

// Burst returns the bucket size in use of the first limit (Config.Burst
// or its default).
func (l *Limiter) Burst() int { return int(l.s.limits[0].burst) }
