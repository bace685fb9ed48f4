package redisstore_test

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/redisstore"
	"github.com/redis/go-redis/v9"
)

// newClient returns a client with the options the package recommends:
// context deadlines reach the socket, a command is sent once, and a
// refused connection is not dialled again.
func newClient() *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:                  "localhost:6379",
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
		DialerRetries:         1,
		DialTimeout:           time.Second,
	})
}

// A breaker whose state is shared, through Redis, by every process that
// builds one with the same name. Building the store does not connect; the
// breaker's first call does.
func ExampleNewBreakerStore() {
	rdb := newClient()
	defer rdb.Close()
	store, err := redisstore.NewBreakerStore(redisstore.BreakerStoreConfig{Client: rdb, Name: "payments"})
	if err != nil {
		fmt.Println(err)
		return
	}
	b, err := breaker.New(breaker.Config{Name: "payments", Threshold: 5, Store: store})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(b.State(), store.Stats().Down)
	// Output: closed false
}

// A concurrency limit shared by every process; LimiterMiddleware guards
// stages with it.
func ExampleNewLimiter() {
	rdb := newClient()
	defer rdb.Close()
	db, err := redisstore.NewLimiter(redisstore.LimiterConfig{Client: rdb, Name: "db", Capacity: 32})
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = middleware.Apply(func(_ context.Context, q string) (int, error) { return len(q), nil },
		redisstore.LimiterMiddleware[string, int](db))
	fmt.Printf("%+v\n", db.Stats())
	// Output: {Rejected:0 Joined:0 StoreFailures:0 LocalInFlight:0 Down:false}
}

// Results shared across processes: from a cache for a minute, and
// between calls in flight. In a service, put dedup.Middleware in front of
// it, so that one call per process reaches Redis.
func ExampleNewDedup() {
	rdb := newClient()
	defer rdb.Close()
	users, err := redisstore.NewDedup(redisstore.DedupConfig{Client: rdb, Name: "users", TTL: time.Minute})
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = middleware.Apply(func(_ context.Context, id int) (string, error) { return "ada", nil },
		redisstore.DedupMiddleware[int, string](users, strconv.Itoa))
	fmt.Printf("%+v\n", users.Stats())
	// Output: {Rejected:0 Joined:0 StoreFailures:0 LocalInFlight:0 Down:false}
}

// A configuration mistake is an error naming the field.
func ExampleNewLimiter_error() {
	rdb := newClient()
	defer rdb.Close()
	_, err := redisstore.NewLimiter(redisstore.LimiterConfig{Client: rdb, Name: "db"})
	fmt.Println(err)
	// Output: redisstore: Capacity must be between 1 and 1099511627776, got 0
}
