package bracetest

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync/atomic"

	"github.com/brace-go/brace/internal/xrand"
	"github.com/brace-go/brace/middleware"
)

// ChaosConfig configures a [Chaos]. InjectionRate is required; the zero
// value of every other field means its default.
type ChaosConfig struct {
	// Name is the instance's name, in its events.
	Name string

	// Observer, if not nil, receives an event for each injected fault:
	// Kind middleware.Rejected, Concern "bracetest", Reason "chaos",
	// before the fault runs (there is no kind for an injection; Rejected
	// is the closest). Nil observes nothing.
	Observer middleware.Observer

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
	// fault. Zero means a random seed.
	Seed uint64
}

// Chaos applies a fault to a random share of the calls while it is
// enabled, as Polly's chaos strategies do. Build it with [NewChaos] and
// put it into chains with [ChaosMiddleware]; one Chaos can serve stages
// of any types, which then share its random source, its switch and its
// Stats. It is safe for concurrent use.
type Chaos struct {
	name     string
	obs      middleware.Observer
	rate     float64
	enabled  func() bool
	src      *xrand.Source
	injected atomic.Uint64
}

// ChaosStats are the counts of a [Chaos].
type ChaosStats struct {
	Injected uint64 // faults injected
}

// NewChaos returns a Chaos for cfg, or an error naming the field that is
// invalid.
func NewChaos(cfg ChaosConfig) (*Chaos, error) {
	if math.IsNaN(cfg.InjectionRate) || cfg.InjectionRate <= 0 || cfg.InjectionRate > 1 {
		return nil, fmt.Errorf("bracetest: InjectionRate must be in (0, 1], got %v", cfg.InjectionRate)
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	return &Chaos{
		name:    cfg.Name,
		obs:     cfg.Observer,
		rate:    cfg.InjectionRate,
		enabled: cfg.Enabled,
		src:     xrand.New(seed),
	}, nil
}

// Stats returns the counts so far. It has no side effects.
func (c *Chaos) Stats() ChaosStats { return ChaosStats{Injected: c.injected.Load()} }

// ChaosMiddleware returns a middleware that applies fault to the calls c
// picks and passes every other call straight to the stage. fault is any
// middleware: [FailWith], [Outcome], [Latency], [PanicWith], [Hang], or a
// chain of them. A call whose context has already ended returns
// ctx.Err() and runs nothing.
//
// A call that is not picked costs a check of its context, one call of
// Enabled, one atomic add and no allocation, so a Chaos can stay in a
// staging chain switched off.
//
// ChaosMiddleware panics if c or fault is nil.
func ChaosMiddleware[In, Out any](c *Chaos, fault middleware.Middleware[In, Out]) middleware.Middleware[In, Out] {
	if c == nil {
		panic("bracetest: nil *Chaos (was NewChaos's error ignored?)")
	}
	if fault == nil {
		panic("bracetest: nil fault middleware")
	}
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		next = middleware.Apply(next)
		faulty := middleware.Apply(next, fault)
		return func(ctx context.Context, in In) (Out, error) {
			if err := ctx.Err(); err != nil {
				var zero Out
				return zero, err
			}
			if c.enabled != nil && !c.enabled() {
				return next(ctx, in)
			}
			if c.src.Float64() >= c.rate {
				return next(ctx, in)
			}
			c.injected.Add(1)
			if c.obs != nil {
				middleware.Emit(ctx, c.obs, middleware.Event{Kind: middleware.Rejected, Concern: "bracetest", Name: c.name, Reason: "chaos"})
			}
			return faulty(ctx, in)
		}
	}
}
