package budget_test

import (
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
	retries := 0
	for b.Withdraw() { // one per retry
		retries++
	}
	fmt.Println("retries allowed:", retries)
	// Output: retries allowed: 3
}
