package adaptive_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/adaptive"
	"github.com/brace-go/brace/middleware/priority"
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

// With Priorities, a call's level comes from its context and may fill only
// its share of the current limit, counted on every call in flight: a
// sheddable call half of it by default, a critical call all of it.
func ExampleConfig_priorities() {
	l, err := adaptive.New(adaptive.Config{Min: 4, Max: 4, Priorities: true})
	if err != nil {
		panic(err)
	}
	batch := priority.With(context.Background(), priority.Sheddable)
	user := priority.With(context.Background(), priority.Critical)
	var held []adaptive.Permit
	for _, c := range []struct {
		name string
		ctx  context.Context
	}{{"sheddable", batch}, {"sheddable", batch}, {"sheddable", batch}, {"critical", user}, {"critical", user}, {"critical", user}} {
		before := l.Stats().InFlight
		p, err := l.Acquire(c.ctx)
		fmt.Printf("%s at %d in flight: %v\n", c.name, before, err)
		if err == nil {
			held = append(held, p)
		}
	}
	for i := range held {
		held[i].Done(nil)
	}
	// Output:
	// sheddable at 0 in flight: <nil>
	// sheddable at 1 in flight: <nil>
	// sheddable at 2 in flight: adaptive: limit exceeded
	// critical at 2 in flight: <nil>
	// critical at 3 in flight: <nil>
	// critical at 4 in flight: adaptive: limit exceeded
}
