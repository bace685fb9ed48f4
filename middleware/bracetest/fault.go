package bracetest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/brace-go/brace/middleware"
)

// FailWith returns a fault that fails every call with err, without calling
// the stage.
func FailWith[In, Out any](err error) middleware.Middleware[In, Out] {
	return Outcome[In](*new(Out), err)
}

// Outcome returns a fault that answers every call with out and err,
// without calling the stage: an injected result, such as a degraded value
// or an HTTP 503 response.
func Outcome[In, Out any](out Out, err error) middleware.Middleware[In, Out] {
	return func(middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		return func(context.Context, In) (Out, error) { return out, err }
	}
}

// Latency returns a fault that delays every call by d before calling the
// stage. If the context ends first, the call returns ctx.Err() at once and
// the stage is not called. A d of zero or less adds nothing.
func Latency[In, Out any](d time.Duration) middleware.Middleware[In, Out] {
	return LatencyFunc[In, Out](func() time.Duration { return d })
}

// LatencyFunc is [Latency] with a delay drawn per call from f, for example
// [Uniform]. f is called concurrently when the stage is; a nil f adds no
// delay.
func LatencyFunc[In, Out any](f func() time.Duration) middleware.Middleware[In, Out] {
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		next = middleware.Apply(next)
		return func(ctx context.Context, in In) (Out, error) {
			if f != nil {
				if err := sleep(ctx, f()); err != nil {
					var zero Out
					return zero, err
				}
			}
			return next(ctx, in)
		}
	}
}

// sleep waits d or until ctx ends, and reports ctx.Err() in that case.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Uniform returns a func that draws durations uniformly from [lo, hi),
// for [LatencyFunc]. It is safe for concurrent use, lock-free, and the same
// seed gives the same sequence of draws (zero means a random seed). If hi
// ≤ lo it always returns lo.
func Uniform(lo, hi time.Duration, seed uint64) func() time.Duration {
	src := newSource(seed)
	return func() time.Duration {
		if hi <= lo {
			return lo
		}
		return lo + time.Duration(src.float64()*float64(hi-lo))
	}
}

// PanicWith returns a fault that panics with v on every call, without
// calling the stage.
func PanicWith[In, Out any](v any) middleware.Middleware[In, Out] {
	return func(middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		return func(context.Context, In) (Out, error) { panic(v) }
	}
}

// Hang returns a fault that blocks every call until its context ends and
// then returns ctx.Err(), without calling the stage: a downstream that
// never answers. A call whose context never ends hangs for ever, so use it
// under a timeout or a context with a deadline.
func Hang[In, Out any]() middleware.Middleware[In, Out] {
	return func(middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		return func(ctx context.Context, _ In) (Out, error) {
			<-ctx.Done()
			var zero Out
			return zero, ctx.Err()
		}
	}
}

// FirstN applies fault to the first n calls and passes every later call
// straight to the stage: a downstream that recovers. Exactly n calls get
// the fault however many goroutines call at once. n ≤ 0 injects nothing.
func FirstN[In, Out any](n int, fault middleware.Middleware[In, Out]) middleware.Middleware[In, Out] {
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		next = middleware.Apply(next)
		if fault == nil || n <= 0 {
			return next
		}
		faulty := middleware.Apply(next, fault)
		var calls atomic.Int64
		return func(ctx context.Context, in In) (Out, error) {
			if calls.Add(1) <= int64(n) {
				return faulty(ctx, in)
			}
			return next(ctx, in)
		}
	}
}

// FailFirst fails the first n calls with err and passes the rest to the
// stage. It is FirstN(n, FailWith(err)).
func FailFirst[In, Out any](n int, err error) middleware.Middleware[In, Out] {
	return FirstN(n, FailWith[In, Out](err))
}

// ChaosConfig configures [Chaos]. InjectionRate is required; every other
// field is optional.
type ChaosConfig struct {
	// InjectionRate is the share of calls that get the fault, in (0, 1].
	// There is no default: zero is an error, so that a forgotten rate
	// never turns a staging deployment into an outage or a test into a
	// no-op.
	InjectionRate float64

	// Enabled, if set, is asked on every call; when it reports false the
	// call goes straight to the stage. Use it to switch chaos on and off
	// at run time (a flag, a header, an environment). Nil means enabled.
	Enabled func() bool

	// Seed seeds the random source that picks the calls, for reproducible
	// tests: with the same seed, the same calls (by arrival order) get the
	// fault. Zero means a random seed. The source is safe for concurrent
	// use.
	Seed uint64

	// OnInject, if set, is called before each injected fault.
	OnInject func()

	// Logger, if set, receives a Debug record "bracetest: injected" (with
	// "name" when Name is set) for each injected fault. Nil is silent.
	Logger *slog.Logger

	// Name, if not empty, is added to log records as "name".
	Name string
}

// Chaos returns a middleware that applies fault to a random share of the
// calls (cfg.InjectionRate) while cfg.Enabled reports true, and passes
// every other call straight to the stage, as Polly's chaos strategies do.
// fault is any middleware: [FailWith], [Outcome], [Latency], [PanicWith],
// [Hang], or a chain of them. It returns an error naming the field when
// cfg is invalid or fault is nil.
//
// A call that is not picked costs one call of Enabled, one atomic add and
// no allocation, so Chaos can stay in a staging chain switched off.
func Chaos[In, Out any](cfg ChaosConfig, fault middleware.Middleware[In, Out]) (middleware.Middleware[In, Out], error) {
	switch {
	case fault == nil:
		return nil, errors.New("bracetest: Chaos needs a fault middleware, got nil")
	case math.IsNaN(cfg.InjectionRate) || cfg.InjectionRate <= 0 || cfg.InjectionRate > 1:
		return nil, fmt.Errorf("bracetest: InjectionRate must be in (0, 1], got %v", cfg.InjectionRate)
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	src := newSource(seed)
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		next = middleware.Apply(next)
		faulty := middleware.Apply(next, fault)
		return func(ctx context.Context, in In) (Out, error) {
			if cfg.Enabled != nil && !cfg.Enabled() {
				return next(ctx, in)
			}
			if src.float64() >= cfg.InjectionRate {
				return next(ctx, in)
			}
			if cfg.OnInject != nil {
				cfg.OnInject()
			}
			if cfg.Logger != nil && cfg.Logger.Enabled(ctx, slog.LevelDebug) {
				var attrs []slog.Attr
				if cfg.Name != "" {
					attrs = append(attrs, slog.String("name", cfg.Name))
				}
				cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "bracetest: injected", attrs...)
			}
			return faulty(ctx, in)
		}
	}, nil
}

// source is a seedable random source that is safe for concurrent use
// without a lock (SplitMix64 over an atomic counter).
type source struct{ state atomic.Uint64 }

func newSource(seed uint64) *source {
	s := new(source)
	s.state.Store(seed)
	return s
}

// float64 returns a uniform number in [0, 1).
func (s *source) float64() float64 {
	z := s.state.Add(0x9e3779b97f4a7c15)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return float64(z>>11) / (1 << 53)
}
