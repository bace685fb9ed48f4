package budget_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware/budget"
	"go.uber.org/goleak"
)

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

// withdrawAll withdraws until the budget refuses and returns how many
// withdrawals succeeded.
func withdrawAll(b *budget.Budget) int {
	n := 0
	for b.Withdraw() {
		n++
	}
	return n
}

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
				if got := b.Available(); got != tt.want {
					t.Errorf("Available() = %d; want %d", got, tt.want)
				}
				if got := withdrawAll(b); got != tt.want {
					t.Errorf("withdrawals = %d; want %d", got, tt.want)
				}
				if got := b.Available(); got != 0 {
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
		if got := withdrawAll(b); got != 10 {
			t.Fatalf("withdrawals at 5s = %d; want 10", got)
		}
		// At 10 s the first deposits (and no withdrawals) have aged out:
		// 10 deposits → 5 allowed, 10 already withdrawn.
		time.Sleep(5 * time.Second)
		if got := b.Available(); got != 0 {
			t.Fatalf("Available() at 10s = %d; want 0", got)
		}
		// At 15 s everything has aged out; new deposits count from zero.
		time.Sleep(5 * time.Second)
		b.Deposit()
		b.Deposit()
		if got := withdrawAll(b); got != 1 {
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
					if b.Withdraw() {
						granted.Add(1)
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
		if got := int(granted.Load()) + b.Available(); got != goroutines/4 {
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
	for name, f := range map[string]func(){
		"Deposit":   b.Deposit,
		"Withdraw":  func() { b.Withdraw() },
		"Available": func() { b.Available() },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s allocates %v times per call; want 0", name, n)
		}
	}
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

func BenchmarkWithdraw(b *testing.B) {
	bud, _ := budget.New(budget.Config{})
	b.ReportAllocs()
	for b.Loop() {
		bud.Deposit()
		bud.Withdraw()
	}
}
