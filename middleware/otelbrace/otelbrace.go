package otelbrace

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/priority"
)

// scopeName is the instrumentation scope (the meter name) of every
// instrument this package creates.
const scopeName = "github.com/brace-go/brace/middleware/otelbrace"

// The attributes of the data points. Every key is low-cardinality: none
// carries a call's key, input or error message.
const (
	concernKey   = attribute.Key("brace.concern")  // Event.Concern: "retry", "breaker", ...
	nameKey      = attribute.Key("brace.name")     // Event.Name, the instance's Config.Name
	eventKey     = attribute.Key("brace.event")    // Event.Kind: "rejected", "retry", ...
	reasonKey    = attribute.Key("brace.reason")   // Event.Reason: "open", "shed", ...
	stateKey     = attribute.Key("brace.state")    // StateChanged: the state entered (Event.To)
	errorTypeKey = attribute.Key("error.type")     // the type of Event.Err, never its message
	priorityKey  = attribute.Key("brace.priority") // Rejected: Event.Priority when not default ("critical", "sheddable")
)

// The instruments' names.
const (
	eventsName     = "brace.events"               // counter {event}
	retryDelayName = "brace.retry.delay"          // histogram s
	queueWaitName  = "brace.queue.wait"           // histogram s
	hedgeDelayName = "brace.hedge.delay"          // histogram s
	stateName      = "brace.state"                // gauge {state}
	limitName      = "brace.limit"                // gauge {call}
	probName       = "brace.throttle.probability" // gauge 1

	callDurationName    = "brace.call.duration"    // histogram s, recorded by Measure
	callAttemptsName    = "brace.call.attempts"    // histogram {attempt}, recorded by Measure
	attemptDurationName = "brace.attempt.duration" // histogram s, recorded by Attempts
)

// attemptBuckets are brace.call.attempts' bucket boundaries.
var attemptBuckets = []float64{1, 2, 3, 4, 5, 6, 8, 10, 16, 32}

// durationBuckets are the histograms' bucket boundaries, in seconds: those
// the OpenTelemetry semantic conventions advise for durations
// (http.server.request.duration), extended to a minute for backoffs.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 30, 60}

// Bounds on the memory the Observer keeps. Past them it still records
// every event, but builds the attributes of an uncached combination per
// event (an allocation) and stops tracking gauges of new instances.
const (
	maxCached    = 1024 // combinations of (concern, name, kind, reason, state, error type)
	maxTypes     = 256  // error types whose names are cached
	maxInstances = 1024 // (concern, name) pairs with gauges
	maxStates    = 16   // states seen per instance
)

// Config configures an [Observer]. The zero value is ready to use: it
// records to the global providers, once the program sets them.
type Config struct {
	// MeterProvider provides the meter the instruments are created with.
	// Nil means otel.GetMeterProvider() at the time New is called (the
	// global provider, which forwards to one set later); until the
	// program sets a global meter provider, the Observer records no
	// metric and does no work for them. A no-op provider
	// (go.opentelemetry.io/otel/metric/noop) turns metrics off.
	MeterProvider metric.MeterProvider

	// TracerProvider turns tracing on: each event becomes a span event on
	// the recording span of the call's context, and [Attempts] starts its
	// child spans with this provider's tracer. Nil means
	// otel.GetTracerProvider(): tracing is on while the program has set a
	// global tracer provider, and no span work at all is done before. A
	// no-op provider (go.opentelemetry.io/otel/trace/noop) turns tracing
	// off.
	TracerProvider trace.TracerProvider
}

