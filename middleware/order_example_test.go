package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/budget"
	"github.com/brace-go/brace/middleware/dedup"
	"github.com/brace-go/brace/middleware/fallback"
	"github.com/brace-go/brace/middleware/hedge"
	"github.com/brace-go/brace/middleware/ratelimit"
	"github.com/brace-go/brace/middleware/retry"
	"github.com/brace-go/brace/middleware/timeout"
)

// recommended builds the chain docs/ordering.md recommends, in one place:
//
//	Fallback → Dedup → Retry → Hedge → Breaker → RateLimit → Backpressure → Timeout → Recover → stage
//
// Retry and Hedge share one budget, so together they cannot multiply the
// load on the downstream.
func recommended(b *breaker.Breaker, stale string) ([]middleware.Middleware[string, string], error) {
	extra, err := budget.New(budget.Config{})
	if err != nil {
		return nil, err
	}
	dd, err := dedup.New[string, string](func(key string) string { return key }, dedup.Config{TTL: time.Second})
	if err != nil {
		return nil, err
	}
	rt, err := retry.New[string, string](retry.Config{MaxAttempts: 3, BaseDelay: time.Millisecond, Budget: extra})
	if err != nil {
		return nil, err
	}
	hg, err := hedge.New(hedge.Config{Delay: 50 * time.Millisecond, Percentile: hedge.Fixed, Budget: extra})
	if err != nil {
		return nil, err
	}
	rl, err := ratelimit.New(ratelimit.Config{Rate: 1000})
	if err != nil {
		return nil, err
	}
	bp, err := backpressure.New(64, backpressure.Config{})
	if err != nil {
		return nil, err
	}
	to, err := timeout.New[string, string](timeout.Config{Duration: 200 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	return []middleware.Middleware[string, string]{
		fallback.Value[string, string](stale, fallback.Config{}),
		dd,
		rt,
		hedge.Middleware[string, string](hg),
		breaker.Middleware[string, string](b),
		ratelimit.Middleware[string, string](rl),
		backpressure.Middleware[string, string](bp),
		to,
		middleware.Recover[string, string](),
	}, nil
}

// Every concern in the recommended order: the first call survives a failed
// attempt and a panic through Retry and Recover; once the breaker is open,
// the fallback answers.
func Example_recommendedOrder() {
	b, err := breaker.New(breaker.Config{Name: "prices", Threshold: 5})
	if err != nil {
		fmt.Println(err)
		return
	}
	mws, err := recommended(b, "stale price")
	if err != nil {
		fmt.Println(err)
		return
	}
	attempts := 0
	fetch := func(_ context.Context, sku string) (string, error) {
		attempts++
		switch attempts {
		case 1:
			return "", errors.New("503")
		case 2:
			panic("nil map")
		}
		return "price of " + sku, nil
	}
	call := middleware.Apply(fetch, mws...)

	fmt.Println(call(context.Background(), "apple"))
	fmt.Println("attempts:", attempts)

	b.ForceOpen()
	fmt.Println(call(context.Background(), "pear"))
	fmt.Println("attempts:", attempts)
	// Output:
	// price of apple <nil>
	// attempts: 3
	// stale price <nil>
	// attempts: 3
}
