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
// second is shed at once with the depth and capacity.
func ExampleNew() {
	l, err := backpressure.New(1, backpressure.Config{})
	if err != nil {
		panic(err)
	}
	var query middleware.Stage[string, string]
	query = middleware.Apply(func(ctx context.Context, q string) (string, error) {
		if q == "outer" {
			// A call made while this one holds the only slot.
			_, err := query(ctx, "inner")
			fmt.Println("inner:", err)
			var shed *backpressure.ShedError
			if errors.As(err, &shed) {
				fmt.Println("depth", shed.Depth, "capacity", shed.Capacity, "shed:", errors.Is(err, backpressure.ErrShed))
			}
		}
		return "rows for " + q, nil
	}, backpressure.Middleware[string, string](l))

	fmt.Println(query(context.Background(), "outer"))
	fmt.Println("depth after:", l.Depth())
	// Output:
	// inner: backpressure: shed at depth 1 of capacity 1
	// depth 1 capacity 1 shed: true
	// rows for outer <nil>
	// depth after: 0
}

// Capacity can be shared by calls of different weights and types: here a
// batch occupies as many slots as it has items, and a batch larger than
// the whole capacity is rejected up front instead of waiting forever.
func ExampleWeighted() {
	l, err := backpressure.New(10, backpressure.Config{SoftLimit: 8, OnSoftLimit: func(depth, soft int64) {
		fmt.Printf("soft limit %d reached at depth %d\n", soft, depth)
	}})
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
	// soft limit 8 reached at depth 9
	// 9 <nil>
	// backpressure: weight must be between 1 and capacity 10, got 12
}

// In Wait mode a call at capacity queues for a slot, first in first out,
// and is shed when MaxWait passes or the queue is full. Here the inner call
// can never get the slot its caller holds, so it is shed after MaxWait.
func ExampleConfig_wait() {
	l, err := backpressure.New(1, backpressure.Config{Mode: backpressure.Wait, MaxWait: 10 * time.Millisecond, MaxQueue: 100})
	if err != nil {
		panic(err)
	}
	var work middleware.Stage[int, int]
	work = middleware.Apply(func(ctx context.Context, n int) (int, error) {
		if n > 0 {
			_, err := work(ctx, n-1)
			var shed *backpressure.ShedError
			if errors.As(err, &shed) {
				fmt.Println("inner call shed after waiting at least 10ms:", shed.Waited >= 10*time.Millisecond)
			}
		}
		return n, nil
	}, backpressure.Middleware[int, int](l))
	fmt.Println(work(context.Background(), 1))
	// Output:
	// inner call shed after waiting at least 10ms: true
	// 1 <nil>
}
