package retry_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/budget"
	"github.com/brace-go/brace/middleware/retry"
)

func ExampleNew() {
	r, err := retry.New(retry.Config{
		Name:        "kv",
		MaxAttempts: 4,
		BaseDelay:   time.Millisecond,
		Observer: middleware.ObserverFunc(func(_ context.Context, e middleware.Event) {
			fmt.Printf("%v: attempt %d failed: %v\n", e.Kind, e.Attempt, e.Err)
		}),
	})
	if err != nil {
		panic(err)
	}
	calls := 0
	fetch := func(_ context.Context, key string) (string, error) {
		calls++
		if calls < 3 {
			return "", errors.New("connection reset")
		}
		return "value of " + key, nil
	}
	v, err := middleware.Apply(fetch, retry.Middleware[string, string](r))(context.Background(), "k")
	fmt.Println(v, err)
	fmt.Printf("%+v\n", r.Stats())
	// Output:
	// retry: attempt 1 failed: connection reset
	// retry: attempt 2 failed: connection reset
	// value of k <nil>
	// {Retries:2 GaveUp:0}
}

// A result check, the optional argument of Middleware, retries on a value
// such as an HTTP 503 as well as on errors.
func ExampleMiddleware_resultCheck() {
	r, err := retry.New(retry.Config{BaseDelay: time.Millisecond})
	if err != nil {
		panic(err)
	}
	retryOn := func(status int, err error) bool { return status == 503 || retry.DefaultRetryable(err) }
	statuses := []int{503, 503, 200}
	get := retry.Middleware[string, int](r, retryOn)(func(context.Context, string) (int, error) {
		s := statuses[0]
		statuses = statuses[1:]
		return s, nil
	})
	fmt.Println(get(context.Background(), "/health"))
	// Output: 200 <nil>
}

func ExamplePermanent() {
	errNotFound := errors.New("not found")
	r, _ := retry.New(retry.Config{})
	calls := 0
	get := retry.Middleware[string, string](r)(func(context.Context, string) (string, error) {
		calls++
		return "", fmt.Errorf("get user: %w", retry.Permanent(errNotFound))
	})
	_, err := get(context.Background(), "u1")
	fmt.Println(calls, err, errors.Is(err, errNotFound))
	// Output: 1 get user: not found true
}

// errors.Is on an *ExhaustedError matches the error that ended the call —
// the last attempt's — and not the errors of earlier attempts, which the
// error keeps (a bounded sample) in Earlier. A call is counted once, under
// the failure it ended with.
func ExampleExhaustedError() {
	errTimeout := errors.New("attempt timed out")
	errDown := errors.New("service down")
	r, _ := retry.New(retry.Config{MaxAttempts: 3, BaseDelay: time.Millisecond})
	attempt := 0
	_, err := retry.Middleware[int, int](r)(func(context.Context, int) (int, error) {
		if attempt++; attempt < 3 {
			return 0, errTimeout
		}
		return 0, errDown
	})(context.Background(), 1)

	fmt.Println(err)
	fmt.Println("is down:", errors.Is(err, errDown))
	fmt.Println("is timeout:", errors.Is(err, errTimeout))
	var e *retry.ExhaustedError
	if errors.As(err, &e) {
		fmt.Println(e.Attempts, e.Reason, e.Earlier)
	}
	// Output:
	// retry: giving up after 3 attempts: max attempts reached: last error: service down
	// is down: true
	// is timeout: false
	// 3 attempts [attempt timed out attempt timed out]
}

func ExampleConfig_budget() {
	// One budget per downstream, shared by every Retrier that calls it.
	// This one allows one retry per call and no reserve, so an outage at
	// most doubles the load, however many attempts each Retrier would make.
	b, err := budget.New(budget.Config{Ratio: 1, MinPerSecond: budget.None})
	if err != nil {
		panic(err)
	}
	r, _ := retry.New(retry.Config{MaxAttempts: 10, BaseDelay: time.Millisecond, Budget: b})
	calls := 0
	down := retry.Middleware[int, int](r)(func(context.Context, int) (int, error) { calls++; return 0, errors.New("service down") })

	_, err = down(context.Background(), 1)
	fmt.Println(calls, "calls:", err)
	// Output: 2 calls: retry: giving up after 2 attempts: retry budget empty: last error: service down
}
