package hedge_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/budget"
	"github.com/brace-go/brace/middleware/hedge"
)

func TestStats(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name    string
		latency []time.Duration
		budget  func(t *testing.T) *budget.Budget
		want    hedge.Stats
	}{
		{name: "fast primary", latency: []time.Duration{10 * ms}, want: hedge.Stats{}},
		{name: "hedge wins", latency: []time.Duration{200 * ms, 10 * ms}, want: hedge.Stats{Hedged: 1, HedgeWins: 1}},
		{name: "primary wins", latency: []time.Duration{70 * ms, 100 * ms}, want: hedge.Stats{Hedged: 1}},
		{name: "budget refuses", latency: []time.Duration{200 * ms}, budget: emptyBudget, want: hedge.Stats{Rejected: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := unlimited(t)
				if tt.budget != nil {
					b = tt.budget(t)
				}
				h := mustNew(t, hedge.Config{Delay: 50 * ms, Percentile: hedge.Fixed, Budget: b})
				a := &attempts{latency: tt.latency}
				if _, err := middleware.Apply(a.stage, hedge.Middleware[string, string](h))(context.Background(), "x"); err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tt.want, h.Stats()); diff != "" {
					t.Errorf("Stats (-want +got):\n%s", diff)
				}
			})
		})
	}
}

// TestStatsConcurrent: 1000 concurrent calls, half of them slow enough to
// be hedged; the counts agree with the events and with the callers.
func TestStatsConcurrent(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("its exact counts need fake time, and a bubble this busy crashes the race detector: " + raceBubbleBug)
	}
	synctest.Test(t, func(t *testing.T) {
		var events atomic.Uint64
		h := mustNew(t, hedge.Config{Delay: 50 * time.Millisecond, Percentile: hedge.Fixed, Budget: unlimited(t),
			Observer: middleware.ObserverFunc(func(_ context.Context, e middleware.Event) {
				if e.Kind == middleware.Hedged {
					events.Add(1)
				}
			})})
		const goroutines = 1000
		var wg sync.WaitGroup
		for i := range goroutines {
			a := &attempts{latency: []time.Duration{time.Duration(i%2) * time.Second, 10 * time.Millisecond}}
			wg.Go(func() {
				if _, err := middleware.Apply(a.stage, hedge.Middleware[string, string](h))(context.Background(), "x"); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		want := hedge.Stats{Hedged: goroutines / 2, HedgeWins: goroutines / 2}
		if diff := cmp.Diff(want, h.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
		if events.Load() != goroutines/2 {
			t.Errorf("%d Hedged events; want %d", events.Load(), goroutines/2)
		}
	})
}

// An observer that panics on every event breaks nothing: the hedge is
// still sent and wins, the refusal still counted, and every attempt has
// returned when the call does.
func TestPanickingObserver(t *testing.T) {
	defer slog.SetDefault(slog.Default())
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil))) // Emit reports the panics there
	obs := middleware.ObserverFunc(func(context.Context, middleware.Event) { panic("observer") })
	synctest.Test(t, func(t *testing.T) {
		h := mustNew(t, hedge.Config{Delay: 10 * time.Millisecond, Percentile: hedge.Fixed, Budget: unlimited(t), Observer: obs})
		a := &attempts{latency: []time.Duration{time.Hour, time.Millisecond}}
		out, err := middleware.Apply(a.stage, hedge.Middleware[string, string](h))(context.Background(), "x")
		if out != "x from attempt 2" || err != nil {
			t.Errorf("call = %q, %v; want the hedge's result", out, err)
		}
		if a.finished != 2 {
			t.Errorf("%d of 2 attempts finished before the call returned", a.finished)
		}
		if diff := cmp.Diff(hedge.Stats{Hedged: 1, HedgeWins: 1}, h.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}

		refusing := mustNew(t, hedge.Config{Delay: 10 * time.Millisecond, Percentile: hedge.Fixed, Budget: emptyBudget(t), Observer: obs})
		a = &attempts{latency: []time.Duration{50 * time.Millisecond}}
		out, err = middleware.Apply(a.stage, hedge.Middleware[string, string](refusing))(context.Background(), "x")
		if out != "x from attempt 1" || err != nil || refusing.Stats().Rejected != 1 {
			t.Errorf("call = %q, %v, Stats %+v; want the primary's result and one refusal", out, err, refusing.Stats())
		}
	})
}

