package bracetest_test

// This file is the worked example of docs/testing.md: tests of a user's
// own chain with testing/synctest (fake time) and the test kit. It runs
// with the rest of the suite.

import (
	"context"
	"errors"
	"log/slog"
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
// Tests pass a fake gateway and their own hooks and logger.
func newCharge(gateway middleware.Stage[Order, Receipt], rec *bracetest.Recorder) (middleware.Stage[Order, Receipt], *breaker.Breaker, error) {
	b, err := breaker.New(breaker.Config{
		Name: "gateway", Threshold: 3, OpenTimeout: 30 * time.Second,
		OnStateChange: rec.OnStateChange(), Logger: rec.Logger(),
	})
	if err != nil {
		return nil, nil, err
	}
	rt, err := retry.New[Order, Receipt](retry.Config{
		Name: "charge", MaxAttempts: 3, BaseDelay: 100 * time.Millisecond, Jitter: retry.NoJitter,
		OnRetry: rec.OnRetry(), Logger: rec.Logger(),
	})
	if err != nil {
		return nil, nil, err
	}
	to, err := timeout.New[Order, Receipt](timeout.Config{Duration: time.Second, OnTimeout: rec.OnTimeout()})
	if err != nil {
		return nil, nil, err
	}
	return middleware.Apply(gateway, rt, breaker.Middleware[Order, Receipt](b), to), b, nil
}

// A hung attempt is cut off by the timeout and retried; the retry succeeds.
// In the bubble the test takes no real time, yet it checks the exact
// schedule: 1s timeout + 100ms backoff.
func TestGuideHungAttemptIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := bracetest.NewRecorder()
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
		want := []bracetest.Event{
			{Hook: "OnTimeout", Args: []any{time.Second, &timeout.Error{Duration: time.Second, Err: context.DeadlineExceeded}}},
			{Hook: "OnRetry", Args: []any{2, &timeout.Error{Duration: time.Second, Err: context.DeadlineExceeded}, 100 * time.Millisecond}},
		}
		if diff := cmp.Diff(want, rec.Hooks()); diff != "" {
			t.Errorf("hooks (-want +got):\n%s", diff)
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
		rec := bracetest.NewRecorder()
		var calls int
		gateway := middleware.Apply(func(context.Context, Order) (Receipt, error) {
			calls++
			return Receipt{OrderID: "o-2"}, nil
		}, bracetest.FailFirst[Order, Receipt](3, errDeclined))
		charge, b, err := newCharge(gateway, rec)
		if err != nil {
			t.Fatal(err)
		}

		_, err = charge(t.Context(), Order{ID: "o-2"})
		if e, ok := errors.AsType[*retry.ExhaustedError](err); !ok || e.Attempts != 3 || !errors.Is(err, errDeclined) {
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

		// The log, checked by message, level and attributes.
		var changes []bracetest.Event
		for _, e := range rec.Logs() {
			if e.Msg == "breaker: state changed" {
				changes = append(changes, e)
			}
		}
		want := []bracetest.Event{
			{Msg: "breaker: state changed", Level: slog.LevelWarn, Attrs: map[string]any{
				"name": "gateway", "from": "closed", "to": "open", "failures": int64(3), "consecutive_failures": int64(3)}},
			{Msg: "breaker: state changed", Level: slog.LevelInfo, Attrs: map[string]any{
				"name": "gateway", "from": "open", "to": "half-open", "failures": int64(0), "consecutive_failures": int64(0)}},
			{Msg: "breaker: state changed", Level: slog.LevelInfo, Attrs: map[string]any{
				"name": "gateway", "from": "half-open", "to": "closed", "failures": int64(0), "consecutive_failures": int64(0)}},
		}
		if diff := cmp.Diff(want, changes); diff != "" {
			t.Errorf("state change records (-want +got):\n%s", diff)
		}
		wantMsgs := []string{"retry: retrying", "retry: retrying", "breaker: state changed", "retry: exhausted"}
		if diff := cmp.Diff(wantMsgs, rec.Messages()[:4]); diff != "" {
			t.Errorf("first messages (-want +got):\n%s", diff)
		}
	})
}

// Chaos in a test: a seeded fault rate on the gateway, many concurrent
// callers. Retry absorbs the faults; synctest.Wait lets the test act once
// every caller is blocked, without a sleep.
func TestGuideChaosIsAbsorbed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := bracetest.NewRecorder()
		release := make(chan struct{})
		gateway := func(ctx context.Context, o Order) (Receipt, error) {
			select {
			case <-release:
				return Receipt{OrderID: o.ID}, nil
			case <-ctx.Done():
				return Receipt{}, ctx.Err()
			}
		}
		chaos, err := bracetest.Chaos(bracetest.ChaosConfig{InjectionRate: 0.2, Seed: 3, OnInject: rec.OnInject()},
			bracetest.FailWith[Order, Receipt](errDeclined))
		if err != nil {
			t.Fatal(err)
		}
		var counter retry.Counter
		rt, err := retry.New[Order, Receipt](retry.Config{MaxAttempts: retry.Unlimited, BaseDelay: 10 * time.Millisecond, Counter: &counter})
		if err != nil {
			t.Fatal(err)
		}
		charge := middleware.Apply(gateway, rt, chaos)

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
		injected := uint64(len(rec.Hooks()))
		want := retry.Stats{Successes: 100, Retries: injected}
		if diff := cmp.Diff(want, counter.Stats()); diff != "" || injected == 0 {
			t.Errorf("retry stats with %d faults injected (-want +got):\n%s", injected, diff)
		}
	})
}
