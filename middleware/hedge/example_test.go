package hedge_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/budget"
	"github.com/brace-go/brace/middleware/hedge"
)

// The first replica is stuck; after 10ms a hedge goes to the next one,
// which answers. The stuck attempt is cancelled and has returned before
// the call does.
func ExampleNew() {
	b, err := budget.New(budget.Config{}) // shared with Retry in a real program
	if err != nil {
		panic(err)
	}
	h, err := hedge.New(hedge.Config{Delay: 10 * time.Millisecond, Percentile: hedge.Fixed, Budget: b,
		OnHedge: func(attempt int) { fmt.Println("hedging: attempt", attempt) }})
	if err != nil {
		panic(err)
	}
	var attempt atomic.Int64 // attempts run concurrently
	replicas := []time.Duration{time.Hour, time.Millisecond}
	fetch := func(ctx context.Context, key string) (string, error) {
		i := attempt.Add(1)
		select {
		case <-time.After(replicas[i-1]):
			return fmt.Sprintf("%s from replica %d", key, i), nil
		case <-ctx.Done():
			fmt.Printf("replica %d: %v\n", i, ctx.Err())
			return "", ctx.Err()
		}
	}
	get := middleware.Apply(fetch, hedge.Middleware[string, string](h))
	fmt.Println(get(context.Background(), "user:1"))
	// Output:
	// hedging: attempt 2
	// replica 1: context canceled
	// user:1 from replica 2 <nil>
}
