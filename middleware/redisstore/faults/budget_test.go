package faults_test

import (
	"context"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/budget"
	"github.com/brace-go/brace/middleware/redisstore"
	"github.com/brace-go/brace/middleware/redisstore/internal/toxitest"
)

// TestBudgetSlowed adds 200ms of latency to every reply (longer than the
// store's Timeout): every Acquire returns within Timeout (plus slack),
// decided by the process's local window, with StoreFailed reported; once
// the latency is removed the fleet's window is used again within
// recoveryBound (the client may have been marked down for DownFor).
func TestBudgetSlowed(t *testing.T) {
	px := toxitest.Start(t)
	s, err := redisstore.NewBudgetStore(redisstore.BudgetStoreConfig{Client: px.Client(t), Name: name(t), Timeout: storeTimeout})
	if err != nil {
		t.Fatal(err)
	}
	var rec recorder
	b, err := budget.New(budget.Config{Ratio: 0.5, MinPerSecond: budget.None, Window: time.Minute, FlushAfter: budget.None, Store: s, Observer: &rec})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 10 {
		b.Deposit()
	}
	if _, err := b.Acquire(ctx); err != nil || b.Stats().StoreFailures != 0 {
		t.Fatalf("Acquire on a healthy Redis: %v, %d store failures", err, b.Stats().StoreFailures)
	}

	slow := px.Latency(t, toxitest.Downstream, 200*time.Millisecond, 0)
	var slowest time.Duration
	granted := 0
	for range 8 {
		start := time.Now()
		_, err := b.Acquire(ctx)
		slowest = max(slowest, time.Since(start))
		if err == nil {
			granted++
		}
	}
	failures := b.Stats().StoreFailures
	t.Logf("200ms latency: slowest Acquire %v (bound Timeout %v + slack %v); %d granted by the local window; %d store failures", slowest, storeTimeout, slack, granted, failures)
	if slowest > storeTimeout+slack {
		t.Errorf("an Acquire took %v > %v", slowest, storeTimeout+slack)
	}
	if granted != 4 {
		t.Errorf("local window granted %d; want 4 (0.5 × 10 calls, less the 1 taken on Redis)", granted)
	}
	if failures == 0 || len(rec.of(middleware.StoreFailed)) == 0 {
		t.Errorf("no StoreFailed reported")
	}

	// Back: an Acquire succeeds with no store failure, so the fleet's
	// window (10 calls, 1 token taken) decided it.
	slow.Remove(t)
	took, ok := toxitest.Eventually(recoveryBound, func() bool {
		before := b.Stats().StoreFailures
		_, err := b.Acquire(ctx)
		return err == nil && b.Stats().StoreFailures == before
	})
	if !ok {
		t.Fatalf("not back on Redis within %v", recoveryBound)
	}
	t.Logf("back on the fleet's window %v after the latency was removed", took)
}
