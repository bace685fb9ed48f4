//go:build brace_e2e

// TODO(lead): remove the build constraint above once retry, breaker and
// timeout build with the new API (New(Config) + Middleware[In, Out],
// Config.Observer). Until then this file is compiled only with
// `go test -tags brace_e2e ./middleware/bracetest/`. The names it assumes
// are those of docs/architecture.md ("One shape for every concern");
// adjust them if a concern's helper chose others.

package bracetest_test

// This file is the worked example of docs/testing.md: tests of a user's
// own chain with testing/synctest (fake time) and the test kit.

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/bracetest"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/retry"
	"github.com/brace-go/brace/middleware/timeout"
)

type Order struct{ ID string }
type Receipt struct{ OrderID string }

var errDeclined = errors.New("payment gateway: 503")

// newCharge is the chain under test, as the application builds it: Retry
// around Breaker around a per-attempt Timeout around the gateway call.
// Tests pass a fake gateway and an observer (a Recorder).
func newCharge(gateway middleware.Stage[Order, Receipt], obs middleware.Observer) (middleware.Stage[Order, Receipt], *breaker.Breaker, error) {
	b, err := breaker.New(breaker.Config{Name: "gateway", Threshold: 3, OpenTimeout: 30 * time.Second, Observer: obs})
	if err != nil {
		return nil, nil, err
	}
	r, err := retry.New(retry.Config{
		Name: "charge", MaxAttempts: 3, BaseDelay: 100 * time.Millisecond, Jitter: retry.NoJitter, Observer: obs,
	})
	if err != nil {
		return nil, nil, err
	}
	to, err := timeout.New(timeout.Config{Name: "gateway", Duration: time.Second, Observer: obs})
	if err != nil {
		return nil, nil, err
	}
	return middleware.Apply(gateway,
		retry.Middleware[Order, Receipt](r),
		breaker.Middleware[Order, Receipt](b),
		timeout.Middleware[Order, Receipt](to),
	), b, nil
}

// ignoreErr compares events without their errors, which the tests check
// with errors.Is where they matter.
var ignoreErr = cmpopts.IgnoreFields(middleware.Event{}, "Err")

// A hung attempt is cut off by the timeout and retried; the retry succeeds.
// In the bubble the test takes no real time, yet it checks the exact
// schedule: 1s timeout + 100ms backoff.
func TestGuideHungAttemptIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := new(bracetest.Recorder)
		gateway := bracetest.NewScript[Order](
			bracetest.Step[Receipt]{Hang: true},
			bracetest.Return(Receipt{OrderID: "o-1"}),
		)
		// Build inside the bubble: the breaker reads the clock when it is
		// built, and must read the bubble's fake clock.
		charge, _, err := newCharge(gateway.Stage, rec)
		if err != nil {
			t.Fatal(err)
		}

		start := time.Now()
		got, err := charge(t.Context(), Order{ID: "o-1"})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(Receipt{OrderID: "o-1"}, got); diff != "" {
			t.Errorf("receipt (-want +got):\n%s", diff)
		}
		if elapsed := time.Since(start); elapsed != 1100*time.Millisecond {
			t.Errorf("took %v of fake time; want 1.1s (timeout, then 100ms backoff)", elapsed)
		}
		want := []middleware.Event{
			{Kind: middleware.TimedOut, Concern: "timeout", Name: "gateway", Delay: time.Second},
			{Kind: middleware.Retry, Concern: "retry", Name: "charge", Attempt: 1, Delay: 100 * time.Millisecond},
		}
		events := rec.Events()
		if diff := cmp.Diff(want, events, ignoreErr); diff != "" {
			t.Fatalf("events (-want +got):\n%s", diff)
		}
		for _, e := range events {
			if !errors.Is(e.Err, context.DeadlineExceeded) {
				t.Errorf("%v event: error %v; want one that is context.DeadlineExceeded", e.Kind, e.Err)
			}
		}
		if diff := cmp.Diff([]Order{{"o-1"}, {"o-1"}}, gateway.Inputs()); diff != "" {
			t.Errorf("gateway inputs (-want +got):\n%s", diff)
		}
	})
}

