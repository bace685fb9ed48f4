package otelbrace

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/brace-go/brace/middleware/adaptive"
	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/dedup"
	"github.com/brace-go/brace/middleware/fallback"
	"github.com/brace-go/brace/middleware/hedge"
	"github.com/brace-go/brace/middleware/ratelimit"
	"github.com/brace-go/brace/middleware/retry"
	"github.com/brace-go/brace/middleware/timeout"
)

// NameKey is the attribute that carries the instance name given to a
// Register function, so that several retry policies, breakers or limiters
// can share the same metrics.
const NameKey = attribute.Key("name")

// Keys of the other attributes some metrics carry.
const (
	OutcomeKey = attribute.Key("outcome") // brace.retry.calls, brace.breaker.results
	StateKey   = attribute.Key("state")   // brace.breaker.state
	ToKey      = attribute.Key("to")      // brace.breaker.transitions
	ServedKey  = attribute.Key("served")  // brace.dedup.calls
)

// Units, in the UCUM notation OpenTelemetry uses.
const (
	unitCall   = "{call}"
	unitRetry  = "{retry}"
	unitHedge  = "{hedge}"
	unitChange = "{change}"
	unitWeight = "{weight}"
	unitState  = "{state}"
	unitSecond = "s"
)

// RegisterRetry publishes c, which must be set as Config.Counter of the
// retry middlewares called name:
//
//	brace.retry.calls      counter {call}   outcome=success|failure
//	brace.retry.retries    counter {retry}
//	brace.retry.exhausted  counter {call}
//
// Unregister the returned Registration to stop publishing.
func RegisterRetry(m metric.Meter, name string, c *retry.Counter) (metric.Registration, error) {
	if c == nil {
		return nil, errors.New("otelbrace: RegisterRetry needs a *retry.Counter, got nil")
	}
	r := newRegistrar(m, name)
	calls := r.counter("brace.retry.calls", unitCall, "Calls through a retry middleware that returned, by outcome.")
	retries := r.counter("brace.retry.retries", unitRetry, "Attempts after the first that a retry middleware started.")
	exhausted := r.counter("brace.retry.exhausted", unitCall, "Calls that ended with retries exhausted (*retry.ExhaustedError).")
	success, failure := r.with(OutcomeKey.String("success")), r.with(OutcomeKey.String("failure"))
	return r.register("RegisterRetry", func(_ context.Context, o metric.Observer) error {
		s := c.Stats()
		o.ObserveInt64(calls, int64(s.Successes), success)
		o.ObserveInt64(calls, int64(s.Failures), failure)
		o.ObserveInt64(retries, int64(s.Retries), r.name)
		o.ObserveInt64(exhausted, int64(s.Exhausted), r.name)
		return nil
	})
}

// breakerStates are the states the breaker gauges report, in order.
var breakerStates = []breaker.State{breaker.Closed, breaker.Open, breaker.HalfOpen, breaker.ForcedOpen, breaker.ForcedClosed}

// RegisterBreaker publishes the state of b and the counts of c (set as
// Config.Counter of b, or of several breakers called name); either may be
// nil, not both:
//
//	brace.breaker.state        gauge   {state}  state=closed|open|half-open|forced-open|forced-closed:
//	                                            1 for b's current state, 0 for the others
//	brace.breaker.results      counter {call}   outcome=success|failure|ignored
//	brace.breaker.rejections   counter {call}
//	brace.breaker.transitions  counter {change} to=<state entered>
//
// The state is read with [breaker.Breaker.State] at each collection: a
// mutex section without a Store, the local view with one (no round trip).
func RegisterBreaker(m metric.Meter, name string, b *breaker.Breaker, c *breaker.Counter) (metric.Registration, error) {
	if b == nil && c == nil {
		return nil, errors.New("otelbrace: RegisterBreaker needs a *breaker.Breaker or a *breaker.Counter, got neither")
	}
	r := newRegistrar(m, name)
	var state, results, rejections, transitions metric.Int64Observable
	if b != nil {
		state = r.gauge("brace.breaker.state", unitState, "The breaker's current state: 1 for the state it is in, 0 for the others.")
	}
	if c != nil {
		results = r.counter("brace.breaker.results", unitCall, "Results reported to a breaker, by outcome.")
		rejections = r.counter("brace.breaker.rejections", unitCall, "Calls a breaker refused because it was open.")
		transitions = r.counter("brace.breaker.transitions", unitChange, "State changes of a breaker, by the state entered.")
	}
	stateOpts := make([]metric.ObserveOption, len(breakerStates))
	toOpts := make([]metric.ObserveOption, len(breakerStates))
	for i, s := range breakerStates {
		stateOpts[i] = r.with(StateKey.String(s.String()))
		toOpts[i] = r.with(ToKey.String(s.String()))
	}
	outcomes := []metric.ObserveOption{
		r.with(OutcomeKey.String("success")), r.with(OutcomeKey.String("failure")), r.with(OutcomeKey.String("ignored")),
	}
	return r.register("RegisterBreaker", func(_ context.Context, o metric.Observer) error {
		if b != nil {
			now := b.State()
			for i, s := range breakerStates {
				v := int64(0)
				if s == now {
					v = 1
				}
				o.ObserveInt64(state, v, stateOpts[i])
			}
		}
		if c != nil {
			s := c.Stats()
			o.ObserveInt64(results, int64(s.Successes), outcomes[0])
			o.ObserveInt64(results, int64(s.Failures), outcomes[1])
			o.ObserveInt64(results, int64(s.Ignored), outcomes[2])
			o.ObserveInt64(rejections, int64(s.Rejections), r.name)
			for i, st := range breakerStates {
				o.ObserveInt64(transitions, int64(s.Transitions[st]), toOpts[i])
			}
		}
		return nil
	})
}

