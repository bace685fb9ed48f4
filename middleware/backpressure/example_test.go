package backpressure_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/backpressure"
)

// A limiter of capacity 1 in the default Shed mode: while one call runs, a
// second is shed at once with ErrShed.
func ExampleNew() {
	l, err := backpressure.New(backpressure.Config{Name: "db", Capacity: 1})
	if err != nil {
		panic(err)
	}
	var query middleware.Stage[string, string]
	query = middleware.Apply(func(ctx context.Context, q string) (string, error) {
		if q == "outer" {
			// A call made while this one holds the only slot.
			_, err := query(ctx, "inner")
			fmt.Println("inner:", err, errors.Is(err, backpressure.ErrShed))
			fmt.Printf("during: %+v\n", l.Stats())
		}
		return "rows for " + q, nil
	}, backpressure.Middleware[string, string](l))

	fmt.Println(query(context.Background(), "outer"))
	fmt.Printf("after: %+v\n", l.Stats())

	_, err = backpressure.New(backpressure.Config{})
	fmt.Println(err)
	// Output:
	// inner: backpressure: shed true
	// during: {InFlight:1 Queued:0 Capacity:1 Rejected:1 Waited:0}
	// rows for outer <nil>
	// after: {InFlight:0 Queued:0 Capacity:1 Rejected:1 Waited:0}
	// backpressure: Capacity must be at least 1, got 0
}

// Capacity can be shared by calls of different weights and types: here a
// batch occupies as many slots as it has items, and a batch larger than
// the whole capacity is rejected up front instead of waiting forever. The
// observer sees the soft limit as a state: entered once, left once.
func ExampleWeighted() {
	obs := middleware.ObserverFunc(func(_ context.Context, e middleware.Event) {
		switch e.Kind {
		case middleware.StateChanged:
			fmt.Printf("%s -> %s at %d in flight\n", e.From, e.To, e.InFlight)
		case middleware.Rejected:
			fmt.Printf("rejected (%s): %v\n", e.Reason, e.Err)
		}
	})
	l, err := backpressure.New(backpressure.Config{Capacity: 10, SoftLimit: 8, Observer: obs})
	if err != nil {
		panic(err)
	}
	insert := middleware.Apply(func(_ context.Context, rows []string) (int, error) {
		return len(rows), nil
	}, backpressure.Weighted[[]string, int](l, func(rows []string) int64 { return int64(len(rows)) }))

	fmt.Println(insert(context.Background(), make([]string, 9)))
	_, err = insert(context.Background(), make([]string, 12))
	fmt.Println(err)
	// Output:
	// normal -> over-soft-limit at 9 in flight
	// over-soft-limit -> normal at 0 in flight
	// 9 <nil>
	// rejected (weight): backpressure: weight must be between 1 and capacity 10, got 12
	// backpressure: weight must be between 1 and capacity 10, got 12
}

// In Wait mode a call at capacity queues for a slot, first in first out,
// and is shed when MaxWait passes or the queue is full. Here the inner call
// can never get the slot its caller holds, so it is shed after MaxWait.
func ExampleConfig_wait() {
	obs := middleware.ObserverFunc(func(_ context.Context, e middleware.Event) {
		if e.Kind == middleware.Rejected {
			fmt.Println("shed after waiting at least 10ms:", e.Wait >= 10*time.Millisecond)
		}
	})
	l, err := backpressure.New(backpressure.Config{Capacity: 1, Mode: backpressure.Wait,
		MaxWait: 10 * time.Millisecond, MaxQueue: 100, Observer: obs})
	if err != nil {
		panic(err)
	}
	var work middleware.Stage[int, int]
	work = middleware.Apply(func(ctx context.Context, n int) (int, error) {
		if n > 0 {
			_, err := work(ctx, n-1)
			fmt.Println("inner:", err)
		}
		return n, nil
	}, backpressure.Middleware[int, int](l))
	fmt.Println(work(context.Background(), 1))
	// Output:
	// shed after waiting at least 10ms: true
	// inner: backpressure: shed
	// 1 <nil>
}

// Acquire and Done guard work that is not shaped as a stage. Done gives
// the slot back once; a second Done is harmless.
func ExampleLimiter_Acquire() {
	l, err := backpressure.New(backpressure.Config{Capacity: 2})
	if err != nil {
		panic(err)
	}
	p, err := l.AcquireN(context.Background(), 2)
	if err != nil {
		fmt.Println("busy:", err)
		return
	}
	_, err = l.Acquire(context.Background())
	fmt.Println("while full:", err)
	p.Done(nil)
	p.Done(nil) // no-op: Done zeroed p
	fmt.Println("in flight after Done:", l.Stats().InFlight)
	// Output:
	// while full: backpressure: shed
	// in flight after Done: 0
}
