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
	"github.com/brace-go/brace/middleware/stack"
	"github.com/brace-go/brace/middleware/throttle"
	"github.com/brace-go/brace/middleware/timeout"
)

// recommended builds the chain docs/ordering.md recommends, in one place:
//
//	Fallback → Dedup → Retry → Hedge → Breaker → Throttle → RateLimit → Backpressure → Timeout → Recover → stage
//
// Retry and Hedge share one budget, so together they cannot multiply the
// load on the downstream. The concerns that need the call's types (Fallback,
// Dedup) wrap the rest, which stack.Middleware composes in order with one
// instantiation of the types.
func recommended(b *breaker.Breaker, stale string) (middleware.Middleware[string, string], error) {
	extra, err1 := budget.New(budget.Config{})
	fb, err2 := fallback.New(fallback.Config{})
	dd, err3 := dedup.New(dedup.Config{TTL: time.Second})
	rt, err4 := retry.New(retry.Config{MaxAttempts: 3, BaseDelay: time.Millisecond, Budget: extra})
	hg, err5 := hedge.New(hedge.Config{Delay: 50 * time.Millisecond, Percentile: hedge.Fixed, Budget: extra})
	rl, err6 := ratelimit.New(ratelimit.Config{Rate: 1000})
	bp, err7 := backpressure.New(backpressure.Config{Capacity: 64})
	to, err8 := timeout.New(timeout.Config{Duration: 200 * time.Millisecond})
	th, err9 := throttle.New(throttle.Config{})
	if err := errors.Join(err1, err2, err3, err4, err5, err6, err7, err8, err9); err != nil {
		return nil, err
	}
	return middleware.Chain(
		fallback.Middleware(fb, func(context.Context, string, error) (string, error) { return stale, nil }),
		dedup.Middleware[string, string](dd, func(key string) string { return key }),
		stack.Middleware[string, string](stack.Layers{
			Retry: rt, Hedge: hg, Breaker: b, Throttle: th, RateLimit: rl, Backpressure: bp, Timeout: to, Recover: true,
		}),
	), nil
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
	chain, err := recommended(b, "stale price")
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
	call := chain(fetch)

	fmt.Println(call(context.Background(), "apple"))
	fmt.Println("attempts:", attempts)

	if err := b.ForceOpen(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(call(context.Background(), "pear"))
	fmt.Println("attempts:", attempts)
	// Output:
	// price of apple <nil>
	// attempts: 3
	// stale price <nil>
	// attempts: 3
}
