package redisstore_test

import (
	"testing"

	"github.com/brace-go/brace/middleware/redisstore"
	"github.com/redis/go-redis/v9"
)

// FuzzRateLimiterKeys: two (name, key) pairs share a Redis key only when
// they are the same pair, and no keyed limit shares the global limit's
// key. Names with braces are refused by NewRateLimiter; any other bytes
// are fuzzed. Nothing is sent to Redis.
func FuzzRateLimiterKeys(f *testing.F) {
	f.Add("a", "b", "a", "b")
	f.Add("a:1", "b", "a", "1:b")
	f.Add("x", "}", "x", "{")
	f.Add("n", "a\nb", "n ", "a b")
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true})
	defer rdb.Close()
	limiters := map[string]*redisstore.RateLimiter{}
	get := func(name string) *redisstore.RateLimiter {
		if l, ok := limiters[name]; ok {
			return l
		}
		l, err := redisstore.NewRateLimiter(redisstore.RateLimiterConfig{Client: rdb, Name: name, Rate: 1})
		if err != nil {
			return nil
		}
		if len(limiters) < 1000 {
			limiters[name] = l
		}
		return l
	}
	f.Fuzz(func(t *testing.T, n1, k1, n2, k2 string) {
		l1, l2 := get(n1), get(n2)
		if l1 == nil || l2 == nil {
			return
		}
		a, b := l1.KeyOf(k1, false), l2.KeyOf(k2, false)
		if (a == b) != (n1 == n2 && k1 == k2) {
			t.Errorf("(%q, %q) → %q and (%q, %q) → %q", n1, k1, a, n2, k2, b)
		}
		if g := l2.KeyOf("", true); a == g {
			t.Errorf("(%q, %q) → %q, the global key of %q", n1, k1, a, n2)
		}
	})
}
