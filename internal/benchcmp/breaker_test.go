package benchcmp

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/breaker"
	eapache "github.com/eapache/go-resiliency/breaker"
	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/sony/gobreaker/v2"
)

// Breaker: every breaker opens after 5 consecutive failures and stays open
// for a minute, far longer than a benchmark. The open path is measured on
// a breaker tripped during setup.
func breakerScenarios() []scenario {
	return []scenario{
		{path: "closed", attempts: 1, impls: []impl{
			{name: "direct", build: buildDirect, zeroAlloc: true},
			{name: "brace", build: func(tb testing.TB, s Stage) Stage { return braceBreakerCall(newBraceBreaker(tb), s) }, zeroAlloc: true},
			{name: "gobreaker", build: func(_ testing.TB, s Stage) Stage { return gobreakerCall(newGobreaker(), s) }},
			{name: "eapache", build: func(_ testing.TB, s Stage) Stage { return eapacheCall(newEapache(), s) }},
			{name: "failsafe", build: func(_ testing.TB, s Stage) Stage { return failsafeCall(failsafe.With(newFailsafeBreaker()), s) }},
		}},
		// Rate mode: the breaker opens when half the calls of the last 30s
		// (at least 10) failed. eapache and gobreaker have no rate mode;
		// failsafe-go's time-based failure rate threshold is the peer.
		{path: "closed-rate", attempts: 1, impls: []impl{
			{name: "direct", build: buildDirect, zeroAlloc: true},
			{name: "brace", build: func(tb testing.TB, s Stage) Stage { return braceBreakerCall(newBraceRateBreaker(tb), s) }, zeroAlloc: true},
			{name: "failsafe", build: func(_ testing.TB, s Stage) Stage {
				cb := circuitbreaker.NewBuilder[int]().WithFailureRateThreshold(0.5, 10, 30*time.Second).WithDelay(time.Minute).Build()
				return failsafeCall(failsafe.With(cb), s)
			}},
		}},
		// The open path. direct is a call of the stage, the reference of
		// "ns over a direct call"; flag is the raw primitive's refusal,
		// the floor of any breaker: one atomic load and a prebuilt error.
		{path: "open", attempts: 0, want: errOpen, impls: []impl{
			{name: "direct", build: buildDirect, zeroAlloc: true, reference: true},
			{name: "flag", build: func(_ testing.TB, s Stage) Stage {
				open := new(atomic.Bool)
				open.Store(true)
				return flagCall(open, s)
			}, zeroAlloc: true},
			{name: "flag-counted", build: func(_ testing.TB, s Stage) Stage {
				open := new(atomic.Bool)
				open.Store(true)
				return flagCountedCall(open, new(paddedCounter), s)
			}, zeroAlloc: true},
			{name: "brace", build: func(tb testing.TB, s Stage) Stage {
				b := newBraceBreaker(tb)
				trip(tb, braceBreakerCall(b, Fail))
				return braceBreakerCall(b, s)
			}, zeroAlloc: true},
			{name: "gobreaker", build: func(tb testing.TB, s Stage) Stage {
				cb := newGobreaker()
				trip(tb, gobreakerCall(cb, Fail))
				return gobreakerCall(cb, s)
			}},
			{name: "eapache", build: func(tb testing.TB, s Stage) Stage {
				cb := newEapache()
				trip(tb, eapacheCall(cb, Fail))
				return eapacheCall(cb, s)
			}},
			{name: "failsafe", build: func(tb testing.TB, s Stage) Stage {
				exec := failsafe.With(newFailsafeBreaker())
				trip(tb, failsafeCall(exec, Fail))
				return failsafeCall(exec, s)
			}},
		}},
		// Keyed: the same breaker through breaker.Keyed, every call with
		// one key (a host): the cost of finding the key's breaker in the
		// table and counting the call in flight, on top of the unkeyed
		// paths above. No peer has per-key breakers in one object.
		{path: "closed-keyed", attempts: 1, impls: []impl{
			{name: "direct", build: buildDirect, zeroAlloc: true},
			{name: "brace", build: func(tb testing.TB, s Stage) Stage { return braceKeyedCall(newBraceBreaker(tb), s) }, zeroAlloc: true},
		}},
		{path: "open-keyed", attempts: 0, want: errOpen, impls: []impl{
			{name: "direct", build: buildDirect, zeroAlloc: true, reference: true},
			{name: "brace", build: func(tb testing.TB, s Stage) Stage {
				b := newBraceBreaker(tb)
				trip(tb, braceKeyedCall(b, Fail))
				return braceKeyedCall(b, s)
			}, zeroAlloc: true},
		}},
	}
}

