package bracetest_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/bracetest"
	"github.com/brace-go/brace/middleware/retry"
)

// A downstream that fails twice and then recovers, under Retry; the
// recorder captures the retry hook.
func ExampleFailFirst() {
	rec := bracetest.NewRecorder()
	mw, err := retry.New[string, string](retry.Config{BaseDelay: time.Nanosecond, Jitter: retry.NoJitter, OnRetry: rec.OnRetry()})
	if err != nil {
		panic(err)
	}
	lookup := middleware.Apply(func(_ context.Context, key string) (string, error) { return "value of " + key, nil },
		mw, bracetest.FailFirst[string, string](2, errors.New("connection refused")))

	fmt.Println(lookup(context.Background(), "a"))
	for _, e := range rec.Events() {
		fmt.Println(e.Hook, e.Args)
	}
	// Output:
	// value of a <nil>
	// OnRetry [2 connection refused 1ns]
	// OnRetry [3 connection refused 2ns]
}

// Chaos injects a fault into a seeded share of the calls while it is
// enabled; the same seed picks the same calls.
func ExampleChaos() {
	enabled := true
	chaos, err := bracetest.Chaos(bracetest.ChaosConfig{
		InjectionRate: 0.3,
		Seed:          1,
		Enabled:       func() bool { return enabled },
	}, bracetest.FailWith[int, string](errors.New("chaos")))
	if err != nil {
		panic(err)
	}
	call := middleware.Apply(func(context.Context, int) (string, error) { return "ok", nil }, chaos)

	run := func() (failed int) {
		for i := range 1000 {
			if _, err := call(context.Background(), i); err != nil {
				failed++
			}
		}
		return failed
	}
	fmt.Println("enabled: failed", run(), "of 1000")
	enabled = false
	fmt.Println("disabled: failed", run(), "of 1000")
	// Output:
	// enabled: failed 321 of 1000
	// disabled: failed 0 of 1000
}

// A Script plays one step per call and then reports extra calls.
func ExampleScript() {
	s := bracetest.NewScript[string](
		bracetest.Fail[int](errors.New("503")),
		bracetest.Return(42),
	)
	for range 3 {
		fmt.Println(s.Stage(context.Background(), "q"))
	}
	fmt.Println(s.Calls(), s.Inputs())
	// Output:
	// 0 503
	// 42 <nil>
	// 0 bracetest: script ended: call 3 of 2 scripted
	// 3 [q q q]
}

// The recorder's logger turns log records into events.
func ExampleRecorder_Logger() {
	rec := bracetest.NewRecorder()
	rec.Logger().Warn("retry: exhausted", "attempts", 3, "err", errors.New("boom"))
	for _, e := range rec.Logs() {
		fmt.Println(e.Level, e.Msg, e.Attrs["attempts"], e.Attrs["err"])
	}
	// Output:
	// WARN retry: exhausted 3 boom
}
