package otelbrace_test

import (
	stdcmp "cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/otelbrace"
	"github.com/brace-go/brace/middleware/priority"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var errBoom = errors.New("boom")

// point is one data point as read back through the SDK's manual reader.
// A histogram's point has Count and Sum, the others Value.
type point struct {
	Metric string
	Kind   string // "counter", "gauge" or "histogram"
	Unit   string
	Attrs  string // sorted k=v pairs
	Value  float64
	Count  uint64
	Sum    float64
}

func newObserver(t testing.TB) (*otelbrace.Observer, *sdkmetric.ManualReader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() {
		if err := provider.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	o, err := otelbrace.New(otelbrace.Config{MeterProvider: provider})
	if err != nil {
		t.Fatal(err)
	}
	return o, reader
}

// collect reads every data point, sorted by metric and attributes. It
// checks what every instrument must be: described, in the package's
// scope, a counter monotonic and cumulative.
func collect(t testing.TB, reader *sdkmetric.ManualReader) []point {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var got []point
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != otelbrace.ScopeName {
			t.Errorf("scope %q; want %q", sm.Scope.Name, otelbrace.ScopeName)
		}
		for _, m := range sm.Metrics {
			if m.Description == "" {
				t.Errorf("%s has no description", m.Name)
			}
			p := point{Metric: m.Name, Unit: m.Unit}
			enc := func(s attribute.Set) string { return s.Encoded(attribute.DefaultEncoder()) }
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				if !d.IsMonotonic || d.Temporality != metricdata.CumulativeTemporality {
					t.Errorf("%s: monotonic %v, temporality %v; want a cumulative counter", m.Name, d.IsMonotonic, d.Temporality)
				}
				for _, dp := range d.DataPoints {
					p.Kind, p.Attrs, p.Value = "counter", enc(dp.Attributes), float64(dp.Value)
					got = append(got, p)
				}
			case metricdata.Gauge[int64]:
				for _, dp := range d.DataPoints {
					p.Kind, p.Attrs, p.Value = "gauge", enc(dp.Attributes), float64(dp.Value)
					got = append(got, p)
				}
			case metricdata.Gauge[float64]:
				for _, dp := range d.DataPoints {
					p.Kind, p.Attrs, p.Value = "gauge", enc(dp.Attributes), dp.Value
					got = append(got, p)
				}
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					p.Kind, p.Attrs, p.Count, p.Sum = "histogram", enc(dp.Attributes), dp.Count, dp.Sum
					got = append(got, p)
				}
			case metricdata.Histogram[int64]:
				for _, dp := range d.DataPoints {
					p.Kind, p.Attrs, p.Count, p.Sum = "histogram", enc(dp.Attributes), dp.Count, float64(dp.Sum)
					got = append(got, p)
				}
			default:
				t.Errorf("%s: unexpected data %T", m.Name, m.Data)
			}
		}
	}
	slices.SortFunc(got, func(a, b point) int {
		return stdcmp.Or(strings.Compare(a.Metric, b.Metric), strings.Compare(a.Attrs, b.Attrs))
	})
	return got
}

// only returns the points of metric.
func only(points []point, metric string) []point {
	return slices.DeleteFunc(slices.Clone(points), func(p point) bool { return p.Metric != metric })
}

func counter(attrs string, v float64) point {
	return point{Metric: "brace.events", Kind: "counter", Unit: "{event}", Attrs: attrs, Value: v}
}

// customError is an error type of the program's own.
type customError struct{ code int }

func (e *customError) Error() string { return fmt.Sprint("code ", e.code) }

// typedError names its own error.type.
type typedError struct{}

func (typedError) Error() string     { return "typed" }
func (typedError) ErrorType() string { return "db.conflict" }

// wrapper wraps with an Unwrap method (not fmt.Errorf).
type wrapper struct{ err error }

func (w wrapper) Error() string { return "wrapped: " + w.err.Error() }
func (w wrapper) Unwrap() error { return w.err }

