package breaker_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/breaker"
)

const goroutines = 2000

func TestExactlyNProbes(t *testing.T) {
	for _, shared := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			const probes = 7
			cfg := breaker.Config{Threshold: 1, OpenTimeout: time.Second, HalfOpenProbes: probes}
			if shared {
				cfg.Store = breaker.NewMemoryStore()
			}
			b := mustNew(t, cfg)
			call(b, errBoom)
			time.Sleep(time.Second)
			var admitted atomic.Int64
			var wg sync.WaitGroup
			start := make(chan struct{})
			for range goroutines {
				wg.Go(func() {
					<-start
					if _, err := b.Acquire(context.Background()); err == nil {
						admitted.Add(1)
					} else if !errors.Is(err, breaker.ErrOpen) {
						t.Errorf("rejection %v does not match ErrOpen", err)
					}
				})
			}
			close(start)
			wg.Wait()
			if got := admitted.Load(); got != probes {
				t.Errorf("shared=%v: %d probes admitted, want %d", shared, got, probes)
			}
		})
	}
}

func TestNoLostFailures(t *testing.T) {
	for _, cfg := range []breaker.Config{
		{Threshold: goroutines + 1},
		{FailureRate: 1, MinCalls: goroutines + 1},
		{Threshold: goroutines + 1, Store: breaker.NewMemoryStore()},
	} {
		b := mustNew(t, cfg)
		var wg sync.WaitGroup
		for range goroutines {
			wg.Go(func() { call(b, errBoom) })
		}
		wg.Wait()
		if got := counts(b).Failures; got != goroutines {
			t.Errorf("%+v: %d failures counted, want %d", cfg, got, goroutines)
		}
		call(b, errBoom)
		if got := b.State(); got != breaker.Open {
			t.Errorf("%+v: not open after threshold: %v", cfg, got)
		}
	}
}

// A probe failure always wins over racing probe successes.
func TestRacingSuccessNeverOverridesProbeFailure(t *testing.T) {
	for range 200 {
		synctest.Test(t, func(t *testing.T) {
			const probes = 8
			b := mustNew(t, breaker.Config{Threshold: 1, OpenTimeout: time.Second, HalfOpenProbes: probes})
			call(b, errBoom)
			time.Sleep(time.Second)
			ctx := context.Background()
			var tk [probes]breaker.Permit
			for i := range tk {
				tk[i], _ = b.Acquire(ctx)
			}
			var wg sync.WaitGroup
			bad := rand.IntN(probes)
			for i := range tk {
				wg.Go(func() {
					var err error
					if i == bad {
						err = errBoom
					}
					tk[i].Done(err)
				})
			}
			wg.Wait()
			if got := b.State(); got != breaker.Open {
				t.Fatalf("state %v after a probe failure, want open", got)
			}
		})
	}
}

