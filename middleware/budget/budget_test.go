package budget_test

import (
	"context"
	"errors"
	"github.com/brace-go/brace/middleware/bracetest"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/budget"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.uber.org/goleak"
)

// recorder is bracetest.Recorder, with the views these tests read.
type recorder struct{ bracetest.Recorder }

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestNewValidation(t *testing.T) {
	tests := []struct {
		name string
		cfg  budget.Config
		want string // "" means valid
	}{
		{"zero value", budget.Config{}, ""},
		{"explicit", budget.Config{Ratio: 0.5, MinPerSecond: 1, Window: time.Second}, ""},
		{"none", budget.Config{Ratio: budget.None, MinPerSecond: budget.None}, ""},
		{"negative ratio", budget.Config{Ratio: -0.5}, "budget: Ratio must be positive, 0 (default) or budget.None, got -0.5"},
		{"negative min", budget.Config{MinPerSecond: -2}, "budget: MinPerSecond must be positive, 0 (default) or budget.None, got -2"},
		{"tiny window", budget.Config{Window: 5}, "budget: Window must be at least 10ns, got 5ns"},
		{"negative window", budget.Config{Window: -time.Second}, "budget: Window must be at least 10ns, got -1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := budget.New(tt.cfg)
			if tt.want == "" {
				if err != nil || b == nil {
					t.Fatalf("New(%+v) = %v, %v; want a budget", tt.cfg, b, err)
				}
				return
			}
			if err == nil || err.Error() != tt.want {
				t.Fatalf("New(%+v) error = %v; want %q", tt.cfg, err, tt.want)
			}
		})
	}
}

// acquireAll acquires until the budget refuses and returns how many
// permits it granted.
func acquireAll(t *testing.T, b *budget.Budget) int {
	t.Helper()
	n := 0
	for {
		p, err := b.Acquire(t.Context())
		if err != nil {
			if err != budget.ErrExhausted {
				t.Fatalf("Acquire error = %v; want ErrExhausted", err)
			}
			return n
		}
		p.Done(nil)
		n++
	}
}

func available(b *budget.Budget) int { return b.Stats().Available }

func TestRatioAndReserve(t *testing.T) {
	tests := []struct {
		name     string
		cfg      budget.Config
		deposits int
		want     int
	}{
		{"defaults, no calls: reserve only", budget.Config{}, 0, 100}, // 10/s × 10 s
		{"defaults, 100 calls", budget.Config{}, 100, 120},
		{"ratio only", budget.Config{Ratio: 0.1, MinPerSecond: budget.None}, 100, 10},
		{"ratio only, fraction rounds down", budget.Config{Ratio: 0.1, MinPerSecond: budget.None}, 19, 1},
		{"ratio only, float rounding", budget.Config{Ratio: 0.29, MinPerSecond: budget.None}, 100, 29},
		{"nothing", budget.Config{Ratio: budget.None, MinPerSecond: budget.None}, 1000, 0},
		{"reserve only", budget.Config{Ratio: budget.None, MinPerSecond: 2, Window: 5 * time.Second}, 1000, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b, err := budget.New(tt.cfg)
				if err != nil {
					t.Fatal(err)
				}
				for range tt.deposits {
					b.Deposit()
				}
				if got := available(b); got != tt.want {
					t.Errorf("Available() = %d; want %d", got, tt.want)
				}
				if got := acquireAll(t, b); got != tt.want {
					t.Errorf("withdrawals = %d; want %d", got, tt.want)
				}
				if got := available(b); got != 0 {
					t.Errorf("Available() after draining = %d; want 0", got)
				}
			})
		})
	}
}