// TestEvents: every event is one count of brace.events, with the
// attributes its fields give, and none from fields that are empty.
func TestEvents(t *testing.T) {
	o, reader := newObserver(t)
	ctx := context.Background()
	events := []middleware.Event{
		{Kind: middleware.Rejected, Concern: "breaker", Name: "db", Reason: "open", Err: errBoom, Delay: time.Second},
		{Kind: middleware.Rejected, Concern: "breaker", Name: "db", Reason: "open", Err: errBoom},
		{Kind: middleware.Rejected, Concern: "backpressure", Reason: "shed", InFlight: 3, Limit: 3},
		{Kind: middleware.Retry, Concern: "retry", Name: "db", Attempt: 1, Err: &customError{503}, Delay: 100 * time.Millisecond},
		{Kind: middleware.Retry, Concern: "retry", Name: "db", Attempt: 2, Err: fmt.Errorf("call: %w", &customError{504}), Delay: 200 * time.Millisecond},
		{Kind: middleware.GaveUp, Concern: "retry", Name: "db", Reason: "attempts", Err: context.DeadlineExceeded},
		{Kind: middleware.TimedOut, Concern: "timeout", Name: "db", Err: context.Canceled},
		{Kind: middleware.TimedOut, Concern: "timeout", Name: "db", Err: fmt.Errorf("late: %w", context.Canceled)},
		{Kind: middleware.StoreFailed, Concern: "breaker", Name: "db", Err: wrapper{typedError{}}},
		{Kind: middleware.Joined, Concern: "dedup", Name: "users", Reason: "cache"},
		{Kind: middleware.FellBack, Concern: "fallback", Err: errors.Join(errBoom, errBoom)},
		{Kind: middleware.StateChanged, Concern: "breaker", Name: "db", From: "closed", To: "open", Failures: 5},
	}
	for _, e := range events {
		o.Observe(ctx, e)
	}
	want := []point{
		counter("brace.concern=backpressure,brace.event=rejected,brace.reason=shed", 1),
		counter("brace.concern=breaker,brace.event=rejected,brace.name=db,brace.reason=open,error.type=*errors.errorString", 2),
		counter("brace.concern=breaker,brace.event=state-changed,brace.name=db,brace.state=open", 1),
		counter("brace.concern=breaker,brace.event=store-failed,brace.name=db,error.type=db.conflict", 1),
		counter("brace.concern=dedup,brace.event=joined,brace.name=users,brace.reason=cache", 1),
		counter("brace.concern=fallback,brace.event=fell-back,error.type=*errors.joinError", 1),
		counter("brace.concern=retry,brace.event=gave-up,brace.name=db,brace.reason=attempts,error.type=context.DeadlineExceeded", 1),
		counter("brace.concern=retry,brace.event=retry,brace.name=db,error.type=*otelbrace_test.customError", 2),
		counter("brace.concern=timeout,brace.event=timed-out,brace.name=db,error.type=*errors.errorString", 1),
		counter("brace.concern=timeout,brace.event=timed-out,brace.name=db,error.type=context.Canceled", 1),
	}
	if diff := cmp.Diff(want, only(collect(t, reader), "brace.events")); diff != "" {
		t.Errorf("brace.events (-want +got):\n%s", diff)
	}
}

// TestErrorTypeIsNotTheMessage: errors of one type with a thousand
// different messages make one series, not a thousand.
func TestErrorTypeIsNotTheMessage(t *testing.T) {
	o, reader := newObserver(t)
	for i := range 1000 {
		o.Observe(context.Background(), middleware.Event{Kind: middleware.Retry, Concern: "retry", Err: &customError{i}})
		o.Observe(context.Background(), middleware.Event{Kind: middleware.Retry, Concern: "retry", Err: fmt.Errorf("attempt %d failed", i)})
	}
	want := []point{
		counter("brace.concern=retry,brace.event=retry,error.type=*errors.errorString", 1000),
		counter("brace.concern=retry,brace.event=retry,error.type=*otelbrace_test.customError", 1000),
	}
	if diff := cmp.Diff(want, only(collect(t, reader), "brace.events")); diff != "" {
		t.Errorf("brace.events (-want +got):\n%s", diff)
	}
}