// An observer that calls back into the breaker (State, Stats, Acquire,
// Reset) must not deadlock, and the changes it sees come in order: each
// From is the previous To.
func TestReentrantObserverUnderLoad(t *testing.T) {
	var (
		b     *breaker.Breaker
		mu    sync.Mutex
		seen  []change
		calls atomic.Int64
	)
	obs := middleware.ObserverFunc(func(ctx context.Context, e middleware.Event) {
		if e.Kind != middleware.StateChanged {
			return
		}
		_ = b.State()
		_ = b.Stats()
		if p, err := b.Acquire(ctx); err == nil {
			p.Done(nil)
		}
		if calls.Add(1)%5 == 0 {
			b.Reset(ctx) // re-enters and changes the state again
		}
		mu.Lock()
		seen = append(seen, change{From: e.From, To: e.To})
		mu.Unlock()
	})
	b = mustNew(t, breaker.Config{Threshold: 3, OpenTimeout: time.Microsecond, Observer: obs})
	var wg sync.WaitGroup
	for i := range goroutines {
		wg.Go(func() {
			for j := range 20 {
				if (i+j)%3 == 0 {
					call(b, nil)
				} else {
					call(b, errBoom)
				}
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 {
		t.Fatal("no state changes seen")
	}
	prev := "closed"
	for i, c := range seen {
		if c.From != prev {
			t.Fatalf("change %d is %v→%v, but the previous one ended in %v", i, c.From, c.To, prev)
		}
		prev = c.To
	}
	if got := b.Stats().Transitions; got != uint64(len(seen)) {
		t.Errorf("Stats().Transitions = %d, %d changes observed", got, len(seen))
	}
}

func TestSharedStore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := breaker.NewMemoryStore()
		var recA, recB recorder
		a := mustNew(t, breaker.Config{Name: "a", Threshold: 4, OpenTimeout: time.Minute, Store: store, StoreSync: time.Second, Observer: &recA})
		b := mustNew(t, breaker.Config{Name: "b", Threshold: 4, OpenTimeout: time.Minute, Store: store, StoreSync: time.Second, Observer: &recB})
		for i := range 4 {
			if i%2 == 0 {
				call(a, errBoom)
			} else {
				call(b, errBoom)
			}
		}
		// b recorded the fourth failure: its view is open at once.
		if err := call(b, nil); !errors.Is(err, breaker.ErrOpen) {
			t.Fatalf("b: %v, want ErrOpen", err)
		}
		// a learns it at its next sync, at most StoreSync later.
		time.Sleep(time.Second)
		if err := call(a, nil); !errors.Is(err, breaker.ErrOpen) {
			t.Fatalf("a: %v, want ErrOpen", err)
		}
		if oe := asOpen(call(a, nil)); oe == nil || oe.RetryAfter() != 59*time.Second {
			t.Fatalf("a: RetryAfter from the store's clock: %v", oe)
		}
		// Probe slots are global: one probe between the two breakers.
		time.Sleep(time.Minute)
		ctx := context.Background()
		ta, errA := a.Acquire(ctx)
		_, errB := b.Acquire(ctx)
		if errA != nil || !errors.Is(errB, breaker.ErrOpen) {
			t.Fatalf("probes: a %v, b %v; want a admitted, b rejected", errA, errB)
		}
		ta.Done(nil)
		time.Sleep(time.Second)
		if got := b.State(); got != breaker.Closed {
			// b's view is stale until its next call
			call(b, nil)
		}
		if got := b.State(); got != breaker.Closed {
			t.Fatalf("b after a's good probe: %v", got)
		}
		// A new breaker joins and does not reset the shared state.
		call(a, errBoom)
		c := mustNew(t, breaker.Config{Threshold: 4, OpenTimeout: time.Minute, Store: store})
		call(c, errBoom)
		if got := counts(c).ConsecutiveFailures; got != 2 {
			t.Fatalf("joining breaker sees %d consecutive failures, want 2", got)
		}
		// a learned of the opening from the store ("adopted"); b made it,
		// with the fourth consecutive failure.
		wantA := []change{{From: "closed", To: "open", Failures: 4, Reason: "adopted"}, {From: "open", To: "half-open"}, {From: "half-open", To: "closed"}}
		if diff := cmp.Diff(wantA, recA.changes(), equateErrors); diff != "" {
			t.Errorf("a's state changes (-want +got):\n%s", diff)
		}
		wantB := []change{{From: "closed", To: "open", Failures: 4, Err: errBoom}, {From: "open", To: "half-open"}, {From: "half-open", To: "closed", Reason: "adopted"}}
		if diff := cmp.Diff(wantB, recB.changes(), equateErrors); diff != "" {
			t.Errorf("b's state changes (-want +got):\n%s", diff)
		}
	})
}

// flakyStore fails while down is set.
type flakyStore struct {
	breaker.Store
	down atomic.Bool
}

var errStoreDown = errors.New("store down")

func (s *flakyStore) Update(ctx context.Context, op breaker.Op) (breaker.Snapshot, error) {
	if s.down.Load() {
		return breaker.Snapshot{}, errStoreDown
	}
	return s.Store.Update(ctx, op)
}

func TestStoreFallback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &flakyStore{Store: breaker.NewMemoryStore()}
		var rec recorder
		b := mustNew(t, breaker.Config{Threshold: 2, OpenTimeout: time.Minute, Store: store, StoreSync: time.Second, Observer: &rec})
		call(b, nil)
		store.down.Store(true)
		// Protection stays on: local failures open the breaker.
		call(b, errBoom)
		call(b, errBoom)
		if err := call(b, nil); !errors.Is(err, breaker.ErrOpen) {
			t.Fatalf("store down: %v, want the local breaker open", err)
		}
		failed := rec.events(middleware.StoreFailed)
		if len(failed) != 1 || failed[0].Err != errStoreDown {
			t.Fatalf("StoreFailed events %+v, want 1 with the store's error (no retry before StoreSync)", failed)
		}
		if got := b.Stats().StoreFailures; got != 1 {
			t.Fatalf("Stats().StoreFailures = %d, want 1", got)
		}
		// The store comes back: its state (closed) is adopted.
		store.down.Store(false)
		time.Sleep(time.Minute)
		if err := call(b, nil); err != nil {
			t.Fatalf("store back: %v", err)
		}
		time.Sleep(time.Second)
		call(b, errBoom)
		call(b, errBoom)
		if got := b.State(); got != breaker.Open {
			t.Fatalf("shared operation did not resume: %v", got)
		}
	})
}
