package benchcmp

import (
	"testing"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/hedge"
	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/hedgepolicy"
)

// Hedge: a call whose first attempt succeeds long before the hedge delay
// (a second), the common case: no hedge is sent. Brace runs the first
// attempt on the caller's goroutine and arms a timer for the delay;
// failsafe-go's hedge policy with the same fixed delay is the peer. Brace
// with a fixed delay (fixed) and with the default percentile delay, which
// also records each success's latency (percentile).
func hedgeScenarios() []scenario {
	return []scenario{
		{path: "no-hedge", attempts: 1, impls: []impl{
			{name: "direct", build: buildDirect, zeroAlloc: true},
			{name: "brace", build: func(tb testing.TB, s Stage) Stage {
				return braceHedgeCall(tb, hedge.Config{Delay: time.Second, Percentile: hedge.Fixed}, s)
			}},
			{name: "brace-percentile", build: func(tb testing.TB, s Stage) Stage {
				return braceHedgeCall(tb, hedge.Config{Delay: time.Second}, s)
			}},
			{name: "failsafe", build: func(_ testing.TB, s Stage) Stage {
				return failsafeCall(failsafe.With(hedgepolicy.NewWithDelay[int](time.Second)), s)
			}},
		}},
	}
}

func braceHedgeCall(tb testing.TB, cfg hedge.Config, s Stage) Stage {
	h, err := hedge.New(cfg)
	must(tb, err)
	return middleware.Apply(s, hedge.Middleware[int, int](h))
}

func BenchmarkHedge(b *testing.B) { run(b, hedgeScenarios()) }
func TestHedge(t *testing.T)      { verify(t, hedgeScenarios()) }
