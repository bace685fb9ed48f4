package benchcmp

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/bulkhead"
	"golang.org/x/sync/semaphore"
)

// capacity is the limit of every limiter on the admitted paths: more than
// the number of goroutines of any run, so that no call is ever shed.
const capacity = 64

// Backpressure: a limit on calls in flight, like for like. On the admitted
// path the limiter has room and a full one would reject at once (Brace's
// Shed mode, semaphore.TryAcquire, failsafe-go's bulkhead without a wait);
// on admitted-wait a full one would queue the call (Wait mode,
// semaphore.Acquire, a bulkhead with a maximum wait). On the shed path the
// limiter is full (one slot, taken during setup) and rejects at once.
func backpressureScenarios() []scenario {
	return []scenario{
		{path: "admitted", attempts: 1, impls: []impl{
			{name: "direct", build: buildDirect, zeroAlloc: true},
			{name: "semaphore", build: func(_ testing.TB, s Stage) Stage {
				return semaphoreTryCall(semaphore.NewWeighted(capacity), s)
			}, zeroAlloc: true},
			{name: "atomic", build: func(_ testing.TB, s Stage) Stage {
				return atomicCall(new(atomic.Int64), capacity, s)
			}, zeroAlloc: true},
			{name: "brace", build: func(tb testing.TB, s Stage) Stage {
				return braceLimiterCall(newBraceLimiter(tb, capacity, backpressure.Shed), s)
			}, zeroAlloc: true},
			{name: "failsafe", build: func(_ testing.TB, s Stage) Stage {
				return failsafeCall(failsafe.With(bulkhead.New[int](capacity)), s)
			}},
		}},
		{path: "admitted-wait", attempts: 1, impls: []impl{
			{name: "direct", build: buildDirect, zeroAlloc: true},
			{name: "semaphore", build: func(_ testing.TB, s Stage) Stage {
				return semaphoreCall(semaphore.NewWeighted(capacity), s)
			}, zeroAlloc: true},
			{name: "brace", build: func(tb testing.TB, s Stage) Stage {
				return braceLimiterCall(newBraceLimiter(tb, capacity, backpressure.Wait), s)
			}, zeroAlloc: true},
			{name: "failsafe", build: func(_ testing.TB, s Stage) Stage {
				bh := bulkhead.NewBuilder[int](capacity).WithMaxWaitTime(time.Second).Build()
				return failsafeCall(failsafe.With(bh), s)
			}},
		}},
		{path: "shed", attempts: 0, want: errShed, impls: []impl{
			{name: "semaphore", build: func(tb testing.TB, s Stage) Stage {
				sem := semaphore.NewWeighted(1)
				if !sem.TryAcquire(1) {
					tb.Fatal("cannot fill the semaphore")
				}
				tb.Cleanup(func() { sem.Release(1) })
				return semaphoreTryCall(sem, s)
			}, zeroAlloc: true},
			{name: "atomic", build: func(_ testing.TB, s Stage) Stage {
				n := new(atomic.Int64)
				n.Store(1) // full
				return atomicCall(n, 1, s)
			}, zeroAlloc: true},
			{name: "brace", build: func(tb testing.TB, s Stage) Stage {
				l := newBraceLimiter(tb, 1, backpressure.Shed)
				// Fill the limiter with a call that blocks until cleanup.
				entered, release := make(chan struct{}), make(chan struct{})
				done := make(chan struct{})
				block := braceLimiterCall(l, func(context.Context, int) (int, error) {
					close(entered)
					<-release
					return 0, nil
				})
				go func() {
					defer close(done)
					block(context.Background(), 0)
				}()
				<-entered
				tb.Cleanup(func() { close(release); <-done })
				return braceLimiterCall(l, s)
			}, zeroAlloc: true},
			{name: "failsafe", build: func(tb testing.TB, s Stage) Stage {
				bh := bulkhead.New[int](1)
				if !bh.TryAcquirePermit() {
					tb.Fatal("cannot fill the bulkhead")
				}
				tb.Cleanup(bh.ReleasePermit)
				return failsafeCall(failsafe.With(bh), s)
			}},
		}},
	}
}

// errSemaphoreFull is the rejection of the baselines.
var errSemaphoreFull = errors.New("benchcmp: semaphore full")

// errShed lists the rejection of every implementation at capacity.
var errShed = []error{backpressure.ErrShed, errSemaphoreFull, bulkhead.ErrFull}

func newBraceLimiter(tb testing.TB, capacity int64, mode backpressure.Mode) *backpressure.Limiter {
	l, err := backpressure.New(backpressure.Config{Capacity: capacity, Mode: mode})
	must(tb, err)
	return l
}

func braceLimiterCall(l *backpressure.Limiter, s Stage) Stage {
	return middleware.Apply(s, backpressure.Middleware[int, int](l))
}

// semaphoreTryCall is the raw baseline of the admitted and shed paths:
// take a slot or reject at once, call, release.
func semaphoreTryCall(sem *semaphore.Weighted, s Stage) Stage {
	return func(ctx context.Context, in int) (int, error) {
		if !sem.TryAcquire(1) {
			return 0, errSemaphoreFull
		}
		defer sem.Release(1)
		return s(ctx, in)
	}
}

// atomicCall is the floor of any exact limit on calls in flight: one
// atomic add on a shared counter to enter and one to leave (two
// read-modify-writes of one cache line per call, which is what stops such
// a limit from scaling across CPUs on a stage that does nothing). It sheds
// when the add overshoots, so a call racing with one that overshoots may be
// shed although a slot is about to be free: it is a baseline, not a limiter
// with Brace's guarantees (no queue, no FIFO, no weights).
func atomicCall(n *atomic.Int64, capacity int64, s Stage) Stage {
	return func(ctx context.Context, in int) (int, error) {
		if n.Add(1) > capacity {
			n.Add(-1)
			return 0, errSemaphoreFull
		}
		defer n.Add(-1)
		return s(ctx, in)
	}
}

// semaphoreCall is the raw baseline of the admitted-wait path: acquire
// (waiting if need be), call, release.
func semaphoreCall(sem *semaphore.Weighted, s Stage) Stage {
	return func(ctx context.Context, in int) (int, error) {
		if err := sem.Acquire(ctx, 1); err != nil {
			return 0, err
		}
		defer sem.Release(1)
		return s(ctx, in)
	}
}

func BenchmarkBackpressure(b *testing.B)  { run(b, backpressureScenarios()) }
func TestBackpressure(t *testing.T)       { verify(t, backpressureScenarios()) }
func TestBackpressureAllocs(t *testing.T) { allocs(t, backpressureScenarios()) }
