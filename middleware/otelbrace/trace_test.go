package otelbrace_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/otelbrace"
	"github.com/brace-go/brace/middleware/priority"
)

// tracing is an Observer with both an SDK meter provider (read by a
// manual reader) and an SDK tracer provider (recorded in memory).
type tracing struct {
	o        *otelbrace.Observer
	reader   *sdkmetric.ManualReader
	recorder *tracetest.SpanRecorder
	tracer   trace.Tracer
}

func newTracing(t testing.TB) tracing {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	t.Cleanup(func() {
		if err := errors.Join(mp.Shutdown(context.Background()), tp.Shutdown(context.Background())); err != nil {
			t.Error(err)
		}
	})
	o, err := otelbrace.New(otelbrace.Config{MeterProvider: mp, TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	return tracing{o: o, reader: reader, recorder: recorder, tracer: tp.Tracer("test")}
}

// events returns the span events of span as "name {attributes}", the
// attributes sorted.
func events(span sdktrace.ReadOnlySpan) []string {
	var got []string
	for _, ev := range span.Events() {
		got = append(got, ev.Name+" {"+encode(ev.Attributes)+"}")
	}
	return got
}

// encode returns kvs as sorted k=v pairs.
func encode(kvs []attribute.KeyValue) string {
	set := attribute.NewSet(kvs...)
	return set.Encoded(attribute.DefaultEncoder())
}

// ended returns the ended span named name.
func ended(t *testing.T, r *tracetest.SpanRecorder, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	for _, s := range r.Ended() {
		if s.Name() == name {
			return s
		}
	}
	t.Fatalf("no ended span %q", name)
	return nil
}

// TestSpanEvents: every kind of event becomes a span event on the span of
// the context, named after the kind, with namespaced attributes for the
// fields that are set; durations in seconds.
func TestSpanEvents(t *testing.T) {
	tr := newTracing(t)
	ctx, span := tr.tracer.Start(context.Background(), "call")
	for _, e := range []middleware.Event{
		{Kind: middleware.Retry, Concern: "retry", Name: "db", Attempt: 1, Delay: 100 * time.Millisecond, Err: &customError{503}},
		{Kind: middleware.Retry, Concern: "retry", Name: "db", Attempt: 2, Err: errBoom}, // an immediate retry: brace.delay=0
		{Kind: middleware.GaveUp, Concern: "retry", Name: "db", Attempt: 3, Reason: "attempts", Err: fmt.Errorf("retry: %w", errBoom)},
		{Kind: middleware.Rejected, Concern: "breaker", Name: "db", Reason: "open", Delay: 30 * time.Second, Err: errBoom},
		{Kind: middleware.Rejected, Concern: "backpressure", Reason: "shed", InFlight: 8, Limit: 8, Err: errBoom},
		{Kind: middleware.Rejected, Concern: "budget", Name: "hedges", Reason: "budget", Attempt: 2, Err: errBoom},
		{Kind: middleware.Rejected, Concern: "throttle", Name: "api", Reason: "throttle", Priority: priority.Sheddable, Probability: 0.25},
		{Kind: middleware.StateChanged, Concern: "breaker", Name: "db", From: "closed", To: "open", Failures: 5},
		{Kind: middleware.StateChanged, Concern: "redisstore", From: "up", To: "down", Reason: "adopted"},
		{Kind: middleware.Joined, Concern: "dedup", Name: "users"},
		{Kind: middleware.Joined, Concern: "dedup", Name: "users", Reason: "cache"},
		{Kind: middleware.Hedged, Concern: "hedge", Name: "search", Attempt: 2, Delay: 20 * time.Millisecond},
		{Kind: middleware.FellBack, Concern: "fallback", Err: context.DeadlineExceeded},
		{Kind: middleware.TimedOut, Concern: "timeout", Name: "db", Delay: 2 * time.Second, Err: context.DeadlineExceeded},
		{Kind: middleware.Waited, Concern: "backpressure", Name: "api", Wait: 1500 * time.Millisecond, InFlight: 4},
		{Kind: middleware.LimitChanged, Concern: "adaptive", Limit: 12},
		{Kind: middleware.StoreFailed, Concern: "breaker", Name: "db", Err: typedError{}},
		{Kind: 200, Concern: "mine"},
	} {
		middleware.Emit(ctx, tr.o, e)
	}
	span.End()
	want := []string{
		"brace.retry {brace.attempt=1,brace.concern=retry,brace.delay=0.1,brace.name=db,error.message=code 503,error.type=*otelbrace_test.customError}",
		"brace.retry {brace.attempt=2,brace.concern=retry,brace.delay=0,brace.name=db,error.message=boom,error.type=*errors.errorString}",
		"brace.gave_up {brace.attempt=3,brace.concern=retry,brace.name=db,brace.reason=attempts,error.message=retry: boom,error.type=*errors.errorString}",
		"brace.rejected {brace.concern=breaker,brace.name=db,brace.reason=open,brace.retry_after=30,error.message=boom,error.type=*errors.errorString}",
		"brace.rejected {brace.concern=backpressure,brace.in_flight=8,brace.limit=8,brace.reason=shed,error.message=boom,error.type=*errors.errorString}",
		"brace.rejected {brace.attempt=2,brace.concern=budget,brace.name=hedges,brace.reason=budget,error.message=boom,error.type=*errors.errorString}",
		"brace.rejected {brace.concern=throttle,brace.name=api,brace.priority=sheddable,brace.probability=0.25,brace.reason=throttle}",
		"brace.state_changed {brace.concern=breaker,brace.failures=5,brace.name=db,brace.previous_state=closed,brace.state=open}",
		"brace.state_changed {brace.concern=redisstore,brace.previous_state=up,brace.reason=adopted,brace.state=down}",
		"brace.joined {brace.concern=dedup,brace.name=users}",
		"brace.joined {brace.concern=dedup,brace.name=users,brace.reason=cache}",
		"brace.hedged {brace.attempt=2,brace.concern=hedge,brace.delay=0.02,brace.name=search}",
		"brace.fell_back {brace.concern=fallback,error.message=context deadline exceeded,error.type=context.DeadlineExceeded}",
		"brace.timed_out {brace.concern=timeout,brace.name=db,brace.timeout=2,error.message=context deadline exceeded,error.type=context.DeadlineExceeded}",
		"brace.waited {brace.concern=backpressure,brace.in_flight=4,brace.name=api,brace.wait=1.5}",
		"brace.limit_changed {brace.concern=adaptive,brace.limit=12}",
		"brace.store_failed {brace.concern=breaker,brace.name=db,error.message=typed,error.type=db.conflict}",
		"brace.unknown {brace.concern=mine}",
	}
	if diff := cmp.Diff(want, events(ended(t, tr.recorder, "call"))); diff != "" {
		t.Errorf("span events (-want +got):\n%s", diff)
	}
}

// TestSpanEventsAttributeTypes: counts are ints, durations float64
// seconds, as the docs say.
func TestSpanEventsAttributeTypes(t *testing.T) {
	tr := newTracing(t)
	ctx, span := tr.tracer.Start(context.Background(), "call")
	tr.o.Observe(ctx, middleware.Event{Kind: middleware.Retry, Concern: "retry", Attempt: 1, Delay: 250 * time.Millisecond, InFlight: 2, Limit: 3, Failures: 4, Wait: time.Second})
	span.End()
	got := map[attribute.Key]attribute.Type{}
	for _, kv := range ended(t, tr.recorder, "call").Events()[0].Attributes {
		got[kv.Key] = kv.Value.Type()
	}
	want := map[attribute.Key]attribute.Type{
		otelbrace.ConcernKey: attribute.STRING, otelbrace.AttemptKey: attribute.INT64,
		otelbrace.DelayKey: attribute.FLOAT64, otelbrace.WaitKey: attribute.FLOAT64,
		otelbrace.InFlightKey: attribute.INT64, otelbrace.LimitKey: attribute.INT64, otelbrace.FailuresKey: attribute.INT64,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("attribute types (-want +got):\n%s", diff)
	}
}

// TestSpanEventsNeedARecordingSpan: no span, a span that is not sampled,
// and a span that has ended get no event, and nothing breaks; the
// metrics are still recorded.
func TestSpanEventsNeedARecordingSpan(t *testing.T) {
	tr := newTracing(t)
	e := middleware.Event{Kind: middleware.Rejected, Concern: "breaker", Reason: "open"}
	tr.o.Observe(context.Background(), e)

	unsampled := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()), sdktrace.WithSpanProcessor(tr.recorder))
	defer unsampled.Shutdown(context.Background())
	ctx, span := unsampled.Tracer("test").Start(context.Background(), "unsampled")
	tr.o.Observe(ctx, e)
	span.End()

	ctx, span = tr.tracer.Start(context.Background(), "ended")
	span.End()
	tr.o.Observe(ctx, e)

	for _, s := range tr.recorder.Ended() {
		if n := len(s.Events()); n != 0 {
			t.Errorf("span %q has %d events; want none", s.Name(), n)
		}
	}
	if diff := cmp.Diff([]point{counter("brace.concern=breaker,brace.event=rejected,brace.reason=open", 3)},
		only(collect(t, tr.reader), "brace.events")); diff != "" {
		t.Errorf("brace.events (-want +got):\n%s", diff)
	}
}

