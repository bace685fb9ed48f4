package adaptive_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/adaptive"
)

// A Limiter admits calls while fewer than Limit() are in flight and sheds
// the rest at once.
func ExampleNew() {
	l, err := adaptive.New(adaptive.Config{Min: 1, Max: 100, Initial: 2})
	if err != nil {
		panic(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	slow := middleware.Apply(func(context.Context, int) (int, error) {
		started <- struct{}{}
		<-release
		return 0, nil
	}, adaptive.Middleware[int, int](l))

	done := make(chan error, 2)
	for range 2 {
		go func() { _, err := slow(context.Background(), 0); done <- err }()
	}
	<-started
	<-started
	_, err = slow(context.Background(), 0)
	fmt.Println("limit", l.Limit(), "in flight", l.Inflight(), "->", err, errors.Is(err, adaptive.ErrLimitExceeded))
	close(release)
	fmt.Println(<-done, <-done)
	// Output:
	// limit 2 in flight 2 -> adaptive: limit exceeded true
	// <nil> <nil>
}

// Acquire and Release guard code that is not shaped as a stage.
func ExampleLimiter_Acquire() {
	l, _ := adaptive.New(adaptive.Config{})
	p, err := l.Acquire(context.Background())
	if err != nil {
		fmt.Println("shed:", err)
		return
	}
	err = doWork()
	p.Release(err == nil) // only successes are latency samples
	fmt.Println("in flight after release:", l.Inflight())
	// Output:
	// in flight after release: 0
}

func doWork() error { return nil }
