package otelbrace

import (
	"context"
	"reflect"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/priority"
)

// The attributes of the span events, beside brace.concern, brace.name,
// brace.reason, brace.state and error.type, which mean there what they
// mean on the metrics. Durations are in seconds, as float64, like the
// histograms. An attribute is left out when its Event field is zero,
// except brace.delay on brace.retry and brace.hedged, where 0 means "at
// once".
const (
	attemptKey       = attribute.Key("brace.attempt")        // int: Event.Attempt
	delayKey         = attribute.Key("brace.delay")          // float64 s: Retry, Hedged, GaveUp: Event.Delay
	retryAfterKey    = attribute.Key("brace.retry_after")    // float64 s: Rejected: Event.Delay
	timeoutKey       = attribute.Key("brace.timeout")        // float64 s: TimedOut: Event.Delay
	waitKey          = attribute.Key("brace.wait")           // float64 s: Event.Wait
	inFlightKey      = attribute.Key("brace.in_flight")      // int: Event.InFlight
	limitKey         = attribute.Key("brace.limit")          // int: Event.Limit
	previousStateKey = attribute.Key("brace.previous_state") // string: StateChanged: Event.From
	failuresKey      = attribute.Key("brace.failures")       // int: StateChanged: Event.Failures
	errorMessageKey  = attribute.Key("error.message")        // string: Event.Err.Error()
	probabilityKey   = attribute.Key("brace.probability")    // float64: Event.Probability
)

// spanEventNames are the span events' names, one per Kind: "brace." and
// the kind's name in snake case.
var spanEventNames = [...]string{
	middleware.Rejected:     "brace.rejected",
	middleware.Retry:        "brace.retry",
	middleware.GaveUp:       "brace.gave_up",
	middleware.TimedOut:     "brace.timed_out",
	middleware.StateChanged: "brace.state_changed",
	middleware.Joined:       "brace.joined",
	middleware.Waited:       "brace.waited",
	middleware.LimitChanged: "brace.limit_changed",
	middleware.Hedged:       "brace.hedged",
	middleware.FellBack:     "brace.fell_back",
	middleware.StoreFailed:  "brace.store_failed",
}

// spanEventName returns the name of the span event an event of kind k
// becomes: "brace.retry", "brace.rejected", "brace.state_changed", ...;
// "brace.unknown" for a kind this version does not know.
func spanEventName(k middleware.Kind) string {
	if int(k) < len(spanEventNames) && spanEventNames[k] != "" {
		return spanEventNames[k]
	}
	return "brace.unknown"
}

// The global providers as they are before any program sets one: the
// delegating providers of otel's internal/global package. A program that
// never calls otel.SetTracerProvider (or SetMeterProvider) keeps getting
// these, and an Observer built on them does no work. Nil if a provider was
// set before this package's initialization or the internals changed; then
// the Observer treats the global provider as set (and, for tracing, still
// skips spans that are not recording).
var (
	unsetTracerProvider = unsetGlobal(otel.GetTracerProvider(), "*global.tracerProvider")
	unsetMeterProvider  = unsetGlobal(otel.GetMeterProvider(), "*global.meterProvider")
)

func unsetGlobal[P any](p P, typ string) P {
	if reflect.TypeOf(p).String() == typ {
		return p
	}
	var zero P // nil: no provider is ever equal to it
	return zero
}

// switchState says whether a signal (traces or metrics) is recorded.
type switchState uint8

const (
	off    switchState = iota // a no-op provider: never
	on                        // a provider given in Config: always
	global                    // the global provider: while one is set
)

func traceSwitch(tp trace.TracerProvider) switchState {
	switch tp.(type) {
	case nil:
		return global
	case tracenoop.TracerProvider, *tracenoop.TracerProvider:
		return off
	}
	return on
}

func meterSwitch(mp metric.MeterProvider) switchState {
	switch mp.(type) {
	case nil:
		return global
	case metricnoop.MeterProvider, *metricnoop.MeterProvider:
		return off
	}
	return on
}

// tracing reports whether span work is to be done now.
func (o *Observer) tracing() bool {
	switch o.traces {
	case on:
		return true
	case global:
		return otel.GetTracerProvider() != unsetTracerProvider
	}
	return false
}

// metering reports whether metrics are to be recorded now.
func (o *Observer) metering() bool {
	switch o.metrics {
	case on:
		return true
	case global:
		return otel.GetMeterProvider() != unsetMeterProvider
	}
	return false
}

// addSpanEvent adds e as an event to the recording span of ctx, if any.
func (o *Observer) addSpanEvent(ctx context.Context, e *middleware.Event) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	var buf [14]attribute.KeyValue
	span.AddEvent(spanEventName(e.Kind), trace.WithAttributes(o.spanAttrs(buf[:0], e)...))
}

// spanAttrs appends the attributes of e's span event to kvs.
func (o *Observer) spanAttrs(kvs []attribute.KeyValue, e *middleware.Event) []attribute.KeyValue {
	kvs = appendNonEmpty(kvs, concernKey, e.Concern)
	kvs = appendNonEmpty(kvs, nameKey, e.Name)
	if e.Attempt != 0 {
		kvs = append(kvs, attemptKey.Int(e.Attempt))
	}
	switch e.Kind {
	case middleware.Retry, middleware.Hedged:
		kvs = append(kvs, delayKey.Float64(seconds(e.Delay)))
	case middleware.Rejected:
		kvs = appendDuration(kvs, retryAfterKey, e.Delay)
	case middleware.TimedOut:
		kvs = appendDuration(kvs, timeoutKey, e.Delay)
	default:
		kvs = appendDuration(kvs, delayKey, e.Delay)
	}
	kvs = appendDuration(kvs, waitKey, e.Wait)
	if e.InFlight != 0 {
		kvs = append(kvs, inFlightKey.Int64(e.InFlight))
	}
	if e.Limit != 0 {
		kvs = append(kvs, limitKey.Int64(e.Limit))
	}
	kvs = appendNonEmpty(kvs, previousStateKey, e.From)
	kvs = appendNonEmpty(kvs, stateKey, e.To)
	if e.Failures != 0 {
		kvs = append(kvs, failuresKey.Int64(e.Failures))
	}
	kvs = appendNonEmpty(kvs, reasonKey, e.Reason)
	if e.Priority != priority.Default {
		kvs = append(kvs, priorityKey.String(e.Priority.String()))
	}
	if e.Probability != 0 {
		kvs = append(kvs, probabilityKey.Float64(e.Probability))
	}
	if e.Err != nil {
		kvs = append(kvs, errorTypeKey.String(o.errorType(e.Err)), errorMessageKey.String(e.Err.Error()))
	}
	return kvs
}

func appendDuration(kvs []attribute.KeyValue, k attribute.Key, d time.Duration) []attribute.KeyValue {
	if d == 0 {
		return kvs
	}
	return append(kvs, k.Float64(seconds(d)))
}

// seconds is d in seconds; a negative d (a concern's bug) is 0.
func seconds(d time.Duration) float64 {
	if d < 0 {
		return 0
	}
	return d.Seconds()
}
