package adaptive_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/adaptive"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func mustNew(t *testing.T, cfg adaptive.Config) *adaptive.Limiter {
	t.Helper()
	l, err := adaptive.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestNew(t *testing.T) {
	tests := []struct {
		name      string
		cfg       adaptive.Config
		wantLimit int
		wantErr   string
	}{
		{"zero value", adaptive.Config{}, 20, ""},
		{"initial", adaptive.Config{Initial: 7}, 7, ""},
		{"default initial above Max", adaptive.Config{Max: 10}, 10, ""},
		{"default initial below Min", adaptive.Config{Min: 50}, 50, ""},
		{"negative Min", adaptive.Config{Min: -1}, 0, "adaptive: Min must be at least 1, got -1"},
		{"Max below Min", adaptive.Config{Min: 10, Max: 5}, 0, "adaptive: Max must be at least Min (10), got 5"},
		{"negative Initial", adaptive.Config{Initial: -3}, 0, "adaptive: Initial must not be negative, got -3"},
		{"Initial above Max", adaptive.Config{Max: 10, Initial: 11}, 0, "adaptive: Initial must be between Min (1) and Max (10), got 11"},
		{"Initial below Min", adaptive.Config{Min: 5, Initial: 2}, 0, "adaptive: Initial must be between Min (5) and Max (1000), got 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := adaptive.New(tt.cfg)
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if gotErr != tt.wantErr {
				t.Fatalf("New() error = %q, want %q", gotErr, tt.wantErr)
			}
			if err == nil && l.Limit() != tt.wantLimit {
				t.Errorf("Limit() = %d, want %d", l.Limit(), tt.wantLimit)
			}
		})
	}
}

func TestRejectsAtLimit(t *testing.T) {
	var rejected []int
	l := mustNew(t, adaptive.Config{Initial: 3, OnReject: func(limit int) { rejected = append(rejected, limit) }})
	ctx := context.Background()
	var permits []adaptive.Permit
	for range 3 {
		p, err := l.Acquire(ctx)
		if err != nil {
			t.Fatalf("Acquire below the limit: %v", err)
		}
		permits = append(permits, p)
	}
	_, err := l.Acquire(ctx)
	if !errors.Is(err, adaptive.ErrLimitExceeded) {
		t.Errorf("Acquire at the limit = %v, want ErrLimitExceeded", err)
	}
	var r interface{ Retryable() bool }
	if !errors.As(err, &r) || r.Retryable() {
		t.Errorf("ErrLimitExceeded must report Retryable() false, got %v", r)
	}
	permits[0].Release(false)
	if _, err := l.Acquire(ctx); err != nil {
		t.Errorf("Acquire after a release = %v, want nil", err)
	}
	if diff := cmp.Diff([]int{3}, rejected); diff != "" {
		t.Errorf("OnReject (-want +got):\n%s", diff)
	}
	if got := l.Inflight(); got != 3 {
		t.Errorf("Inflight() = %d, want 3", got)
	}
	adaptive.Permit{}.Release(true) // a zero Permit is a no-op
}

func TestAcquireEndedContext(t *testing.T) {
	l := mustNew(t, adaptive.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Acquire(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Acquire(cancelled) = %v, want context.Canceled", err)
	}
	if l.Inflight() != 0 {
		t.Errorf("a cancelled caller took a slot")
	}
}

// Failures and panics give their slot back, and are not latency samples:
// a stream of fast failures must not move the limit.
func TestMiddlewareReleases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var changes atomic.Int64
		l := mustNew(t, adaptive.Config{Initial: 2, OnLimitChange: func(int, int) { changes.Add(1) }})
		errBoom := errors.New("boom")
		fail := middleware.Apply(func(context.Context, int) (int, error) { return 0, errBoom }, adaptive.Middleware[int, int](l))
		for range 1000 {
			if _, err := fail(context.Background(), 0); !errors.Is(err, errBoom) {
				t.Fatalf("call = %v, want the stage's error", err)
			}
		}
		boom := middleware.Apply(func(context.Context, int) (int, error) { panic("boom") }, adaptive.Middleware[int, int](l))
		func() {
			defer func() {
				if r := recover(); r != "boom" {
					t.Errorf("recovered %v, want the stage's panic", r)
				}
			}()
			_, _ = boom(context.Background(), 0)
		}()
		if got := []int{l.Inflight(), l.Limit(), int(changes.Load())}; !slices.Equal(got, []int{0, 2, 0}) {
			t.Errorf("[inflight, limit, changes] = %v, want [0 2 0]", got)
		}
	})
}

