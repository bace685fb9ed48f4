package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/ratelimit"
)

// A limiter that rejects at once tells the caller how long to wait.
func ExampleNew() {
	l, err := ratelimit.New(ratelimit.Config{Rate: 2, Burst: 2}) // 2 calls per second
	if err != nil {
		panic(err)
	}
	ping := middleware.Apply(func(context.Context, int) (string, error) { return "pong", nil },
		ratelimit.Middleware[int, string](l))
	for i := range 3 {
		out, err := ping(context.Background(), i)
		var limited *ratelimit.LimitedError
		if errors.As(err, &limited) {
			fmt.Println("limited; retry in about", limited.RetryAfter().Round(100*time.Millisecond))
			continue
		}
		fmt.Println(out)
	}
	fmt.Printf("%+v\n", l.Stats())
	// Output:
	// pong
	// pong
	// limited; retry in about 500ms
	// {Rejected:1 Waited:0 Keys:0}
}

// With MaxWait, a call waits for its token when the wait is short enough.
// Acquire and Done guard work that is not a Stage.
func ExampleLimiter_Acquire() {
	l, err := ratelimit.New(ratelimit.Config{Rate: 100, Burst: 1, MaxWait: 50 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	start := time.Now()
	for range 3 {
		p, err := l.Acquire(context.Background())
		if err != nil {
			fmt.Println(err)
			continue
		}
		// ... the work ...
		p.Done(nil)
	}
	fmt.Println("3 calls admitted, waited at least 20ms:", time.Since(start) >= 19*time.Millisecond)
	// Output:
	// 3 calls admitted, waited at least 20ms: true
}

// Keyed gives each tenant its own bucket.
func ExampleKeyed() {
	type request struct{ Tenant, Path string }
	l, err := ratelimit.New(ratelimit.Config{Rate: 1, Burst: 1, MaxKeys: 1000})
	if err != nil {
		panic(err)
	}
	serve := middleware.Apply(
		func(_ context.Context, r request) (string, error) { return "served " + r.Tenant, nil },
		ratelimit.Keyed[request, string](l, func(r request) string { return r.Tenant }),
	)
	for _, r := range []request{{"acme", "/a"}, {"acme", "/b"}, {"globex", "/a"}} {
		out, err := serve(context.Background(), r)
		fmt.Println(out, errors.Is(err, ratelimit.ErrLimited))
	}
	fmt.Println("tenants:", l.Stats().Keys)
	// Output:
	// served acme false
	//  true
	// served globex false
	// tenants: 2
}
