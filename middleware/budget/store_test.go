package budget_test

import (
	"context"
	"errors"
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
)

// take is one Store.Take call.
type take struct {
	Deposits int64
	Age      time.Duration
	Token    bool
}

// fleet is a budget.Store in memory that applies the budget's rule to the
// sum of every budget's batches (a fleet of one process's budgets), on the
// time package's clock, with buckets like the budget's own. fail, when
// set, makes Take fail; hook runs first in Take.
type fleet struct {
	mu     sync.Mutex
	p      budget.Policy
	bound  bool
	origin time.Time
	dep    map[int64]int64 // bucket number → deposits
	tok    map[int64]int64 // bucket number → tokens taken
	calls  []take
	fail   error
	hook   func()
}

func newFleet() *fleet {
	return &fleet{origin: time.Now(), dep: map[int64]int64{}, tok: map[int64]int64{}}
}

func (f *fleet) Bind(p budget.Policy) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.bound && f.p != p {
		return errors.New("fleet: another policy")
	}
	f.p, f.bound = p, true
	return nil
}

func (f *fleet) Take(ctx context.Context, d int64, age time.Duration, token bool) (bool, error) {
	if f.hook != nil {
		f.hook()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, take{d, age, token})
	if f.fail != nil {
		return false, f.fail
	}
	width := f.p.Window / 10
	now := time.Since(f.origin)
	n := int64(now / width)
	if b := int64((now - age) / width); d > 0 && b > n-10 {
		f.dep[b] += d
	}
	var deps, toks int64
	for b, v := range f.dep {
		if b > n-10 {
			deps += v
		}
	}
	for b, v := range f.tok {
		if b > n-10 {
			toks += v
		}
	}
	if !token {
		return false, nil
	}
	if float64(toks+1) <= f.p.Ratio*float64(deps)+f.p.MinPerSecond*f.p.Window.Seconds()+1e-9 {
		f.tok[n]++
		return true, nil
	}
	return false, nil
}

func (f *fleet) taken() []take {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]take(nil), f.calls...)
}

func (f *fleet) sent() (deposits int64, calls int) {
	for _, c := range f.taken() {
		deposits += c.Deposits
	}
	return deposits, len(f.taken())
}

func mustNew(t *testing.T, cfg budget.Config) *budget.Budget {
	t.Helper()
	b, err := budget.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestStoreValidation(t *testing.T) {
	_, err := budget.New(budget.Config{FlushAfter: -time.Second})
	if want := "budget: FlushAfter must be positive, 0 (default) or budget.None, got -1s"; err == nil || err.Error() != want {
		t.Fatalf("New error = %v; want %q", err, want)
	}
	f := newFleet()
	mustNew(t, budget.Config{Store: f, Ratio: 0.5, MinPerSecond: budget.None, Window: time.Second})
	if want := (budget.Policy{Ratio: 0.5, MinPerSecond: 0, Window: time.Second}); f.p != want {
		t.Fatalf("Bind got %+v; want %+v", f.p, want)
	}
	_, err = budget.New(budget.Config{Store: f})
	if err == nil || !strings.HasPrefix(err.Error(), "budget: Store.Bind refused the policy: fleet: another policy") {
		t.Fatalf("New with a store bound to another policy: %v", err)
	}
}

// A call that makes no extra attempt never calls the store when the
// background flush is off, and Acquire carries the batch.
func TestStoreNoCallsWithoutRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFleet()
		b := mustNew(t, budget.Config{Store: f, FlushAfter: budget.None, MinPerSecond: budget.None, Ratio: 0.5})
		for range 1000 {
			b.Deposit()
		}
		time.Sleep(300 * time.Millisecond)
		if got := f.taken(); len(got) != 0 {
			t.Fatalf("deposits alone called the store %d times", len(got))
		}
		if _, err := b.Acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]take{{1000, 300 * time.Millisecond, true}}, f.taken()); diff != "" {
			t.Fatalf("store calls (-want +got):\n%s", diff)
		}
		// The next Acquire carries nothing new.
		b.Acquire(context.Background())
		if got := f.taken()[1]; got != (take{0, 0, true}) {
			t.Fatalf("second Acquire sent %+v", got)
		}
	})
}

