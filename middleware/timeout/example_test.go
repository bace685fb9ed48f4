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
	to, err := timeout.New(timeout.Config{Name: "search", Duration: 10 * time.Millisecond})
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
	_, err = middleware.Apply(slow, timeout.Middleware[string, string](to))(context.Background(), "q")
	fmt.Println(err)
	fmt.Println(errors.Is(err, context.DeadlineExceeded), errors.Is(err, timeout.ErrTimeout))
	fmt.Printf("%+v\n", to.Stats())
	// Output:
	// timeout: stage did not finish within 10ms: context deadline exceeded
	// true true
	// {TimedOut:1}
}

// Timeout inside Retry bounds each attempt; Timeout outside Retry bounds
// the whole call, delays included. Both together are common.
func ExampleMiddleware_perAttempt() {
	perAttempt, _ := timeout.New(timeout.Config{Duration: 5 * time.Millisecond})
	overall, _ := timeout.New(timeout.Config{Duration: time.Second})
	r, _ := retry.New(retry.Config{MaxAttempts: 3, BaseDelay: time.Millisecond})

	attempts := 0
	stage := func(ctx context.Context, n int) (int, error) {
		attempts++
		if attempts == 1 { // the first attempt hangs until its own timeout
			<-ctx.Done()
			return 0, ctx.Err()
		}
		return n * 2, nil
	}
	got, err := middleware.Apply(stage,
		timeout.Middleware[int, int](overall),
		retry.Middleware[int, int](r),
		timeout.Middleware[int, int](perAttempt),
	)(context.Background(), 21)
	fmt.Println(got, err, "after", attempts, "attempts")
	// Output: 42 <nil> after 2 attempts
}

// An Observer receives a TimedOut event for each call that ran past its
// limit; middleware.Log turns events into log records.
func ExampleConfig_observer() {
	obs := middleware.ObserverFunc(func(_ context.Context, e middleware.Event) {
		fmt.Println(e.Kind, e.Concern, e.Name, e.Delay, e.Err)
	})
	to, _ := timeout.New(timeout.Config{Name: "db", Duration: time.Millisecond, Observer: obs})
	hang := func(ctx context.Context, _ int) (int, error) { <-ctx.Done(); return 0, ctx.Err() }
	timeout.Middleware[int, int](to)(hang)(context.Background(), 1)
	// Output: timed-out timeout db 1ms timeout: stage did not finish within 1ms: context deadline exceeded
}
