package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/breaker"
)

func ExampleNew() {
	b, err := breaker.New(breaker.Config{
		Name:        "payments",
		Threshold:   2,
		OpenTimeout: 10 * time.Millisecond,
		OnStateChange: func(from, to breaker.State, c breaker.Counts) {
			fmt.Printf("%v -> %v after %d consecutive failures\n", from, to, c.ConsecutiveFailures)
		},
	})
	if err != nil {
		panic(err)
	}
	healthy := false
	pay := middleware.Apply(func(ctx context.Context, cents int) (string, error) {
		if !healthy {
			return "", errors.New("payments unavailable")
		}
		return fmt.Sprintf("charged %d", cents), nil
	}, breaker.Middleware[int, string](b))

	ctx := context.Background()
	for range 3 {
		_, err := pay(ctx, 100)
		fmt.Println(err)
	}
	healthy = true
	time.Sleep(10 * time.Millisecond) // the open timeout
	fmt.Println(pay(ctx, 100))
	// Output:
	// payments unavailable
	// closed -> open after 2 consecutive failures
	// payments unavailable
	// breaker: "payments" is open
	// open -> half-open after 0 consecutive failures
	// half-open -> closed after 0 consecutive failures
	// charged 100 <nil>
}

func ExampleBreaker_Allow() {
	b, _ := breaker.New(breaker.Config{Name: "search", Threshold: 1})
	ctx := context.Background()
	query := func() error { return errors.New("timeout") }

	for range 2 {
		t, err := b.Allow(ctx)
		if err != nil {
			fmt.Println("rejected:", err, errors.Is(err, breaker.ErrOpen))
			continue
		}
		err = query()
		b.Done(ctx, t, err) // exactly once per ticket
		fmt.Println("called:", err)
	}
	// Output:
	// called: timeout
	// rejected: breaker: "search" is open true
}

func ExampleConfig_rate() {
	b, _ := breaker.New(breaker.Config{
		FailureRate: 0.5,              // open at 50% failures
		MinCalls:    4,                // once the window holds 4 results
		Window:      10 * time.Second, // rolling, in 10 buckets of 1s
	})
	ctx := context.Background()
	for _, err := range []error{nil, errors.New("x"), nil, errors.New("x")} {
		t, _ := b.Allow(ctx)
		b.Done(ctx, t, err)
		fmt.Println(b.State())
	}
	// Output:
	// closed
	// closed
	// closed
	// open
}

func ExampleNewMemoryStore() {
	store := breaker.NewMemoryStore()
	a, _ := breaker.New(breaker.Config{Name: "db", Threshold: 2, Store: store})
	b, _ := breaker.New(breaker.Config{Name: "db", Threshold: 2, Store: store})
	ctx := context.Background()
	for _, br := range []*breaker.Breaker{a, b} { // one failure each
		t, _ := br.Allow(ctx)
		br.Done(ctx, t, errors.New("down"))
	}
	_, err := b.Allow(ctx)
	fmt.Println(err)
	// Output: breaker: "db" is open
}

func ExampleMiddleware() {
	// One breaker guards stages of different types.
	b, _ := breaker.New(breaker.Config{Name: "inventory", Threshold: 1})
	get := middleware.Apply(func(context.Context, string) (int, error) {
		return 0, errors.New("inventory down")
	}, breaker.Middleware[string, int](b))
	put := middleware.Apply(func(context.Context, int) (bool, error) {
		return true, nil
	}, breaker.Middleware[int, bool](b))

	ctx := context.Background()
	_, err := get(ctx, "sku-1")
	fmt.Println(err)
	_, err = put(ctx, 3)
	fmt.Println(err)
	// Output:
	// inventory down
	// breaker: "inventory" is open
}