func braceKeyedCall(b *breaker.Breaker, s Stage) Stage {
	return middleware.Apply(s, breaker.Keyed[int, int](b, func(int) string { return "host-a" }))
}

// paddedCounter is a counter on a cache line of its own, as Brace's.
type paddedCounter struct {
	_ [64]byte
	n atomic.Uint64
	_ [56]byte
}

// flagCountedCall is flagCall counting its refusals exactly, as a breaker
// with a Rejected statistic must: the floor of such a breaker's rejection
// is one atomic load and one atomic add.
func flagCountedCall(open *atomic.Bool, rejected *paddedCounter, s Stage) Stage {
	return func(ctx context.Context, in int) (int, error) {
		if open.Load() {
			rejected.n.Add(1)
			return 0, errFlagOpen
		}
		return s(ctx, in)
	}
}

// errFlagOpen is the refusal of the flag baselines.
var errFlagOpen = errors.New("benchcmp: flag open")

// flagCall is the raw primitive of an open breaker: refuse while a flag
// is set.
func flagCall(open *atomic.Bool, s Stage) Stage {
	return func(ctx context.Context, in int) (int, error) {
		if open.Load() {
			return 0, errFlagOpen
		}
		return s(ctx, in)
	}
}

// errOpen lists the open-breaker error of every implementation.
var errOpen = []error{breaker.ErrOpen, errFlagOpen, gobreaker.ErrOpenState, eapache.ErrBreakerOpen, circuitbreaker.ErrOpen}

// trip calls a failing call until its breaker opens (more than enough
// times for a threshold of 5).
func trip(tb testing.TB, call Stage) {
	tb.Helper()
	for i := range 10 {
		if _, err := call(context.Background(), i); isAny(err, errOpen) {
			return
		}
	}
	tb.Fatal("the breaker did not open after 10 failures")
}

// newBraceBreaker is Brace's breaker in consecutive mode, the default.
func newBraceBreaker(tb testing.TB) *breaker.Breaker {
	b, err := breaker.New(breaker.Config{Name: "bench", Threshold: 5, OpenTimeout: time.Minute})
	must(tb, err)
	return b
}

// newBraceRateBreaker is Brace's breaker in rate mode: half the calls of
// the last 30s (10 buckets), at least 10.
func newBraceRateBreaker(tb testing.TB) *breaker.Breaker {
	b, err := breaker.New(breaker.Config{Name: "bench", FailureRate: 0.5, Window: 30 * time.Second, OpenTimeout: time.Minute})
	must(tb, err)
	return b
}

func braceBreakerCall(b *breaker.Breaker, s Stage) Stage {
	return middleware.Apply(s, breaker.Middleware[int, int](b))
}

func newGobreaker() *gobreaker.CircuitBreaker[int] {
	// The default ReadyToTrip opens after more than 5 consecutive failures.
	return gobreaker.NewCircuitBreaker[int](gobreaker.Settings{Name: "bench", Timeout: time.Minute})
}

func gobreakerCall(cb *gobreaker.CircuitBreaker[int], s Stage) Stage {
	return func(ctx context.Context, in int) (int, error) {
		return cb.Execute(func() (int, error) { return s(ctx, in) })
	}
}

func newEapache() *eapache.Breaker { return eapache.New(5, 1, time.Minute) }

// eapacheCall wraps eapache's breaker as a Brace middleware, the shape
// Brace's breaker has, so that the two are compared like for like (the
// same middleware.Apply, the same closure over the stage).
func eapacheCall(cb *eapache.Breaker, s Stage) Stage {
	return middleware.Apply(s, eapacheMiddleware(cb))
}

func eapacheMiddleware(cb *eapache.Breaker) middleware.Middleware[int, int] {
	return func(next middleware.Stage[int, int]) middleware.Stage[int, int] {
		return func(ctx context.Context, in int) (out int, err error) {
			err = cb.Run(func() (err error) {
				out, err = next(ctx, in)
				return err
			})
			return out, err
		}
	}
}

func newFailsafeBreaker() circuitbreaker.CircuitBreaker[int] {
	return circuitbreaker.NewBuilder[int]().WithFailureThreshold(5).WithDelay(time.Minute).Build()
}

func BenchmarkBreaker(b *testing.B)  { run(b, breakerScenarios()) }
func TestBreaker(t *testing.T)       { verify(t, breakerScenarios()) }
func TestBreakerAllocs(t *testing.T) { allocs(t, breakerScenarios()) }
