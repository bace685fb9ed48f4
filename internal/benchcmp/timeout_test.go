package benchcmp

import (
	"context"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/timeout"
	"github.com/failsafe-go/failsafe-go"
	fstimeout "github.com/failsafe-go/failsafe-go/timeout"
)

// Timeout: a one-second limit on a call that takes nanoseconds, so the
// cost is that of arming and disarming the limit.
func timeoutScenarios() []scenario {
	return []scenario{
		{path: "success", attempts: 1, impls: []impl{
			{name: "direct", build: buildDirect, zeroAlloc: true},
			{name: "brace", build: func(tb testing.TB, s Stage) Stage {
				to, err := timeout.New(timeout.Config{Duration: time.Second})
				must(tb, err)
				return middleware.Apply(s, timeout.Middleware[int, int](to))
			}},
			{name: "context", build: func(_ testing.TB, s Stage) Stage {
				return func(ctx context.Context, in int) (int, error) {
					ctx, cancel := context.WithTimeout(ctx, time.Second)
					defer cancel()
					return s(ctx, in)
				}
			}},
			{name: "failsafe", build: func(_ testing.TB, s Stage) Stage {
				return failsafeCall(failsafe.With(fstimeout.New[int](time.Second)), s)
			}},
		}},
	}
}

func BenchmarkTimeout(b *testing.B) { run(b, timeoutScenarios()) }
func TestTimeout(t *testing.T)      { verify(t, timeoutScenarios()) }