func TestWindowSlides(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, err := budget.New(budget.Config{Ratio: 0.5, MinPerSecond: budget.None, Window: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		for range 10 {
			b.Deposit()
		}
		time.Sleep(5 * time.Second)
		for range 10 {
			b.Deposit()
		}
		if got := acquireAll(t, b); got != 10 {
			t.Fatalf("withdrawals at 5s = %d; want 10", got)
		}
		// At 10 s the first deposits (and no withdrawals) have aged out:
		// 10 deposits → 5 allowed, 10 already withdrawn.
		time.Sleep(5 * time.Second)
		if got := available(b); got != 0 {
			t.Fatalf("Available() at 10s = %d; want 0", got)
		}
		// At 15 s everything has aged out; new deposits count from zero.
		time.Sleep(5 * time.Second)
		b.Deposit()
		b.Deposit()
		if got := acquireAll(t, b); got != 1 {
			t.Fatalf("withdrawals at 15s = %d; want 1", got)
		}
	})
}

// TestConcurrent checks, under heavy concurrency, that withdrawals never
// exceed what the deposits allow.
func TestConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, err := budget.New(budget.Config{Ratio: 0.25, MinPerSecond: budget.None})
		if err != nil {
			t.Fatal(err)
		}
		const goroutines = 1000
		var granted atomic.Int64
		var wg sync.WaitGroup
		for range goroutines {
			wg.Go(func() {
				b.Deposit()
				for range 3 {
					if p, err := b.Acquire(t.Context()); err == nil {
						granted.Add(1)
						p.Done(nil)
					}
				}
			})
		}
		wg.Wait()
		// Every goroutine deposits before it withdraws, so at the end
		// exactly 250 withdrawals fit, and no more may have been granted.
		if got := granted.Load(); got > goroutines/4 {
			t.Fatalf("granted %d withdrawals; budget allows at most %d", got, goroutines/4)
		}
		if got := int(granted.Load()) + available(b); got != goroutines/4 {
			t.Fatalf("granted + available = %d; want %d", got, goroutines/4)
		}
	})
}

func TestAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	b, err := budget.New(budget.Config{})
	if err != nil {
		t.Fatal(err)
	}
	empty, err := budget.New(budget.Config{Ratio: budget.None, MinPerSecond: budget.None})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"Deposit", b.Deposit},
		{"Acquire granted", func() {
			b.Deposit()
			p, _ := b.Acquire(ctx)
			p.Done(nil)
		}},
		{"Acquire refused", func() {
			if _, err := empty.Acquire(ctx); err != budget.ErrExhausted {
				t.Fatalf("err = %v", err)
			}
		}},
		{"Stats", func() { b.Stats() }},
	} {
		if n := testing.AllocsPerRun(100, tc.f); n != 0 {
			t.Errorf("%s allocates %v times per call; want 0", tc.name, n)
		}
	}
}

func TestErrExhausted(t *testing.T) {
	err := budget.ErrExhausted
	if !strings.HasPrefix(err.Error(), "budget:") {
		t.Errorf("Error() = %q; want the prefix \"budget:\"", err)
	}
	r, ok := err.(interface{ Rejected() bool })
	if !ok || !r.Rejected() {
		t.Error("ErrExhausted.Rejected() is not true")
	}
	rt, ok := err.(interface{ Retryable() bool })
	if !ok || rt.Retryable() {
		t.Error("ErrExhausted.Retryable() is not false")
	}
}

