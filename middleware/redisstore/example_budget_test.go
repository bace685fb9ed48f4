package redisstore_test

import (
	"fmt"

	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/budget"
	"github.com/brace-go/brace/middleware/redisstore"
	"github.com/brace-go/brace/middleware/retry"
)

// A retry budget shared by every process that builds one with the same
// name: the fleet's retries stay within 10% of the fleet's calls (plus the
// fleet's reserve). Retry draws from it as from any budget. Building the
// store and the budget sends nothing; a call that succeeds first time
// sends nothing either.
func ExampleNewBudgetStore() {
	rdb := newClient()
	defer rdb.Close()
	store, err := redisstore.NewBudgetStore(redisstore.BudgetStoreConfig{Client: rdb, Name: "payments"})
	if err != nil {
		fmt.Println(err)
		return
	}
	b, err := budget.New(budget.Config{Name: "payments", Ratio: 0.1, Store: store})
	if err != nil {
		fmt.Println(err)
		return
	}
	r, err := retry.New(retry.Config{MaxAttempts: 3, Budget: b})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r != nil, store.Stats().StoreFailures)
	// Output: true 0
}

// A shared breaker in quorum mode: it opens only when at least two
// processes see the downstream failing, so one process with a bad path
// cannot open it for the fleet.
func ExampleBreakerStoreConfig_quorum() {
	rdb := newClient()
	defer rdb.Close()
	store, err := redisstore.NewBreakerStore(redisstore.BreakerStoreConfig{Client: rdb, Name: "payments", Quorum: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	b, err := breaker.New(breaker.Config{Name: "payments", FailureRate: 0.5, MinCalls: 20, Store: store})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(b.State())
	// Output: closed
}
