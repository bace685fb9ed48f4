package benchcmp

import (
	"context"

	"github.com/failsafe-go/failsafe-go"
)

// failsafeCall calls s through a failsafe-go executor built once. Peers get
// their cheapest call form: the benchmarks run on context.Background, which
// is the executor's own context, so the call skips WithContext (which
// copies the executor, one more allocation per call with a request
// context).
func failsafeCall(exec failsafe.Executor[int], s Stage) Stage {
	return func(ctx context.Context, in int) (int, error) {
		return exec.Get(func() (int, error) { return s(ctx, in) })
	}
}