// valueCounter is a context that counts the calls of its Value method: a
// span lookup (trace.SpanFromContext) or a Measure lookup calls it.
type valueCounter struct {
	context.Context
	n *int
}

func (c valueCounter) Value(k any) any {
	*c.n++
	return c.Context.Value(k)
}

// TestNoProviders: with no provider set (the global ones unset) or no-op
// providers, Observe does nothing: it looks nothing up in the context,
// allocates nothing, records nothing once a provider is set later for
// what came before, and Measure and Attempts call the stage and nothing
// else.
func TestNoProviders(t *testing.T) {
	if !globalsUnset() {
		t.Skip("a global provider is set")
	}
	configs := map[string]otelbrace.Config{
		"unset":  {},
		"noop":   {MeterProvider: metricnoop.NewMeterProvider(), TracerProvider: tracenoop.NewTracerProvider()},
		"noop-p": {MeterProvider: new(metricnoop.MeterProvider), TracerProvider: new(tracenoop.TracerProvider)},
	}
	for name, cfg := range configs {
		t.Run(name, func(t *testing.T) {
			o, err := otelbrace.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer o.Close()
			var n int
			var ctx context.Context = valueCounter{context.Background(), &n}
			for _, e := range benchEvents {
				o.Observe(ctx, e)
			}
			stage := middleware.Apply(func(ctx context.Context, in int) (int, error) {
				if _, ok := ctx.(valueCounter); !ok {
					t.Errorf("the stage got a %T; want the caller's context", ctx)
				}
				return in, nil
			}, otelbrace.Measure[int, int](o, "op"), otelbrace.Attempts[int, int](o, "op"))
			if out, err := stage(ctx, 7); out != 7 || err != nil {
				t.Errorf("stage: %v, %v", out, err)
			}
			o.Observe(ctx, middleware.Event{Kind: middleware.Retry})
			if n != 0 {
				t.Errorf("%d context lookups; want none", n)
			}
			if testenv.RaceEnabled {
				return
			}
			if a := testing.AllocsPerRun(1000, func() {
				for _, e := range benchEvents {
					o.Observe(ctx, e)
				}
				stage(ctx, 1)
			}); a != 0 {
				t.Errorf("%v allocations; want 0", a)
			}
		})
	}
}