func TestNilLimiter(t *testing.T) {
	s := middleware.Apply(func(context.Context, int) (int, error) { return 1, nil }, adaptive.Middleware[int, int](nil))
	if _, err := s(context.Background(), 0); err == nil || err.Error() != "adaptive: nil limiter" {
		t.Errorf("call = %v, want adaptive: nil limiter", err)
	}
}

// The limit converges near the capacity of a simulated downstream whose
// latency rises with load, from either side, and follows it when the
// capacity or the no-load latency changes.
func TestConvergence(t *testing.T) {
	type phase struct {
		capacity int64
		base     time.Duration
		run      time.Duration
	}
	tests := []struct {
		name     string
		initial  int
		phases   []phase // the limit is judged over the last phase, after settling
		settle   time.Duration
		capacity int
		hi       float64 // the median limit must lie in [capacity, hi·capacity]
	}{
		{"from below", 5, []phase{{20, 10 * time.Millisecond, 40 * time.Second}}, 10 * time.Second, 20, 1.4},
		{"from above", 300, []phase{{20, 10 * time.Millisecond, 40 * time.Second}}, 10 * time.Second, 20, 1.4},
		{"capacity drops", 20, []phase{{60, 10 * time.Millisecond, 30 * time.Second}, {15, 10 * time.Millisecond, 40 * time.Second}}, 15 * time.Second, 15, 1.4},
		{"capacity rises", 20, []phase{{10, 10 * time.Millisecond, 30 * time.Second}, {30, 10 * time.Millisecond, 50 * time.Second}}, 20 * time.Second, 30, 1.4},
		{"downstream slower for good", 20, []phase{{20, 10 * time.Millisecond, 30 * time.Second}, {20, 40 * time.Millisecond, 60 * time.Second}}, 30 * time.Second, 20, 1.6},
		// With a 40ms base each queued call adds relatively less latency
		// (2ms of 40ms), so Vegas's alpha..beta queue holds more calls.
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				d := &downstream{perExtra: 2 * time.Millisecond}
				l := mustNew(t, adaptive.Config{Initial: tt.initial, Max: 500})
				s := middleware.Apply(d.call, adaptive.Middleware[int, int](l))
				var judged []int
				for i, ph := range tt.phases {
					d.capacity.Store(ph.capacity)
					d.base = ph.base // no call is in flight between phases
					ctx, cancel := context.WithTimeout(context.Background(), ph.run)
					start, last := time.Now(), i == len(tt.phases)-1
					load(ctx, t, s, l, 60, 10*time.Millisecond, 250*time.Millisecond, func(limit int) {
						if last && time.Since(start) >= tt.settle {
							judged = append(judged, limit)
						}
					})
					cancel()
				}
				// Vegas keeps a few calls queued on purpose (alpha..beta), and
				// probes briefly at half the limit: judge the bulk, not each sample.
				c := float64(tt.capacity)
				inRange := 0
				for _, lim := range judged {
					if float64(lim) >= 0.8*c && float64(lim) <= max(1.6, tt.hi)*c {
						inRange++
					}
				}
				slices.Sort(judged)
				median := judged[len(judged)/2]
				t.Logf("capacity %d: median limit %d, %d of %d samples in range, min %d, max %d", tt.capacity, median, inRange, len(judged), judged[0], judged[len(judged)-1])
				if float64(inRange) < 0.85*float64(len(judged)) || float64(median) < c || float64(median) > tt.hi*c {
					t.Errorf("capacity %d: median limit %d, %d of %d samples in [0.8c, 1.6c]; want median in [c, %gc] and 85%% in range\nsamples: %v",
						tt.capacity, median, inRange, len(judged), tt.hi, judged)
				}
			})
		})
	}
}