// RegisterBackpressure publishes the gauges of l and the counts of c (set
// as Config.Counter of l, or of several limiters called name); either may
// be nil, not both:
//
//	brace.backpressure.depth     gauge   {weight}  weight in flight
//	brace.backpressure.capacity  gauge   {weight}
//	brace.backpressure.queued    gauge   {call}    calls waiting for a slot
//	brace.backpressure.admitted  counter {call}
//	brace.backpressure.waited    counter {call}    calls that joined the queue
//	brace.backpressure.shed      counter {call}
//	brace.backpressure.canceled  counter {call}    waiters whose context ended
func RegisterBackpressure(m metric.Meter, name string, l *backpressure.Limiter, c *backpressure.Counter) (metric.Registration, error) {
	if l == nil && c == nil {
		return nil, errors.New("otelbrace: RegisterBackpressure needs a *backpressure.Limiter or a *backpressure.Counter, got neither")
	}
	r := newRegistrar(m, name)
	var depth, capacity, queued, admitted, waited, shed, canceled metric.Int64Observable
	if l != nil {
		depth = r.gauge("brace.backpressure.depth", unitWeight, "Weight of the calls in flight through a backpressure limiter.")
		capacity = r.gauge("brace.backpressure.capacity", unitWeight, "Capacity of a backpressure limiter.")
		queued = r.gauge("brace.backpressure.queued", unitCall, "Calls waiting for a slot in a backpressure limiter.")
	}
	if c != nil {
		admitted = r.counter("brace.backpressure.admitted", unitCall, "Calls a backpressure limiter admitted.")
		waited = r.counter("brace.backpressure.waited", unitCall, "Calls that joined a backpressure limiter's queue.")
		shed = r.counter("brace.backpressure.shed", unitCall, "Calls a backpressure limiter shed.")
		canceled = r.counter("brace.backpressure.canceled", unitCall, "Calls whose context ended while they waited in a backpressure limiter's queue.")
	}
	return r.register("RegisterBackpressure", func(_ context.Context, o metric.Observer) error {
		if l != nil {
			o.ObserveInt64(depth, l.Depth(), r.name)
			o.ObserveInt64(capacity, l.Capacity(), r.name)
			o.ObserveInt64(queued, l.Queued(), r.name)
		}
		if c != nil {
			s := c.Stats()
			o.ObserveInt64(admitted, int64(s.Admitted), r.name)
			o.ObserveInt64(waited, int64(s.Waited), r.name)
			o.ObserveInt64(shed, int64(s.Shed), r.name)
			o.ObserveInt64(canceled, int64(s.Canceled), r.name)
		}
		return nil
	})
}

// RegisterDedup publishes c, set as Config.Counter of the dedup
// middlewares called name:
//
//	brace.dedup.calls  counter {call}  served=executed|joined|cached
func RegisterDedup(m metric.Meter, name string, c *dedup.Counter) (metric.Registration, error) {
	if c == nil {
		return nil, errors.New("otelbrace: RegisterDedup needs a *dedup.Counter, got nil")
	}
	r := newRegistrar(m, name)
	calls := r.counter("brace.dedup.calls", unitCall, "Calls through a dedup middleware, by how they were served.")
	executed, joined, cached := r.with(ServedKey.String("executed")), r.with(ServedKey.String("joined")), r.with(ServedKey.String("cached"))
	return r.register("RegisterDedup", func(_ context.Context, o metric.Observer) error {
		s := c.Stats()
		o.ObserveInt64(calls, int64(s.Executions), executed)
		o.ObserveInt64(calls, int64(s.Joins), joined)
		o.ObserveInt64(calls, int64(s.CacheHits), cached)
		return nil
	})
}

