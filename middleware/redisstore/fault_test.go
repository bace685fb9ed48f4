package redisstore_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/redisstore"
	"github.com/brace-go/brace/middleware/redisstore/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// events records a breaker's state changes and store errors.
type events struct {
	mu        sync.Mutex
	changes   []string
	storeErrs []error
}

func (e *events) config(cfg breaker.Config) breaker.Config {
	cfg.Observer = middleware.ObserverFunc(func(_ context.Context, ev middleware.Event) {
		e.mu.Lock()
		defer e.mu.Unlock()
		switch ev.Kind {
		case middleware.StateChanged:
			e.changes = append(e.changes, ev.From+"->"+ev.To)
		case middleware.StoreFailed:
			e.storeErrs = append(e.storeErrs, ev.Err)
		}
	})
	return cfg
}

func (e *events) get() ([]string, []error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.changes...), append([]error(nil), e.storeErrs...)
}

// eventually polls cond every 5ms until it holds, failing the test if it
// does not within limit, and returns how long it took.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		<-tick.C
	}
	return time.Since(start)
}

// TestFallbackWhenDown stops the server: the breaker reports the store
// error once per StoreSync, decides locally, and still trips.
func TestFallbackWhenDown(t *testing.T) {
	srv := redistest.Start(t)
	var ev events
	b := mustBreaker(t, ev.config(breaker.Config{Threshold: 3, OpenTimeout: time.Hour, StoreSync: time.Hour,
		Store: mustStore(t, srv.Client(t), name(t))}))
	call(b, errBoom) // shared: one failure in Redis
	srv.Stop()
	call(b, errBoom)
	call(b, errBoom)
	if err := call(b, nil); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("store down after three failures: %v, want the local breaker open", err)
	}
	changes, errs := ev.get()
	if len(errs) != 1 {
		t.Errorf("store errors reported: %v, want one (no retry before StoreSync)", errs)
	}
	if len(changes) != 1 || changes[0] != "closed->open" {
		t.Errorf("state changes %v, want [closed->open]", changes)
	}
}

// TestResumeAfterRestart stops the server until the breaker has opened
// locally, restarts it (empty: persistence is off) and checks that the
// breaker goes back to the shared state by itself.
func TestResumeAfterRestart(t *testing.T) {
	srv := redistest.Start(t)
	var ev events
	s := mustStore(t, srv.Client(t), name(t))
	b := mustBreaker(t, ev.config(breaker.Config{Threshold: 2, OpenTimeout: time.Millisecond, StoreSync: time.Millisecond, Store: s}))
	srv.Stop()
	call(b, errBoom)
	call(b, errBoom)
	if changes, errs := ev.get(); len(changes) != 1 || changes[0] != "closed->open" || len(errs) == 0 {
		t.Fatalf("store down: changes %v, store errors %v; want the local breaker open and errors reported", changes, errs)
	}
	srv.Restart(t) // takes longer than OpenTimeout and StoreSync
	waitNotOpen(t, b)
	// Calls go back to the store (after at most DownFor and one probe, if
	// the client was marked down), adopt its fresh state and record their
	// failures there.
	d := eventually(t, redisstore.DownFor+time.Second, "a failure recorded in Redis after the restart", func() bool {
		call(b, errBoom)
		snap, err := s.Update(context.Background(), breaker.Op{Kind: breaker.OpSync})
		return err == nil && (snap.Counts.ConsecutiveFailures > 0 || snap.Gen > 1)
	})
	t.Logf("back on the shared state %v after the restart", d)
}

// waitNotOpen waits, without sleeping, until b's local open time (1ms) has
// passed: it has, almost always, by the time a restart has finished.
func waitNotOpen(t *testing.T, b *breaker.Breaker) {
	deadline := time.Now().Add(10 * time.Second)
	for b.State() == breaker.Open {
		if time.Now().After(deadline) {
			t.Fatal("breaker still open after 10s")
		}
		runtime.Gosched()
	}
}

// TestResumeWhileClosed: the store fails once while the breaker is closed
// and below its threshold; after StoreSync the breaker must use the shared
// state again.
func TestResumeWhileClosed(t *testing.T) {
	srv := redistest.Start(t)
	var ev events
	s := mustStore(t, srv.Client(t), name(t))
	b := mustBreaker(t, ev.config(breaker.Config{Threshold: 100, StoreSync: time.Millisecond, Store: s}))
	call(b, errBoom)
	srv.Stop()
	call(b, errBoom) // local
	srv.Restart(t)   // takes longer than StoreSync
	for range 3 {
		call(b, errBoom)
	}
	if got := read(t, s); got.Counts.ConsecutiveFailures == 0 {
		_, errs := ev.get()
		t.Errorf("no failure reached Redis after it came back (store errors: %v): the breaker stays on its local state", errs)
	}
}

// TestHungServer freezes the server (SIGSTOP: connections stay open, nothing
// answers). Every operation ends at the store's Timeout with
// context.DeadlineExceeded — not at the client's ReadTimeout (set to a
// minute here) — and the breaker falls back.
func TestHungServer(t *testing.T) {
	srv := redistest.Start(t)
	opts := srv.Options()
	opts.ReadTimeout, opts.WriteTimeout = time.Minute, time.Minute
	c := redisNewClient(t, opts)
	s, err := redisstore.NewBreakerStore(redisstore.BreakerStoreConfig{Client: c, Name: name(t), Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var ev events
	b := mustBreaker(t, ev.config(breaker.Config{Threshold: 2, OpenTimeout: time.Hour, StoreSync: time.Hour, Store: s}))
	call(b, nil) // connect
	srv.Freeze(t)
	defer srv.Thaw(t)
	start := time.Now()
	_, err = s.Update(context.Background(), breaker.Op{Kind: breaker.OpResult, Gen: 1, Failures: 1})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Update on a hung server: %v, want context.DeadlineExceeded", err)
	}
	t.Logf("Update on a hung server returned after %v: %v", time.Since(start), err)
	call(b, errBoom)
	call(b, errBoom)
	if err := call(b, nil); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("server hung: %v, want the local breaker open", err)
	}
	_, errs := ev.get()
	if len(errs) != 1 || !errors.Is(errs[0], context.DeadlineExceeded) {
		t.Errorf("store errors %v, want one context.DeadlineExceeded", errs)
	}
}

func redisNewClient(t *testing.T, o *redis.Options) *redis.Client {
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	return c
}