// TestAcquireEndedContext: a context that has already ended gets ctx.Err()
// and takes no token, even when tokens are free (issue 14 item 9).
func TestAcquireEndedContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, err := budget.New(budget.Config{Ratio: budget.None, MinPerSecond: 1, Window: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := b.Acquire(ctx); err != context.Canceled {
			t.Fatalf("Acquire(canceled ctx) error = %v; want context.Canceled", err)
		}
		if diff := cmp.Diff(budget.Stats{Available: 1}, b.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
}

func TestPermitDone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, err := budget.New(budget.Config{Ratio: budget.None, MinPerSecond: 2, Window: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		p, err := b.Acquire(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		p.Done(errors.New("attempt failed"))
		p.Done(nil) // a second Done is a no-op
		if p != (budget.Permit{}) {
			t.Errorf("Done left the permit %+v; want it zeroed", p)
		}
		var zero budget.Permit
		zero.Done(nil) // the zero Permit can be finished too
		// The token stays spent whatever the outcome.
		if got := available(b); got != 1 {
			t.Errorf("Available = %d after one Acquire of 2; want 1", got)
		}
	})
}

func TestEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec recorder
		b, err := budget.New(budget.Config{Name: "db", Ratio: budget.None, MinPerSecond: 1, Window: time.Second, Observer: &rec})
		if err != nil {
			t.Fatal(err)
		}
		if got := acquireAll(t, b); got != 1 {
			t.Fatalf("granted %d; want 1", got)
		}
		b.Acquire(t.Context())
		want := []middleware.Event{
			{Kind: middleware.Rejected, Concern: "budget", Name: "db", Reason: "budget", Err: budget.ErrExhausted},
			{Kind: middleware.Rejected, Concern: "budget", Name: "db", Reason: "budget", Err: budget.ErrExhausted},
		}
		if diff := cmp.Diff(want, rec.Events(), cmpopts.EquateErrors()); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(budget.Stats{Rejected: 2}, b.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
}

// TestPanickingObserver: an observer's panic is recovered; the refusal is
// still counted and returned, and the budget keeps working.
func TestPanickingObserver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		obs := middleware.ObserverFunc(func(context.Context, middleware.Event) { panic("observer") })
		b, err := budget.New(budget.Config{Ratio: 1, MinPerSecond: budget.None, Observer: obs})
		if err != nil {
			t.Fatal(err)
		}
		defer quietDefaultLog(t)()
		for range 3 {
			if _, err := b.Acquire(t.Context()); err != budget.ErrExhausted {
				t.Fatalf("err = %v; want ErrExhausted", err)
			}
		}
		b.Deposit()
		if _, err := b.Acquire(t.Context()); err != nil {
			t.Fatalf("after a deposit: %v", err)
		}
		if diff := cmp.Diff(budget.Stats{Rejected: 3}, b.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
}

// TestReentrantObserver: an observer that calls back into the budget
// (Stats, Deposit, Acquire) does not deadlock.
func TestReentrantObserver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var b *budget.Budget
		var seen []budget.Stats
		obs := middleware.ObserverFunc(func(ctx context.Context, e middleware.Event) {
			seen = append(seen, b.Stats())
			b.Deposit()
			if _, err := b.Acquire(ctx); err != nil {
				t.Errorf("re-entrant Acquire after a deposit: %v", err)
			}
		})
		var err error
		b, err = budget.New(budget.Config{Ratio: 1, MinPerSecond: budget.None, Observer: obs})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Acquire(t.Context()); err != budget.ErrExhausted {
			t.Fatalf("err = %v; want ErrExhausted", err)
		}
		if diff := cmp.Diff([]budget.Stats{{Rejected: 1}}, seen); diff != "" {
			t.Errorf("Stats seen by the observer (-want +got):\n%s", diff)
		}
	})
}

// quietDefaultLog discards slog.Default's output (where Emit reports an
// observer's panic) until the returned func is called.
func quietDefaultLog(t *testing.T) func() {
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	return func() { slog.SetDefault(old) }
}

func BenchmarkMutex(b *testing.B) { // baseline: an uncontended lock and the clock read
	var mu sync.Mutex
	var n int64
	start := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		d := time.Since(start)
		mu.Lock()
		n += int64(d)
		mu.Unlock()
	}
}

func BenchmarkDeposit(b *testing.B) {
	bud, _ := budget.New(budget.Config{})
	b.ReportAllocs()
	for b.Loop() {
		bud.Deposit()
	}
}

// BenchmarkAcquire: a deposit and a granted Acquire (the old
// BenchmarkWithdraw).
func BenchmarkAcquire(b *testing.B) {
	bud, _ := budget.New(budget.Config{})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		bud.Deposit()
		p, _ := bud.Acquire(ctx)
		p.Done(nil)
	}
}

// BenchmarkAcquireRefused: the rejection path, no observer.
func BenchmarkAcquireRefused(b *testing.B) {
	bud, _ := budget.New(budget.Config{Ratio: budget.None, MinPerSecond: budget.None})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		bud.Acquire(ctx)
	}
}
