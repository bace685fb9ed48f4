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

// An LLM provider's limits, requests and tokens per minute, held
// together: a call is admitted only when both have room. The cost is the
// prompt's estimated tokens; Settle corrects it to the tokens the model
// really used once the answer is in.
func ExampleLimiter_AcquireN() {
	l, err := ratelimit.New(ratelimit.Config{Limits: []ratelimit.Limit{
		{Name: "requests", Rate: 60, Per: time.Minute, PerCall: true},
		{Name: "tokens", Rate: 10_000, Per: time.Minute},
	}})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	p, err := l.AcquireN(ctx, 8_000) // the prompt and the longest answer allowed
	if err != nil {
		panic(err)
	}
	// ... call the model: it used 3,000 tokens ...
	p.Settle(3_000) // 5,000 tokens back
	p.Done(nil)

	if _, err := l.AcquireN(ctx, 7_000); err != nil {
		fmt.Println(err)
	} else {
		fmt.Println("7,000 tokens admitted after the refund")
	}
	_, err = l.AcquireN(ctx, 1_000)
	var limited *ratelimit.LimitedError
	if errors.As(err, &limited) {
		fmt.Printf("refused by %q (quota %d per %v), retry after %v\n",
			limited.Limit, limited.Quota, limited.Window, limited.RetryAfter().Round(time.Second))
	}
	_, err = l.AcquireN(ctx, 20_000)
	fmt.Println(err)
	// Output:
	// 7,000 tokens admitted after the refund
	// refused by "tokens" (quota 10000 per 1m0s), retry after 6s
	// ratelimit: cost 20000 exceeds the burst 10000 of limit "tokens": it could never be admitted
}

// Settled charges each call its estimated cost and settles it to the
// real one: here the cost is the bytes of a body, estimated from the
// request and known exactly from the response.
func ExampleSettled() {
	l, err := ratelimit.New(ratelimit.Config{Rate: 1000, Burst: 1000, Name: "bytes"}) // 1,000 bytes per second
	if err != nil {
		panic(err)
	}
	type request struct{ maxBytes int64 }
	fetch := middleware.Apply(func(_ context.Context, r request) (string, error) {
		return "a short answer", nil
	}, ratelimit.Settled[request, string](l,
		func(r request) int64 { return r.maxBytes },
		func(_ request, out string, _ error) int64 { return int64(len(out)) }))
	for range 3 {
		out, err := fetch(context.Background(), request{maxBytes: 600})
		fmt.Println(out, err)
	}
	// Output:
	// a short answer <nil>
	// a short answer <nil>
	// a short answer <nil>
}