// With the background flush on, deposits reach the store in batches, at
// most one per FlushAfter, none lost, each stamped with its oldest
// deposit's age (never more than FlushAfter plus the time between
// deposits).
func TestStoreFlushBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFleet()
		b := mustNew(t, budget.Config{Store: f}) // FlushAfter: 1s
		const n = 5000
		for range n {
			b.Deposit()
			time.Sleep(time.Millisecond)
			synctest.Wait() // let a started flush finish
		}
		sent, calls := f.sent()
		b.Acquire(context.Background()) // the rest
		all, _ := f.sent()
		t.Logf("%d deposits over 5s: %d background flushes carried %d; the Acquire %d", n, calls, sent, all-sent)
		if calls > 5 || calls < 4 {
			t.Errorf("background flushes = %d; want 4 or 5 (one per FlushAfter)", calls)
		}
		if all != n {
			t.Errorf("deposits sent = %d; want %d", all, n)
		}
		for _, c := range f.taken() {
			if c.Age > time.Second+time.Millisecond {
				t.Errorf("batch %+v is older than FlushAfter", c)
			}
		}
	})
}

// At most one flush is in flight: a slow store does not make each Deposit
// start a goroutine, and Deposit never waits for it.
func TestStoreOneFlushInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFleet()
		release := make(chan struct{})
		var inFlight, most atomic.Int32
		f.hook = func() {
			n := inFlight.Add(1)
			if n > most.Load() {
				most.Store(n)
			}
			<-release
			inFlight.Add(-1)
		}
		b := mustNew(t, budget.Config{Store: f, FlushAfter: time.Millisecond})
		start := time.Now()
		for range 100 {
			b.Deposit()
			time.Sleep(2 * time.Millisecond)
		}
		if d := time.Since(start); d != 200*time.Millisecond {
			t.Errorf("100 deposits took %v; want 200ms (Deposit never waits)", d)
		}
		close(release)
		synctest.Wait()
		if most.Load() != 1 {
			t.Errorf("flushes in flight at once: %d; want 1", most.Load())
		}
	})
}

// Store failures: Acquire decides from the local window, reports
// StoreFailed, and the budget keeps working; a panicking store in a
// background flush is reported, not a crash.
func TestStoreFailureFallsBackToLocal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFleet()
		f.fail = errors.New("store down")
		var rec recorder
		b := mustNew(t, budget.Config{Name: "b", Store: f, Ratio: 0.5, MinPerSecond: budget.None, FlushAfter: budget.None, Observer: &rec})
		for range 10 {
			b.Deposit()
		}
		if got := acquireAll(t, b); got != 5 {
			t.Fatalf("local fallback granted %d; want 5 (Ratio 0.5 of 10 local calls)", got)
		}
		st := b.Stats()
		if st.StoreFailures != 6 || st.Rejected != 1 {
			t.Fatalf("Stats = %+v; want 6 store failures, 1 rejected", st)
		}
		var failed int
		for _, e := range rec.Events() {
			if e.Kind == middleware.StoreFailed && e.Concern == "budget" && e.Name == "b" && e.Err == f.fail {
				failed++
			}
		}
		if failed != 6 {
			t.Fatalf("StoreFailed events = %d; want 6", failed)
		}

		// A store that panics in a background flush.
		f.fail = nil
		f.hook = func() { panic("boom") }
		p := mustNew(t, budget.Config{Store: newPanicky(f), FlushAfter: time.Millisecond, Observer: &rec})
		p.Deposit()
		time.Sleep(2 * time.Millisecond)
		p.Deposit()
		synctest.Wait()
		if got := p.Stats().StoreFailures; got != 1 {
			t.Fatalf("StoreFailures after a panicking flush = %d; want 1", got)
		}
	})
}

