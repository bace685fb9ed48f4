package otelbrace_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/otelbrace"
	"github.com/brace-go/brace/middleware/retry"
)

// One Observer records the events of every concern it is given to. Here
// the events are emitted by hand, as a breaker would emit them when it
// opens and then rejects a call; a manual reader stands in for an
// exporter.
func ExampleNew() {
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer provider.Shutdown(context.Background())

	obs, err := otelbrace.New(otelbrace.Config{MeterProvider: provider})
	if err != nil {
		panic(err)
	}
	// In a program: breaker.New(breaker.Config{Name: "payments", Observer: obs}).
	ctx := context.Background()
	middleware.Emit(ctx, obs, middleware.Event{Kind: middleware.StateChanged, Concern: "breaker", Name: "payments", From: "closed", To: "open", Failures: 5})
	middleware.Emit(ctx, obs, middleware.Event{Kind: middleware.Rejected, Concern: "breaker", Name: "payments", Reason: "open", Err: errors.New("breaker: open")})

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		panic(err)
	}
	for _, m := range rm.ScopeMetrics[0].Metrics {
		switch d := m.Data.(type) {
		case metricdata.Sum[int64]:
			for _, dp := range d.DataPoints {
				fmt.Printf("%s %s {%s} %d\n", m.Name, m.Unit, dp.Attributes.Encoded(attribute.DefaultEncoder()), dp.Value)
			}
		case metricdata.Gauge[int64]:
			for _, dp := range d.DataPoints {
				fmt.Printf("%s %s {%s} %d\n", m.Name, m.Unit, dp.Attributes.Encoded(attribute.DefaultEncoder()), dp.Value)
			}
		}
	}
	// Unordered output:
	// brace.events {event} {brace.concern=breaker,brace.event=state-changed,brace.name=payments,brace.state=open} 1
	// brace.events {event} {brace.concern=breaker,brace.event=rejected,brace.name=payments,brace.reason=open,error.type=*errors.errorString} 1
	// brace.state {state} {brace.concern=breaker,brace.name=payments,brace.state=closed} 0
	// brace.state {state} {brace.concern=breaker,brace.name=payments,brace.state=open} 1
}

// With a tracer provider, every event becomes an event on the caller's
// span, and Attempts runs each attempt in a child span. Here a retry
// recovers from two failures; an in-memory span recorder stands in for an
// exporter.
func Example_tracing() {
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	defer tp.Shutdown(context.Background())

	obs, err := otelbrace.New(otelbrace.Config{TracerProvider: tp, MeterProvider: metricnoop.NewMeterProvider()})
	if err != nil {
		panic(err)
	}
	r, err := retry.New(retry.Config{Name: "users", MaxAttempts: 3, BaseDelay: time.Millisecond, Jitter: retry.NoJitter, Observer: obs})
	if err != nil {
		panic(err)
	}
	failures := 2
	getUser := middleware.Apply(func(ctx context.Context, id int) (string, error) {
		if failures > 0 {
			failures--
			return "", errors.New("connection reset")
		}
		return "ada", nil
	},
		otelbrace.Measure[int, string](obs, "get-user"),
		retry.Middleware[int, string](r),
		otelbrace.Attempts[int, string](obs, "get-user"))

	ctx, span := tp.Tracer("example").Start(context.Background(), "GET /users/{id}")
	getUser(ctx, 42)
	span.End()

	for _, s := range recorder.Ended() {
		attrs := attribute.NewSet(s.Attributes()...)
		fmt.Printf("span %s {%s} %v\n", s.Name(), attrs.Encoded(attribute.DefaultEncoder()), s.Status().Code)
		for _, ev := range s.Events() {
			attrs := attribute.NewSet(ev.Attributes...)
			fmt.Printf("  event %s {%s}\n", ev.Name, attrs.Encoded(attribute.DefaultEncoder()))
		}
	}
	// Output:
	// span brace.attempt {brace.attempt=1,brace.name=get-user,error.type=*errors.errorString} Error
	// span brace.attempt {brace.attempt=2,brace.name=get-user,error.type=*errors.errorString} Error
	// span brace.attempt {brace.attempt=3,brace.name=get-user} Unset
	// span GET /users/{id} {} Unset
	//   event brace.retry {brace.attempt=1,brace.concern=retry,brace.delay=0.001,brace.name=users,error.message=connection reset,error.type=*errors.errorString}
	//   event brace.retry {brace.attempt=2,brace.concern=retry,brace.delay=0.002,brace.name=users,error.message=connection reset,error.type=*errors.errorString}
}
