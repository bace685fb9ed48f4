package adaptive_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
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
	"github.com/brace-go/brace/middleware/adaptive"
	"github.com/brace-go/brace/middleware/priority"
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
		wantLimit int64
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
		{"priorities", adaptive.Config{Priorities: true, Shares: priority.Shares{Sheddable: 0.3}}, 20, ""},
		{"Shares without Priorities", adaptive.Config{Shares: priority.Shares{Default: 0.5}}, 0, "adaptive: Shares must be zero when Priorities is off, got {Sheddable:0 Default:0.5}"},
		{"Shares out of range", adaptive.Config{Priorities: true, Shares: priority.Shares{Default: 2}}, 0, "adaptive: Shares.Default must be in (0, 1], got 2"},
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
			if err == nil {
				if diff := cmp.Diff(adaptive.Stats{Limit: tt.wantLimit}, l.Stats()); diff != "" {
					t.Errorf("Stats (-want +got):\n%s", diff)
				}
			}
			if err != nil && l != nil {
				t.Errorf("New returned a Limiter with error %v", err)
			}
		})
	}
}

func TestRejectsAtLimit(t *testing.T) {
	rec := &recorder{}
	l := mustNew(t, adaptive.Config{Name: "api", Initial: 3, Observer: rec})
	ctx := context.Background()
	var permits []adaptive.Permit
	for range 3 {
		p, err := l.Acquire(ctx)
		if err != nil {
			t.Fatalf("Acquire below the limit: %v", err)
		}
		permits = append(permits, p)
	}
	p, err := l.Acquire(ctx)
	if err != adaptive.ErrLimitExceeded {
		t.Errorf("Acquire at the limit = %v, want ErrLimitExceeded", err)
	}
	if p != (adaptive.Permit{}) {
		t.Errorf("a refused Acquire returned a non-zero Permit %+v", p)
	}
	permits[0].Done(errors.New("failed")) // not a sample
	if _, err := l.Acquire(ctx); err != nil {
		t.Errorf("Acquire after a Done = %v, want nil", err)
	}
	want := []middleware.Event{{Kind: middleware.Rejected, Concern: "adaptive", Name: "api", Reason: "limit",
		InFlight: 3, Limit: 3, Err: adaptive.ErrLimitExceeded}}
	if diff := cmp.Diff(want, rec.events(), cmpopts.EquateErrors()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(adaptive.Stats{InFlight: 3, Limit: 3, Rejected: 1}, l.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

// Done zeroes the Permit: finishing it twice gives one slot back, and a
// zero Permit holds nothing.
func TestPermitDoneTwice(t *testing.T) {
	l := mustNew(t, adaptive.Config{Initial: 2})
	a, err := l.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	a.Done(nil)
	a.Done(nil)
	if a != (adaptive.Permit{}) {
		t.Errorf("Permit after Done = %+v, want zero", a)
	}
	if got := l.Stats().InFlight; got != 1 {
		t.Errorf("InFlight after Done twice on one of two permits = %d, want 1", got)
	}
	var zero adaptive.Permit
	zero.Done(nil)
	b.Done(nil)
	if got := l.Stats().InFlight; got != 0 {
		t.Errorf("InFlight = %d, want 0", got)
	}
}

// Issue 14 item 9: a context that has already ended gets ctx.Err(), even
// with room under the limit; nothing runs and nothing is taken or counted.
func TestAcquireEndedContext(t *testing.T) {
	rec := &recorder{}
	l := mustNew(t, adaptive.Config{Observer: rec})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Acquire(ctx); err != context.Canceled {
		t.Errorf("Acquire(cancelled) = %v, want context.Canceled", err)
	}
	ran := false
	s := middleware.Apply(func(context.Context, int) (int, error) { ran = true; return 0, nil }, adaptive.Middleware[int, int](l))
	if _, err := s(ctx, 0); err != context.Canceled {
		t.Errorf("stage(cancelled) = %v, want context.Canceled", err)
	}
	if ran {
		t.Error("the stage ran for an ended context")
	}
	if diff := cmp.Diff(adaptive.Stats{Limit: 20}, l.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
	if got := rec.events(); len(got) != 0 {
		t.Errorf("events = %v, want none", got)
	}
}

// Failures, panics and goroutine exits give their slot back, and are not
// latency samples: a stream of fast failures must not move the limit.
func TestMiddlewareReleases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := mustNew(t, adaptive.Config{Initial: 2})
		errBoom := errors.New("boom")
		fail := middleware.Apply(func(context.Context, int) (int, error) { return 0, errBoom }, adaptive.Middleware[int, int](l))
		for range 1000 {
			if _, err := fail(context.Background(), 0); !errors.Is(err, errBoom) {
				t.Fatalf("call = %v, want the stage's error", err)
			}
		}
		boom := middleware.Apply(func(context.Context, int) (int, error) { panic("boom") }, adaptive.Middleware[int, int](l))
		for range 100 {
			func() {
				defer func() {
					if r := recover(); r != "boom" {
						t.Errorf("recovered %v, want the stage's panic", r)
					}
				}()
				_, _ = boom(context.Background(), 0)
			}()
		}
		exit := middleware.Apply(func(context.Context, int) (int, error) { runtime.Goexit(); return 0, nil }, adaptive.Middleware[int, int](l))
		done := make(chan struct{})
		go func() {
			defer close(done)
			exit(context.Background(), 0)
		}()
		<-done
		if diff := cmp.Diff(adaptive.Stats{Limit: 2}, l.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
}

func TestMiddlewarePanicsOnNil(t *testing.T) {
	defer func() {
		if diff := cmp.Diff("adaptive: nil *Limiter (was New's error ignored?)", recover()); diff != "" {
			t.Errorf("panic value (-want +got):\n%s", diff)
		}
	}()
	adaptive.Middleware[int, int](nil)
}

func TestErrorContract(t *testing.T) {
	var c interface {
		Retryable() bool
		Rejected() bool
	}
	if !errors.As(fmt.Errorf("get: %w", adaptive.ErrLimitExceeded), &c) || c.Retryable() || !c.Rejected() {
		t.Errorf("ErrLimitExceeded must report Retryable() false and Rejected() true, got %v", c)
	}
	if got := adaptive.ErrLimitExceeded.Error(); !strings.HasPrefix(got, "adaptive: ") {
		t.Errorf("%q does not start with the package name", got)
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
					load(ctx, t, s, l, 60, 10*time.Millisecond, 250*time.Millisecond, func(limit int64) {
						if last && time.Since(start) >= tt.settle {
							judged = append(judged, int(limit))
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
		st := l.Stats()
		if st.InFlight != 0 {
			t.Errorf("InFlight = %d after all calls, want 0", st.InFlight)
		}
		if st.Rejected != uint64(rejected.Load()) {
			t.Errorf("Stats().Rejected = %d, want the %d rejected calls", st.Rejected, rejected.Load())
		}
	})
}

// With no queueing the limit grows by one per window, and each change is
// one LimitChanged event carrying the new limit, counted in Stats.
func TestLimitChangedEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		l := mustNew(t, adaptive.Config{Name: "api", Initial: 1, Observer: rec})
		// One caller, 10ms per call: no queueing, so each window of 10
		// samples raises the limit by 1 — but only while the caller uses at
		// least half of it: the limit does not grow past twice the demand.
		for range 45 { // 4 windows: before the first baseline probe
			p, err := l.Acquire(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
			p.Done(nil)
		}
		want := []middleware.Event{
			{Kind: middleware.LimitChanged, Concern: "adaptive", Name: "api", Limit: 2},
			{Kind: middleware.LimitChanged, Concern: "adaptive", Name: "api", Limit: 3},
		}
		if diff := cmp.Diff(want, rec.events(), cmpopts.EquateErrors()); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(adaptive.Stats{Limit: 3, LimitChanged: 2}, l.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
}

// The admitted path and, with no observer, the rejected path allocate
// nothing.
func TestAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	ctx := context.Background()
	obs := middleware.ObserverFunc(func(context.Context, middleware.Event) {})
	l := mustNew(t, adaptive.Config{Observer: obs})
	full := mustNew(t, adaptive.Config{Min: 1, Max: 1, Initial: 1})
	_, _ = full.Acquire(ctx)
	prio := mustNew(t, adaptive.Config{Priorities: true})
	fullPrio := mustNew(t, adaptive.Config{Min: 1, Max: 1, Initial: 1, Priorities: true})
	_, _ = fullPrio.Acquire(ctx)
	critical := priority.With(ctx, priority.Critical)
	ok := middleware.Apply(func(_ context.Context, in int) (int, error) { return in, nil }, adaptive.Middleware[int, int](l))
	shed := middleware.Apply(func(_ context.Context, in int) (int, error) { return in, nil }, adaptive.Middleware[int, int](full))
	for _, tt := range []struct {
		name string
		f    func()
	}{
		{"Acquire+Done", func() {
			p, _ := l.Acquire(ctx)
			p.Done(nil)
		}},
		{"Middleware", func() { _, _ = ok(ctx, 1) }},
		{"rejected", func() { _, _ = shed(ctx, 1) }},
		{"rejected Acquire", func() { _, _ = full.Acquire(ctx) }},
		{"priorities: Acquire+Done", func() {
			p, _ := prio.Acquire(critical)
			p.Done(nil)
		}},
		{"priorities: rejected Acquire", func() { _, _ = fullPrio.Acquire(critical) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(1000, tt.f); n != 0 {
				t.Errorf("%v allocs per call, want 0", n)
			}
		})
	}
}
