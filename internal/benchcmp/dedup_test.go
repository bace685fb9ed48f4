package benchcmp

import (
	"context"
	"testing"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/dedup"

	"golang.org/x/sync/singleflight"
)

// Dedup: one caller at a time (uncontended), so every call leads and runs
// the stage: the cost is the bookkeeping of a shared call that is never
// shared. All use one constant key. Brace's Dedup, like DoChan, lets each
// caller stop waiting when its context ends, so DoChan is its like for
// like; Do cannot. Only sequential: with concurrent callers the stage
// would run a variable number of times.
func dedupScenarios() []scenario {
	return []scenario{
		{path: "uncontended", attempts: 1, seqOnly: true, impls: []impl{
			{name: "direct", build: buildDirect, zeroAlloc: true},
			{name: "brace", build: func(tb testing.TB, s Stage) Stage {
				g, err := dedup.New(dedup.Config{})
				must(tb, err)
				return middleware.Apply(s, dedup.Middleware[int, int](g, func(int) string { return "key" }))
			}},
			{name: "singleflight-Do", build: func(_ testing.TB, s Stage) Stage {
				var g singleflight.Group
				return func(ctx context.Context, in int) (int, error) {
					v, err, _ := g.Do("key", func() (any, error) { return s(ctx, in) })
					out, _ := v.(int)
					return out, err
				}
			}},
			{name: "singleflight-DoChan", build: func(_ testing.TB, s Stage) Stage {
				var g singleflight.Group
				return func(ctx context.Context, in int) (int, error) {
					select {
					case r := <-g.DoChan("key", func() (any, error) { return s(ctx, in) }):
						out, _ := r.Val.(int)
						return out, r.Err
					case <-ctx.Done():
						return 0, ctx.Err()
					}
				}
			}},
		}},
	}
}

func BenchmarkDedup(b *testing.B) { run(b, dedupScenarios()) }
func TestDedup(t *testing.T)      { verify(t, dedupScenarios()) }
