package bracetest_test

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/bracetest"
)

func TestNewChaosValidation(t *testing.T) {
	tests := []struct {
		name string
		cfg  bracetest.ChaosConfig
		want string
	}{
		{"zero rate", bracetest.ChaosConfig{}, "bracetest: InjectionRate must be in (0, 1], got 0"},
		{"negative rate", bracetest.ChaosConfig{InjectionRate: -0.1}, "bracetest: InjectionRate must be in (0, 1], got -0.1"},
		{"rate above 1", bracetest.ChaosConfig{InjectionRate: 1.5}, "bracetest: InjectionRate must be in (0, 1], got 1.5"},
		{"NaN rate", bracetest.ChaosConfig{InjectionRate: math.NaN()}, "bracetest: InjectionRate must be in (0, 1], got NaN"},
		{"infinite rate", bracetest.ChaosConfig{InjectionRate: math.Inf(1)}, "bracetest: InjectionRate must be in (0, 1], got +Inf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := bracetest.NewChaos(tt.cfg)
			if err == nil || c != nil {
				t.Fatalf("NewChaos: %v, %v; want an error", c, err)
			}
			if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
		})
	}
}

func TestChaosMiddlewareNil(t *testing.T) {
	fault := bracetest.FailWith[int, string](errBoom)
	if diff := cmp.Diff("bracetest: nil *Chaos (was NewChaos's error ignored?)",
		panicValue(func() { bracetest.ChaosMiddleware(nil, fault) })); diff != "" {
		t.Errorf("nil *Chaos: panic (-want +got):\n%s", diff)
	}
	c := mustChaos(t, bracetest.ChaosConfig{InjectionRate: 1})
	if diff := cmp.Diff("bracetest: nil fault middleware",
		panicValue(func() { bracetest.ChaosMiddleware[int, string](c, nil) })); diff != "" {
		t.Errorf("nil fault: panic (-want +got):\n%s", diff)
	}
}

