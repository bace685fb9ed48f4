package redisstore_test

import (
	"context"
	"strconv"
	"time"

	"fmt"
	"github.com/brace-go/brace/middleware"

	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/redisstore"
	"github.com/redis/go-redis/v9"
)

// A breaker whose state is shared, through Redis, by every process that
// builds one with the same name. Building the store does not connect; the
// breaker's first call does.
func ExampleNewBreakerStore() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379", ContextTimeoutEnabled: true})
	defer rdb.Close()
	store, err := redisstore.NewBreakerStore(rdb, "payments", redisstore.BreakerConfig{})
	if err != nil {
		fmt.Println(err)
		return
	}
	b, err := breaker.New(breaker.Config{Name: "payments", Threshold: 5, Store: store})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(store.Key(), b.State())
	// Output: brace:{breaker:payments}:state closed
}

// A result cache shared by every process; Cached serves a stage from it.
func ExampleNewCache() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379", ContextTimeoutEnabled: true})
	defer rdb.Close()
	users, err := redisstore.NewCache[string](rdb, "users", redisstore.CacheConfig{TTL: time.Minute})
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = middleware.Apply(func(_ context.Context, id int) (string, error) { return "ada", nil },
		redisstore.Cached(users, strconv.Itoa))
	fmt.Println(users.Key("42"))
	// Output: brace:cache:users:42
}

// A concurrency limit shared by every process; Limit guards stages with it.
func ExampleNewLimiter() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379", ContextTimeoutEnabled: true})
	defer rdb.Close()
	db, err := redisstore.NewLimiter(rdb, "db", 32, redisstore.LimiterConfig{Lease: 10 * time.Second})
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = middleware.Apply(func(_ context.Context, q string) (int, error) { return len(q), nil },
		redisstore.Limit[string, int](db))
	fmt.Println(db.Key(), db.Capacity())
	// Output: brace:{limiter:db}:leases 32
}
