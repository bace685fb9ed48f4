package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/breaker"
)

// TestProbeLease: a probe whose result never arrives holds its slot for
// ProbeTimeout, then the slot is given to a new probe, whose success
// closes the breaker (issue 15 item 1). With a store, the lost probe was
// taken by another breaker (a process that crashed).
func TestProbeLease(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("shared=%v", shared), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := breaker.Config{Threshold: 1, OpenTimeout: time.Second, ProbeTimeout: 5 * time.Second, StoreSync: time.Hour}
				var crashed *breaker.Breaker
				if shared {
					cfg.Store = breaker.NewMemoryStore()
					crashed = mustNew(t, cfg)
				}
				b := mustNew(t, cfg)
				if crashed == nil {
					crashed = b
				}
				ctx := context.Background()
				call(b, errBoom)
				time.Sleep(time.Second)
				if _, err := crashed.Acquire(ctx); err != nil { // the lost probe
					t.Fatalf("probe: %v", err)
				}
				time.Sleep(5*time.Second - time.Nanosecond)
				if _, err := b.Acquire(ctx); !errors.Is(err, breaker.ErrOpen) {
					t.Fatalf("before the lease ran out: %v, want ErrOpen", err)
				}
				time.Sleep(time.Nanosecond)
				p, err := b.Acquire(ctx)
				if err != nil {
					t.Fatalf("after the lease ran out: %v, want a new probe", err)
				}
				p.Done(nil)
				if got := b.State(); got != breaker.Closed {
					t.Fatalf("after the new probe's success: %v, want closed", got)
				}
			})
		})
	}
}

// TestProbeLeaseOneOfN: with three probes, two succeed and one is lost;
// after the lease the lost slot is given again and its success closes
// the breaker. A late result of an expired probe still counts.
func TestProbeLeaseOneOfN(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("shared=%v", shared), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := breaker.Config{Threshold: 1, OpenTimeout: time.Second, HalfOpenProbes: 3, ProbeTimeout: 5 * time.Second, StoreSync: time.Hour}
				if shared {
					cfg.Store = breaker.NewMemoryStore()
				}
				b := mustNew(t, cfg)
				ctx := context.Background()
				call(b, errBoom)
				time.Sleep(time.Second)
				var probes [3]breaker.Permit
				for i := range probes {
					var err error
					if probes[i], err = b.Acquire(ctx); err != nil {
						t.Fatalf("probe %d: %v", i, err)
					}
				}
				probes[0].Done(nil)
				probes[1].Done(nil)
				// probes[2] is lost.
				time.Sleep(5 * time.Second)
				p, err := b.Acquire(ctx)
				if err != nil {
					t.Fatalf("after the lease: %v, want the lost slot given again", err)
				}
				if _, err := b.Acquire(ctx); !errors.Is(err, breaker.ErrOpen) {
					t.Fatalf("a second slot was given: %v", err)
				}
				if c := counts(b); c.Probes != 3 || c.ProbeSuccesses != 2 {
					t.Fatalf("counts %+v, want 3 probes, 2 successes", c)
				}
				p.Done(nil)
				if got := b.State(); got != breaker.Closed {
					t.Fatalf("after the third success: %v, want closed", got)
				}

				// Late result: open again, lose a probe, give its slot again,
				// and let the lost one succeed late: it closes the breaker.
				b2 := mustNew(t, breaker.Config{Threshold: 1, OpenTimeout: time.Second, ProbeTimeout: time.Second})
				call(b2, errBoom)
				time.Sleep(time.Second)
				lost, _ := b2.Acquire(ctx)
				time.Sleep(time.Second)
				second, err := b2.Acquire(ctx)
				if err != nil {
					t.Fatalf("second probe: %v", err)
				}
				lost.Done(nil)
				if got := b2.State(); got != breaker.Closed {
					t.Fatalf("after the expired probe's late success: %v, want closed", got)
				}
				second.Done(errBoom) // of the half-open generation: ignored
				if got := b2.State(); got != breaker.Closed {
					t.Fatalf("a result from the half-open generation moved a closed breaker: %v", got)
				}
			})
		})
	}
}

// badStore answers with a snapshot that a test can spoil.
type badStore struct {
	breaker.Store
	spoil atomic.Pointer[func(*breaker.Snapshot)]
}