// TestHistograms: the durations of Retry, Waited and Hedged events, in
// seconds, by concern and name only; a negative duration is dropped.
func TestHistograms(t *testing.T) {
	o, reader := newObserver(t)
	ctx := context.Background()
	for _, e := range []middleware.Event{
		{Kind: middleware.Retry, Concern: "retry", Name: "db", Attempt: 1, Delay: 100 * time.Millisecond, Err: errBoom},
		{Kind: middleware.Retry, Concern: "retry", Name: "db", Attempt: 2, Delay: 300 * time.Millisecond, Err: &customError{1}},
		{Kind: middleware.Retry, Concern: "retry", Name: "db", Attempt: 3, Delay: -time.Second},
		{Kind: middleware.Retry, Concern: "retry", Name: "db", Attempt: 3}, // an immediate retry
		{Kind: middleware.Waited, Concern: "backpressure", Name: "api", Wait: 2 * time.Second, InFlight: 4},
		{Kind: middleware.Waited, Concern: "adaptive", Wait: 500 * time.Millisecond},
		{Kind: middleware.Hedged, Concern: "hedge", Name: "search", Attempt: 2, Delay: 50 * time.Millisecond},
		{Kind: middleware.TimedOut, Concern: "timeout", Delay: time.Second}, // no histogram
	} {
		o.Observe(ctx, e)
	}
	hist := func(metric, attrs string, count uint64, sum float64) point {
		return point{Metric: metric, Kind: "histogram", Unit: "s", Attrs: attrs, Count: count, Sum: sum}
	}
	want := []point{
		hist("brace.hedge.delay", "brace.concern=hedge,brace.name=search", 1, 0.05),
		hist("brace.queue.wait", "brace.concern=adaptive", 1, 0.5),
		hist("brace.queue.wait", "brace.concern=backpressure,brace.name=api", 1, 2),
		hist("brace.retry.delay", "brace.concern=retry,brace.name=db", 3, 0.4),
	}
	got := slices.DeleteFunc(collect(t, reader), func(p point) bool { return p.Kind != "histogram" })
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("histograms (-want +got):\n%s", diff)
	}
}

// TestHistogramBuckets: the buckets are in seconds, from 5ms to a minute.
func TestHistogramBuckets(t *testing.T) {
	o, reader := newObserver(t)
	o.Observe(context.Background(), middleware.Event{Kind: middleware.Retry, Delay: 40 * time.Millisecond})
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if m.Name != "brace.retry.delay" {
			continue
		}
		dp := m.Data.(metricdata.Histogram[float64]).DataPoints[0]
		want := []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 30, 60}
		if diff := cmp.Diff(want, dp.Bounds); diff != "" {
			t.Errorf("bounds (-want +got):\n%s", diff)
		}
		if i := slices.Index(dp.BucketCounts, 1); i != 3 { // (0.025, 0.05]
			t.Errorf("40ms counted in bucket %d (%v); want 3", i, dp.BucketCounts)
		}
		return
	}
	t.Fatal("no brace.retry.delay")
}

// TestGauges: brace.state follows each instance's last StateChanged (1 for
// the state it is in, 0 for the others it has been in), brace.limit its
// last LimitChanged; Close stops them and Observe goes on counting.
func TestGauges(t *testing.T) {
	o, reader := newObserver(t)
	ctx := context.Background()
	state := func(name, from, to string) middleware.Event {
		return middleware.Event{Kind: middleware.StateChanged, Concern: "breaker", Name: name, From: from, To: to}
	}
	gauges := func() []point {
		return slices.DeleteFunc(collect(t, reader), func(p point) bool { return p.Kind != "gauge" })
	}
	if got := gauges(); len(got) != 0 {
		t.Errorf("before any event: %v; want no gauge", got)
	}
	o.Observe(ctx, state("db", "closed", "open"))
	o.Observe(ctx, state("db", "open", "half-open"))
	o.Observe(ctx, state("cache", "closed", "open"))
	o.Observe(ctx, middleware.Event{Kind: middleware.StateChanged, Concern: "redisstore", To: "down", Reason: "adopted"})
	o.Observe(ctx, middleware.Event{Kind: middleware.StateChanged, Concern: "redisstore"}) // no To: ignored
	o.Observe(ctx, middleware.Event{Kind: middleware.LimitChanged, Concern: "adaptive", Name: "api", Limit: 10})
	o.Observe(ctx, middleware.Event{Kind: middleware.LimitChanged, Concern: "adaptive", Name: "api", Limit: 12})

	g := func(metric, unit, attrs string, v float64) point {
		return point{Metric: metric, Kind: "gauge", Unit: unit, Attrs: attrs, Value: v}
	}
	want := []point{
		g("brace.limit", "{call}", "brace.concern=adaptive,brace.name=api", 12),
		g("brace.state", "{state}", "brace.concern=breaker,brace.name=cache,brace.state=closed", 0),
		g("brace.state", "{state}", "brace.concern=breaker,brace.name=cache,brace.state=open", 1),
		g("brace.state", "{state}", "brace.concern=breaker,brace.name=db,brace.state=closed", 0),
		g("brace.state", "{state}", "brace.concern=breaker,brace.name=db,brace.state=half-open", 1),
		g("brace.state", "{state}", "brace.concern=breaker,brace.name=db,brace.state=open", 0),
		g("brace.state", "{state}", "brace.concern=redisstore,brace.state=down", 1),
	}
	if diff := cmp.Diff(want, gauges()); diff != "" {
		t.Errorf("gauges (-want +got):\n%s", diff)
	}

	o.Observe(ctx, state("db", "half-open", "closed"))
	want[3].Value, want[4].Value = 1, 0
	if diff := cmp.Diff(want, gauges()); diff != "" {
		t.Errorf("gauges after closing (-want +got):\n%s", diff)
	}

	for range 2 {
		if err := o.Close(); err != nil {
			t.Fatal(err)
		}
	}
	o.Observe(ctx, state("db", "closed", "open"))
	got := collect(t, reader)
	if n := len(slices.DeleteFunc(slices.Clone(got), func(p point) bool { return p.Kind != "gauge" })); n != 0 {
		t.Errorf("after Close: %d gauge points; want none", n)
	}
	if diff := cmp.Diff([]point{counter("brace.concern=breaker,brace.event=state-changed,brace.name=db,brace.state=open", 2)},
		slices.DeleteFunc(only(got, "brace.events"), func(p point) bool {
			return !strings.Contains(p.Attrs, "name=db") || !strings.Contains(p.Attrs, "state=open")
		})); diff != "" {
		t.Errorf("counting after Close (-want +got):\n%s", diff)
	}
}