// RegisterTimeout publishes c, set as Config.Counter of the timeout
// middlewares called name:
//
//	brace.timeout.calls     counter {call}
//	brace.timeout.timeouts  counter {call}  calls whose deadline passed before the stage returned
func RegisterTimeout(m metric.Meter, name string, c *timeout.Counter) (metric.Registration, error) {
	if c == nil {
		return nil, errors.New("otelbrace: RegisterTimeout needs a *timeout.Counter, got nil")
	}
	r := newRegistrar(m, name)
	calls := r.counter("brace.timeout.calls", unitCall, "Calls through a timeout middleware that returned.")
	timeouts := r.counter("brace.timeout.timeouts", unitCall, "Calls whose timeout passed before the stage returned.")
	return r.register("RegisterTimeout", func(_ context.Context, o metric.Observer) error {
		s := c.Stats()
		o.ObserveInt64(calls, int64(s.Calls), r.name)
		o.ObserveInt64(timeouts, int64(s.Timeouts), r.name)
		return nil
	})
}

// RegisterRateLimit publishes c, set as Config.Counter or
// KeyedConfig.Counter of the rate limiters called name:
//
//	brace.ratelimit.admitted  counter {call}
//	brace.ratelimit.limited   counter {call}
func RegisterRateLimit(m metric.Meter, name string, c *ratelimit.Counter) (metric.Registration, error) {
	if c == nil {
		return nil, errors.New("otelbrace: RegisterRateLimit needs a *ratelimit.Counter, got nil")
	}
	r := newRegistrar(m, name)
	admitted := r.counter("brace.ratelimit.admitted", unitCall, "Calls a rate limiter admitted.")
	limited := r.counter("brace.ratelimit.limited", unitCall, "Calls a rate limiter refused.")
	return r.register("RegisterRateLimit", func(_ context.Context, o metric.Observer) error {
		s := c.Stats()
		o.ObserveInt64(admitted, int64(s.Admitted), r.name)
		o.ObserveInt64(limited, int64(s.Limited), r.name)
		return nil
	})
}

// RegisterAdaptive publishes the gauges of l and the counts of c (set as
// Config.Counter of l); either may be nil, not both:
//
//	brace.adaptive.limit          gauge   {call}  the limit enforced now
//	brace.adaptive.inflight       gauge   {call}
//	brace.adaptive.admitted       counter {call}
//	brace.adaptive.rejected       counter {call}
//	brace.adaptive.limit_changes  counter {change}
func RegisterAdaptive(m metric.Meter, name string, l *adaptive.Limiter, c *adaptive.Counter) (metric.Registration, error) {
	if l == nil && c == nil {
		return nil, errors.New("otelbrace: RegisterAdaptive needs a *adaptive.Limiter or a *adaptive.Counter, got neither")
	}
	r := newRegistrar(m, name)
	var limit, inflight, admitted, rejected, changes metric.Int64Observable
	if l != nil {
		limit = r.gauge("brace.adaptive.limit", unitCall, "The concurrency limit an adaptive limiter enforces now.")
		inflight = r.gauge("brace.adaptive.inflight", unitCall, "Calls in flight through an adaptive limiter.")
	}
	if c != nil {
		admitted = r.counter("brace.adaptive.admitted", unitCall, "Calls an adaptive limiter admitted.")
		rejected = r.counter("brace.adaptive.rejected", unitCall, "Calls an adaptive limiter rejected.")
		changes = r.counter("brace.adaptive.limit_changes", unitChange, "Changes of an adaptive limiter's limit.")
	}
	return r.register("RegisterAdaptive", func(_ context.Context, o metric.Observer) error {
		if l != nil {
			o.ObserveInt64(limit, int64(l.Limit()), r.name)
			o.ObserveInt64(inflight, int64(l.Inflight()), r.name)
		}
		if c != nil {
			s := c.Stats()
			o.ObserveInt64(admitted, int64(s.Admitted), r.name)
			o.ObserveInt64(rejected, int64(s.Rejected), r.name)
			o.ObserveInt64(changes, int64(s.LimitChanges), r.name)
		}
		return nil
	})
}

