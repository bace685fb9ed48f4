package benchcmp

import (
	"testing"

	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/retry"
	"github.com/brace-go/brace/middleware/stack"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/bulkhead"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
)

// Composed: retry (3 attempts, no delay) outside a breaker (5 consecutive
// failures) outside a limit on calls in flight, on the success path, in the
// order of docs/ordering.md (for Brace, built by stack.Apply). Run with -cpu 1,2 for the scaling check:
// path=success shows the cost of the state the calls share, on a stage
// that costs nothing; path=busy, around a stage doing about 150 ns of work,
// shows whether the chain serialises calls.
func composedScenarios() []scenario {
	return []scenario{
		{path: "success", attempts: 1, impls: composedImpls()},
		{path: "busy", attempts: 1, stage: func() Stage { return Busy }, impls: composedImpls()},
	}
}

func composedImpls() []impl {
	return []impl{
		{name: "direct", build: buildDirect, zeroAlloc: true},
		{name: "brace", build: func(tb testing.TB, s Stage) Stage {
			r, err := retry.New(retry.Config{DelayFunc: noDelay})
			must(tb, err)
			return stack.Apply(s, stack.Layers{
				Retry:        r,
				Breaker:      newBraceBreaker(tb),
				Backpressure: newBraceLimiter(tb, capacity, backpressure.Shed),
			})
		}, zeroAlloc: true},
		{name: "failsafe", build: func(_ testing.TB, s Stage) Stage {
			// With(a, b, c) is a(b(c(fn))): retry outermost.
			return failsafeCall(failsafe.With[int](
				retrypolicy.NewBuilder[int]().WithMaxAttempts(3).WithDelay(0).Build(),
				newFailsafeBreaker(),
				bulkhead.New[int](capacity),
			), s)
		}},
	}
}

func BenchmarkComposed(b *testing.B)  { run(b, composedScenarios()) }
func TestComposed(t *testing.T)       { verify(t, composedScenarios()) }
func TestComposedAllocs(t *testing.T) { allocs(t, composedScenarios()) }