// Three failed attempts open the breaker: the next call is rejected at
// once, and after OpenTimeout one probe closes it again.
func TestGuideBreakerOpensAndRecovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := new(bracetest.Recorder)
		var calls int
		gateway := middleware.Apply(func(context.Context, Order) (Receipt, error) {
			calls++
			return Receipt{OrderID: "o-2"}, nil
		}, bracetest.FirstN(3, bracetest.FailWith[Order, Receipt](errDeclined)))
		charge, b, err := newCharge(gateway, rec)
		if err != nil {
			t.Fatal(err)
		}

		_, err = charge(t.Context(), Order{ID: "o-2"})
		var exhausted *retry.ExhaustedError
		if !errors.As(err, &exhausted) || exhausted.Attempts != 3 || !errors.Is(err, errDeclined) {
			t.Fatalf("first call: %v; want retries exhausted after 3 attempts", err)
		}
		if b.State() != breaker.Open {
			t.Fatalf("breaker %v after 3 failures; want open", b.State())
		}
		// Open: rejected without reaching the gateway, and not retried
		// (an open breaker says "send less").
		if _, err := charge(t.Context(), Order{ID: "o-2"}); !errors.Is(err, breaker.ErrOpen) {
			t.Fatalf("second call: %v; want ErrOpen", err)
		}

		time.Sleep(30 * time.Second) // fake time: instant
		if _, err := charge(t.Context(), Order{ID: "o-2"}); err != nil {
			t.Fatalf("probe: %v", err)
		}
		if calls != 1 {
			t.Errorf("gateway reached %d times after the faults; want 1 (the probe)", calls)
		}

		// The events, in order, from every concern of the chain.
		wantKinds := []middleware.Kind{
			middleware.Retry, middleware.Retry, // attempts 1 and 2 failed
			middleware.StateChanged, // attempt 3 failed: closed → open
			middleware.GaveUp,       // retry stopped after 3 attempts
			middleware.Rejected,     // the second call
			middleware.StateChanged, // open → half-open for the probe
			middleware.StateChanged, // half-open → closed
		}
		if diff := cmp.Diff(wantKinds, rec.Kinds()); diff != "" {
			t.Errorf("kinds (-want +got):\n%s", diff)
		}
		var changes []middleware.Event
		for _, e := range rec.Events() {
			if e.Kind == middleware.StateChanged {
				changes = append(changes, e)
			}
		}
		want := []middleware.Event{
			{Kind: middleware.StateChanged, Concern: "breaker", Name: "gateway", From: "closed", To: "open", Failures: 3},
			{Kind: middleware.StateChanged, Concern: "breaker", Name: "gateway", From: "open", To: "half-open"},
			{Kind: middleware.StateChanged, Concern: "breaker", Name: "gateway", From: "half-open", To: "closed"},
		}
		if diff := cmp.Diff(want, changes, ignoreErr); diff != "" {
			t.Errorf("state changes (-want +got):\n%s", diff)
		}
	})
}

// Chaos in a test: a seeded fault rate on the gateway, many concurrent
// callers. Retry absorbs the faults; synctest.Wait lets the test act once
// every caller is blocked, without a sleep.
func TestGuideChaosIsAbsorbed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		gateway := func(ctx context.Context, o Order) (Receipt, error) {
			select {
			case <-release:
				return Receipt{OrderID: o.ID}, nil
			case <-ctx.Done():
				return Receipt{}, ctx.Err()
			}
		}
		chaos, err := bracetest.NewChaos(bracetest.ChaosConfig{InjectionRate: 0.2, Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		r, err := retry.New(retry.Config{MaxAttempts: retry.Unlimited, BaseDelay: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		charge := middleware.Apply(gateway,
			retry.Middleware[Order, Receipt](r),
			bracetest.ChaosMiddleware(chaos, bracetest.FailWith[Order, Receipt](errDeclined)))

		var wg sync.WaitGroup
		errs := make([]error, 100)
		for i := range errs {
			wg.Go(func() { _, errs[i] = charge(t.Context(), Order{ID: "o"}) })
		}
		synctest.Wait() // every caller is blocked: in the gateway, or in a backoff
		close(release)
		wg.Wait()

		if diff := cmp.Diff(make([]error, 100), errs, cmpopts.EquateErrors()); diff != "" {
			t.Errorf("errors (-want +got):\n%s", diff)
		}
		// Every injected fault was retried once, and nothing else was.
		injected := chaos.Stats().Injected
		if got := r.Stats().Retries; got != injected || injected == 0 {
			t.Errorf("%d retries for %d faults injected; want as many, and some", got, injected)
		}
	})
}