// An observer that calls back into the Hedger — its getters, and a whole
// hedged call through the same stage — does not deadlock: no lock is held
// while it runs.
func TestReentrantObserver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var h *hedge.Hedger
		var s middleware.Stage[int, int]
		var nested atomic.Int64
		var got []hedge.Stats
		obs := middleware.ObserverFunc(func(ctx context.Context, e middleware.Event) {
			got = append(got, h.Stats())
			_ = h.Delay()
			if nested.Add(1) == 1 {
				if out, err := s(ctx, -1); out != -1 || err != nil {
					t.Errorf("nested call = %d, %v", out, err)
				}
			}
		})
		h = mustNew(t, hedge.Config{Delay: 10 * time.Millisecond, Percentile: hedge.Fixed, Budget: unlimited(t), Observer: obs})
		var n atomic.Int64
		s = middleware.Apply(func(ctx context.Context, in int) (int, error) {
			if in < 0 {
				return in, nil // the nested call: fast
			}
			if n.Add(1) == 1 {
				<-ctx.Done() // the first attempt: stuck
				return 0, ctx.Err()
			}
			return in, nil
		}, hedge.Middleware[int, int](h))
		if out, err := s(context.Background(), 7); out != 7 || err != nil {
			t.Errorf("call = %d, %v; want 7 from the hedge", out, err)
		}
		if diff := cmp.Diff([]hedge.Stats{{Hedged: 1}}, got); diff != "" {
			t.Errorf("Stats seen by the observer (-want +got):\n%s", diff)
		}
	})
}

// No goroutine outlives a call, on real time: after each call, whichever
// attempt won, goleak finds none of the call's goroutines.
func TestNoGoroutineOutlivesCall(t *testing.T) {
	h := mustNew(t, hedge.Config{Delay: time.Millisecond, Percentile: hedge.Fixed, MaxHedges: 3, Budget: unlimited(t)})
	var n atomic.Int64
	s := middleware.Apply(func(ctx context.Context, _ int) (int, error) {
		if n.Add(1)%4 != 0 { // three of four attempts are stuck until cancelled
			<-ctx.Done()
			return 0, ctx.Err()
		}
		return 1, nil
	}, hedge.Middleware[int, int](h))
	for range 5 {
		ignore := goleak.IgnoreCurrent()
		if _, err := s(context.Background(), 0); err != nil {
			t.Fatal(err)
		}
		goleak.VerifyNone(t, ignore)
	}
	if h.Stats().Hedged == 0 {
		t.Error("no call was hedged: the test exercised nothing")
	}
}

// TestAllocs: a call that returns before its hedge delay, and a call whose
// context has already ended, with no observer.
func TestAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		cfg  hedge.Config
		ctx  context.Context
		want float64
	}{
		// The per-call state, the first attempt's context and cancel func,
		// and the hedge timer with its func.
		{"no hedge, fixed", hedge.Config{Delay: time.Hour, Percentile: hedge.Fixed}, context.Background(), 5},
		{"no hedge, percentile", hedge.Config{Delay: time.Hour}, context.Background(), 5},
		{"context ended", hedge.Config{}, ended, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := mustNew(t, tt.cfg)
			s := middleware.Apply(func(_ context.Context, in int) (int, error) { return in, nil }, hedge.Middleware[int, int](h))
			if n := testing.AllocsPerRun(1000, func() { _, _ = s(tt.ctx, 1) }); n > tt.want {
				t.Errorf("%v allocs per call, want at most %v", n, tt.want)
			}
		})
	}
}