// Observer is a [middleware.Observer] that records the events of every
// concern it is given to as OpenTelemetry metrics and as events on the
// caller's span. Build it with [New]. It is safe for concurrent use. A
// nil *Observer records nothing.
type Observer struct {
	metrics, traces switchState
	counting        atomic.Bool // a Measure counts attempts in the context
	tracer          trace.Tracer

	callDuration    metric.Float64Histogram
	callAttempts    metric.Int64Histogram
	attemptDuration metric.Float64Histogram

	events     metric.Int64Counter
	retryDelay metric.Float64Histogram
	queueWait  metric.Float64Histogram
	hedgeDelay metric.Float64Histogram
	state      metric.Int64ObservableGauge
	limit      metric.Int64ObservableGauge
	prob       metric.Float64ObservableGauge
	reg        metric.Registration

	// sets and types are copy-on-write: Observe reads them with one
	// atomic load and no lock; a miss copies the map under mu.
	sets  atomic.Pointer[map[setKey]*attrs]
	types atomic.Pointer[map[reflect.Type]string]

	mu     sync.Mutex // guards the maps' writers and gauges
	gauges map[instance]*gauge
}

var _ middleware.Observer = (*Observer)(nil)

// setKey is what the attributes of an event's data points depend on.
type setKey struct {
	kind                                              middleware.Kind
	concern, name, reason, state, errorType, priority string
}

// attrs holds the prebuilt options of one setKey, so recording passes a
// ready slice and allocates nothing.
type attrs struct {
	add    []metric.AddOption    // brace.events: every attribute of the key
	record []metric.RecordOption // histograms: brace.concern, brace.name
	// prob is the probability gauge of the key's instance, for the events
	// that may carry a probability (Rejected, StateChanged); nil past
	// maxInstances.
	prob *probGauge
}

type instance struct{ concern, name string }

// gauge is the last known state and limit of one instance.
type gauge struct {
	states   []stateOpt // the states seen, in order of first sight
	current  int        // index into states; -1 before the first change
	limit    int64
	hasLimit bool
	limitOpt metric.ObserveOption
	prob     *probGauge // nil until an event may carry a probability
}

// probGauge is the last rejection probability an instance reported
// (Event.Probability). It is written without the lock, from the events'
// cached attributes.
type probGauge struct {
	bits atomic.Uint64 // math.Float64bits of the probability
	set  atomic.Bool   // an event has set it
	opt  metric.ObserveOption
}

type stateOpt struct {
	state string
	opt   metric.ObserveOption
}

// New creates the instruments on cfg.MeterProvider's meter for
// "github.com/brace-go/brace/middleware/otelbrace" and registers the callback that reports the gauges. An
// error comes from the provider (an invalid instrument, a failed
// registration), wrapped.
func New(cfg Config) (*Observer, error) {
	mp := cfg.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter(scopeName)
	tp := cfg.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	o := &Observer{
		metrics: meterSwitch(cfg.MeterProvider),
		traces:  traceSwitch(cfg.TracerProvider),
		tracer:  tp.Tracer(scopeName),
		gauges:  make(map[instance]*gauge),
	}
	o.sets.Store(&map[setKey]*attrs{})
	o.types.Store(&map[reflect.Type]string{})

	var errs []error
	var err error
	o.events, err = m.Int64Counter(eventsName, metric.WithUnit("{event}"),
		metric.WithDescription("Events of Brace's concerns (rejections, retries, timeouts, state changes, ...), by concern, instance, kind, reason and error type."))
	errs = append(errs, err)
	hist := func(name, desc string) metric.Float64Histogram {
		h, err := m.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
			metric.WithExplicitBucketBoundaries(durationBuckets...))
		errs = append(errs, err)
		return h
	}
	o.retryDelay = hist(retryDelayName, "Backoff before each retry.")
	o.queueWait = hist(queueWaitName, "Time an admitted call waited in a queue.")
	o.hedgeDelay = hist(hedgeDelayName, "Delay after the call's start at which each hedged attempt started.")
	o.callDuration = hist(callDurationName, "Duration of calls through a Measure middleware, retries and hedges included.")
	o.attemptDuration = hist(attemptDurationName, "Duration of each attempt through an Attempts middleware.")
	o.callAttempts, err = m.Int64Histogram(callAttemptsName, metric.WithUnit("{attempt}"),
		metric.WithDescription("Attempts per call through a Measure middleware: 1 plus the retries and hedges of the call."),
		metric.WithExplicitBucketBoundaries(attemptBuckets...))
	errs = append(errs, err)
	o.state, err = m.Int64ObservableGauge(stateName, metric.WithUnit("{state}"),
		metric.WithDescription("State of a concern's state machine, from its last state change: 1 for the state it is in, 0 for the others it has been in."))
	errs = append(errs, err)
	o.limit, err = m.Int64ObservableGauge(limitName, metric.WithUnit("{call}"),
		metric.WithDescription("Concurrency limit in force, from the last limit change."))
	errs = append(errs, err)
	o.prob, err = m.Float64ObservableGauge(probName, metric.WithUnit("1"),
		metric.WithDescription("Probability with which a throttler rejects calls, from its last state change or rejection."))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("otelbrace: creating instruments: %w", err)
	}
	o.reg, err = m.RegisterCallback(o.observeGauges, o.state, o.limit, o.prob)
	if err != nil {
		return nil, fmt.Errorf("otelbrace: registering the gauges' callback: %w", err)
	}
	return o, nil
}

