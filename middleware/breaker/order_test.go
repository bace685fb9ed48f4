package breaker_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/brace-go/brace/middleware/breaker"
)

// holdStore applies every Update at once, but holds the reply of the one
// Update it is armed for until released: the store applied it, and its
// answer is still on the way, as over a network.
type holdStore struct {
	breaker.Store
	armed   atomic.Bool
	applied chan breaker.Snapshot // the held Update was applied
	release chan struct{}         // let its reply go
}

func newHoldStore(s breaker.Store) *holdStore {
	return &holdStore{Store: s, applied: make(chan breaker.Snapshot, 1), release: make(chan struct{})}
}

func (s *holdStore) Update(ctx context.Context, op breaker.Op) (breaker.Snapshot, error) {
	snap, err := s.Store.Update(ctx, op)
	if s.armed.CompareAndSwap(true, false) {
		s.applied <- snap
		<-s.release
	}
	return snap, err
}

// TestStaleSnapshotIsNotAdopted reproduces two failures recorded
// concurrently whose replies come back in the opposite order from the one
// the store applied them in: the store counts the fourth failure (closed,
// generation 1), then the fifth (open, generation 2), and the breaker
// receives "open" first. The late "closed" reply must not close the
// breaker's view again.
func TestStaleSnapshotIsNotAdopted(t *testing.T) {
	store := newHoldStore(breaker.NewMemoryStore())
	var rec recorder
	b := mustNew(t, breaker.Config{Threshold: 5, OpenTimeout: time.Hour, StoreSync: time.Hour, Store: store, Observer: &rec})
	for range 3 {
		call(b, errBoom)
	}

	store.armed.Store(true)
	done := make(chan struct{})
	go func() {
		defer close(done)
		call(b, errBoom) // the fourth failure; its reply is held
	}()
	held := <-store.applied
	if held.State != breaker.Closed || held.Gen != 1 || held.Counts.ConsecutiveFailures != 4 {
		t.Fatalf("held snapshot %+v, want closed, generation 1, 4 consecutive failures", held)
	}
	call(b, errBoom) // the fifth: applied after the fourth, answered first
	if got := b.State(); got != breaker.Open {
		t.Fatalf("after the fifth failure: %v, want open", got)
	}
	close(store.release)
	<-done

	if got := b.State(); got != breaker.Open {
		t.Errorf("after the fourth failure's late reply: %v, want open", got)
	}
	if _, err := b.Acquire(context.Background()); !errors.Is(err, breaker.ErrOpen) {
		t.Errorf("Acquire after the late reply: %v, want ErrOpen", err)
	}
	// The change counts the failure that made it: 5, not 4 (issue 15
	// item 6: the open event's counts were one short with a store).
	want := []change{{From: "closed", To: "open", Failures: 5, Err: errBoom}}
	if diff := cmp.Diff(want, rec.changes(), equateErrors); diff != "" {
		t.Errorf("state changes (-want +got):\n%s", diff)
	}
}

// TestStaleAcquireRejectionAfterNewerClose: an acquire rejected by the
// store while half-open answers after a probe's success closed the view.
// The rejection still fails the call with an *OpenError (never a nil one)
// and the view stays closed.
func TestStaleAcquireRejectionAfterNewerClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newHoldStore(breaker.NewMemoryStore())
		b := mustNew(t, breaker.Config{Threshold: 1, OpenTimeout: time.Second, StoreSync: time.Hour, Store: store})
		call(b, errBoom)
		time.Sleep(time.Second)
		ctx := context.Background()
		probe, err := b.Acquire(ctx) // takes the only probe slot
		if err != nil {
			t.Fatal(err)
		}
		store.armed.Store(true)
		var rejected error
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, rejected = b.Acquire(ctx) // rejected: the slot is taken
		}()
		if held := <-store.applied; held.Admitted || held.State != breaker.HalfOpen {
			t.Fatalf("held snapshot %+v, want a half-open rejection", held)
		}
		probe.Done(nil) // closes the breaker
		close(store.release)
		<-done
		if oe := asOpen(rejected); oe == nil || oe.State != breaker.HalfOpen {
			t.Fatalf("late rejection: %#v, want a non-nil *OpenError for half-open", rejected)
		}
		if got := b.State(); got != breaker.Closed {
			t.Errorf("after the late rejection: %v, want closed", got)
		}
	})
}