// RegisterHedge publishes the delay of h and the counts of c (set as
// Config.Counter of h); either may be nil, not both:
//
//	brace.hedge.delay    gauge   s        the delay before the next hedge
//	brace.hedge.calls    counter {call}
//	brace.hedge.hedges   counter {hedge}  extra attempts started
//	brace.hedge.wins     counter {call}   calls answered by a hedge
//	brace.hedge.refused  counter {hedge}  hedges the budget refused
func RegisterHedge(m metric.Meter, name string, h *hedge.Hedger, c *hedge.Counter) (metric.Registration, error) {
	if h == nil && c == nil {
		return nil, errors.New("otelbrace: RegisterHedge needs a *hedge.Hedger or a *hedge.Counter, got neither")
	}
	r := newRegistrar(m, name)
	var delay metric.Float64Observable
	var calls, hedges, wins, refused metric.Int64Observable
	if h != nil {
		delay = r.floatGauge("brace.hedge.delay", unitSecond, "The delay after which a hedger starts the next attempt.")
	}
	if c != nil {
		calls = r.counter("brace.hedge.calls", unitCall, "Calls through a hedging middleware.")
		hedges = r.counter("brace.hedge.hedges", unitHedge, "Extra attempts a hedging middleware started.")
		wins = r.counter("brace.hedge.wins", unitCall, "Calls whose result came from a hedge.")
		refused = r.counter("brace.hedge.refused", unitHedge, "Hedges not sent because the budget was empty.")
	}
	return r.register("RegisterHedge", func(_ context.Context, o metric.Observer) error {
		if h != nil {
			o.ObserveFloat64(delay, h.Delay().Seconds(), r.name)
		}
		if c != nil {
			s := c.Stats()
			o.ObserveInt64(calls, int64(s.Calls), r.name)
			o.ObserveInt64(hedges, int64(s.Hedges), r.name)
			o.ObserveInt64(wins, int64(s.Wins), r.name)
			o.ObserveInt64(refused, int64(s.Refused), r.name)
		}
		return nil
	})
}

// RegisterFallback publishes c, set as Config.Counter of the fallbacks
// called name:
//
//	brace.fallback.calls      counter {call}
//	brace.fallback.fallbacks  counter {call}  calls handed to the fallback
//	brace.fallback.failures   counter {call}  fallbacks that failed too
func RegisterFallback(m metric.Meter, name string, c *fallback.Counter) (metric.Registration, error) {
	if c == nil {
		return nil, errors.New("otelbrace: RegisterFallback needs a *fallback.Counter, got nil")
	}
	r := newRegistrar(m, name)
	calls := r.counter("brace.fallback.calls", unitCall, "Calls through a fallback middleware.")
	fallbacks := r.counter("brace.fallback.fallbacks", unitCall, "Calls whose failure was handed to the fallback.")
	failures := r.counter("brace.fallback.failures", unitCall, "Fallbacks that failed too.")
	return r.register("RegisterFallback", func(_ context.Context, o metric.Observer) error {
		s := c.Stats()
		o.ObserveInt64(calls, int64(s.Calls), r.name)
		o.ObserveInt64(fallbacks, int64(s.Fallbacks), r.name)
		o.ObserveInt64(failures, int64(s.FallbackFailures), r.name)
		return nil
	})
}

// registrar creates the instruments of one Register call and remembers
// the first error.
type registrar struct {
	m        metric.Meter
	instance string
	name     metric.ObserveOption // the attribute set {name}
	insts    []metric.Observable
	err      error
}

func newRegistrar(m metric.Meter, name string) *registrar {
	r := &registrar{m: m, instance: name}
	r.name = r.with()
	return r
}

// with returns the attribute set {name, kvs...} as an ObserveOption; the
// set is built once, at registration.
func (r *registrar) with(kvs ...attribute.KeyValue) metric.ObserveOption {
	return metric.WithAttributeSet(attribute.NewSet(append([]attribute.KeyValue{NameKey.String(r.instance)}, kvs...)...))
}

func (r *registrar) add(inst metric.Observable, err error) {
	if err != nil {
		r.err = errors.Join(r.err, err)
		return
	}
	r.insts = append(r.insts, inst)
}

func (r *registrar) counter(name, unit, desc string) metric.Int64Observable {
	if r.m == nil {
		return nil
	}
	c, err := r.m.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
	r.add(c, err)
	return c
}

func (r *registrar) gauge(name, unit, desc string) metric.Int64Observable {
	if r.m == nil {
		return nil
	}
	g, err := r.m.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
	r.add(g, err)
	return g
}

func (r *registrar) floatGauge(name, unit, desc string) metric.Float64Observable {
	if r.m == nil {
		return nil
	}
	g, err := r.m.Float64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
	r.add(g, err)
	return g
}

func (r *registrar) register(fn string, f metric.Callback) (metric.Registration, error) {
	if r.m == nil {
		return nil, fmt.Errorf("otelbrace: %s needs a metric.Meter, got nil", fn)
	}
	if r.err != nil {
		return nil, fmt.Errorf("otelbrace: %s: %w", fn, r.err)
	}
	reg, err := r.m.RegisterCallback(f, r.insts...)
	if err != nil {
		return nil, fmt.Errorf("otelbrace: %s: %w", fn, err)
	}
	return reg, nil
}