// Under thousands of concurrent callers the number of calls running at
// once never exceeds Max, every call is either admitted or rejected, and
// every slot comes back.
func TestConcurrentInvariants(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const callers, calls, maxLimit = 2000, 5, 40
		l := mustNew(t, adaptive.Config{Max: maxLimit, Initial: maxLimit})
		var running, peak, admitted, rejected atomic.Int64
		s := middleware.Apply(func(context.Context, int) (int, error) {
			n := running.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(time.Millisecond * time.Duration(1+n/10))
			running.Add(-1)
			return 0, nil
		}, adaptive.Middleware[int, int](l))
		var wg sync.WaitGroup
		for range callers {
			wg.Go(func() {
				for range calls {
					_, err := s(context.Background(), 0)
					switch {
					case err == nil:
						admitted.Add(1)
					case errors.Is(err, adaptive.ErrLimitExceeded):
						rejected.Add(1)
						time.Sleep(time.Millisecond)
					default:
						t.Errorf("call: %v", err)
					}
				}
			})
		}
		wg.Wait()
		if p := peak.Load(); p > maxLimit {
			t.Errorf("%d calls ran at once, Max is %d", p, maxLimit)
		}
		if got := admitted.Load() + rejected.Load(); got != callers*calls {
			t.Errorf("admitted + rejected = %d, want %d", got, callers*calls)
		}
		if admitted.Load() == 0 || rejected.Load() == 0 {
			t.Errorf("admitted %d, rejected %d: the test did not exercise both", admitted.Load(), rejected.Load())
		}
		if n := l.Inflight(); n != 0 {
			t.Errorf("Inflight() = %d after all calls, want 0", n)
		}
	})
}

func TestHooksAndLogger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}}))
		type change struct{ From, To int }
		var changes []change
		l := mustNew(t, adaptive.Config{Initial: 1, Logger: logger, OnLimitChange: func(from, to int) { changes = append(changes, change{from, to}) }})
		// One caller, 10ms per call: no queueing, so each window of 10
		// samples raises the limit by 1 — but only while the caller uses at
		// least half of it: the limit does not grow past twice the demand.
		for range 45 { // 4 windows: before the first baseline probe
			p, err := l.Acquire(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
			p.Release(true)
		}
		if diff := cmp.Diff([]change{{1, 2}, {2, 3}}, changes); diff != "" {
			t.Errorf("OnLimitChange (-want +got):\n%s", diff)
		}
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		want := `level=DEBUG msg="adaptive: limit changed" from=1 to=2 latency=10ms`
		if len(lines) != 2 || lines[0] != want {
			t.Errorf("log lines = %q, want 2 starting with %q", lines, want)
		}
	})
}

func TestAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	ctx := context.Background()
	l := mustNew(t, adaptive.Config{})
	full := mustNew(t, adaptive.Config{Min: 1, Max: 1, Initial: 1})
	_, _ = full.Acquire(ctx)
	ok := middleware.Apply(func(_ context.Context, in int) (int, error) { return in, nil }, adaptive.Middleware[int, int](l))
	shed := middleware.Apply(func(_ context.Context, in int) (int, error) { return in, nil }, adaptive.Middleware[int, int](full))
	for _, tt := range []struct {
		name string
		f    func()
	}{
		{"Acquire+Release", func() {
			p, _ := l.Acquire(ctx)
			p.Release(true)
		}},
		{"Middleware", func() { _, _ = ok(ctx, 1) }},
		{"rejected", func() { _, _ = shed(ctx, 1) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(1000, tt.f); n != 0 {
				t.Errorf("%v allocs per call, want 0", n)
			}
		})
	}
}
