package throttle_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/priority"
	"github.com/brace-go/brace/middleware/throttle"
)

func ExampleNew() {
	th, err := throttle.New(throttle.Config{Name: "inventory"}) // K 2, a 10 s window
	if err != nil {
		panic(err)
	}
	fmt.Printf("%+v\n", th.Stats())

	_, err = throttle.New(throttle.Config{K: 0.5})
	fmt.Println(err)
	// Output:
	// {Requests:0 Accepts:0 Probability:0 State:passing Rejected:0}
	// throttle: K must be a finite number of at least 1, got 0.5
}

// The downstream refuses 19 calls of 20: after MinRequests calls the
// throttler rejects calls locally, so the downstream sees fewer of them.
func ExampleMiddleware() {
	th, err := throttle.New(throttle.Config{Seed: 1})
	if err != nil {
		panic(err)
	}
	n := 0
	overloaded := func(ctx context.Context, id int) (string, error) {
		n++
		if n%20 != 0 {
			return "", errors.New("503 service unavailable")
		}
		return "ok", nil
	}
	call := middleware.Apply(overloaded, throttle.Middleware[int, string](th))
	rejected := 0
	for i := range 1000 {
		if _, err := call(context.Background(), i); errors.Is(err, throttle.ErrThrottled) {
			rejected++
		}
	}
	s := th.Stats()
	fmt.Printf("calls 1000, reached the downstream %d, rejected locally %d\n", n, rejected)
	fmt.Printf("probability %.2f (MaxProbability), %s\n", s.Probability, s.State)
	// Output:
	// calls 1000, reached the downstream 96, rejected locally 904
	// probability 0.90 (MaxProbability), throttling
}

// The two-step form, for work that is not a Stage; with priorities on,
// sheddable calls bear the rejections first.
func ExampleThrottler_Acquire() {
	th, err := throttle.New(throttle.Config{Priorities: true, MinRequests: 10, Seed: 1})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	for range 10 { // ten default calls, every one refused by the downstream
		p, err := th.Acquire(ctx)
		if err != nil {
			continue
		}
		p.Done(errors.New("unavailable"))
	}
	for _, l := range []priority.Level{priority.Sheddable, priority.Default, priority.Critical} {
		fmt.Printf("%-9s rejected with probability %.2f\n", l, th.Probability(l))
	}
	_, err = th.Acquire(priority.With(ctx, priority.Sheddable))
	var re *throttle.RejectedError
	fmt.Println(errors.As(err, &re), err)
	// Output:
	// sheddable rejected with probability 1.00
	// default   rejected with probability 0.90
	// critical  rejected with probability 0.00
	// true throttle: rejected the call locally (rejection probability 1.00)
}