// TestOddEvents: a zero Event, an unknown kind, a nil context and a nil
// *Observer neither panic nor lose the count.
func TestOddEvents(t *testing.T) {
	o, reader := newObserver(t)
	o.Observe(context.Background(), middleware.Event{})
	o.Observe(context.Background(), middleware.Event{Kind: 200, Concern: "mine", Name: "x"})
	var nilCtx context.Context
	o.Observe(nilCtx, middleware.Event{Kind: middleware.Retry, Concern: "retry", Delay: time.Millisecond})
	o.Observe(context.Background(), middleware.Event{Kind: middleware.StateChanged, Concern: "s", From: "a"})
	var nilObs *otelbrace.Observer
	nilObs.Observe(context.Background(), middleware.Event{Kind: middleware.Retry})
	if err := nilObs.Close(); err != nil {
		t.Errorf("nil Close: %v", err)
	}
	want := []point{
		counter("brace.concern=mine,brace.event=unknown,brace.name=x", 1),
		counter("brace.concern=retry,brace.event=retry", 1),
		counter("brace.concern=s,brace.event=state-changed", 1),
		counter("brace.event=unknown", 1),
	}
	if diff := cmp.Diff(want, only(collect(t, reader), "brace.events")); diff != "" {
		t.Errorf("brace.events (-want +got):\n%s", diff)
	}
}

// TestBounded: thousands of distinct names and states (a misuse: names are meant to be
// few) are all counted; the Observer's caches stop growing.
func TestBounded(t *testing.T) {
	o, reader := newObserver(t)
	const n = 3000
	for i := range n {
		name := fmt.Sprint("n", i)
		o.Observe(context.Background(), middleware.Event{Kind: middleware.StateChanged, Concern: "c", Name: name, To: "open"})
		o.Observe(context.Background(), middleware.Event{Kind: middleware.StateChanged, Concern: "c", Name: "one", To: name})
	}
	var events, states float64
	for _, p := range collect(t, reader) {
		switch p.Metric {
		case "brace.events":
			events += p.Value
		case "brace.state":
			states++
		}
	}
	if events != 2*n {
		t.Errorf("%v events counted; want %d", events, 2*n)
	}
	if states != 1023+16 {
		t.Errorf("%v state series; want 1023 instances of one state + 16 states of one", states)
	}
}