// swapStore forwards to a store that a test can replace, as when a store
// loses its state together with its ordering.
type swapStore struct {
	mu sync.Mutex
	s  breaker.Store
}

func (s *swapStore) Update(ctx context.Context, op breaker.Op) (breaker.Snapshot, error) {
	s.mu.Lock()
	st := s.s
	s.mu.Unlock()
	return st.Update(ctx, op)
}

func (s *swapStore) Bind(p breaker.Policy) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.s.Bind(p)
}

func (s *swapStore) swap(st breaker.Store) {
	s.mu.Lock()
	s.s = st
	s.mu.Unlock()
}

// TestStoreWhoseSeqGoesBack: a store that loses its state and restarts its
// Seq below the last one adopted (which the contract forbids) must not
// leave the breaker on its old view: an operation sent after the last
// adoption is adopted whatever its Seq.
func TestStoreWhoseSeqGoesBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &swapStore{s: breaker.NewMemoryStore()}
		b := mustNew(t, breaker.Config{Threshold: 3, OpenTimeout: time.Hour, StoreSync: time.Second, Store: store})
		for range 3 {
			call(b, errBoom)
		}
		if got := b.State(); got != breaker.Open {
			t.Fatalf("after 3 failures: %v, want open", got)
		}
		fresh := breaker.NewMemoryStore()
		if err := fresh.Bind(policyOf(t)); err != nil {
			t.Fatal(err)
		}
		store.swap(fresh)       // Seq starts again at 1
		time.Sleep(time.Second) // the view is stale; the next call asks the store
		if err := call(b, nil); err != nil {
			t.Fatalf("open view, store lost its state: %v, want the call admitted by the store", err)
		}
		if got := b.State(); got != breaker.Closed {
			t.Errorf("after the fresh store's reply: %v, want closed", got)
		}
		call(b, errBoom)
		if got := counts(b).ConsecutiveFailures; got != 1 {
			t.Errorf("consecutive failures %d, want 1 (shared operation resumed)", got)
		}
	})
}

// shuffleStore delays each reply by a random number of yields after the
// store applied it, so that concurrent replies come back in any order.
type shuffleStore struct {
	breaker.Store
	seed atomic.Uint64
}

func (s *shuffleStore) Update(ctx context.Context, op breaker.Op) (breaker.Snapshot, error) {
	snap, err := s.Store.Update(ctx, op)
	r := rand.New(rand.NewPCG(s.seed.Add(1), 7))
	for range r.IntN(4) {
		runtime.Gosched()
	}
	return snap, err
}

// TestReorderedRepliesUnderLoad: thousands of concurrent failures through
// one breaker whose store replies in random order. However the replies
// arrive, the breaker opens once, never flaps back, and ends with the
// store's state.
func TestReorderedRepliesUnderLoad(t *testing.T) {
	const threshold = goroutines / 2
	mem := breaker.NewMemoryStore()
	var rec recorder
	b := mustNew(t, breaker.Config{Threshold: threshold, OpenTimeout: time.Hour, StoreSync: time.Hour,
		Store: &shuffleStore{Store: mem}, Observer: &rec})
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range goroutines {
		wg.Go(func() {
			<-start
			call(b, errBoom)
		})
	}
	close(start)
	wg.Wait()
	if got := b.State(); got != breaker.Open {
		t.Errorf("after %d concurrent failures: %v, want open", goroutines, got)
	}
	want := []change{{From: "closed", To: "open", Failures: threshold, Err: errBoom}}
	if diff := cmp.Diff(want, rec.changes(), equateErrors); diff != "" {
		t.Errorf("state changes (-want +got):\n%s", diff)
	}
}

// policyStore records the policy it was bound to.
type policyStore struct {
	breaker.Store
	mu     sync.Mutex
	policy breaker.Policy
}

func (s *policyStore) Bind(p breaker.Policy) error {
	s.mu.Lock()
	s.policy = p
	s.mu.Unlock()
	return s.Store.Bind(p)
}

// policyOf returns the policy TestStoreWhoseSeqGoesBack binds to its store.
func policyOf(t *testing.T) breaker.Policy {
	t.Helper()
	ps := &policyStore{Store: breaker.NewMemoryStore()}
	mustNew(t, breaker.Config{Threshold: 3, OpenTimeout: time.Hour, StoreSync: time.Second, Store: ps})
	return ps.policy
}