func mustChaos(t *testing.T, cfg bracetest.ChaosConfig) *bracetest.Chaos {
	t.Helper()
	c, err := bracetest.NewChaos(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// pattern returns which of n sequential calls got the fault.
func pattern(t *testing.T, cfg bracetest.ChaosConfig, n int) []bool {
	var c counting
	s := middleware.Apply(c.stage, bracetest.ChaosMiddleware(mustChaos(t, cfg), bracetest.FailWith[int, string](errBoom)))
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
	// Zero means a random seed.
	if diff := cmp.Diff(pattern(t, bracetest.ChaosConfig{InjectionRate: 0.5}, 100), pattern(t, bracetest.ChaosConfig{InjectionRate: 0.5}, 100)); diff == "" {
		t.Error("two zero seeds gave the same 100 injections; want random seeds")
	}
}

// TestChaosConcurrent: 2000 concurrent calls get as many faults as 2000
// sequential calls with the same seed — the draws are shared, lock-free
// and none is lost — and Stats and the events count each one.
func TestChaosConcurrent(t *testing.T) {
	cfg := bracetest.ChaosConfig{InjectionRate: 0.25, Seed: 99}
	want := count(pattern(t, cfg, 2000))
	rec := new(bracetest.Recorder)
	cfg.Observer = rec
	chaos := mustChaos(t, cfg)
	var c counting
	s := middleware.Apply(c.stage, bracetest.ChaosMiddleware(chaos, bracetest.FailWith[int, string](errBoom)))
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
	got := failed.Load()
	if got != int64(want) || c.n.Load() != 2000-got {
		t.Errorf("%d failed, %d reached the stage; want %d, %d", got, c.n.Load(), want, 2000-want)
	}
	if diff := cmp.Diff(bracetest.ChaosStats{Injected: uint64(want)}, chaos.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
	if n := len(rec.Events()); n != want {
		t.Errorf("%d events; want %d", n, want)
	}
}

// TestChaosEnabledAndEvents: nothing is injected while Enabled reports
// false; each injection is one event, emitted before the fault runs.
func TestChaosEnabledAndEvents(t *testing.T) {
	var on atomic.Bool
	var c counting
	rec := new(bracetest.Recorder)
	var seenBeforeFault []middleware.Kind
	fault := func(next middleware.Stage[int, string]) middleware.Stage[int, string] {
		return func(ctx context.Context, in int) (string, error) {
			seenBeforeFault = rec.Kinds()
			return "", errBoom
		}
	}
	chaos := mustChaos(t, bracetest.ChaosConfig{Name: "payments", Observer: rec, InjectionRate: 1, Enabled: on.Load})
	s := middleware.Apply(c.stage, bracetest.ChaosMiddleware[int, string](chaos, fault))
	if _, err := s(t.Context(), 0); err != nil {
		t.Fatalf("disabled: %v", err)
	}
	if got := rec.Events(); got != nil {
		t.Errorf("disabled: events %v; want none", got)
	}
	on.Store(true)
	if _, err := s(t.Context(), 0); err != errBoom {
		t.Fatalf("enabled: %v; want boom", err)
	}
	want := []middleware.Event{{Kind: middleware.Rejected, Concern: "bracetest", Name: "payments", Reason: "chaos"}}
	if diff := cmp.Diff(want, rec.Events()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]middleware.Kind{middleware.Rejected}, seenBeforeFault); diff != "" {
		t.Errorf("events when the fault ran (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(bracetest.ChaosStats{Injected: 1}, chaos.Stats()); diff != "" || c.n.Load() != 1 {
		t.Errorf("%d calls reached the stage; Stats (-want +got):\n%s", c.n.Load(), diff)
	}
}

// TestChaosSharedAcrossTypes: one Chaos guards stages of different types;
// they share its draws and its Stats.
func TestChaosSharedAcrossTypes(t *testing.T) {
	chaos := mustChaos(t, bracetest.ChaosConfig{InjectionRate: 1})
	a := middleware.Apply(func(context.Context, int) (string, error) { return "a", nil }, bracetest.ChaosMiddleware(chaos, bracetest.FailWith[int, string](errBoom)))
	b := middleware.Apply(func(context.Context, string) (int, error) { return 1, nil }, bracetest.ChaosMiddleware(chaos, bracetest.FailWith[string, int](errBoom)))
	_, errA := a(t.Context(), 0)
	_, errB := b(t.Context(), "")
	if errA != errBoom || errB != errBoom {
		t.Errorf("got %v, %v; want boom twice", errA, errB)
	}
	if got := chaos.Stats().Injected; got != 2 {
		t.Errorf("Injected = %d; want 2", got)
	}
}

// TestChaosEndedContext: a call whose context has ended returns ctx.Err()
// and runs nothing: no draw, no fault, no stage.
func TestChaosEndedContext(t *testing.T) {
	var c counting
	chaos := mustChaos(t, bracetest.ChaosConfig{InjectionRate: 1})
	s := middleware.Apply(c.stage, bracetest.ChaosMiddleware(chaos, bracetest.FailWith[int, string](errBoom)))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s(ctx, 0); err != context.Canceled {
		t.Errorf("got %v; want context.Canceled", err)
	}
	if c.n.Load() != 0 || chaos.Stats().Injected != 0 {
		t.Errorf("%d calls, %d injected; want none", c.n.Load(), chaos.Stats().Injected)
	}
}

// TestChaosPanickingObserver: an observer that panics does not stop the
// fault from running nor lose the count.
func TestChaosPanickingObserver(t *testing.T) {
	silenceDefaultLogger(t)
	obs := middleware.ObserverFunc(func(context.Context, middleware.Event) { panic("observer bug") })
	chaos := mustChaos(t, bracetest.ChaosConfig{InjectionRate: 1, Observer: obs})
	var c counting
	s := middleware.Apply(c.stage, bracetest.ChaosMiddleware(chaos, bracetest.FailWith[int, string](errBoom)))
	for range 3 {
		if _, err := s(t.Context(), 0); err != errBoom {
			t.Fatalf("got %v; want boom", err)
		}
	}
	if got := chaos.Stats().Injected; got != 3 || c.n.Load() != 0 {
		t.Errorf("Injected = %d, %d calls; want 3, none", got, c.n.Load())
	}
}

// TestChaosReentrantObserver: an observer that reads Stats and calls
// through the same Chaos from inside Observe does not deadlock.
func TestChaosReentrantObserver(t *testing.T) {
	var s middleware.Stage[int, string]
	var chaos *bracetest.Chaos
	var depth, seen int
	obs := middleware.ObserverFunc(func(ctx context.Context, e middleware.Event) {
		seen = int(chaos.Stats().Injected)
		if depth++; depth < 3 {
			s(ctx, 0)
		}
	})
	chaos = mustChaos(t, bracetest.ChaosConfig{InjectionRate: 1, Observer: obs})
	s = middleware.Apply(func(context.Context, int) (string, error) { return "ok", nil }, bracetest.ChaosMiddleware(chaos, bracetest.FailWith[int, string](errBoom)))
	if _, err := s(t.Context(), 0); err != errBoom {
		t.Fatalf("got %v; want boom", err)
	}
	if chaos.Stats().Injected != 3 || seen != 3 {
		t.Errorf("Injected = %d, last seen %d; want 3, 3", chaos.Stats().Injected, seen)
	}
}

// TestChaosLatencyHonoursContext: an injected latency ends with the
// caller's context.
func TestChaosLatencyHonoursContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var c counting
		chaos := mustChaos(t, bracetest.ChaosConfig{InjectionRate: 1})
		s := middleware.Apply(c.stage, bracetest.ChaosMiddleware(chaos,
			bracetest.LatencyFunc[int, string](bracetest.Uniform(time.Hour, 2*time.Hour, 1))))
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		start := time.Now()
		if _, err := s(ctx, 0); err != context.DeadlineExceeded || c.n.Load() != 0 || time.Since(start) != time.Second {
			t.Errorf("got %v after %v, %d calls; want DeadlineExceeded after 1s, no call", err, time.Since(start), c.n.Load())
		}
	})
}

