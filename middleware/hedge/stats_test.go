package hedge_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/budget"
	"github.com/brace-go/brace/middleware/hedge"
	"github.com/google/go-cmp/cmp"
)

func TestCounter(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name    string
		latency []time.Duration
		budget  func(t *testing.T) *budget.Budget
		want    hedge.Stats
	}{
		{name: "fast primary", latency: []time.Duration{10 * ms}, want: hedge.Stats{Calls: 1}},
		{name: "hedge wins", latency: []time.Duration{200 * ms, 10 * ms}, want: hedge.Stats{Calls: 1, Hedges: 1, Wins: 1}},
		{name: "primary wins", latency: []time.Duration{70 * ms, 100 * ms}, want: hedge.Stats{Calls: 1, Hedges: 1}},
		{
			name:    "budget refuses",
			latency: []time.Duration{200 * ms},
			budget: func(t *testing.T) *budget.Budget {
				b, err := budget.New(budget.Config{Ratio: budget.None, MinPerSecond: budget.None})
				if err != nil {
					t.Fatal(err)
				}
				return b
			},
			want: hedge.Stats{Calls: 1, Refused: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := unlimited(t)
				if tt.budget != nil {
					b = tt.budget(t)
				}
				var c hedge.Counter
				h := mustNew(t, hedge.Config{Delay: 50 * ms, Percentile: hedge.Fixed, Budget: b, Counter: &c})
				a := &attempts{latency: tt.latency}
				if _, err := middleware.Apply(a.stage, hedge.Middleware[string, string](h))(context.Background(), "x"); err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tt.want, c.Stats()); diff != "" {
					t.Errorf("Stats (-want +got):\n%s", diff)
				}
			})
		})
	}
}

func TestNilCounterStats(t *testing.T) {
	var c *hedge.Counter
	if diff := cmp.Diff(hedge.Stats{}, c.Stats()); diff != "" {
		t.Errorf("nil Counter Stats (-want +got):\n%s", diff)
	}
}

func TestLoggerName(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		h := mustNew(t, hedge.Config{Delay: 10 * time.Millisecond, Percentile: hedge.Fixed, Budget: unlimited(t), Logger: newLogger(&buf), Name: "search"})
		a := &attempts{latency: []time.Duration{50 * time.Millisecond, time.Millisecond}}
		_, _ = middleware.Apply(a.stage, hedge.Middleware[string, string](h))(context.Background(), "x")
		if want := `level=DEBUG msg="hedge: attempt" attempt=2 delay=10ms name=search`; strings.TrimSpace(buf.String()) != want {
			t.Errorf("log = %q, want %q", buf.String(), want)
		}
	})
}

// TestCounterConcurrent: 1000 concurrent calls, half of them slow enough
// to be hedged; the counts agree with OnHedge and with the callers.
func TestCounterConcurrent(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("its exact counts need fake time, and a bubble this busy crashes the race detector: " + raceBubbleBug)
	}
	synctest.Test(t, func(t *testing.T) {
		var c hedge.Counter
		var hooked atomic.Uint64
		h := mustNew(t, hedge.Config{Delay: 50 * time.Millisecond, Percentile: hedge.Fixed, Budget: unlimited(t),
			Counter: &c, OnHedge: func(int) { hooked.Add(1) }})
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
		want := hedge.Stats{Calls: goroutines, Hedges: hooked.Load(), Wins: goroutines / 2}
		if diff := cmp.Diff(want, c.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
		if hooked.Load() != goroutines/2 {
			t.Errorf("%d hedges; want %d", hooked.Load(), goroutines/2)
		}
	})
}
