package adaptive_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/adaptive"
)

// A Limiter admits calls while fewer than its limit are in flight and sheds
// the rest at once.
func ExampleNew() {
	l, err := adaptive.New(adaptive.Config{Name: "api", Min: 1, Max: 100, Initial: 2})
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
	fmt.Println(err, errors.Is(err, adaptive.ErrLimitExceeded))
	fmt.Printf("%+v\n", l.Stats())
	close(release)
	fmt.Println(<-done, <-done)

	_, err = adaptive.New(adaptive.Config{Min: 10, Max: 5})
	fmt.Println(err)
	// Output:
	// adaptive: limit exceeded true
	// {InFlight:2 Limit:2 Rejected:1 LimitChanged:0}
	// <nil> <nil>
	// adaptive: Max must be at least Min (10), got 5
}

// Acquire and Done guard code that is not shaped as a stage. Done takes
// the work's error: only successes are latency samples.
func ExampleLimiter_Acquire() {
	l, err := adaptive.New(adaptive.Config{})
	if err != nil {
		panic(err)
	}
	p, err := l.Acquire(context.Background())
	if err != nil {
		fmt.Println("shed:", err)
		return
	}
	err = doWork()
	p.Done(err)
	p.Done(err) // no-op: Done zeroed p
	fmt.Println("in flight after Done:", l.Stats().InFlight)
	// Output:
	// in flight after Done: 0
}

func doWork() error { return nil }