// The doc's claim: a call Chaos does not pick (switched off, or not drawn)
// allocates nothing; nor does an injection with no observer, beyond what
// the fault does (FailWith: nothing).
func TestChaosAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	var c counting
	ctx := context.Background()
	tests := []struct {
		name string
		cfg  bracetest.ChaosConfig
	}{
		{"disabled", bracetest.ChaosConfig{InjectionRate: 0.5, Enabled: func() bool { return false }}},
		{"not drawn", bracetest.ChaosConfig{InjectionRate: 1e-300, Enabled: func() bool { return true }, Seed: 1}},
		{"injected", bracetest.ChaosConfig{InjectionRate: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chaos := mustChaos(t, tt.cfg)
			s := middleware.Apply(c.stage, bracetest.ChaosMiddleware(chaos, bracetest.FailWith[int, string](errBoom)))
			if n := testing.AllocsPerRun(1000, func() { s(ctx, 0) }); n != 0 {
				t.Errorf("allocates %v times per call; want 0", n)
			}
		})
	}
}

func BenchmarkChaos(b *testing.B) {
	for _, bb := range []struct {
		name string
		cfg  bracetest.ChaosConfig
	}{
		{"disabled", bracetest.ChaosConfig{InjectionRate: 0.5, Enabled: func() bool { return false }}},
		{"not-drawn", bracetest.ChaosConfig{InjectionRate: 1e-300, Seed: 1}},
		{"injected", bracetest.ChaosConfig{InjectionRate: 1}},
	} {
		b.Run(bb.name, func(b *testing.B) {
			chaos, err := bracetest.NewChaos(bb.cfg)
			if err != nil {
				b.Fatal(err)
			}
			var c counting
			s := middleware.Apply(c.stage, bracetest.ChaosMiddleware(chaos, bracetest.FailWith[int, string](errBoom)))
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				s(ctx, 0)
			}
		})
	}
}
