package benchcmp

import (
	"context"
	"testing"

	"github.com/cenkalti/backoff/v5"
	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
)

// Retry: three attempts at most, no delay between them (delays are zeroed
// so that the benchmark measures the machinery, not the sleep).
func retryScenarios() []scenario {
	impls := []impl{
		{name: "loop", build: buildLoop, zeroAlloc: true},
		{name: "brace", build: braceRetry, zeroAlloc: true},
		{name: "backoff", build: func(_ testing.TB, s Stage) Stage {
			// backoff.Retry takes its policy per call, as options: it
			// cannot be built once.
			return func(ctx context.Context, in int) (int, error) {
				return backoff.Retry(ctx, func() (int, error) { return s(ctx, in) },
					backoff.WithBackOff(&backoff.ZeroBackOff{}), backoff.WithMaxTries(3))
			}
		}},
		{name: "failsafe", build: func(_ testing.TB, s Stage) Stage {
			rp := retrypolicy.NewBuilder[int]().WithMaxAttempts(3).WithDelay(0).Build()
			return failsafeCall(failsafe.With(rp), s)
		}},
	}
	return []scenario{
		{path: "success", attempts: 1,
			impls: append([]impl{{name: "direct", build: buildDirect, zeroAlloc: true}}, impls...)},
		{path: "twice-then-ok", attempts: 3, seqOnly: true,
			stage: func() Stage { return new(Flaky).Call }, impls: impls},
	}
}

// buildDirect is the baseline: the stage called through a func value.
func buildDirect(_ testing.TB, s Stage) Stage { return s }

// buildLoop is the hand-written baseline for retry: at most three attempts
// in a loop, no delay, no classification.
func buildLoop(_ testing.TB, s Stage) Stage {
	return func(ctx context.Context, in int) (out int, err error) {
		for range 3 {
			if out, err = s(ctx, in); err == nil {
				return out, nil
			}
		}
		return out, err
	}
}

func BenchmarkRetry(b *testing.B)  { run(b, retryScenarios()) }
func TestRetry(t *testing.T)       { verify(t, retryScenarios()) }
func TestRetryAllocs(t *testing.T) { allocs(t, retryScenarios()) }
