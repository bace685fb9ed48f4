package benchcmp

import (
	"context"
	"errors"
	"testing"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/throttle"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/adaptivethrottler"
)

// Throttle: client-side adaptive throttling (the SRE book's "Handling
// Overload"), Brace's throttle against failsafe-go's adaptivethrottler,
// both with their defaults (at most 90% of calls rejected), as
// middlewares.
//
//   - path=admitted: a healthy downstream, every call succeeds and is
//     admitted: the cost a throttler adds to every call in normal times
//     (Brace: one atomic load to admit, the clock and a mutex to count;
//     failsafe-go: a mutex to admit and another to count).
//   - path=overloaded: a downstream that fails every call; each
//     throttler has seen enough failures to reject at its cap, so about
//     nine calls in ten are refused locally and the tenth runs the stage
//     and fails. The cost per call is mostly the refusal's. Its calls end
//     in a rejection or the stage's error, in proportions drawn at
//     random, so TestThrottle checks it by the share refused rather than
//     with verify.
func throttleScenarios() []scenario {
	return []scenario{
		{path: "admitted", attempts: 1, impls: []impl{
			{name: "direct", build: buildDirect, zeroAlloc: true},
			{name: "brace", build: buildBraceThrottle, zeroAlloc: true},
			{name: "failsafe", build: buildFailsafeThrottle},
		}},
	}
}

// overloadedScenario is path=overloaded, on the Fail stage.
func overloadedScenario() scenario {
	warm := func(build func(testing.TB, Stage) Stage) func(testing.TB, Stage) Stage {
		return func(tb testing.TB, s Stage) Stage {
			call := build(tb, s)
			for i := range 1000 { // enough failures to reach the cap
				_, _ = call(context.Background(), i)
			}
			return call
		}
	}
	return scenario{path: "overloaded", stage: func() Stage { return Fail }, impls: []impl{
		{name: "brace", build: warm(buildBraceThrottle), zeroAlloc: true},
		{name: "failsafe", build: warm(buildFailsafeThrottle)},
	}}
}

func buildBraceThrottle(tb testing.TB, s Stage) Stage {
	th, err := throttle.New(throttle.Config{Name: "bench"})
	must(tb, err)
	return middleware.Apply(s, throttle.Middleware[int, int](th))
}

func buildFailsafeThrottle(_ testing.TB, s Stage) Stage {
	return failsafeCall(failsafe.With[int](adaptivethrottler.NewWithDefaults[int]()), s)
}

func BenchmarkThrottle(b *testing.B) {
	run(b, append(throttleScenarios(), overloadedScenario()))
}

func TestThrottle(t *testing.T) {
	verify(t, throttleScenarios())
	sc := overloadedScenario()
	for _, im := range sc.impls {
		t.Run("overloaded/"+im.name, func(t *testing.T) {
			call := im.build(t, sc.newStage())
			const calls = 1000
			refused := 0
			for i := range calls {
				_, err := call(context.Background(), i)
				switch {
				case errors.Is(err, throttle.ErrThrottled), errors.Is(err, adaptivethrottler.ErrExceeded):
					refused++
				case !errors.Is(err, ErrFail):
					t.Fatalf("call %d: %v, want a local refusal or the stage's error", i, err)
				}
			}
			// The cap is 90%: far more than half are refused, and some
			// still reach the stage.
			if refused < calls/2 || refused == calls {
				t.Errorf("%d of %d calls refused locally, want most but not all", refused, calls)
			}
			t.Logf("%d of %d calls refused locally", refused, calls)
		})
	}
}

func TestThrottleAllocs(t *testing.T) {
	allocs(t, append(throttleScenarios(), overloadedScenario()))
}