// newPanicky shares f's binding but is a separate store value, so the
// policy check passes.
func newPanicky(f *fleet) *fleet {
	g := newFleet()
	g.hook = f.hook
	return g
}

// The store decides: a fleet with more calls grants more than this
// process's own window would, and a fleet whose budget is spent refuses
// although this process's window has tokens.
func TestStoreDecides(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFleet()
		cfg := budget.Config{Store: f, Ratio: 0.1, MinPerSecond: budget.None, FlushAfter: budget.None}
		a, b := mustNew(t, cfg), mustNew(t, cfg)
		for range 100 {
			a.Deposit()
		}
		// a's first Acquire carries its 100 calls and takes 1 of 10.
		if _, err := a.Acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
		// b made no calls, but the fleet made 100: 9 tokens are left.
		if got := acquireAll(t, b); got != 9 {
			t.Fatalf("b granted %d; want 9 (0.1 × the fleet's 100 calls, less a's 1)", got)
		}
		// a made 100 calls, but the fleet's tokens are spent.
		if _, err := a.Acquire(context.Background()); err != budget.ErrExhausted {
			t.Fatalf("a.Acquire = %v; want ErrExhausted", err)
		}
	})
}

func TestStoreAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocations differ under the race detector")
	}
	b := mustNew(t, budget.Config{Store: newFleet(), FlushAfter: budget.None})
	if n := testing.AllocsPerRun(1000, b.Deposit); n != 0 {
		t.Errorf("Deposit with a store allocates %v times; want 0", n)
	}
}

func TestStoreFlushAfterBound(t *testing.T) {
	_, err := budget.New(budget.Config{Window: time.Second, FlushAfter: 600 * time.Millisecond})
	if want := "budget: FlushAfter must be at most half the Window (500ms), got 600ms"; err == nil || err.Error() != want {
		t.Fatalf("New error = %v; want %q", err, want)
	}
	mustNew(t, budget.Config{Window: time.Second, FlushAfter: 500 * time.Millisecond})
}

// A caller whose context ends while the store works gets ctx.Err(), and
// that is not reported as the store's failure.
func TestStoreCallerLeaves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFleet()
		ctx, cancel := context.WithCancel(context.Background())
		f.hook = func() { cancel() }
		f.fail = context.Canceled
		b := mustNew(t, budget.Config{Store: f, FlushAfter: budget.None})
		if _, err := b.Acquire(ctx); err != context.Canceled {
			t.Fatalf("Acquire = %v; want context.Canceled", err)
		}
		if st := b.Stats(); st.StoreFailures != 0 {
			t.Fatalf("Stats = %+v; want no store failure", st)
		}
	})
}

// A panicking observer of StoreFailed, and one that calls back into the
// budget, break nothing.
func TestStoreObservers(t *testing.T) {
	defer quietDefaultLog(t)()
	synctest.Test(t, func(t *testing.T) {
		f := newFleet()
		f.fail = errors.New("down")
		var b *budget.Budget
		var seen []budget.Stats
		obs := middleware.ObserverFunc(func(ctx context.Context, e middleware.Event) {
			if e.Kind == middleware.StoreFailed {
				seen = append(seen, b.Stats())
				b.Deposit()
				panic("observer")
			}
		})
		b = mustNew(t, budget.Config{Store: f, Ratio: 1, MinPerSecond: budget.None, FlushAfter: budget.None, Observer: obs})
		b.Deposit()
		if _, err := b.Acquire(context.Background()); err != nil {
			t.Fatalf("Acquire with a failing store and a panicking observer: %v", err)
		}
		if len(seen) != 1 || seen[0].StoreFailures != 1 {
			t.Fatalf("observer saw %+v", seen)
		}
		// The observer's deposit counted: one more token.
		if _, err := b.Acquire(context.Background()); err != nil {
			t.Fatalf("second Acquire: %v", err)
		}
	})
}

func BenchmarkDepositShared(b *testing.B) {
	bg, err := budget.New(budget.Config{Store: newFleet(), FlushAfter: budget.None})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		bg.Deposit()
	}
}
