package budget_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/brace-go/brace/middleware/budget"
)

func ExampleNew() {
	// Retries worth 10% of the calls, no reserve.
	b, err := budget.New(budget.Config{Ratio: 0.1, MinPerSecond: budget.None})
	if err != nil {
		panic(err)
	}
	for range 30 {
		b.Deposit() // one per call
	}
	fmt.Println("retries allowed:", b.Stats().Available)
	// Output: retries allowed: 3
}

// Take a token before each extra attempt; do not make it when the budget
// refuses.
func ExampleBudget_Acquire() {
	b, err := budget.New(budget.Config{Ratio: 0.5, MinPerSecond: budget.None})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	b.Deposit() // the first attempt of two calls
	b.Deposit()
	for i := 1; i <= 2; i++ {
		p, err := b.Acquire(ctx)
		if errors.Is(err, budget.ErrExhausted) {
			fmt.Printf("retry %d: %v\n", i, err)
			continue
		}
		fmt.Printf("retry %d: allowed\n", i)
		p.Done(nil) // the retry's outcome; a budget gives nothing back
	}
	fmt.Printf("%+v\n", b.Stats())
	// Output:
	// retry 1: allowed
	// retry 2: budget: exhausted, no token for an extra attempt
	// {Rejected:1 Available:0 StoreFailures:0}
}