// Close stops reporting the gauges (brace.state, brace.limit). Events
// observed after Close are still counted. Close is safe to call more than
// once.
func (o *Observer) Close() error {
	if o == nil {
		return nil
	}
	o.mu.Lock()
	reg := o.reg
	o.reg = nil
	o.mu.Unlock()
	if reg == nil {
		return nil
	}
	return reg.Unregister()
}

// Observe records e. When metrics are on, it adds one to brace.events,
// records a duration in the histogram of its kind (Retry, Waited,
// Hedged), and updates the gauges (StateChanged, LimitChanged); once a
// combination of attributes has been seen, this allocates nothing.
// Unknown kinds are counted as brace.event="unknown". When tracing is on
// and the span of ctx is recording, it adds the event to that span
// (see docs/tracing.md for the names). A Retry or Hedged event
// inside a call measured by [Measure] adds one to the call's attempts.
// With neither provider set, Observe does nothing.
func (o *Observer) Observe(ctx context.Context, e middleware.Event) {
	if o == nil {
		return
	}
	metering, tracing := o.metering(), o.tracing()
	if !metering && !tracing {
		return
	}
	if ctx == nil {
		ctx = context.Background()
	}
	if metering {
		o.recordMetrics(ctx, &e)
	}
	if tracing {
		o.addSpanEvent(ctx, &e)
	}
	if (e.Kind == middleware.Retry || e.Kind == middleware.Hedged) && o.counting.Load() {
		if c := callFrom(ctx); c != nil {
			c.attempts.Add(1)
		}
	}
}

// recordMetrics records the metrics of e.
func (o *Observer) recordMetrics(ctx context.Context, e *middleware.Event) {
	a := o.attrs(e)
	o.events.Add(ctx, 1, a.add...)
	switch e.Kind {
	case middleware.Retry:
		record(ctx, o.retryDelay, e.Delay, a)
	case middleware.Waited:
		record(ctx, o.queueWait, e.Wait, a)
	case middleware.Hedged:
		record(ctx, o.hedgeDelay, e.Delay, a)
	case middleware.StateChanged:
		o.setState(e)
		setProb(a.prob, e)
	case middleware.Rejected:
		setProb(a.prob, e)
	case middleware.LimitChanged:
		o.setLimit(e)
	}
}

// setProb records the probability of a Rejected or StateChanged event: a
// rejection that carries one, and every change of state of an instance
// that has reported one (a throttler that stops rejecting changes state
// with probability 0). A NaN is dropped; others are clamped to [0, 1].
func setProb(g *probGauge, e *middleware.Event) {
	p := e.Probability
	if g == nil || p != p || (p == 0 && (e.Kind != middleware.StateChanged || !g.set.Load())) {
		return
	}
	p = min(max(p, 0), 1)
	g.bits.Store(math.Float64bits(p))
	if !g.set.Load() {
		g.set.Store(true)
	}
}