// TestConcurrent: many goroutines observe while a reader collects (run
// with -race); nothing is lost and the gauges end on the last value.
func TestConcurrent(t *testing.T) {
	o, reader := newObserver(t)
	const goroutines, per = 8, 500
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range per {
				o.Observe(context.Background(), middleware.Event{Kind: middleware.Rejected, Concern: "c", Name: fmt.Sprint(g % 3), Reason: "shed", Err: &customError{i}})
				o.Observe(context.Background(), middleware.Event{Kind: middleware.Retry, Concern: "c", Delay: time.Millisecond})
				o.Observe(context.Background(), middleware.Event{Kind: middleware.LimitChanged, Concern: "c", Limit: int64(i)})
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			collect(t, reader)
		}
	})
	wg.Wait()
	var rejected, retries float64
	for _, p := range collect(t, reader) {
		switch {
		case p.Metric == "brace.events" && strings.Contains(p.Attrs, "rejected"):
			rejected += p.Value
		case p.Metric == "brace.events" && strings.Contains(p.Attrs, "event=retry"):
			retries += p.Value
		case p.Metric == "brace.limit" && p.Value != per-1:
			t.Errorf("%+v; want %d", p, per-1)
		}
	}
	if rejected != goroutines*per || retries != goroutines*per {
		t.Errorf("%v rejections, %v retries; want %d each", rejected, retries, goroutines*per)
	}
}

// TestWithEmit: through middleware.Emit and middleware.Observers, a
// panicking observer beside the Observer does not keep events from it, and
// an observer that re-enters (observes again, collects) from inside
// Observe does not deadlock.
func TestWithEmit(t *testing.T) {
	o, reader := newObserver(t)
	panicky := middleware.ObserverFunc(func(context.Context, middleware.Event) { panic("observer bug") })
	var reentered int
	reentrant := middleware.ObserverFunc(func(ctx context.Context, e middleware.Event) {
		if e.Kind != middleware.StateChanged {
			return
		}
		reentered++
		collect(t, reader) // runs the gauges' callback
		o.Observe(ctx, middleware.Event{Kind: middleware.LimitChanged, Concern: e.Concern, Name: e.Name, Limit: 7})
	})
	obs := middleware.Observers(panicky, o, reentrant)
	silenceDefaultLogger(t) // Emit reports the panics through slog.Default
	for range 3 {
		middleware.Emit(context.Background(), obs, middleware.Event{Kind: middleware.StateChanged, Concern: "breaker", Name: "db", From: "closed", To: "open"})
	}
	want := []point{
		counter("brace.concern=breaker,brace.event=limit-changed,brace.name=db", 3),
		counter("brace.concern=breaker,brace.event=state-changed,brace.name=db,brace.state=open", 3),
		{Metric: "brace.limit", Kind: "gauge", Unit: "{call}", Attrs: "brace.concern=breaker,brace.name=db", Value: 7},
		{Metric: "brace.state", Kind: "gauge", Unit: "{state}", Attrs: "brace.concern=breaker,brace.name=db,brace.state=closed", Value: 0},
		{Metric: "brace.state", Kind: "gauge", Unit: "{state}", Attrs: "brace.concern=breaker,brace.name=db,brace.state=open", Value: 1},
	}
	if diff := cmp.Diff(want, collect(t, reader)); diff != "" || reentered != 3 {
		t.Errorf("after %d re-entries (-want +got):\n%s", reentered, diff)
	}
}

// TestPanickingErrorType: an error whose ErrorType method panics is the
// observer's panic, which Emit recovers; the Observer still works after.
func TestPanickingErrorType(t *testing.T) {
	o, reader := newObserver(t)
	silenceDefaultLogger(t)
	middleware.Emit(context.Background(), o, middleware.Event{Kind: middleware.Retry, Concern: "retry", Err: panickyError{}})
	o.Observe(context.Background(), middleware.Event{Kind: middleware.Retry, Concern: "retry"})
	want := []point{counter("brace.concern=retry,brace.event=retry", 1)}
	if diff := cmp.Diff(want, only(collect(t, reader), "brace.events")); diff != "" {
		t.Errorf("brace.events (-want +got):\n%s", diff)
	}
}

type panickyError struct{}

func (panickyError) Error() string     { return "panicky" }
func (panickyError) ErrorType() string { panic("ErrorType bug") }