// globalsUnset reports whether this test process has not set a global
// provider (TestGlobalProvider sets one and puts the old one back).
func globalsUnset() bool {
	return strings.HasPrefix(fmt.Sprintf("%T", otel.GetTracerProvider()), "*global.") &&
		strings.HasPrefix(fmt.Sprintf("%T", otel.GetMeterProvider()), "*global.")
}

// TestGlobalTracerProvider: with a nil Config.TracerProvider, tracing
// starts when the program sets the global tracer provider, after New.
func TestGlobalTracerProvider(t *testing.T) {
	o, _ := newObserver(t)
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	defer tp.Shutdown(context.Background())
	e := middleware.Event{Kind: middleware.Hedged, Concern: "hedge", Attempt: 2}

	ctx, span := tp.Tracer("test").Start(context.Background(), "before")
	o.Observe(ctx, e) // the global provider is unset: no span work
	span.End()

	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	ctx, span = tp.Tracer("test").Start(context.Background(), "after")
	o.Observe(ctx, e)
	span.End()

	if n := len(ended(t, recorder, "before").Events()); n != 0 {
		t.Errorf("before SetTracerProvider: %d events; want none", n)
	}
	if diff := cmp.Diff([]string{"brace.hedged {brace.attempt=2,brace.concern=hedge,brace.delay=0}"},
		events(ended(t, recorder, "after"))); diff != "" {
		t.Errorf("after SetTracerProvider (-want +got):\n%s", diff)
	}
}

// TestMetricsOnlyAllocs: with metrics on and tracing off, a recording
// span in the context changes nothing: Observe allocates nothing.
func TestMetricsOnlyAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	o, _ := newObserver(t) // tracing: the global provider, unset
	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())
	ctx, span := tp.Tracer("test").Start(context.Background(), "call")
	defer span.End()
	for _, e := range benchEvents {
		o.Observe(ctx, e)
		if n := testing.AllocsPerRun(200, func() { o.Observe(ctx, e) }); n != 0 {
			t.Errorf("%v: %v allocations with a recording span but no tracer provider; want 0", e.Kind, n)
		}
	}
}
