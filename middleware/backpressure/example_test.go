package backpressure_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/priority"
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

// With Priorities, each call's level comes from its context, and a level
// may fill only its share of the capacity, counted on everything in
// flight: here, of 10, a sheddable call half, a default call 90%, a
// critical call all of it. Sheddable work is refused first; critical work
// takes what the others leave.
func ExampleConfig_priorities() {
	obs := middleware.ObserverFunc(func(_ context.Context, e middleware.Event) {
		if e.Kind == middleware.Rejected {
			fmt.Printf("rejected %v call at %d in flight (its limit %d)\n", e.Priority, e.InFlight, e.Limit)
		}
	})
	l, err := backpressure.New(backpressure.Config{Capacity: 10, Priorities: true, Observer: obs})
	if err != nil {
		panic(err)
	}
	batch := priority.With(context.Background(), priority.Sheddable)
	user := priority.With(context.Background(), priority.Critical)

	p, _ := l.AcquireN(batch, 5) // sheddable: up to 5 of 10
	_, err = l.Acquire(batch)
	fmt.Println("6th sheddable:", err)
	q, err := l.AcquireN(user, 5) // critical: the rest
	fmt.Println("critical:", err)
	fmt.Printf("%+v\n", l.Stats())
	p.Done(nil)
	q.Done(nil)
	// Output:
	// rejected sheddable call at 5 in flight (its limit 5)
	// 6th sheddable: backpressure: shed
	// critical: <nil>
	// {InFlight:10 Queued:0 Capacity:10 Rejected:1 Waited:0}
}

// A Wait-mode limiter with CoDel: while the queue comes and goes a call
// may wait Interval; once it has stood for longer than Interval, a call
// waits at most Target and is then dropped (Reason "codel"), so a standing
// queue drains instead of serving callers who have gone.
func ExampleConfig_codel() {
	obs := middleware.ObserverFunc(func(_ context.Context, e middleware.Event) {
		if e.Kind == middleware.Rejected {
			fmt.Printf("%s after at least 20ms: %v\n", e.Reason, e.Wait >= 20*time.Millisecond)
		}
	})
	l, err := backpressure.New(backpressure.Config{Capacity: 1, Mode: backpressure.Wait, MaxQueue: 100,
		Queue: backpressure.CoDel, Target: time.Millisecond, Interval: 20 * time.Millisecond, Observer: obs})
	if err != nil {
		panic(err)
	}
	p, _ := l.Acquire(context.Background()) // the only slot, held throughout
	defer p.Done(nil)
	_, err = l.Acquire(context.Background()) // the queue was empty: waits Interval
	fmt.Println(err, errors.Is(err, backpressure.ErrShed))
	// Output:
	// codel after at least 20ms: true
	// backpressure: shed true
}
