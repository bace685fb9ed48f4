package timeout_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/retry"
	"github.com/brace-go/brace/middleware/timeout"
)

func ExampleNew() {
	mw, err := timeout.New[string, string](timeout.Config{Duration: 10 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	slow := func(ctx context.Context, q string) (string, error) {
		select {
		case <-ctx.Done(): // a cooperative stage watches its context
			return "", ctx.Err()
		case <-time.After(time.Second):
			return "answer to " + q, nil
		}
	}
	_, err = middleware.Apply(slow, mw)(context.Background(), "q")
	fmt.Println(err)
	fmt.Println(errors.Is(err, context.DeadlineExceeded), errors.Is(err, timeout.ErrTimeout))
	// Output:
	// timeout: stage did not finish within 10ms: context deadline exceeded
	// true true
}

// Timeout inside Retry bounds each attempt; Timeout outside Retry bounds
// the whole call, delays included. Both together are common.
func ExampleNew_perAttempt() {
	perAttempt, _ := timeout.New[int, int](timeout.Config{Duration: 5 * time.Millisecond})
	overall, _ := timeout.New[int, int](timeout.Config{Duration: time.Second})
	re, _ := retry.New[int, int](retry.Config{MaxAttempts: 3, BaseDelay: time.Millisecond})

	attempts := 0
	stage := func(ctx context.Context, n int) (int, error) {
		attempts++
		if attempts == 1 { // the first attempt hangs until its own timeout
			<-ctx.Done()
			return 0, ctx.Err()
		}
		return n * 2, nil
	}
	got, err := middleware.Apply(stage, overall, re, perAttempt)(context.Background(), 21)
	fmt.Println(got, err, "after", attempts, "attempts")
	// Output: 42 <nil> after 2 attempts
}
