package redisstore_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware/breaker"
)

// TestSeqOrdersSnapshots checks Snapshot.Seq on the server's clock: it
// grows with every change, stays put when nothing changes, and keeps
// growing when the key is deleted (as when it expires) and created again.
func TestSeqOrdersSnapshots(t *testing.T) {
	c, _ := client(t)
	s := bound(t, c, name(t), *consecutive(3, time.Minute))
	ctx := context.Background()
	update := func(op breaker.Op) breaker.Snapshot {
		t.Helper()
		snap, err := s.Update(ctx, op)
		if err != nil {
			t.Fatal(err)
		}
		return snap
	}
	fail := breaker.Op{Kind: breaker.OpResult, Gen: 1, Failures: 1}

	empty := update(breaker.Op{Kind: breaker.OpSync}) // no key yet
	first := update(fail)
	if first.Seq <= empty.Seq {
		t.Errorf("first change: Seq %d, want more than %d (the read before it)", first.Seq, empty.Seq)
	}
	if now := uint64(time.Now().UnixMicro()); first.Seq < now-uint64(time.Minute/time.Microsecond) || first.Seq > now+uint64(time.Minute/time.Microsecond) {
		t.Errorf("first change: Seq %d, want about the server's time in µs (%d)", first.Seq, now)
	}
	if again := update(breaker.Op{Kind: breaker.OpAcquire}); again.Seq != first.Seq {
		t.Errorf("an operation that changes nothing: Seq %d, want %d unchanged", again.Seq, first.Seq)
	}
	second := update(fail)
	if second.Seq <= first.Seq {
		t.Errorf("second change: Seq %d, want more than %d", second.Seq, first.Seq)
	}

	if err := s.Reset(ctx); err != nil { // as if the key expired
		t.Fatal(err)
	}
	fresh := update(breaker.Op{Kind: breaker.OpSync})
	if fresh.Gen != 1 || fresh.Counts.ConsecutiveFailures != 0 {
		t.Fatalf("after the key was deleted: %+v, want a fresh breaker", fresh)
	}
	if fresh.Seq <= second.Seq {
		t.Errorf("read after the key was deleted: Seq %d, want more than %d (the old key's)", fresh.Seq, second.Seq)
	}
	recreated := update(fail)
	if recreated.Seq <= fresh.Seq {
		t.Errorf("first change of the new key: Seq %d, want more than %d", recreated.Seq, fresh.Seq)
	}
}

// holdStore holds the reply of one Update it is armed for until released,
// after Redis applied it.
type holdStore struct {
	breaker.Store
	armed   atomic.Bool
	applied chan breaker.Snapshot
	release chan struct{}
}

func (s *holdStore) Update(ctx context.Context, op breaker.Op) (breaker.Snapshot, error) {
	snap, err := s.Store.Update(ctx, op)
	if s.armed.CompareAndSwap(true, false) {
		s.applied <- snap
		<-s.release
	}
	return snap, err
}

// TestRepliesOutOfOrder: Redis counts a breaker's fourth failure, then its
// fifth (which opens it), and the breaker gets the fifth reply first. The
// fourth's late reply (closed, four failures) must not close the breaker.
func TestRepliesOutOfOrder(t *testing.T) {
	c, _ := client(t)
	store := &holdStore{Store: mustStore(t, c, name(t)), applied: make(chan breaker.Snapshot, 1), release: make(chan struct{})}
	b := mustBreaker(t, breaker.Config{Threshold: 5, OpenTimeout: time.Hour, StoreSync: time.Hour, Store: store})
	for range 3 {
		call(b, errBoom)
	}
	store.armed.Store(true)
	done := make(chan struct{})
	go func() {
		defer close(done)
		call(b, errBoom)
	}()
	if held := <-store.applied; held.State != breaker.Closed || held.Counts.ConsecutiveFailures != 4 {
		t.Fatalf("held reply %+v, want closed with 4 consecutive failures", held)
	}
	call(b, errBoom)
	close(store.release)
	<-done
	if got := b.State(); got != breaker.Open {
		t.Errorf("after the late reply: %v, want open", got)
	}
	if err := call(b, nil); !errors.Is(err, breaker.ErrOpen) {
		t.Errorf("call after the late reply: %v, want ErrOpen", err)
	}
}
