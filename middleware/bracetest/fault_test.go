package bracetest_test

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.uber.org/goleak"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/bracetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var errBoom = errors.New("boom")

// counting is a stage that counts its calls and answers "ok".
type counting struct{ n atomic.Int64 }

func (c *counting) stage(context.Context, int) (string, error) {
	c.n.Add(1)
	return "ok", nil
}

type result struct {
	Out string
	Err error
}

func TestFaults(t *testing.T) {
	tests := []struct {
		name      string
		fault     middleware.Middleware[int, string]
		want      result
		wantCalls int64
	}{
		{"FailWith", bracetest.FailWith[int, string](errBoom), result{Err: errBoom}, 0},
		{"Outcome", bracetest.Outcome[int]("degraded", errBoom), result{Out: "degraded", Err: errBoom}, 0},
		{"Latency", bracetest.Latency[int, string](time.Second), result{Out: "ok"}, 1},
		{"LatencyFunc nil", bracetest.LatencyFunc[int, string](nil), result{Out: "ok"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c counting
			out, err := middleware.Apply(c.stage, tt.fault)(t.Context(), 0)
			if diff := cmp.Diff(tt.want, result{out, err}, cmpopts.EquateErrors()); diff != "" {
				t.Errorf("result (-want +got):\n%s", diff)
			}
			if got := c.n.Load(); got != tt.wantCalls {
				t.Errorf("stage called %d times; want %d", got, tt.wantCalls)
			}
		})
	}
}

func TestLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var c counting
		s := middleware.Apply(c.stage, bracetest.Latency[int, string](3*time.Second))
		start := time.Now()
		if _, err := s(t.Context(), 0); err != nil {
			t.Fatal(err)
		}
		if got := time.Since(start); got != 3*time.Second {
			t.Errorf("call took %v; want 3s", got)
		}

		// The context ends first: ctx.Err() at once, no call.
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		start = time.Now()
		_, err := s(ctx, 0)
		if err != context.DeadlineExceeded || time.Since(start) != time.Second || c.n.Load() != 1 {
			t.Errorf("got %v after %v, %d calls; want DeadlineExceeded after 1s, 1 call", err, time.Since(start), c.n.Load())
		}
	})
}

func TestUniform(t *testing.T) {
	draw := bracetest.Uniform(10*time.Millisecond, 20*time.Millisecond, 42)
	again := bracetest.Uniform(10*time.Millisecond, 20*time.Millisecond, 42)
	var sum time.Duration
	const n = 10000
	for range n {
		d := draw()
		if d < 10*time.Millisecond || d >= 20*time.Millisecond {
			t.Fatalf("draw %v outside [10ms, 20ms)", d)
		}
		if d2 := again(); d2 != d {
			t.Fatalf("same seed: %v then %v", d, d2)
		}
		sum += d
	}
	if mean := sum / n; mean < 14*time.Millisecond || mean > 16*time.Millisecond {
		t.Errorf("mean %v; want about 15ms", mean)
	}
	if got := bracetest.Uniform(time.Second, time.Second, 1)(); got != time.Second {
		t.Errorf("hi <= lo: %v; want lo", got)
	}
}

func TestPanicWith(t *testing.T) {
	var c counting
	s := middleware.Apply(c.stage, bracetest.PanicWith[int, string]("kaboom"))
	defer func() {
		if v := recover(); v != "kaboom" || c.n.Load() != 0 {
			t.Errorf("recovered %v with %d calls; want kaboom and none", v, c.n.Load())
		}
	}()
	s(t.Context(), 0)
	t.Fatal("no panic")
}

func TestHang(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var c counting
		s := middleware.Apply(c.stage, bracetest.Hang[int, string]())
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		start := time.Now()
		_, err := s(ctx, 0)
		if err != context.DeadlineExceeded || time.Since(start) != time.Minute || c.n.Load() != 0 {
			t.Errorf("got %v after %v, %d calls; want DeadlineExceeded after 1m, no call", err, time.Since(start), c.n.Load())
		}
	})
}

