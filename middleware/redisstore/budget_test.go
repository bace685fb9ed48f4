package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/budget"
	"github.com/brace-go/brace/middleware/redisstore"
	"github.com/brace-go/brace/middleware/redisstore/internal/redistest"
	"github.com/brace-go/brace/middleware/retry"
	"github.com/redis/go-redis/v9"
)

// fleetBudget returns a budget shared through a BudgetStore on c. Its
// Timeout is generous (2s): on a loaded machine 100ms is sometimes not
// enough for a cold connection, and a store failure makes the budget
// decide locally, which the fleet tests do not want to measure.
func fleetBudget(t testing.TB, c redis.UniversalClient, name string, cfg budget.Config) (*budget.Budget, *redisstore.BudgetStore) {
	t.Helper()
	s, err := redisstore.NewBudgetStore(redisstore.BudgetStoreConfig{Client: c, Name: name, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store = s
	b, err := budget.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b, s
}

// retrier returns a retrier with no delay that draws from b.
func retrier(t testing.TB, b *budget.Budget, attempts int) *retry.Retrier {
	t.Helper()
	r, err := retry.New(retry.Config{MaxAttempts: attempts, Budget: b,
		DelayFunc: func(int, error) time.Duration { return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// outage makes calls calls through r's middleware, from goroutines
// goroutines, to a stage that always fails, and returns how many attempts
// reached the stage.
func outage(r *retry.Retrier, goroutines, calls int) int64 {
	var attempts atomic.Int64
	stage := middleware.Apply(func(ctx context.Context, _ int) (int, error) {
		attempts.Add(1)
		return 0, errBoom
	}, retry.Middleware[int, int](r))
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range calls {
				stage(context.Background(), 0)
			}
		})
	}
	wg.Wait()
	return attempts.Load()
}

// The fleet's rule: processes (budgets with clients of their own) in an
// outage where every call fails retry at most Ratio × the fleet's calls +
// the reserve, not each process its own reserve and ratio, and the store
// really grants that much (at least 90% of it).
func TestBudgetFleetOutage(t *testing.T) {
	for _, cluster := range []bool{false, true} {
		t.Run(map[bool]string{false: "single", true: "cluster"}[cluster], func(t *testing.T) {
			var clients []redis.UniversalClient
			if cluster {
				cl := redistest.StartCluster(t)
				for range 4 {
					clients = append(clients, cl.Client(t))
				}
			} else {
				for range 4 {
					clients = append(clients, redistest.Shared(t).Client(t))
				}
			}
			const procs, goroutines, calls = 4, 4, 50
			cfg := budget.Config{Ratio: 0.1, MinPerSecond: 0.1, Window: time.Minute} // reserve 6
			n := name(t)
			var wg sync.WaitGroup
			var attempts atomic.Int64
			var failures atomic.Uint64
			for p := range procs {
				b, _ := fleetBudget(t, clients[p], n, cfg)
				r := retrier(t, b, 4)
				wg.Go(func() {
					attempts.Add(outage(r, goroutines, calls))
					failures.Add(b.Stats().StoreFailures)
				})
			}
			wg.Wait()
			fleetCalls := int64(procs * goroutines * calls)
			retries := attempts.Load() - fleetCalls
			bound := int64(0.1*float64(fleetCalls)) + 6
			t.Logf("%d processes, %d calls, every attempt failing: %d retries; bound Ratio × calls + reserve = %d (each process on its own: %d); %d store failures",
				procs, fleetCalls, retries, bound, int64(0.1*float64(fleetCalls))+procs*6, failures.Load())
			if failures.Load() != 0 {
				t.Fatalf("store failures: %d", failures.Load())
			}
			if retries > bound {
				t.Errorf("fleet retries %d > bound %d", retries, bound)
			}
			if retries < bound*9/10 {
				t.Errorf("fleet retries %d < 90%% of bound %d: the store grants too little", retries, bound)
			}
		})
	}
}

// One process's successful calls fund another's retries: the fleet's
// window has every process's calls.
func TestBudgetFleetSharesDeposits(t *testing.T) {
	n := name(t)
	cfg := budget.Config{Ratio: 0.1, MinPerSecond: budget.None, Window: time.Minute, FlushAfter: budget.None}
	a, _ := fleetBudget(t, redistest.Shared(t).Client(t), n, cfg)
	b, _ := fleetBudget(t, redistest.Shared(t).Client(t), n, cfg)
	for range 1000 {
		a.Deposit()
	}
	if _, err := b.Acquire(context.Background()); err != budget.ErrExhausted {
		t.Fatalf("b.Acquire before a's calls reached the store: %v; want ErrExhausted", err)
	}
	if _, err := a.Acquire(context.Background()); err != nil { // carries the 1000 deposits
		t.Fatal(err)
	}
	got := 0
	for {
		if _, err := b.Acquire(context.Background()); err != nil {
			break
		}
		got++
	}
	if got != 99 {
		t.Fatalf("b, with no calls of its own, got %d retries; want 99 (0.1 × a's 1000 calls, less a's 1)", got)
	}
}

// A call that succeeds first time costs no round trip; deposits go in
// background batches, at most one per FlushAfter; each retry is one round
// trip carrying the batch.
func TestBudgetRoundTrips(t *testing.T) {
	c, rt := client(t)
	n := name(t)
	b, _ := fleetBudget(t, c, n, budget.Config{FlushAfter: budget.None})
	r := retrier(t, b, 3)
	ok := middleware.Apply(func(ctx context.Context, _ int) (int, error) { return 1, nil }, retry.Middleware[int, int](r))
	for range 1000 {
		if _, err := ok(context.Background(), 0); err != nil {
			t.Fatal(err)
		}
	}
	if got, names := rt.take(); got != 0 {
		t.Fatalf("1000 calls that succeeded first time made %d round trips (%v); want 0", got, names)
	}

	// Retries: one round trip each (the script is loaded by the first).
	var fails atomic.Int64
	flaky := middleware.Apply(func(ctx context.Context, _ int) (int, error) {
		if fails.Add(1)%2 == 1 {
			return 0, errBoom
		}
		return 1, nil
	}, retry.Middleware[int, int](r))
	for range 10 {
		if _, err := flaky(context.Background(), 0); err != nil {
			t.Fatal(err)
		}
	}
	if got, names := rt.take(); got < 10 || got > 11 {
		t.Fatalf("10 calls with one retry each made %d round trips (%v); want 10 (11 if the script was loaded)", got, names)
	}

	// With the background flush: at most one round trip per FlushAfter.
	const flushAfter = 20 * time.Millisecond
	b2, _ := fleetBudget(t, c, n+"-flush", budget.Config{FlushAfter: flushAfter})
	r2 := retrier(t, b2, 3)
	ok2 := middleware.Apply(func(ctx context.Context, _ int) (int, error) { return 1, nil }, retry.Middleware[int, int](r2))
	start := time.Now()
	calls := 0
	for time.Since(start) < 200*time.Millisecond {
		ok2(context.Background(), 0)
		calls++
	}
	elapsed := time.Since(start)
	// Wait for a flush in flight to end.
	eventually(t, 5*time.Second, "the last flush", func() bool {
		n1 := rt.n.Load()
		time.Sleep(2 * flushAfter)
		return rt.n.Load() == n1
	})
	got, _ := rt.take()
	bound := int64(elapsed/flushAfter) + 2
	t.Logf("%d successful calls in %v with FlushAfter %v: %d background round trips (bound %d)", calls, elapsed, flushAfter, got, bound)
	if got > bound {
		t.Errorf("%d round trips; want at most %d", got, bound)
	}
}

// The store down or hung: every Acquire returns within the store's
// Timeout (plus slack), decides from the local window (this process's own
// calls), and the failure is reported; afterwards the fleet is used
// again.
func TestBudgetStoreDown(t *testing.T) {
	const timeout, slack = 100 * time.Millisecond, time.Second
	for _, fault := range []string{"stopped", "frozen"} {
		t.Run(fault, func(t *testing.T) {
			srv := redistest.Start(t)
			s, err := redisstore.NewBudgetStore(redisstore.BudgetStoreConfig{Client: srv.Client(t), Name: name(t), Timeout: timeout})
			if err != nil {
				t.Fatal(err)
			}
			var rec recorder
			b, err := budget.New(budget.Config{Ratio: 0.5, MinPerSecond: budget.None, Window: time.Minute, Store: s, Observer: &rec})
			if err != nil {
				t.Fatal(err)
			}
			for range 10 {
				b.Deposit()
			}
			if _, err := b.Acquire(context.Background()); err != nil { // on Redis
				t.Fatal(err)
			}
			switch fault {
			case "stopped":
				srv.Stop()
			case "frozen":
				srv.Freeze(t)
				defer srv.Thaw(t)
			}
			var slowest time.Duration
			granted := 0
			for range 10 {
				start := time.Now()
				_, err := b.Acquire(context.Background())
				slowest = max(slowest, time.Since(start))
				if err == nil {
					granted++
				} else if err != budget.ErrExhausted {
					t.Fatalf("Acquire with the store %s: %v", fault, err)
				}
			}
			t.Logf("store %s: slowest Acquire %v (bound Timeout %v + slack), %d granted locally, %d store failures", fault, slowest, timeout, granted, b.Stats().StoreFailures)
			if slowest > timeout+slack {
				t.Errorf("an Acquire waited %v > %v", slowest, timeout+slack)
			}
			if granted != 4 {
				t.Errorf("local fallback granted %d; want 4 (0.5 × 10 local calls, less the 1 taken on Redis)", granted)
			}
			if len(rec.of(middleware.StoreFailed)) == 0 || b.Stats().StoreFailures == 0 {
				t.Errorf("no StoreFailed reported")
			}
		})
	}
}

// Bad values at the budget's key: a key of another type, a field the
// script did not write, a hash too large to read: an error (ErrCorrupt or
// WRONGTYPE), the budget decides locally, nothing panics or is read in
// full.
func TestBudgetCorrupt(t *testing.T) {
	c, _ := client(t)
	ctx := context.Background()
	for _, tt := range []struct {
		name string
		set  func(key string)
	}{
		{"string", func(key string) { c.Set(ctx, key, "x", time.Minute) }},
		{"list", func(key string) { c.RPush(ctx, key, "x") }},
		{"field", func(key string) { c.HSet(ctx, key, "zz", "1") }},
		{"value", func(key string) { c.HSet(ctx, key, "d1", "one") }},
		{"negative", func(key string) { c.HSet(ctx, key, "t1", "-5") }},
		{"huge", func(key string) {
			args := make([]any, 0, 20000)
			for i := range 10000 {
				args = append(args, "x"+strconv.Itoa(i), strings.Repeat("y", 100))
			}
			c.HSet(ctx, key, args...)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b, s := fleetBudget(t, c, name(t), budget.Config{Ratio: 1, MinPerSecond: budget.None, FlushAfter: budget.None})
			tt.set(redisstore.BudgetKey(s))
			b.Deposit()
			_, err := s.Take(ctx, 1, 0, true)
			if err == nil || !(errors.Is(err, redisstore.ErrCorrupt) || strings.Contains(err.Error(), "WRONGTYPE")) {
				t.Fatalf("Take on a bad value: %v; want ErrCorrupt or WRONGTYPE", err)
			}
			if _, err := b.Acquire(ctx); err != nil {
				t.Fatalf("Acquire on a bad value: %v; want the local budget's grant", err)
			}
			if b.Stats().StoreFailures != 1 {
				t.Fatalf("StoreFailures = %d; want 1", b.Stats().StoreFailures)
			}
			t.Log(err)
		})
	}
}

// Names with braces are refused; names with spaces, newlines, or 10 KB
// of text have keys of their own, and a short Window is refused.
func TestBudgetNames(t *testing.T) {
	c, _ := client(t)
	if _, err := redisstore.NewBudgetStore(redisstore.BudgetStoreConfig{Client: c, Name: "a{b}"}); err == nil {
		t.Fatal("a name with braces was accepted")
	}
	keys := map[string]string{}
	for _, n := range []string{"a", "a b", "a\nb", "a:b", strings.Repeat("x", 10<<10), strings.Repeat("x", 10<<10) + "y"} {
		s, err := redisstore.NewBudgetStore(redisstore.BudgetStoreConfig{Client: c, Name: n})
		if err != nil {
			t.Fatal(err)
		}
		k := redisstore.BudgetKey(s)
		if other, ok := keys[k]; ok {
			t.Fatalf("names %.20q and %.20q share the key", n, other)
		}
		keys[k] = n
	}
	s, _ := redisstore.NewBudgetStore(redisstore.BudgetStoreConfig{Client: c, Name: name(t)})
	if _, err := budget.New(budget.Config{Window: time.Millisecond, Store: s}); err == nil || !strings.Contains(err.Error(), "Window must be at least 10ms") {
		t.Fatalf("a 1ms window: %v", err)
	}
	if _, err := budget.New(budget.Config{Store: s}); err != nil {
		t.Fatal(err)
	}
	if _, err := budget.New(budget.Config{Store: s, Ratio: 0.5}); err == nil {
		t.Fatal("a second policy was accepted")
	}
}

// TestBudgetProcesses runs the fleet as OS processes: four copies of this
// test binary, each making failing calls through Retry with one shared
// budget; the parent sums their attempts.
func TestBudgetProcesses(t *testing.T) {
	if addr := os.Getenv("BRACE_BUDGET_CHILD"); addr != "" {
		budgetChild(t, addr)
		return
	}
	if testing.Short() {
		t.Skip("starts OS processes")
	}
	srv := redistest.Shared(t)
	n := name(t)
	const procs, goroutines, calls = 4, 4, 50
	outs := make([]string, procs)
	var wg sync.WaitGroup
	errs := make([]error, procs)
	for i := range procs {
		wg.Go(func() {
			cmd := exec.Command(os.Args[0], "-test.run=^TestBudgetProcesses$", "-test.v")
			cmd.Env = append(os.Environ(), "BRACE_BUDGET_CHILD="+srv.Addr, "BRACE_BUDGET_NAME="+n,
				fmt.Sprintf("BRACE_BUDGET_CALLS=%d", calls), fmt.Sprintf("BRACE_BUDGET_GOROUTINES=%d", goroutines))
			out, err := cmd.CombinedOutput()
			outs[i], errs[i] = string(out), err
		})
	}
	wg.Wait()
	var attempts int64
	for i := range procs {
		if errs[i] != nil {
			t.Fatalf("child %d: %v\n%s", i, errs[i], outs[i])
		}
		_, after, ok := strings.Cut(outs[i], "ATTEMPTS=")
		if !ok {
			t.Fatalf("child %d printed no attempts:\n%s", i, outs[i])
		}
		a, err := strconv.ParseInt(strings.Fields(after)[0], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		attempts += a
	}
	fleetCalls := int64(procs * goroutines * calls)
	retries := attempts - fleetCalls
	bound := int64(0.1*float64(fleetCalls)) + 6
	t.Logf("%d OS processes, %d calls, every attempt failing: %d retries; bound %d", procs, fleetCalls, retries, bound)
	if retries > bound || retries < bound*9/10 {
		t.Errorf("fleet retries %d; want within [%d, %d]", retries, bound*9/10, bound)
	}
}

func budgetChild(t *testing.T, addr string) {
	c := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1, DialerRetries: 1})
	defer c.Close()
	calls, _ := strconv.Atoi(os.Getenv("BRACE_BUDGET_CALLS"))
	goroutines, _ := strconv.Atoi(os.Getenv("BRACE_BUDGET_GOROUTINES"))
	var first atomic.Value
	b, _ := fleetBudget(t, c, os.Getenv("BRACE_BUDGET_NAME"), budget.Config{Ratio: 0.1, MinPerSecond: 0.1, Window: time.Minute,
		Observer: middleware.ObserverFunc(func(_ context.Context, e middleware.Event) {
			if e.Kind == middleware.StoreFailed {
				first.CompareAndSwap(nil, e.Err)
			}
		})})
	a := outage(retrier(t, b, 4), goroutines, calls)
	if f := b.Stats().StoreFailures; f != 0 {
		t.Fatalf("store failures: %d, the first: %v", f, first.Load())
	}
	fmt.Printf("ATTEMPTS=%d\n", a)
}

// BenchmarkBudget measures a shared budget's Deposit (no round trip) and
// Acquire (one round trip, the budget script), and a quorum-mode failure
// beside the default mode's (BenchmarkRoundTrip/RateWindow).
func BenchmarkBudget(b *testing.B) {
	c := redistest.Shared(b).Client(b)
	ctx := context.Background()
	b.Run("Deposit", func(b *testing.B) {
		bg, _ := fleetBudget(b, c, b.Name(), budget.Config{FlushAfter: budget.None})
		b.ReportAllocs()
		for b.Loop() {
			bg.Deposit()
		}
	})
	b.Run("Acquire", func(b *testing.B) {
		bg, s := fleetBudget(b, c, b.Name(), budget.Config{Ratio: 1e9})
		defer s.Reset(ctx)
		bg.Deposit()
		b.ReportAllocs()
		for b.Loop() {
			bg.Deposit()
			if _, err := bg.Acquire(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, q := range []int{0, 2} {
		b.Run(fmt.Sprintf("RateFailure/Quorum=%d", q), func(b *testing.B) {
			rs, err := redisstore.NewBreakerStore(redisstore.BreakerStoreConfig{Client: c, Name: b.Name(), Quorum: q, Process: "p"})
			if err != nil {
				b.Fatal(err)
			}
			defer rs.Reset(ctx)
			rs.Bind(breaker.Policy{FailureRate: 1, MinCalls: 1 << 30, Buckets: 10, BucketWidth: time.Second, OpenTimeout: time.Minute, Probes: 1, SuccessThreshold: 1, ProbeLease: time.Second})
			op := breaker.Op{Kind: breaker.OpResult, Gen: 1, Failures: 1}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := rs.Update(ctx, op); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