// TestGlobalProvider: a zero Config uses the global provider.
func TestGlobalProvider(t *testing.T) {
	prev := otel.GetMeterProvider()
	t.Cleanup(func() { otel.SetMeterProvider(prev) })
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { provider.Shutdown(context.Background()) })
	otel.SetMeterProvider(provider)

	o, err := otelbrace.New(otelbrace.Config{})
	if err != nil {
		t.Fatal(err)
	}
	o.Observe(context.Background(), middleware.Event{Kind: middleware.Hedged, Concern: "hedge"})
	want := []point{counter("brace.concern=hedge,brace.event=hedged", 1)}
	if diff := cmp.Diff(want, only(collect(t, reader), "brace.events")); diff != "" {
		t.Errorf("brace.events (-want +got):\n%s", diff)
	}
}

// failingMeter fails to create the instrument called fail, or to register
// a callback when fail is "callback".
type failingMeter struct {
	noop.Meter
	fail string
}

var errProvider = errors.New("provider failed")

func (m failingMeter) Int64Counter(name string, _ ...metric.Int64CounterOption) (metric.Int64Counter, error) {
	if name == m.fail {
		return nil, errProvider
	}
	return noop.Int64Counter{}, nil
}

func (m failingMeter) Int64ObservableGauge(name string, _ ...metric.Int64ObservableGaugeOption) (metric.Int64ObservableGauge, error) {
	if name == m.fail {
		return nil, errProvider
	}
	return noop.Int64ObservableGauge{}, nil
}

func (m failingMeter) RegisterCallback(metric.Callback, ...metric.Observable) (metric.Registration, error) {
	if m.fail == "callback" {
		return nil, errProvider
	}
	return noop.Registration{}, nil
}

type failingProvider struct {
	noop.MeterProvider
	fail string
}

func (p failingProvider) Meter(string, ...metric.MeterOption) metric.Meter {
	return failingMeter{fail: p.fail}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		fail, want string
	}{
		{"brace.events", "otelbrace: creating instruments: provider failed"},
		{"brace.state", "otelbrace: creating instruments: provider failed"},
		{"callback", "otelbrace: registering the gauges' callback: provider failed"},
	}
	for _, tt := range tests {
		t.Run(tt.fail, func(t *testing.T) {
			o, err := otelbrace.New(otelbrace.Config{MeterProvider: failingProvider{fail: tt.fail}})
			if o != nil || !errors.Is(err, errProvider) {
				t.Fatalf("New: %v, %v; want nil and an error wrapping %v", o, err, errProvider)
			}
			if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
		})
	}
	// A provider that does nothing is fine.
	if _, err := otelbrace.New(otelbrace.Config{MeterProvider: noop.NewMeterProvider()}); err != nil {
		t.Errorf("noop provider: %v", err)
	}
}

// benchEvents are the events the benchmarks and the allocation test
// observe: a rejection with an error, a retry with a histogram, a state
// change with its gauge, a wait.
var benchEvents = []middleware.Event{
	{Kind: middleware.Rejected, Concern: "breaker", Name: "db", Reason: "open", Err: errBoom, Delay: time.Second},
	{Kind: middleware.Retry, Concern: "retry", Name: "db", Attempt: 2, Err: fmt.Errorf("x: %w", &customError{1}), Delay: 100 * time.Millisecond},
	{Kind: middleware.StateChanged, Concern: "breaker", Name: "db", From: "closed", To: "open"},
	{Kind: middleware.Waited, Concern: "backpressure", Name: "api", Wait: time.Millisecond},
	{Kind: middleware.LimitChanged, Concern: "adaptive", Name: "api", Limit: 12},
	{Kind: middleware.Rejected, Concern: "throttle", Name: "api", Reason: "throttle", Err: errBoom, Priority: priority.Sheddable, Probability: 0.3},
}

// TestPriorityAttribute: a rejection of a call whose priority is not the
// default carries brace.priority; a default or invalid level, and any
// other kind of event, do not (two values at most: bounded).
func TestPriorityAttribute(t *testing.T) {
	o, reader := newObserver(t)
	ctx := context.Background()
	shed := func(l priority.Level) middleware.Event {
		return middleware.Event{Kind: middleware.Rejected, Concern: "backpressure", Name: "api", Reason: "shed", Priority: l}
	}
	o.Observe(ctx, shed(priority.Sheddable))
	o.Observe(ctx, shed(priority.Sheddable))
	o.Observe(ctx, shed(priority.Critical))
	o.Observe(ctx, shed(priority.Default))
	o.Observe(ctx, shed(priority.Level(42))) // not a level: counted without it
	o.Observe(ctx, middleware.Event{Kind: middleware.Waited, Concern: "backpressure", Name: "api", Priority: priority.Critical})
	want := []point{
		counter("brace.concern=backpressure,brace.event=rejected,brace.name=api,brace.priority=critical,brace.reason=shed", 1),
		counter("brace.concern=backpressure,brace.event=rejected,brace.name=api,brace.priority=sheddable,brace.reason=shed", 2),
		counter("brace.concern=backpressure,brace.event=rejected,brace.name=api,brace.reason=shed", 2),
		counter("brace.concern=backpressure,brace.event=waited,brace.name=api", 1),
	}
	if diff := cmp.Diff(want, only(collect(t, reader), "brace.events")); diff != "" {
		t.Errorf("brace.events (-want +got):\n%s", diff)
	}
}

