package benchcmp

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/brace-go/brace/internal/testenv"
	"go.uber.org/goleak"
)

// eapache's breaker starts a goroutine that sleeps for the open timeout
// (a minute here) each time it opens; it is the peer's design, not a leak
// of this package.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/eapache/go-resiliency/breaker.(*Breaker).timer"))
}

// An impl is one implementation of a scenario.
type impl struct {
	name string
	// build decorates s as the implementation does and returns the call
	// to time. It runs once, before the timer starts, and does all the
	// setup the scenario needs (tripping a breaker, filling a limiter);
	// it registers any teardown with tb.Cleanup.
	build func(tb testing.TB, s Stage) Stage
	// zeroAlloc marks a path that must not allocate; TestAllocs holds
	// it to that.
	zeroAlloc bool
	// reference marks an impl that is not one of the scenario: a direct
	// call timed beside a rejection path, so that its cost can be read
	// as ns over a direct call. It succeeds and runs the stage once.
	reference bool
}

// A scenario is one path of one concern, run by every impl in the same
// way.
type scenario struct {
	path string
	// stage returns a fresh stage to decorate; nil means Work.
	stage func() Stage
	// want lists the errors a call may return, one per implementation
	// (checked with errors.Is); nil means the call must succeed with
	// Work's result.
	want []error
	// attempts is how many times one call must run the stage: 1 for a
	// success, 3 for a call retried twice, 0 for a rejection.
	attempts int
	// seqOnly skips mode=par, for stages that are not safe for
	// concurrent use.
	seqOnly bool
	impls   []impl
}

func (sc *scenario) newStage() Stage {
	if sc.stage == nil {
		return Work
	}
	return sc.stage()
}

// sink keeps results alive so that the compiler cannot drop a call.
var sink atomic.Int64

// run runs the scenarios as sub-benchmarks path=…/mode=…/impl=….
func run(b *testing.B, scenarios []scenario) {
	for _, sc := range scenarios {
		for _, mode := range []string{"seq", "par"} {
			if mode == "par" && sc.seqOnly {
				continue
			}
			for _, im := range sc.impls {
				b.Run("path="+sc.path+"/mode="+mode+"/impl="+im.name, func(b *testing.B) {
					call := im.build(b, sc.newStage())
					ctx := context.Background()
					b.ReportAllocs()
					if mode == "seq" {
						var acc int
						for i := 0; b.Loop(); i++ {
							out, _ := call(ctx, i)
							acc += out
						}
						sink.Add(int64(acc))
						return
					}
					b.RunParallel(func(pb *testing.PB) {
						var acc int
						for i := 0; pb.Next(); i++ {
							out, _ := call(ctx, i)
							acc += out
						}
						sink.Add(int64(acc))
					})
				})
			}
		}
	}
}

// verify checks that every impl of every scenario does what the benchmark
// name claims: the right error, and the stage run the right number of
// times.
func verify(t *testing.T, scenarios []scenario) {
	for _, sc := range scenarios {
		for _, im := range sc.impls {
			t.Run(sc.path+"/"+im.name, func(t *testing.T) {
				inner := sc.newStage()
				var attempts int
				counted := func(ctx context.Context, in int) (int, error) {
					attempts++
					return inner(ctx, in)
				}
				call := im.build(t, counted)
				attempts = 0 // setup may have called the stage
				want, wantAttempts := sc.want, sc.attempts
				if im.reference {
					want, wantAttempts = nil, 1
				}
				const calls = 5
				for i := range calls {
					out, err := call(context.Background(), i)
					switch {
					case want == nil && err != nil:
						t.Fatalf("call %d: err = %v, want nil", i, err)
					case want == nil && out != i+1:
						t.Fatalf("call %d: out = %d, want %d", i, out, i+1)
					case want != nil && !isAny(err, want):
						t.Fatalf("call %d: err = %v, want %v", i, err, want)
					}
				}
				if want := calls * wantAttempts; attempts != want {
					t.Errorf("the stage ran %d times in %d calls, want %d", attempts, calls, want)
				}
			})
		}
	}
}

// allocs checks that every zeroAlloc impl allocates nothing per call.
func allocs(t *testing.T, scenarios []scenario) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	for _, sc := range scenarios {
		for _, im := range sc.impls {
			if !im.zeroAlloc {
				continue
			}
			t.Run(sc.path+"/"+im.name, func(t *testing.T) {
				call := im.build(t, sc.newStage())
				ctx := context.Background()
				i := 0
				got := testing.AllocsPerRun(1000, func() {
					out, _ := call(ctx, i)
					i++
					sink.Add(int64(out))
				})
				if got != 0 {
					t.Errorf("%v allocations per call, want 0", got)
				}
			})
		}
	}
}

// isAny reports whether errors.Is(err, t) for any t in targets.
func isAny(err error, targets []error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
