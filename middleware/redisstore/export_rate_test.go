package redisstore

// KeyOf returns the Redis key of key's limit (or, for "", of the global
// limit when global is true).
func (l *RateLimiter) KeyOf(key string, global bool) string {
	if global {
		return l.globalKey
	}
	return l.keyOf(key)
}
