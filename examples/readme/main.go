// Command readme is the quick start from README.md, kept here so that CI
// builds and runs it.
package main

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

func main() {
	calls := 0
	fetch := func(ctx context.Context, id int) (string, error) { // any func of this shape is a Stage
		if calls++; calls < 3 {
			return "", errors.New("503 unavailable")
		}
		return fmt.Sprintf("user %d", id), nil
	}

	rt, err1 := retry.New(retry.Config{MaxAttempts: 5, BaseDelay: 10 * time.Millisecond})
	br, err2 := breaker.New(breaker.Config{Name: "users", Threshold: 5})
	to, err3 := timeout.New(timeout.Config{Duration: time.Second})
	if err := errors.Join(err1, err2, err3); err != nil {
		log.Fatal(err) // invalid configuration is an error at construction, never a panic
	}

	// Retry outermost, then the breaker, then a per-attempt timeout: the
	// recommended order. The stage's types are inferred.
	get := stack.Apply(fetch, stack.Layers{Retry: rt, Breaker: br, Timeout: to, Recover: true})
	fmt.Println(get(context.Background(), 42)) // user 42 <nil>, after two retries
}
