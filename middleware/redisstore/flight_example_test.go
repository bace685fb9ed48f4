package redisstore_test

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/dedup"
	"github.com/brace-go/brace/middleware/redisstore"
	"github.com/redis/go-redis/v9"
)

// Calls in flight shared by every process: dedup collapses the calls
// within a process into one, and Deduplicated makes that one wait for a
// call with the same key running in another process, instead of running
// the stage again. Building them does not connect; the first call does.
func ExampleNewFlights() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379", ContextTimeoutEnabled: true})
	defer rdb.Close()
	flights, err := redisstore.NewFlights[string](rdb, "users", redisstore.FlightConfig{
		Lease:   5 * time.Second, // above the stage's timeout
		MaxWait: 2 * time.Second, // then a waiting call runs the stage itself
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	inProcess, err := dedup.New[int, string](func(id int) int { return id }, dedup.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	fetchUser := func(_ context.Context, id int) (string, error) { return "ada", nil }
	_ = middleware.Apply(fetchUser, inProcess, redisstore.Deduplicated(flights, strconv.Itoa))
	fmt.Println(flights.Key("42"))
	// Output: brace:flight:users:{key:42}:lock
}
