package otelbrace_test

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/otelbrace"
	"github.com/brace-go/brace/middleware/retry"
)

// A retry middleware counts into a Counter; RegisterRetry publishes it,
// and a manual reader (a stand-in for an exporter) reads it back.
func ExampleRegisterRetry() {
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer provider.Shutdown(context.Background())
	meter := provider.Meter("example")

	var counter retry.Counter
	mw, err := retry.New[string, string](retry.Config{MaxAttempts: 3, BaseDelay: 1, Counter: &counter})
	if err != nil {
		panic(err)
	}
	failures := 1
	fetch := middleware.Apply(func(_ context.Context, key string) (string, error) {
		if failures > 0 {
			failures--
			return "", errors.New("connection reset")
		}
		return "value of " + key, nil
	}, mw)
	fetch(context.Background(), "a") // fails once, then succeeds
	fetch(context.Background(), "b") // succeeds at once

	reg, err := otelbrace.RegisterRetry(meter, "cache", &counter)
	if err != nil {
		panic(err)
	}
	defer reg.Unregister()

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		panic(err)
	}
	for _, m := range rm.ScopeMetrics[0].Metrics {
		for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
			if dp.Value > 0 {
				fmt.Printf("%s %s {%s} %d\n", m.Name, m.Unit, dp.Attributes.Encoded(attribute.DefaultEncoder()), dp.Value)
			}
		}
	}
	// Output:
	// brace.retry.calls {call} {name=cache,outcome=success} 2
	// brace.retry.retries {retry} {name=cache} 1
}