// record records d in seconds; a negative d (a concern's bug) is dropped.
func record(ctx context.Context, h metric.Float64Histogram, d time.Duration, a *attrs) {
	if d >= 0 {
		h.Record(ctx, d.Seconds(), a.record...)
	}
}

// attrs returns the prebuilt options for e, building and caching them the
// first time.
func (o *Observer) attrs(e *middleware.Event) *attrs {
	k := setKey{kind: e.Kind, concern: e.Concern, name: e.Name, reason: e.Reason}
	if e.Kind == middleware.StateChanged {
		k.state = e.To
	}
	if e.Kind == middleware.Rejected && e.Priority != priority.Default && e.Priority.Valid() {
		k.priority = e.Priority.String() // two values at most: bounded
	}
	if e.Err != nil {
		k.errorType = o.errorType(e.Err)
	}
	if a, ok := (*o.sets.Load())[k]; ok {
		return a
	}
	return o.addAttrs(k, e.Concern == "throttle" || e.Probability != 0)
}

// addAttrs builds and caches the options of k. prob says whether the
// instance reports a probability (a throttler): only then do its Rejected
// and StateChanged attributes get the probability gauge, so instances
// that never report one take no gauge slot for it.
func (o *Observer) addAttrs(k setKey, prob bool) *attrs {
	o.mu.Lock()
	defer o.mu.Unlock()
	old := *o.sets.Load()
	if a, ok := old[k]; ok {
		return a
	}
	kvs := make([]attribute.KeyValue, 0, 7)
	kvs = appendNonEmpty(kvs, concernKey, k.concern)
	kvs = appendNonEmpty(kvs, nameKey, k.name)
	short := attribute.NewSet(kvs...)
	kvs = append(kvs, eventKey.String(k.kind.String()))
	kvs = appendNonEmpty(kvs, reasonKey, k.reason)
	kvs = appendNonEmpty(kvs, stateKey, k.state)
	kvs = appendNonEmpty(kvs, errorTypeKey, k.errorType)
	kvs = appendNonEmpty(kvs, priorityKey, k.priority)
	a := &attrs{
		add:    []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(kvs...))},
		record: []metric.RecordOption{metric.WithAttributeSet(short)},
	}
	if prob && (k.kind == middleware.Rejected || k.kind == middleware.StateChanged) {
		if g := o.gaugeOf(instance{k.concern, k.name}); g != nil {
			if g.prob == nil {
				g.prob = &probGauge{opt: metric.WithAttributeSet(short)}
			}
			a.prob = g.prob
		}
	}
	if len(old) < maxCached {
		m := make(map[setKey]*attrs, len(old)+1)
		for k, v := range old {
			m[k] = v
		}
		m[k] = a
		o.sets.Store(&m)
	}
	return a
}

func appendNonEmpty(kvs []attribute.KeyValue, k attribute.Key, v string) []attribute.KeyValue {
	if v == "" {
		return kvs
	}
	return append(kvs, k.String(v))
}

// errorType returns the low-cardinality name of err's type, as the
// OpenTelemetry semantic conventions describe error.type:
//
//   - "context.Canceled" and "context.DeadlineExceeded" for those
//     errors themselves (not for errors wrapping them);
//   - the result of an ErrorType() string method of err, or of the first
//     error found by following Unwrap() error, if not empty;
//   - otherwise, as semconv.ErrorType does, the package path and name of
//     err's type after unwrapping fmt.Errorf wrappers, or for an unnamed
//     type (a pointer) its literal: "*retry.ExhaustedError",
//     "*errors.errorString".
func (o *Observer) errorType(err error) string {
	switch err {
	case context.Canceled:
		return "context.Canceled"
	case context.DeadlineExceeded:
		return "context.DeadlineExceeded"
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		if et, ok := e.(interface{ ErrorType() string }); ok {
			if s := et.ErrorType(); s != "" {
				return s
			}
			break
		}
	}
	for reflect.TypeOf(err) == fmtWrapError {
		u := errors.Unwrap(err)
		if u == nil {
			break
		}
		err = u
	}
	t := reflect.TypeOf(err)
	if s, ok := (*o.types.Load())[t]; ok {
		return s
	}
	return o.addType(t)
}

