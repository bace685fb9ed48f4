package bracetest_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.uber.org/goleak"

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
		{"LatencyFunc", bracetest.LatencyFunc[int, string](func() time.Duration { return 0 }), result{Out: "ok"}, 1},
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

func TestFirstNFailWith(t *testing.T) {
	for _, n := range []int{-1, 0, 1, 3} {
		var c counting
		s := middleware.Apply(c.stage, bracetest.FirstN(n, bracetest.FailWith[int, string](errBoom)))
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
			t.Errorf("FirstN(%d, FailWith) (-want +got):\n%s", n, diff)
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

// TestUniformZeroSeed: a zero seed means a random seed, as documented (the
// old copy of the random source started every zero seed at the same
// state, so every Uniform(lo, hi, 0) drew the same sequence).
func TestUniformZeroSeed(t *testing.T) {
	a, b := bracetest.Uniform(0, time.Hour, 0), bracetest.Uniform(0, time.Hour, 0)
	same := 0
	for range 10 {
		if a() == b() {
			same++
		}
	}
	if same == 10 {
		t.Error("two Uniform(0, 1h, 0) drew the same 10 delays; want random seeds")
	}
}

// TestNilArguments: a nil func or fault is a programmer error, reported
// when the chain is built.
func TestNilArguments(t *testing.T) {
	tests := []struct {
		name string
		f    func()
		want string
	}{
		{"LatencyFunc", func() { bracetest.LatencyFunc[int, string](nil) }, "bracetest: nil delay func"},
		{"FirstN", func() { bracetest.FirstN[int, string](1, nil) }, "bracetest: nil fault middleware"},
		{"FirstN zero", func() { bracetest.FirstN[int, string](0, nil) }, "bracetest: nil fault middleware"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, panicValue(tt.f)); diff != "" {
				t.Errorf("panic (-want +got):\n%s", diff)
			}
		})
	}
}

// panicValue calls f and returns what it panicked with, nil if nothing.
func panicValue(f func()) (v any) {
	defer func() { v = recover() }()
	f()
	return nil
}
