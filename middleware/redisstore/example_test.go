package redisstore_test

import (
	"fmt"

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