// TestThrottleProbability: brace.throttle.probability is each throttler's
// last probability, from its rejections and its changes of state (a
// change back to not throttling, with probability 0, sets 0); a NaN is
// dropped, others clamped to [0, 1]; instances that never report one have
// no point.
func TestThrottleProbability(t *testing.T) {
	o, reader := newObserver(t)
	ctx := context.Background()
	probs := func() []point { return only(collect(t, reader), "brace.throttle.probability") }
	gauge := func(attrs string, v float64) point {
		return point{Metric: "brace.throttle.probability", Kind: "gauge", Unit: "1", Attrs: attrs, Value: v}
	}
	o.Observe(ctx, middleware.Event{Kind: middleware.Rejected, Concern: "breaker", Name: "db", Reason: "open"})
	o.Observe(ctx, middleware.Event{Kind: middleware.StateChanged, Concern: "breaker", Name: "db", From: "closed", To: "open"})
	if got := probs(); len(got) != 0 {
		t.Errorf("before any throttle event: %v", got)
	}
	o.Observe(ctx, middleware.Event{Kind: middleware.StateChanged, Concern: "throttle", Name: "api", From: "passing", To: "throttling", Probability: 0.25})
	o.Observe(ctx, middleware.Event{Kind: middleware.Rejected, Concern: "throttle", Name: "api", Reason: "throttle", Probability: 0.4})
	o.Observe(ctx, middleware.Event{Kind: middleware.Rejected, Concern: "throttle", Name: "api", Reason: "throttle", Probability: math.NaN()})
	o.Observe(ctx, middleware.Event{Kind: middleware.Rejected, Concern: "throttle", Name: "other", Reason: "throttle", Probability: 7})
	want := []point{
		gauge("brace.concern=throttle,brace.name=api", 0.4),
		gauge("brace.concern=throttle,brace.name=other", 1),
	}
	if diff := cmp.Diff(want, probs()); diff != "" {
		t.Errorf("probabilities (-want +got):\n%s", diff)
	}
	o.Observe(ctx, middleware.Event{Kind: middleware.StateChanged, Concern: "throttle", Name: "api", From: "throttling", To: "passing"})
	o.Observe(ctx, middleware.Event{Kind: middleware.Rejected, Concern: "throttle", Name: "other", Reason: "throttle"}) // no probability: kept
	want[0].Value = 0
	if diff := cmp.Diff(want, probs()); diff != "" {
		t.Errorf("probabilities after recovering (-want +got):\n%s", diff)
	}
}

// TestAllocs: once an event's attributes have been seen, Observe
// allocates nothing, with the SDK behind it.
func TestAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	o, _ := newObserver(t)
	ctx := context.Background()
	for _, e := range benchEvents {
		o.Observe(ctx, e) // first sight: builds the attributes
		t.Run(e.Kind.String(), func(t *testing.T) {
			if n := testing.AllocsPerRun(1000, func() { o.Observe(ctx, e) }); n != 0 {
				t.Errorf("Observe allocates %v times per event; want 0", n)
			}
		})
	}
}

func BenchmarkObserve(b *testing.B) {
	for _, e := range benchEvents {
		b.Run(e.Kind.String(), func(b *testing.B) {
			o, _ := newObserver(b)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				o.Observe(ctx, e)
			}
		})
	}
	b.Run("parallel", func(b *testing.B) {
		o, _ := newObserver(b)
		ctx := context.Background()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				o.Observe(ctx, benchEvents[0])
			}
		})
	})
	b.Run("noop-provider", func(b *testing.B) {
		o, err := otelbrace.New(otelbrace.Config{MeterProvider: noop.NewMeterProvider()})
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
