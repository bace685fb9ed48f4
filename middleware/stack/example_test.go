package stack_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/retry"
	"github.com/brace-go/brace/middleware/stack"
	"github.com/brace-go/brace/middleware/timeout"
)

// A retry, a breaker and a timeout, composed in the recommended order by
// one call; the stage's types are inferred.
func ExampleApply() {
	calls := 0
	fetch := func(ctx context.Context, id int) (string, error) {
		if calls++; calls < 3 {
			return "", errors.New("503 unavailable")
		}
		return fmt.Sprintf("user %d", id), nil
	}
	rt, err1 := retry.New(retry.Config{MaxAttempts: 5, BaseDelay: time.Millisecond})
	br, err2 := breaker.New(breaker.Config{Name: "users", Threshold: 5})
	to, err3 := timeout.New(timeout.Config{Duration: time.Second})
	if err := errors.Join(err1, err2, err3); err != nil {
		log.Fatal(err)
	}
	get := stack.Apply(fetch, stack.Layers{Retry: rt, Breaker: br, Timeout: to})
	fmt.Println(get(context.Background(), 42))
	fmt.Println("attempts:", calls, "breaker:", br.State())
	// Output:
	// user 42 <nil>
	// attempts: 3 breaker: closed
}
