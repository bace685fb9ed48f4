package bracetest_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/bracetest"
)

// A Recorder is an Observer for any concern: give it as Config.Observer
// (breaker.Config{Observer: rec}, retry.Config{Observer: rec}, ...) and
// compare its events with go-cmp. Here the events are emitted by hand.
func ExampleRecorder() {
	rec := new(bracetest.Recorder)
	ctx := context.Background()
	middleware.Emit(ctx, rec, middleware.Event{Kind: middleware.StateChanged, Concern: "breaker", Name: "db", From: "closed", To: "open"})
	middleware.Emit(ctx, rec, middleware.Event{Kind: middleware.Rejected, Concern: "breaker", Name: "db", Reason: "open"})

	fmt.Println(rec.Kinds())
	for _, e := range rec.Events() {
		fmt.Println(e.Concern, e.Name, e.Kind, e.Reason, e.From, e.To)
	}
	// Output:
	// [state-changed rejected]
	// breaker db state-changed  closed open
	// breaker db rejected open
}

// A downstream that fails twice and then recovers.
func ExampleFirstN() {
	lookup := middleware.Apply(func(_ context.Context, key string) (string, error) { return "value of " + key, nil },
		bracetest.FirstN(2, bracetest.FailWith[string, string](errors.New("connection refused"))))
	for range 3 {
		out, err := lookup(context.Background(), "a")
		fmt.Printf("%q %v\n", out, err)
	}
	// Output:
	// "" connection refused
	// "" connection refused
	// "value of a" <nil>
}

// A Chaos injects a fault into a seeded share of the calls while it is
// enabled; the same seed picks the same calls.
func ExampleNewChaos() {
	enabled := true
	chaos, err := bracetest.NewChaos(bracetest.ChaosConfig{
		Name:          "gateway",
		InjectionRate: 0.3,
		Seed:          1,
		Enabled:       func() bool { return enabled },
	})
	if err != nil {
		panic(err)
	}
	call := middleware.Apply(func(context.Context, int) (string, error) { return "ok", nil },
		bracetest.ChaosMiddleware(chaos, bracetest.FailWith[int, string](errors.New("chaos"))))

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
	fmt.Println("injected:", chaos.Stats().Injected)
	// Output:
	// enabled: failed 321 of 1000
	// disabled: failed 0 of 1000
	// injected: 321
}

// Each injection is an event for the Chaos's Observer: here the log, at
// level Debug.
func ExampleChaosMiddleware() {
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		Level:       slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr { return dropTime(a) },
	}))
	chaos, err := bracetest.NewChaos(bracetest.ChaosConfig{Name: "gateway", InjectionRate: 1, Observer: middleware.Log(logger)})
	if err != nil {
		panic(err)
	}
	call := middleware.Apply(func(context.Context, int) (string, error) { return "ok", nil },
		bracetest.ChaosMiddleware(chaos, middleware.Chain(
			bracetest.Latency[int, string](time.Millisecond),
			bracetest.FailWith[int, string](errors.New("chaos")),
		)))
	_, err = call(context.Background(), 0)
	fmt.Println(err)
	// Output:
	// level=DEBUG msg="bracetest rejected" concern=bracetest name=gateway reason=chaos
	// chaos
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
	fmt.Println(len(s.Inputs()), s.Inputs())
	// Output:
	// 0 503
	// 42 <nil>
	// 0 bracetest: script ended: call 3 of 2 scripted
	// 3 [q q q]
}
