package otelbrace_test

import (
	"context"
	"testing"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/otelbrace"
)

// BenchmarkObserveOff: no provider set (the global ones unset) or no-op
// providers: Observe does nothing.
func BenchmarkObserveOff(b *testing.B) {
	for name, cfg := range map[string]otelbrace.Config{
		"unset": {},
		"noop":  {MeterProvider: metricnoop.NewMeterProvider(), TracerProvider: tracenoop.NewTracerProvider()},
	} {
		b.Run(name, func(b *testing.B) {
			if name == "unset" && !globalsUnset() {
				b.Skip("a global provider is set")
			}
			o, err := otelbrace.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				o.Observe(ctx, benchEvents[0])
			}
		})
	}
}

// traced returns an Observer with an SDK meter provider (a manual reader)
// and an SDK tracer provider (no processor: spans are recorded, then
// dropped), and a function that gives a context with a recording span,
// starting a new span every 64 calls so that its events stay under the
// SDK's limit of 128 (past it, events are dropped, which is cheaper).
func traced(b *testing.B) (*otelbrace.Observer, func() context.Context) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	tp := sdktrace.NewTracerProvider()
	b.Cleanup(func() {
		mp.Shutdown(context.Background())
		tp.Shutdown(context.Background())
	})
	o, err := otelbrace.New(otelbrace.Config{MeterProvider: mp, TracerProvider: tp})
	if err != nil {
		b.Fatal(err)
	}
	tracer := tp.Tracer("bench")
	var ctx context.Context
	var span trace.Span
	n := 0
	return o, func() context.Context {
		if n%64 == 0 {
			b.StopTimer()
			if span != nil {
				span.End()
			}
			ctx, span = tracer.Start(context.Background(), "call")
			b.StartTimer()
		}
		n++
		return ctx
	}
}

// BenchmarkObserveTraced: both providers set, a recording span in the
// context: the metrics and a span event per event.
func BenchmarkObserveTraced(b *testing.B) {
	for _, e := range benchEvents {
		b.Run(e.Kind.String(), func(b *testing.B) {
			o, ctx := traced(b)
			o.Observe(ctx(), e)
			b.ReportAllocs()
			for b.Loop() {
				o.Observe(ctx(), e)
			}
		})
	}
}

// BenchmarkMeasure: a call through Measure and Attempts around a stage
// that does nothing.
func BenchmarkMeasure(b *testing.B) {
	stage := func(o *otelbrace.Observer) middleware.Stage[int, int] {
		return middleware.Apply(func(_ context.Context, in int) (int, error) { return in, nil },
			otelbrace.Measure[int, int](o, "op"), otelbrace.Attempts[int, int](o, "op"))
	}
	b.Run("off", func(b *testing.B) {
		o, err := otelbrace.New(otelbrace.Config{MeterProvider: metricnoop.NewMeterProvider(), TracerProvider: tracenoop.NewTracerProvider()})
		if err != nil {
			b.Fatal(err)
		}
		s := stage(o)
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			s(ctx, 1)
		}
	})
	b.Run("metrics", func(b *testing.B) {
		o, _ := newObserver(b)
		s := stage(o)
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			s(ctx, 1)
		}
	})
	b.Run("metrics+traces", func(b *testing.B) {
		o, ctx := traced(b)
		s := stage(o)
		b.ReportAllocs()
		for b.Loop() {
			s(ctx(), 1)
		}
	})
}
