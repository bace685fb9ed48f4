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
	h, err := hedge.New(hedge.Config{
		Name: "users", Delay: 10 * time.Millisecond, Percentile: hedge.Fixed, Budget: b,
		Observer: middleware.ObserverFunc(func(_ context.Context, e middleware.Event) {
			fmt.Printf("%s %s: attempt %d after %v\n", e.Name, e.Kind, e.Attempt, e.Delay)
		}),
	})
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
	fmt.Printf("%+v\n", h.Stats())
	// Output:
	// users hedged: attempt 2 after 10ms
	// replica 1: context canceled
	// user:1 from replica 2 <nil>
	// {Hedged:1 HedgeWins:1 Rejected:0}
}

// When the budget refuses, the hedge is not sent and the call waits for its
// first attempt. Stats counts the refusal.
func ExampleHedger_Stats() {
	empty, err := budget.New(budget.Config{Ratio: budget.None, MinPerSecond: budget.None})
	if err != nil {
		panic(err)
	}
	h, err := hedge.New(hedge.Config{Delay: time.Millisecond, Percentile: hedge.Fixed, Budget: empty})
	if err != nil {
		panic(err)
	}
	slow := func(_ context.Context, in int) (int, error) {
		time.Sleep(20 * time.Millisecond)
		return in * 2, nil
	}
	double := middleware.Apply(slow, hedge.Middleware[int, int](h))
	fmt.Println(double(context.Background(), 21))
	fmt.Printf("%+v\n", h.Stats())
	// Output:
	// 42 <nil>
	// {Hedged:0 HedgeWins:0 Rejected:1}
}