var fmtWrapError = reflect.TypeOf(fmt.Errorf("%w", errors.New("")))

func (o *Observer) addType(t reflect.Type) string {
	if t.PkgPath() != "" && t.Name() != "" {
		return o.storeType(t, t.PkgPath()+"."+t.Name())
	}
	return o.storeType(t, t.String()) // unnamed, such as a pointer: "*errors.errorString"
}

func (o *Observer) storeType(t reflect.Type, s string) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	old := *o.types.Load()
	if _, ok := old[t]; ok || len(old) >= maxTypes {
		return s
	}
	m := make(map[reflect.Type]string, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[t] = s
	o.types.Store(&m)
	return s
}

// gaugeOf returns the gauges of e's instance, creating them; nil past
// maxInstances. o.mu must be held.
func (o *Observer) gaugeOf(in instance) *gauge {
	g := o.gauges[in]
	if g == nil && len(o.gauges) < maxInstances {
		g = &gauge{current: -1}
		o.gauges[in] = g
	}
	return g
}

func (o *Observer) setState(e *middleware.Event) {
	if e.To == "" {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	g := o.gaugeOf(instance{e.Concern, e.Name})
	if g == nil {
		return
	}
	if e.From != "" {
		g.index(e, e.From)
	}
	if i := g.index(e, e.To); i >= 0 {
		g.current = i
	}
}

// index returns the index of state in g.states, adding it; -1 past
// maxStates.
func (g *gauge) index(e *middleware.Event, state string) int {
	for i, s := range g.states {
		if s.state == state {
			return i
		}
	}
	if len(g.states) >= maxStates {
		return -1
	}
	kvs := make([]attribute.KeyValue, 0, 3)
	kvs = appendNonEmpty(kvs, concernKey, e.Concern)
	kvs = appendNonEmpty(kvs, nameKey, e.Name)
	kvs = append(kvs, stateKey.String(state))
	g.states = append(g.states, stateOpt{state, metric.WithAttributeSet(attribute.NewSet(kvs...))})
	return len(g.states) - 1
}

func (o *Observer) setLimit(e *middleware.Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	g := o.gaugeOf(instance{e.Concern, e.Name})
	if g == nil {
		return
	}
	if !g.hasLimit {
		kvs := make([]attribute.KeyValue, 0, 2)
		kvs = appendNonEmpty(kvs, concernKey, e.Concern)
		kvs = appendNonEmpty(kvs, nameKey, e.Name)
		g.limitOpt = metric.WithAttributeSet(attribute.NewSet(kvs...))
		g.hasLimit = true
	}
	g.limit = e.Limit
}

// observeGauges is the callback: it reports the last state and limit of
// every instance. It only reads what Observe stored; it calls no concern.
func (o *Observer) observeGauges(_ context.Context, obs metric.Observer) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, g := range o.gauges {
		if g.current >= 0 {
			for i, s := range g.states {
				v := int64(0)
				if i == g.current {
					v = 1
				}
				obs.ObserveInt64(o.state, v, s.opt)
			}
		}
		if g.hasLimit {
			obs.ObserveInt64(o.limit, g.limit, g.limitOpt)
		}
		if g.prob != nil && g.prob.set.Load() {
			obs.ObserveFloat64(o.prob, math.Float64frombits(g.prob.bits.Load()), g.prob.opt)
		}
	}
	return nil
}
