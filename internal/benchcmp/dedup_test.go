package benchcmp

import (
	"context"
	"testing"
	"time"

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
//
// path=uncontended calls with context.Background(), whose Done is nil: a
// caller that can never leave, for which Brace makes no context for the
// shared call. path=uncontended-cancellable calls with a cancellable
// context (never cancelled), as a server's request context is: every
// implementation gets the same one.
func dedupScenarios() []scenario {
	return []scenario{
		{path: "uncontended", attempts: 1, seqOnly: true, impls: dedupImpls(false)},
		{path: "uncontended-cancellable", attempts: 1, seqOnly: true, impls: dedupImpls(true)},
	}
}

func dedupImpls(cancellable bool) []impl {
	ctxOf := func(tb testing.TB, s Stage) Stage {
		if !cancellable {
			return s
		}
		cctx, cancel := context.WithCancel(context.Background())
		tb.Cleanup(cancel)
		return func(_ context.Context, in int) (int, error) { return s(cctx, in) }
	}
	return []impl{
		{name: "direct", build: func(tb testing.TB, s Stage) Stage { return ctxOf(tb, buildDirect(tb, s)) }, zeroAlloc: true},
		{name: "brace", build: func(tb testing.TB, s Stage) Stage {
			g, err := dedup.New(dedup.Config{})
			must(tb, err)
			return ctxOf(tb, middleware.Apply(s, dedup.Middleware[int, int](g, func(int) string { return "key" })))
		}},
		{name: "singleflight-Do", build: func(tb testing.TB, s Stage) Stage {
			var g singleflight.Group
			return ctxOf(tb, func(ctx context.Context, in int) (int, error) {
				v, err, _ := g.Do("key", func() (any, error) { return s(ctx, in) })
				out, _ := v.(int)
				return out, err
			})
		}},
		{name: "singleflight-DoChan", build: func(tb testing.TB, s Stage) Stage {
			var g singleflight.Group
			return ctxOf(tb, func(ctx context.Context, in int) (int, error) {
				select {
				case r := <-g.DoChan("key", func() (any, error) { return s(ctx, in) }):
					out, _ := r.Val.(int)
					return out, r.Err
				case <-ctx.Done():
					return 0, ctx.Err()
				}
			})
		}},
	}
}

// cacheHitScenario is path=cache-hit: Brace's Dedup with its result
// cache on (a TTL of an hour), every call with the key of a call made
// during setup, so every call is served from the cache and the stage never
// runs. singleflight has no cache; direct is the reference. Its calls
// return the cached result, not their own input plus one, so
// TestDedupCacheHit checks it instead of verify.
func cacheHitScenario() scenario {
	return scenario{path: "cache-hit", impls: []impl{
		{name: "direct", build: buildDirect, zeroAlloc: true, reference: true},
		{name: "brace", build: func(tb testing.TB, s Stage) Stage {
			g, err := dedup.New(dedup.Config{TTL: time.Hour})
			must(tb, err)
			call := middleware.Apply(s, dedup.Middleware[int, int](g, func(int) string { return "key" }))
			if _, err := call(context.Background(), 0); err != nil {
				tb.Fatal(err)
			}
			return call
		}, zeroAlloc: true},
	}}
}

func BenchmarkDedup(b *testing.B) { run(b, append(dedupScenarios(), cacheHitScenario())) }
func TestDedup(t *testing.T)      { verify(t, dedupScenarios()) }

func TestDedupCacheHit(t *testing.T) {
	sc := cacheHitScenario()
	var runs int
	counted := func(ctx context.Context, in int) (int, error) {
		runs++
		return Work(ctx, in)
	}
	call := sc.impls[1].build(t, counted)
	for i := range 5 {
		out, err := call(context.Background(), i+1)
		if err != nil || out != 1 {
			t.Fatalf("call %d: %d, %v; want the cached 1, nil", i, out, err)
		}
	}
	if runs != 1 {
		t.Errorf("the stage ran %d times, want once (during setup)", runs)
	}
}

func TestDedupAllocs(t *testing.T) { allocs(t, []scenario{cacheHitScenario()}) }
