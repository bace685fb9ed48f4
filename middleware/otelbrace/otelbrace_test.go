package otelbrace_test

import (
	stdcmp "cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/adaptive"
	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/dedup"
	"github.com/brace-go/brace/middleware/fallback"
	"github.com/brace-go/brace/middleware/hedge"
	"github.com/brace-go/brace/middleware/otelbrace"
	"github.com/brace-go/brace/middleware/ratelimit"
	"github.com/brace-go/brace/middleware/retry"
	"github.com/brace-go/brace/middleware/timeout"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var errBoom = errors.New("boom")

// point is one data point as read back through the SDK's manual reader.
type point struct {
	Metric string
	Kind   string // "counter" (monotonic cumulative sum) or "gauge"
	Unit   string
	Attrs  string // sorted k=v pairs
	Value  float64
}

func newMeter(t *testing.T) (metric.Meter, *sdkmetric.ManualReader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() {
		if err := provider.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return provider.Meter("github.com/brace-go/brace/middleware/otelbrace_test"), reader
}

// collect reads every data point, sorted by metric and attributes.
func collect(t *testing.T, reader *sdkmetric.ManualReader) []point {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var got []point
	add := func(m metricdata.Metrics, kind string, attrs attribute.Set, v float64) {
		got = append(got, point{Metric: m.Name, Kind: kind, Unit: m.Unit, Attrs: attrs.Encoded(attribute.DefaultEncoder()), Value: v})
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Description == "" {
				t.Errorf("%s has no description", m.Name)
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				if !d.IsMonotonic || d.Temporality != metricdata.CumulativeTemporality {
					t.Errorf("%s: monotonic %v, temporality %v; want a cumulative counter", m.Name, d.IsMonotonic, d.Temporality)
				}
				for _, dp := range d.DataPoints {
					add(m, "counter", dp.Attributes, float64(dp.Value))
				}
			case metricdata.Gauge[int64]:
				for _, dp := range d.DataPoints {
					add(m, "gauge", dp.Attributes, float64(dp.Value))
				}
			case metricdata.Gauge[float64]:
				for _, dp := range d.DataPoints {
					add(m, "gauge", dp.Attributes, dp.Value)
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

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func ok(context.Context, int) (int, error)   { return 1, nil }
func fail(context.Context, int) (int, error) { return 0, errBoom }

// TestAllConcerns drives every concern through real middlewares and reads
// every metric back: the names, kinds, units and attributes are the
// documented, stable ones, and the values are what happened.
func TestAllConcerns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		meter, reader := newMeter(t)
		ctx := context.Background()
		reg := must[metric.Registration](t)

		// Retry: one success, one success after a retry, one exhausted.
		var rc retry.Counter
		rmw := must[middleware.Middleware[int, int]](t)(retry.New[int, int](retry.Config{MaxAttempts: 2, BaseDelay: time.Millisecond, Counter: &rc}))
		flaky := 0
		rmw(ok)(ctx, 0)
		rmw(func(context.Context, int) (int, error) {
			if flaky++; flaky == 1 {
				return 0, errBoom
			}
			return 1, nil
		})(ctx, 0)
		rmw(fail)(ctx, 0)
		reg(otelbrace.RegisterRetry(meter, "db", &rc))

		// Breaker: a success, a failure that opens it, a rejection.
		var bc breaker.Counter
		b := must[*breaker.Breaker](t)(breaker.New(breaker.Config{Threshold: 1, OpenTimeout: time.Hour, Counter: &bc}))
		bs := middleware.Apply(ok, breaker.Middleware[int, int](b))
		bs(ctx, 0)
		middleware.Apply(fail, breaker.Middleware[int, int](b))(ctx, 0)
		bs(ctx, 0)
		reg(otelbrace.RegisterBreaker(meter, "db", b, &bc))

		// Backpressure: one call held in flight, one shed.
		var pc backpressure.Counter
		l := must[*backpressure.Limiter](t)(backpressure.New(1, backpressure.Config{Counter: &pc}))
		release := make(chan struct{})
		held := middleware.Apply(func(context.Context, int) (int, error) { <-release; return 1, nil }, backpressure.Middleware[int, int](l))
		done := make(chan struct{})
		go func() { held(ctx, 0); close(done) }()
		synctest.Wait()
		held(ctx, 0) // shed
		reg(otelbrace.RegisterBackpressure(meter, "db", l, &pc))

		// Dedup: three concurrent calls, one execution; then a cache hit.
		var dc dedup.Counter
		dmw := must[middleware.Middleware[int, int]](t)(dedup.New[int, int](func(k int) int { return k }, dedup.Config{TTL: time.Minute, Counter: &dc}))
		ds := dmw(func(context.Context, int) (int, error) { time.Sleep(time.Second); return 1, nil })
		dedupDone := make(chan struct{}, 3)
		for range 3 {
			go func() { ds(ctx, 7); dedupDone <- struct{}{} }()
		}
		for range 3 {
			<-dedupDone
		}
		ds(ctx, 7)
		reg(otelbrace.RegisterDedup(meter, "users", &dc))

		// Timeout: one in time, one late.
		var tc timeout.Counter
		tmw := must[middleware.Middleware[int, int]](t)(timeout.New[int, int](timeout.Config{Duration: time.Second, Counter: &tc}))
		tmw(ok)(ctx, 0)
		tmw(func(ctx context.Context, _ int) (int, error) { <-ctx.Done(); return 0, ctx.Err() })(ctx, 0)
		reg(otelbrace.RegisterTimeout(meter, "db", &tc))

		// Rate limit: a burst of 2, three calls.
		var lc ratelimit.Counter
		rl := must[*ratelimit.Limiter](t)(ratelimit.New(ratelimit.Config{Rate: 1, Burst: 2, Counter: &lc}))
		for range 3 {
			rl.Admit(ctx)
		}
		reg(otelbrace.RegisterRateLimit(meter, "api", &lc))

		// Adaptive: a limit of 1, one permit held, one call rejected.
		var ac adaptive.Counter
		al := must[*adaptive.Limiter](t)(adaptive.New(adaptive.Config{Min: 1, Max: 1, Counter: &ac}))
		permit := must[adaptive.Permit](t)(al.Acquire(ctx))
		al.Acquire(ctx)
		reg(otelbrace.RegisterAdaptive(meter, "db", al, &ac))

		// Hedge: the first attempt is slow, the hedge wins.
		var hc hedge.Counter
		h := must[*hedge.Hedger](t)(hedge.New(hedge.Config{Delay: 10 * time.Millisecond, Percentile: hedge.Fixed, Counter: &hc}))
		var attempts atomic.Int64
		middleware.Apply(func(ctx context.Context, _ int) (int, error) {
			d := time.Second
			if attempts.Add(1) == 2 {
				d = time.Millisecond
			}
			select {
			case <-time.After(d):
				return 1, nil
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}, hedge.Middleware[int, int](h))(ctx, 0)
		reg(otelbrace.RegisterHedge(meter, "search", h, &hc))

		// Fallback: a success, a fallback, a failed fallback.
		var fc fallback.Counter
		fcfg := fallback.Config{Counter: &fc}
		middleware.Apply(ok, fallback.Value[int](-1, fcfg))(ctx, 0)
		middleware.Apply(fail, fallback.Value[int](-1, fcfg))(ctx, 0)
		middleware.Apply(fail, fallback.Stage(fail, fcfg))(ctx, 0)
		reg(otelbrace.RegisterFallback(meter, "prices", &fc))

		got := collect(t, reader)
		want := []point{
			{"brace.adaptive.admitted", "counter", "{call}", "name=db", 1},
			{"brace.adaptive.inflight", "gauge", "{call}", "name=db", 1},
			{"brace.adaptive.limit", "gauge", "{call}", "name=db", 1},
			{"brace.adaptive.limit_changes", "counter", "{change}", "name=db", 0},
			{"brace.adaptive.rejected", "counter", "{call}", "name=db", 1},
			{"brace.backpressure.admitted", "counter", "{call}", "name=db", 1},
			{"brace.backpressure.canceled", "counter", "{call}", "name=db", 0},
			{"brace.backpressure.capacity", "gauge", "{weight}", "name=db", 1},
			{"brace.backpressure.depth", "gauge", "{weight}", "name=db", 1},
			{"brace.backpressure.queued", "gauge", "{call}", "name=db", 0},
			{"brace.backpressure.shed", "counter", "{call}", "name=db", 1},
			{"brace.backpressure.waited", "counter", "{call}", "name=db", 0},
			{"brace.breaker.rejections", "counter", "{call}", "name=db", 1},
			{"brace.breaker.results", "counter", "{call}", "name=db,outcome=failure", 1},
			{"brace.breaker.results", "counter", "{call}", "name=db,outcome=ignored", 0},
			{"brace.breaker.results", "counter", "{call}", "name=db,outcome=success", 1},
			{"brace.breaker.state", "gauge", "{state}", "name=db,state=closed", 0},
			{"brace.breaker.state", "gauge", "{state}", "name=db,state=forced-closed", 0},
			{"brace.breaker.state", "gauge", "{state}", "name=db,state=forced-open", 0},
			{"brace.breaker.state", "gauge", "{state}", "name=db,state=half-open", 0},
			{"brace.breaker.state", "gauge", "{state}", "name=db,state=open", 1},
			{"brace.breaker.transitions", "counter", "{change}", "name=db,to=closed", 0},
			{"brace.breaker.transitions", "counter", "{change}", "name=db,to=forced-closed", 0},
			{"brace.breaker.transitions", "counter", "{change}", "name=db,to=forced-open", 0},
			{"brace.breaker.transitions", "counter", "{change}", "name=db,to=half-open", 0},
			{"brace.breaker.transitions", "counter", "{change}", "name=db,to=open", 1},
			{"brace.dedup.calls", "counter", "{call}", "name=users,served=cached", 1},
			{"brace.dedup.calls", "counter", "{call}", "name=users,served=executed", 1},
			{"brace.dedup.calls", "counter", "{call}", "name=users,served=joined", 2},
			{"brace.fallback.calls", "counter", "{call}", "name=prices", 3},
			{"brace.fallback.failures", "counter", "{call}", "name=prices", 1},
			{"brace.fallback.fallbacks", "counter", "{call}", "name=prices", 2},
			{"brace.hedge.calls", "counter", "{call}", "name=search", 1},
			{"brace.hedge.delay", "gauge", "s", "name=search", 0.01},
			{"brace.hedge.hedges", "counter", "{hedge}", "name=search", 1},
			{"brace.hedge.refused", "counter", "{hedge}", "name=search", 0},
			{"brace.hedge.wins", "counter", "{call}", "name=search", 1},
			{"brace.ratelimit.admitted", "counter", "{call}", "name=api", 2},
			{"brace.ratelimit.limited", "counter", "{call}", "name=api", 1},
			{"brace.retry.calls", "counter", "{call}", "name=db,outcome=failure", 1},
			{"brace.retry.calls", "counter", "{call}", "name=db,outcome=success", 2},
			{"brace.retry.exhausted", "counter", "{call}", "name=db", 1},
			{"brace.retry.retries", "counter", "{retry}", "name=db", 2},
			{"brace.timeout.calls", "counter", "{call}", "name=db", 2},
			{"brace.timeout.timeouts", "counter", "{call}", "name=db", 1},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("metrics (-want +got):\n%s", diff)
		}

		// Gauges follow the live state.
		close(release)
		<-done
		permit.Release(false)
		for _, p := range collect(t, reader) {
			switch p.Metric {
			case "brace.backpressure.depth", "brace.adaptive.inflight":
				if p.Value != 0 {
					t.Errorf("after release: %+v; want 0", p)
				}
			}
		}
	})
}

// TestInstances: two instances of one concern share the instruments and
// are told apart by the name attribute; Unregister stops one.
func TestInstances(t *testing.T) {
	meter, reader := newMeter(t)
	var a, b retry.Counter
	for _, c := range []*retry.Counter{&a, &b} {
		mw, err := retry.New[int, int](retry.Config{Counter: c})
		if err != nil {
			t.Fatal(err)
		}
		mw(ok)(context.Background(), 0)
	}
	mw, _ := retry.New[int, int](retry.Config{Counter: &b})
	mw(ok)(context.Background(), 0)
	ra, err := otelbrace.RegisterRetry(meter, "a", &a)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := otelbrace.RegisterRetry(meter, "b", &b)
	if err != nil {
		t.Fatal(err)
	}
	successes := func() map[string]float64 {
		m := map[string]float64{}
		for _, p := range collect(t, reader) {
			if p.Metric == "brace.retry.calls" && strings.Contains(p.Attrs, "outcome=success") {
				m[p.Attrs] = p.Value
			}
		}
		return m
	}
	want := map[string]float64{"name=a,outcome=success": 1, "name=b,outcome=success": 2}
	if diff := cmp.Diff(want, successes()); diff != "" {
		t.Errorf("two instances (-want +got):\n%s", diff)
	}
	if err := ra.Unregister(); err != nil {
		t.Fatal(err)
	}
	want = map[string]float64{"name=b,outcome=success": 2}
	if diff := cmp.Diff(want, successes()); diff != "" {
		t.Errorf("after unregistering a (-want +got):\n%s", diff)
	}
	if err := rb.Unregister(); err != nil {
		t.Fatal(err)
	}
}

// TestGaugesOnly: a breaker, limiter or hedger can be published without
// a Counter, and a Counter without them.
func TestGaugesOnly(t *testing.T) {
	meter, reader := newMeter(t)
	b, _ := breaker.New(breaker.Config{})
	l, _ := backpressure.New(4, backpressure.Config{})
	for _, err := range []error{
		second(otelbrace.RegisterBreaker(meter, "b", b, nil)),
		second(otelbrace.RegisterBackpressure(meter, "l", l, nil)),
		second(otelbrace.RegisterBreaker(meter, "c", nil, new(breaker.Counter))),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	metrics := map[string]bool{}
	for _, p := range collect(t, reader) {
		metrics[p.Metric+" "+p.Attrs[:strings.IndexByte(p.Attrs+",", ',')]] = true
	}
	want := map[string]bool{
		"brace.breaker.state name=b":         true,
		"brace.backpressure.depth name=l":    true,
		"brace.backpressure.capacity name=l": true,
		"brace.backpressure.queued name=l":   true,
		"brace.breaker.results name=c":       true,
		"brace.breaker.rejections name=c":    true,
		"brace.breaker.transitions name=c":   true,
	}
	if diff := cmp.Diff(want, metrics); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}
}

func second[T any](_ T, err error) error { return err }

func TestErrors(t *testing.T) {
	meter, _ := newMeter(t)
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"nil meter", second(otelbrace.RegisterRetry(nil, "x", new(retry.Counter))), "otelbrace: RegisterRetry needs a metric.Meter, got nil"},
		{"nil meter with float gauge", second(otelbrace.RegisterHedge(nil, "x", mustHedger(t), nil)), "otelbrace: RegisterHedge needs a metric.Meter, got nil"},
		{"retry", second(otelbrace.RegisterRetry(meter, "x", nil)), "otelbrace: RegisterRetry needs a *retry.Counter, got nil"},
		{"breaker", second(otelbrace.RegisterBreaker(meter, "x", nil, nil)), "otelbrace: RegisterBreaker needs a *breaker.Breaker or a *breaker.Counter, got neither"},
		{"backpressure", second(otelbrace.RegisterBackpressure(meter, "x", nil, nil)), "otelbrace: RegisterBackpressure needs a *backpressure.Limiter or a *backpressure.Counter, got neither"},
		{"dedup", second(otelbrace.RegisterDedup(meter, "x", nil)), "otelbrace: RegisterDedup needs a *dedup.Counter, got nil"},
		{"timeout", second(otelbrace.RegisterTimeout(meter, "x", nil)), "otelbrace: RegisterTimeout needs a *timeout.Counter, got nil"},
		{"ratelimit", second(otelbrace.RegisterRateLimit(meter, "x", nil)), "otelbrace: RegisterRateLimit needs a *ratelimit.Counter, got nil"},
		{"adaptive", second(otelbrace.RegisterAdaptive(meter, "x", nil, nil)), "otelbrace: RegisterAdaptive needs a *adaptive.Limiter or a *adaptive.Counter, got neither"},
		{"hedge", second(otelbrace.RegisterHedge(meter, "x", nil, nil)), "otelbrace: RegisterHedge needs a *hedge.Hedger or a *hedge.Counter, got neither"},
		{"fallback", second(otelbrace.RegisterFallback(meter, "x", nil)), "otelbrace: RegisterFallback needs a *fallback.Counter, got nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.err == nil {
				t.Fatalf("no error; want %q", tt.want)
			}
			if diff := cmp.Diff(tt.want, tt.err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
		})
	}
}

func mustHedger(t *testing.T) *hedge.Hedger {
	h, err := hedge.New(hedge.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestCollectConcurrently: calls keep counting while a reader collects
// (the callbacks only read the Counter); nothing is lost.
func TestCollectConcurrently(t *testing.T) {
	meter, reader := newMeter(t)
	var c retry.Counter
	mw, _ := retry.New[int, int](retry.Config{Counter: &c})
	s := mw(ok)
	if _, err := otelbrace.RegisterRetry(meter, "db", &c); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 100 {
			collect(t, reader)
		}
	}()
	for range 10000 {
		s(context.Background(), 0)
	}
	<-done
	for _, p := range collect(t, reader) {
		if p.Metric == "brace.retry.calls" && strings.HasSuffix(p.Attrs, "success") && p.Value != 10000 {
			t.Errorf("%+v; want 10000", p)
		}
	}
}
