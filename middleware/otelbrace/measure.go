package otelbrace

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/brace-go/brace/middleware"
)

// attemptSpanName is the name of the child span [Attempts] starts for each
// attempt.
const attemptSpanName = "brace.attempt"

// callKey is the context key of a call measured by [Measure].
type callKey struct{}

// call is the context [Measure] gives the stages it wraps: the caller's
// context, plus the count of attempts of the call. Being the context
// itself, it costs one allocation per call, not two.
type call struct {
	context.Context
	attempts atomic.Int64
}

func (c *call) Value(k any) any {
	if k == (callKey{}) {
		return c
	}
	return c.Context.Value(k)
}

func callFrom(ctx context.Context) *call {
	c, _ := ctx.Value(callKey{}).(*call)
	return c
}

// measured holds the prebuilt attribute options of one Measure or
// Attempts middleware, by error type ("" for success).
type measured struct {
	name string
	mu   sync.Mutex
	sets atomic.Pointer[map[string][]metric.RecordOption]
}

func newMeasured(name string) *measured {
	m := &measured{name: name}
	m.sets.Store(&map[string][]metric.RecordOption{})
	return m
}

// options returns the options of a data point for a call that ended with
// errorType, building and caching them the first time (up to maxTypes).
func (m *measured) options(errorType string) []metric.RecordOption {
	if opts, ok := (*m.sets.Load())[errorType]; ok {
		return opts
	}
	kvs := make([]attribute.KeyValue, 0, 2)
	kvs = appendNonEmpty(kvs, nameKey, m.name)
	kvs = appendNonEmpty(kvs, errorTypeKey, errorType)
	opts := []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(kvs...))}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.sets.Load()
	if len(old) < maxTypes {
		n := make(map[string][]metric.RecordOption, len(old)+1)
		for k, v := range old {
			n[k] = v
		}
		n[errorType] = opts
		m.sets.Store(&n)
	}
	return opts
}

func (o *Observer) errorTypeOf(err error) string {
	if err == nil {
		return ""
	}
	return o.errorType(err)
}

// Measure returns a middleware that records each call's duration in
// brace.call.duration and its number of attempts in brace.call.attempts,
// with the attributes brace.name (name; left out if empty) and, for a call
// that failed, error.type. Place it outermost, outside the retry and the
// hedge whose Config.Observer is o: the attempts are 1 plus the Retry and
// Hedged events o observes with the call's context (the context Measure
// passes on, or one derived from it). An [Attempts] middleware inside the
// retry numbers its spans from the same count.
//
// name is the name of the operation, as fixed as a Config.Name: never a
// key or a value built per request. With no meter and no tracer provider
// (see [Config]), the middleware calls the stage and does nothing else;
// otherwise it costs one allocation per call (the context carrying the
// count). A call that panics is not recorded. Measure panics if o is nil.
func Measure[In, Out any](o *Observer, name string) middleware.Middleware[In, Out] {
	if o == nil {
		panic("otelbrace: nil *Observer (was New's error ignored?)")
	}
	o.counting.Store(true)
	m := newMeasured(name)
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		return func(ctx context.Context, in In) (Out, error) {
			metering := o.metering()
			if !metering && !o.tracing() {
				return next(ctx, in)
			}
			c := &call{Context: ctx}
			c.attempts.Store(1)
			start := time.Now()
			out, err := next(c, in)
			if metering {
				d := time.Since(start)
				opts := m.options(o.errorTypeOf(err))
				o.callDuration.Record(ctx, d.Seconds(), opts...)
				o.callAttempts.Record(ctx, c.attempts.Load(), opts...)
			}
			return out, err
		}
	}
}

// Attempts returns a middleware that measures each attempt of a call:
// placed inside a retry or a hedge (so that it runs once per attempt), it
// records the attempt's duration in brace.attempt.duration (attributes
// brace.name and, for a failed attempt, error.type), and, when tracing is
// on, runs the attempt in a child span named "brace.attempt" of the
// span of ctx, with the attributes brace.name, brace.attempt (the attempt
// number, when a [Measure] outside the retry counts them) and, for a
// failed attempt, error.type and the status Error with the error's
// message. Events emitted by concerns inside it (a breaker's rejection)
// then land on the attempt's span; the retry's own events stay on the
// call's span.
//
// With no meter and no tracer provider, the middleware calls the stage
// and does nothing else. Attempts panics if o is nil.
func Attempts[In, Out any](o *Observer, name string) middleware.Middleware[In, Out] {
	if o == nil {
		panic("otelbrace: nil *Observer (was New's error ignored?)")
	}
	m := newMeasured(name)
	var nameAttr []attribute.KeyValue
	if name != "" {
		nameAttr = []attribute.KeyValue{nameKey.String(name)}
	}
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		return func(ctx context.Context, in In) (Out, error) {
			metering, tracing := o.metering(), o.tracing()
			if !metering && !tracing {
				return next(ctx, in)
			}
			var span trace.Span
			if tracing {
				opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(nameAttr...)}
				if c := callFrom(ctx); c != nil {
					opts = append(opts, trace.WithAttributes(attemptKey.Int64(c.attempts.Load())))
				}
				ctx, span = o.tracer.Start(ctx, attemptSpanName, opts...)
				defer span.End() // also when the stage panics
			}
			start := time.Now()
			out, err := next(ctx, in)
			d := time.Since(start)
			et := o.errorTypeOf(err)
			if span != nil && err != nil {
				span.SetAttributes(errorTypeKey.String(et))
				span.SetStatus(codes.Error, err.Error())
			}
			if metering {
				o.attemptDuration.Record(ctx, d.Seconds(), m.options(et)...)
			}
			return out, err
		}
	}
}