func TestFailFirst(t *testing.T) {
	for _, n := range []int{-1, 0, 1, 3} {
		var c counting
		s := middleware.Apply(c.stage, bracetest.FailFirst[int, string](n, errBoom))
		var got []error
		for range 5 {
			_, err := s(t.Context(), 0)
			got = append(got, err)
		}
		want := make([]error, 5)
		for i := range max(n, 0) {
			want[i] = errBoom
		}
		if diff := cmp.Diff(want, got, cmpopts.EquateErrors()); diff != "" {
			t.Errorf("FailFirst(%d) (-want +got):\n%s", n, diff)
		}
	}
}

// TestFirstNConcurrent: exactly n of 2000 concurrent calls get the fault.
func TestFirstNConcurrent(t *testing.T) {
	var c counting
	s := middleware.Apply(c.stage, bracetest.FirstN(700, bracetest.FailWith[int, string](errBoom)))
	var failed atomic.Int64
	var wg sync.WaitGroup
	for range 2000 {
		wg.Go(func() {
			if _, err := s(context.Background(), 0); err != nil {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if failed.Load() != 700 || c.n.Load() != 1300 {
		t.Errorf("%d failed, %d reached the stage; want 700 and 1300", failed.Load(), c.n.Load())
	}
}

func TestChaosValidation(t *testing.T) {
	fault := bracetest.FailWith[int, string](errBoom)
	tests := []struct {
		name  string
		cfg   bracetest.ChaosConfig
		fault middleware.Middleware[int, string]
		want  string
	}{
		{"zero rate", bracetest.ChaosConfig{}, fault, "bracetest: InjectionRate must be in (0, 1], got 0"},
		{"negative rate", bracetest.ChaosConfig{InjectionRate: -0.1}, fault, "bracetest: InjectionRate must be in (0, 1], got -0.1"},
		{"rate above 1", bracetest.ChaosConfig{InjectionRate: 1.5}, fault, "bracetest: InjectionRate must be in (0, 1], got 1.5"},
		{"NaN rate", bracetest.ChaosConfig{InjectionRate: math.NaN()}, fault, "bracetest: InjectionRate must be in (0, 1], got NaN"},
		{"nil fault", bracetest.ChaosConfig{InjectionRate: 1}, nil, "bracetest: Chaos needs a fault middleware, got nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mw, err := bracetest.Chaos(tt.cfg, tt.fault)
			if err == nil || mw != nil {
				t.Fatalf("Chaos: %v, %v; want an error", mw != nil, err)
			}
			if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
		})
	}
}

func mustChaos(t *testing.T, cfg bracetest.ChaosConfig, fault middleware.Middleware[int, string]) middleware.Middleware[int, string] {
	t.Helper()
	mw, err := bracetest.Chaos(cfg, fault)
	if err != nil {
		t.Fatal(err)
	}
	return mw
}

// pattern returns which of n sequential calls got the fault.
func pattern(t *testing.T, cfg bracetest.ChaosConfig, n int) []bool {
	var c counting
	s := middleware.Apply(c.stage, mustChaos(t, cfg, bracetest.FailWith[int, string](errBoom)))
	got := make([]bool, n)
	for i := range got {
		_, err := s(t.Context(), 0)
		got[i] = err != nil
	}
	return got
}

func count(bs []bool) (n int) {
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

func TestChaosRateAndSeed(t *testing.T) {
	cfg := bracetest.ChaosConfig{InjectionRate: 0.3, Seed: 7}
	a, b := pattern(t, cfg, 10000), pattern(t, cfg, 10000)
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("same seed, different injections (-first +second):\n%s", diff)
	}
	if n := count(a); n < 2800 || n > 3200 {
		t.Errorf("%d of 10000 calls injected at rate 0.3", n)
	}
	if n := count(pattern(t, bracetest.ChaosConfig{InjectionRate: 1}, 100)); n != 100 {
		t.Errorf("rate 1: %d of 100 injected", n)
	}
	if diff := cmp.Diff(a, pattern(t, bracetest.ChaosConfig{InjectionRate: 0.3, Seed: 8}, 10000)); diff == "" {
		t.Error("different seeds gave the same injections")
	}
}

// TestChaosConcurrent: 2000 concurrent calls get as many faults as 2000
// sequential calls with the same seed — the draws are shared, lock-free
// and none is lost.
func TestChaosConcurrent(t *testing.T) {
	cfg := bracetest.ChaosConfig{InjectionRate: 0.25, Seed: 99}
	want := count(pattern(t, cfg, 2000))
	var hooked atomic.Int64
	cfg.OnInject = func() { hooked.Add(1) }
	var c counting
	s := middleware.Apply(c.stage, mustChaos(t, cfg, bracetest.FailWith[int, string](errBoom)))
	var failed atomic.Int64
	var wg sync.WaitGroup
	for range 2000 {
		wg.Go(func() {
			if _, err := s(context.Background(), 0); err != nil {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if got := failed.Load(); got != int64(want) || hooked.Load() != got || c.n.Load() != 2000-got {
		t.Errorf("%d failed, %d hooked, %d reached the stage; want %d, %d, %d", got, hooked.Load(), c.n.Load(), want, want, 2000-want)
	}
}

func TestChaosEnabled(t *testing.T) {
	var on atomic.Bool
	var c counting
	rec := bracetest.NewRecorder()
	s := middleware.Apply(c.stage, mustChaos(t, bracetest.ChaosConfig{
		InjectionRate: 1, Enabled: on.Load, OnInject: rec.OnInject(), Logger: rec.Logger(), Name: "payments",
	}, bracetest.FailWith[int, string](errBoom)))
	if _, err := s(t.Context(), 0); err != nil {
		t.Fatalf("disabled: %v", err)
	}
	on.Store(true)
	if _, err := s(t.Context(), 0); err != errBoom {
		t.Fatalf("enabled: %v; want boom", err)
	}
	want := []bracetest.Event{
		{Hook: "OnInject"},
		{Msg: "bracetest: injected", Level: slog.LevelDebug, Attrs: map[string]any{"name": "payments"}},
	}
	if diff := cmp.Diff(want, rec.Events()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

// TestChaosLatencyHonoursContext: an injected latency ends with the
// caller's context.
func TestChaosLatencyHonoursContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var c counting
		s := middleware.Apply(c.stage, mustChaos(t, bracetest.ChaosConfig{InjectionRate: 1},
			bracetest.LatencyFunc[int, string](bracetest.Uniform(time.Hour, 2*time.Hour, 1))))
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if _, err := s(ctx, 0); err != context.DeadlineExceeded || c.n.Load() != 0 {
			t.Errorf("got %v, %d calls; want DeadlineExceeded, no call", err, c.n.Load())
		}
	})
}

// The doc's claim: a call Chaos does not pick (switched off, or not drawn)
// allocates nothing.
func TestChaosOffAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	var c counting
	off := func() bool { return false }
	s := middleware.Apply(c.stage, mustChaos(t, bracetest.ChaosConfig{InjectionRate: 0.5, Enabled: off}, bracetest.FailWith[int, string](errBoom)))
	ctx := context.Background()
	if n := testing.AllocsPerRun(1000, func() { s(ctx, 0) }); n != 0 {
		t.Errorf("disabled chaos allocates %v times per call; want 0", n)
	}

	// Enabled, with a rate so small that no call is drawn: the cost of
	// Enabled and the random draw alone.
	var injected atomic.Int64
	on := func() bool { return true }
	s = middleware.Apply(c.stage, mustChaos(t, bracetest.ChaosConfig{InjectionRate: 1e-300, Enabled: on, Seed: 1,
		OnInject: func() { injected.Add(1) }}, bracetest.FailWith[int, string](errBoom)))
	if n := testing.AllocsPerRun(1000, func() { s(ctx, 0) }); n != 0 {
		t.Errorf("enabled chaos allocates %v times per call not picked; want 0", n)
	}
	if n := injected.Load(); n != 0 {
		t.Errorf("%d calls picked at rate 1e-300; want 0", n)
	}
}
