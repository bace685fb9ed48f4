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
	mw, err := retry.New[string, string](retry.Config{
		MaxAttempts: 4,
		BaseDelay:   time.Millisecond,
		OnRetry: func(attempt int, err error, _ time.Duration) {
			fmt.Printf("attempt %d after: %v\n", attempt, err)
		},
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
	v, err := middleware.Apply(fetch, mw)(context.Background(), "k")
	fmt.Println(v, err)
	// Output:
	// attempt 2 after: connection reset
	// attempt 3 after: connection reset
	// value of k <nil>
}

func ExampleConfig_Delay() {
	cfg := retry.Config{BaseDelay: time.Second, MaxDelay: 10 * time.Second}
	for _, attempt := range []int{1, 2, 3, 4, 5, 6, 1 << 31} {
		fmt.Printf("before attempt %d: %v\n", attempt, cfg.Delay(attempt))
	}
	// Output:
	// before attempt 1: 0s
	// before attempt 2: 1s
	// before attempt 3: 2s
	// before attempt 4: 4s
	// before attempt 5: 8s
	// before attempt 6: 10s
	// before attempt 2147483648: 10s
}

func ExampleNewWithResult() {
	// Retry on HTTP 503 as well as on errors.
	retryOn := func(status int, err error) bool { return status == 503 || retry.DefaultRetryable(err) }
	mw, err := retry.NewWithResult[string, int](retry.Config{BaseDelay: time.Millisecond}, retryOn)
	if err != nil {
		panic(err)
	}
	statuses := []int{503, 503, 200}
	get := mw(func(context.Context, string) (int, error) {
		s := statuses[0]
		statuses = statuses[1:]
		return s, nil
	})
	fmt.Println(get(context.Background(), "/health"))
	// Output: 200 <nil>
}

func ExamplePermanent() {
	errNotFound := errors.New("not found")
	mw, _ := retry.New[string, string](retry.Config{})
	calls := 0
	get := mw(func(context.Context, string) (string, error) {
		calls++
		return "", fmt.Errorf("get user: %w", retry.Permanent(errNotFound))
	})
	_, err := get(context.Background(), "u1")
	fmt.Println(calls, err, errors.Is(err, errNotFound))
	// Output: 1 get user: not found true
}

func ExampleExhaustedError() {
	errDown := errors.New("service down")
	mw, _ := retry.New[int, int](retry.Config{MaxAttempts: 3, BaseDelay: time.Millisecond})
	_, err := mw(func(context.Context, int) (int, error) { return 0, errDown })(context.Background(), 1)

	fmt.Println(err)
	fmt.Println(errors.Is(err, errDown))
	if e, ok := errors.AsType[*retry.ExhaustedError](err); ok {
		fmt.Println(e.Attempts, e.Reason)
	}
	// Output:
	// retry: giving up after 3 attempts: max attempts reached: last error: service down
	// true
	// 3 max attempts reached
}

func ExampleConfig_budget() {
	// One budget per downstream, shared by every Retry that calls it. This
	// one allows one retry per call and no reserve, so an outage at most
	// doubles the load, however many attempts each Retry would make.
	b, err := budget.New(budget.Config{Ratio: 1, MinPerSecond: budget.None})
	if err != nil {
		panic(err)
	}
	mw, _ := retry.New[int, int](retry.Config{MaxAttempts: 10, BaseDelay: time.Millisecond, Budget: b})
	calls := 0
	down := mw(func(context.Context, int) (int, error) { calls++; return 0, errors.New("service down") })

	_, err = down(context.Background(), 1)
	fmt.Println(calls, "calls:", err)
	// Output: 2 calls: retry: giving up after 2 attempts: retry budget empty: last error: service down
}
