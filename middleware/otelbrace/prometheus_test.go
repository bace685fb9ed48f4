package otelbrace_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/otelbrace"
	"github.com/brace-go/brace/middleware/priority"
)

// TestPrometheus: end to end, the Observer's metrics through the
// OpenTelemetry Prometheus exporter, scraped over loopback HTTP as a
// Prometheus server would: every instrument is exposed under the name the
// docs give, with namespaced labels and no key, input or message.
func TestPrometheus(t *testing.T) {
	registry := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(registry))
	if err != nil {
		t.Fatal(err)
	}
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	defer provider.Shutdown(context.Background())
	o, err := otelbrace.New(otelbrace.Config{MeterProvider: provider})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()

	ctx := context.Background()
	for _, e := range []middleware.Event{
		{Kind: middleware.Rejected, Concern: "breaker", Name: "db", Reason: "open", Err: errors.New("breaker: open (user 42)")},
		{Kind: middleware.Retry, Concern: "retry", Name: "db", Attempt: 1, Delay: 100 * time.Millisecond, Err: &customError{503}},
		{Kind: middleware.Waited, Concern: "backpressure", Name: "api", Wait: 20 * time.Millisecond},
		{Kind: middleware.Hedged, Concern: "hedge", Name: "search", Attempt: 2, Delay: 30 * time.Millisecond},
		{Kind: middleware.StateChanged, Concern: "breaker", Name: "db", From: "closed", To: "open"},
		{Kind: middleware.LimitChanged, Concern: "adaptive", Name: "api", Limit: 12},
		{Kind: middleware.Rejected, Concern: "throttle", Name: "inventory", Reason: "throttle", Priority: priority.Sheddable, Probability: 0.5},
	} {
		o.Observe(ctx, e)
	}
	stage := middleware.Apply(func(ctx context.Context, key string) (string, error) {
		middleware.Emit(ctx, o, middleware.Event{Kind: middleware.Retry, Concern: "retry", Name: "db", Attempt: 1})
		return "", nil
	}, otelbrace.Measure[string, string](o, "get-user"), otelbrace.Attempts[string, string](o, "get-user"))
	stage(ctx, "user-42")

	srv := httptest.NewServer(promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	defer srv.Close()
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("server at %s; want loopback", srv.URL)
	}
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %v, %v", resp.Status, err)
	}
	text := string(body)
	defer func() {
		if t.Failed() {
			t.Logf("exposition:\n%s", text)
		}
	}()

	for _, want := range []string{
		"# TYPE brace_events_total counter",
		`brace_events_total{brace_concern="breaker",brace_event="rejected",brace_name="db",brace_reason="open",error_type="*errors.errorString"`,
		`brace_events_total{brace_concern="breaker",brace_event="state-changed",brace_name="db",brace_state="open"`,
		"# TYPE brace_retry_delay_seconds histogram",
		`brace_retry_delay_seconds_bucket{brace_concern="retry",brace_name="db"`,
		"# TYPE brace_queue_wait_seconds histogram",
		"# TYPE brace_hedge_delay_seconds histogram",
		"# TYPE brace_state gauge",
		`brace_state{brace_concern="breaker",brace_name="db",brace_state="open"`,
		"# TYPE brace_limit gauge",
		`brace_events_total{brace_concern="throttle",brace_event="rejected",brace_name="inventory",brace_priority="sheddable",brace_reason="throttle"`,
		"# TYPE brace_throttle_probability_ratio gauge",
		`brace_throttle_probability_ratio{brace_concern="throttle",brace_name="inventory"`,
		"# TYPE brace_call_duration_seconds histogram",
		`brace_call_duration_seconds_count{brace_name="get-user"`,
		"# TYPE brace_call_attempts histogram",
		`brace_call_attempts_sum{brace_name="get-user"`,
		"# TYPE brace_attempt_duration_seconds histogram",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the exposition has no %s", want)
		}
	}
	for _, leak := range []string{"user 42", "user-42", "code 503"} {
		if strings.Contains(text, leak) {
			t.Errorf("the exposition contains %q, from a key or an error message", leak)
		}
	}
}
