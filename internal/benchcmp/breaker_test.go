package benchcmp

import (
	"context"
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
		{path: "open", attempts: 0, want: errOpen, impls: []impl{
			{name: "brace", build: func(tb testing.TB, s Stage) Stage {
				b := newBraceBreaker(tb)
				trip(tb, braceBreakerCall(b, Fail))
				return braceBreakerCall(b, s)
			}},
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
	}
}

// errOpen lists the open-breaker error of every implementation.
var errOpen = []error{breaker.ErrOpen, gobreaker.ErrOpenState, eapache.ErrBreakerOpen, circuitbreaker.ErrOpen}

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

func eapacheCall(cb *eapache.Breaker, s Stage) Stage {
	return func(ctx context.Context, in int) (out int, err error) {
		err = cb.Run(func() (err error) {
			out, err = s(ctx, in)
			return err
		})
		return out, err
	}
}

func newFailsafeBreaker() circuitbreaker.CircuitBreaker[int] {
	return circuitbreaker.NewBuilder[int]().WithFailureThreshold(5).WithDelay(time.Minute).Build()
}

func BenchmarkBreaker(b *testing.B)  { run(b, breakerScenarios()) }
func TestBreaker(t *testing.T)       { verify(t, breakerScenarios()) }
func TestBreakerAllocs(t *testing.T) { allocs(t, breakerScenarios()) }