func (s *badStore) Update(ctx context.Context, op breaker.Op) (breaker.Snapshot, error) {
	snap, err := s.Store.Update(ctx, op)
	if f := s.spoil.Load(); f != nil {
		(*f)(&snap)
	}
	return snap, err
}

// TestInvalidSnapshot: a snapshot with values out of range is a store
// error: StoreFailed is reported and the breaker decides locally (issue
// 15 item 8).
func TestInvalidSnapshot(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(*breaker.Snapshot)
		why   string
	}{
		{"state", func(s *breaker.Snapshot) { s.State = 9 }, "state 9"},
		{"gen", func(s *breaker.Snapshot) { s.Gen = 0 }, "generation 0"},
		{"counts", func(s *breaker.Snapshot) { s.Counts.ConsecutiveFailures = -1 }, "negative counts"},
		{"probes", func(s *breaker.Snapshot) { s.Counts.Probes = -3 }, "negative counts"},
		{"retry-after", func(s *breaker.Snapshot) { s.RetryAfter = -time.Second }, "negative retry-after"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var rec recorder
				store := &badStore{Store: breaker.NewMemoryStore()}
				b := mustNew(t, breaker.Config{Threshold: 2, Store: store, StoreSync: time.Second, Observer: &rec})
				call(b, nil) // adopts a good snapshot
				store.spoil.Store(&tc.spoil)
				time.Sleep(time.Second)
				if err := call(b, errBoom); err != errBoom {
					t.Fatalf("call with a spoiled store: %v, want it admitted", err)
				}
				failed := rec.events(middleware.StoreFailed)
				if len(failed) != 1 || !strings.Contains(failed[0].Err.Error(), "breaker: the store returned an invalid snapshot: "+tc.why) {
					t.Fatalf("StoreFailed events %+v, want one naming %q", failed, tc.why)
				}
				// Decided locally: the local machine counts on.
				call(b, errBoom)
				if got := b.State(); got != breaker.Open {
					t.Fatalf("local fallback: %v, want open", got)
				}
				if got := b.Stats().StoreFailures; got != 1 {
					t.Errorf("StoreFailures = %d, want 1", got)
				}
			})
		})
	}
}

func TestBind(t *testing.T) {
	store := breaker.NewMemoryStore()
	if _, err := store.Update(context.Background(), breaker.Op{}); err == nil {
		t.Error("Update before Bind succeeded")
	}
	mustNew(t, breaker.Config{Threshold: 3, Store: store})
	mustNew(t, breaker.Config{Threshold: 3, Store: store}) // the same policy
	_, err := breaker.New(breaker.Config{Threshold: 4, Store: store})
	if err == nil || !strings.HasPrefix(err.Error(), "breaker: Store.Bind refused the policy: breaker: MemoryStore is bound to the policy") {
		t.Errorf("New with another policy: %v, want Bind's error", err)
	}
}

// TestForceWithFailingStore: an operator's change that the store did not
// apply is an error, and changes nothing here either.
func TestForceWithFailingStore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &flakyStore{Store: breaker.NewMemoryStore()}
		cfg := breaker.Config{Threshold: 1, Store: store, StoreSync: time.Second}
		a, b := mustNew(t, cfg), mustNew(t, cfg)
		ctx := context.Background()
		store.down.Store(true)
		for name, op := range map[string]func(context.Context) error{"ForceOpen": a.ForceOpen, "ForceClosed": a.ForceClosed, "Reset": a.Reset} {
			err := op(ctx)
			if !errors.Is(err, errStoreDown) || !strings.Contains(err.Error(), "the state was not changed") {
				t.Errorf("%s with the store down: %v, want an error wrapping the store's", name, err)
			}
		}
		if got := a.State(); got != breaker.Closed {
			t.Fatalf("after failed operations: %v, want closed", got)
		}
		if got := a.Stats().StoreFailures; got != 3 {
			t.Errorf("StoreFailures = %d, want 3", got)
		}
		store.down.Store(false)
		if err := a.ForceOpen(ctx); err != nil {
			t.Fatal(err)
		}
		if got := a.State(); got != breaker.ForcedOpen {
			t.Fatalf("a after ForceOpen: %v", got)
		}
		if err := call(b, nil); !errors.Is(err, breaker.ErrOpen) {
			t.Fatalf("b after a's ForceOpen: %v, want ErrOpen", err)
		}
	})
}

// countStore counts Updates and can make them wait.
type countStore struct {
	breaker.Store
	n    atomic.Int64
	wait atomic.Int64 // how long each Update takes
	hang atomic.Bool  // Update waits for its context
}

func (s *countStore) Update(ctx context.Context, op breaker.Op) (breaker.Snapshot, error) {
	s.n.Add(1)
	if s.hang.Load() {
		<-ctx.Done()
		return breaker.Snapshot{}, ctx.Err()
	}
	if d := s.wait.Load(); d > 0 {
		time.Sleep(time.Duration(d))
	}
	return s.Store.Update(ctx, op)
}

// TestStateFollowsStoreWhileIdle: two breakers share a store; a opens it
// while b gets no calls. b.State does no I/O itself, but a read that finds
// the view older than StoreSync starts one background refresh, so b
// reports open within StoreSync and one round trip (issue 15 item 5).
func TestStateFollowsStoreWhileIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := breaker.NewMemoryStore()
		store := &countStore{Store: mem}
		var recB recorder
		a := mustNew(t, breaker.Config{Threshold: 1, OpenTimeout: time.Hour, Store: mem, StoreSync: time.Second})
		b := mustNew(t, breaker.Config{Threshold: 1, OpenTimeout: time.Hour, Store: store, StoreSync: time.Second, Observer: &recB})
		call(b, nil) // b's view: closed, fresh
		call(a, errBoom)
		store.wait.Store(int64(100 * time.Millisecond))
		before := store.n.Load()
		if got := b.State(); got != breaker.Closed {
			t.Fatalf("fresh view: %v, want closed", got)
		}
		synctest.Wait()
		if got := store.n.Load() - before; got != 0 {
			t.Fatalf("State of a fresh view made %d store operations", got)
		}
		time.Sleep(time.Second) // the view is stale now
		for range 10 {
			b.State() // returns at once; starts one refresh
		}
		time.Sleep(100 * time.Millisecond) // one round trip
		synctest.Wait()
		if got := b.State(); got != breaker.Open {
			t.Fatalf("b.State one StoreSync and one round trip after a opened: %v, want open", got)
		}
		if got := store.n.Load() - before; got != 1 {
			t.Errorf("%d store operations for 11 reads of State, want 1", got)
		}
		want := []change{{From: "closed", To: "open", Failures: 1, Reason: "adopted"}}
		if diff := cmp.Diff(want, recB.changes(), equateErrors); diff != "" {
			t.Errorf("b's changes (-want +got):\n%s", diff)
		}

		// A store that hangs: the refresh gives up after StoreSync.
		store.hang.Store(true)
		time.Sleep(time.Second)
		b.State()
		time.Sleep(time.Second)
		synctest.Wait()
		failed := recB.events(middleware.StoreFailed)
		if len(failed) != 1 || !errors.Is(failed[0].Err, context.DeadlineExceeded) {
			t.Errorf("StoreFailed events %+v, want one with DeadlineExceeded", failed)
		}
		store.hang.Store(false)
	})
}

// TestOpenEventCountsWithStore: the open event counts the failure that
// opened the breaker: Threshold 5 → Failures 5 (issue 15 item 6).
func TestOpenEventCountsWithStore(t *testing.T) {
	var rec recorder
	b := mustNew(t, breaker.Config{Threshold: 5, Store: breaker.NewMemoryStore(), Observer: &rec})
	for range 5 {
		call(b, errBoom)
	}
	want := []change{{From: "closed", To: "open", Failures: 5, Err: errBoom}}
	if diff := cmp.Diff(want, rec.changes(), equateErrors); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
}

// TestEndedContextWithStore: a call whose context has ended asks nothing
// of the store.
func TestEndedContextWithStore(t *testing.T) {
	store := &countStore{Store: breaker.NewMemoryStore()}
	b := mustNew(t, breaker.Config{Store: store})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.Acquire(ctx); err != context.Canceled {
		t.Fatalf("Acquire: %v, want context.Canceled", err)
	}
	if n := store.n.Load(); n != 0 {
		t.Errorf("%d store operations, want 0", n)
	}
}
