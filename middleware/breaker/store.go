package breaker

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Store holds the state of one or more breakers that share it, such as the
// breakers of several processes guarding one downstream. Without a Store a
// breaker keeps its state in memory, which is the fastest.
//
// Bind is called once by [New], before any Update, with the [Policy] of the
// breaker that will use the store. A store shared by several breakers
// returns an error if a later Bind brings a different policy (New then
// fails with it).
//
// Update applies one [Op] atomically, on the store's own clock, with the
// bound policy, and returns the state after it. It is called outside any
// lock, never across the guarded call: before a call only when the
// breaker's local view cannot decide (it is stale, or not closed), after a
// call only when the result changes something (a failure, a probe's
// result, a success that resets a failure count, or a batch of successes
// in rate mode). A breaker that gets an error from Update, or a snapshot
// with values out of range, falls back to its local state, reports a
// StoreFailed event, and does not call the store again for StoreSync.
//
// Updates from one breaker may run concurrently, and their replies may
// arrive in another order than the store applied them. [Snapshot.Seq] says
// which is newer: a breaker does not adopt a snapshot older than the last
// one it adopted.
//
// The full contract, which a networked store (Redis) must meet, is in
// docs/breaker.md under "Store contract". [MemoryStore] is the reference
// implementation.
type Store interface {
	// Bind is called once by New, before any Update, with the policy of the
	// breaker that will use the store. A store shared by several breakers
	// returns an error if a later Bind brings a different policy.
	Bind(p Policy) error
	Update(ctx context.Context, op Op) (Snapshot, error)
}

// KeyedStore is a [Store] that also holds the state of per-key breakers
// ([Keyed]): Key returns the store of one key, the same state for the same
// key in every process that uses the store. The breaker of that key calls
// Bind on it with the Keyed breaker's policy, then Update, as for any
// Store. Key is called outside any lock, before the first Update of a
// key's breaker (again after the key was forgotten and comes back). An
// error from Key, or from Bind on the store it returned, is a store error
// of that key's breaker: it is reported as a StoreFailed event, the
// breaker uses its local state, and Key is asked again StoreSync later.
// Key must accept any string, the empty one too.
type KeyedStore interface {
	Store
	Key(key string) (Store, error)
}

// MemoryStore is a [Store] in process memory, for breakers in one process
// that must share state, and the reference implementation of the Store
// contract. It is a [KeyedStore]: the store of each key is a MemoryStore
// of its own, kept as long as the MemoryStore. Its zero value is not
// usable; call [NewMemoryStore].
type MemoryStore struct {
	mu     sync.Mutex
	base   time.Time
	m      machine
	policy Policy
	bound  bool
	seq    uint64                  // Snapshot.Seq: one more on every Update
	keys   map[string]*MemoryStore // Key's stores
}

// Key implements [KeyedStore]: it returns the store of key, created empty
// on first use and the same one afterwards. It never fails.
func (s *MemoryStore) Key(key string) (Store, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[key]
	if !ok {
		if s.keys == nil {
			s.keys = make(map[string]*MemoryStore)
		}
		k = NewMemoryStore()
		s.keys[key] = k
	}
	return k, nil
}

// NewMemoryStore returns an empty store: the first breaker that uses it
// finds it closed at generation 1.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{base: time.Now()}
}

// Bind implements [Store]: the first policy bound is the store's; a later
// Bind with another policy is an error.
func (s *MemoryStore) Bind(p Policy) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.bound {
		s.m, s.policy, s.bound = newMachine(&p), p, true
		return nil
	}
	if s.policy != p {
		return fmt.Errorf("breaker: MemoryStore is bound to the policy %+v, got %+v", s.policy, p)
	}
	return nil
}

// Update implements [Store]. It returns an error only when no policy was
// bound.
func (s *MemoryStore) Update(_ context.Context, op Op) (Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.bound {
		return Snapshot{}, fmt.Errorf("breaker: MemoryStore.Update before Bind")
	}
	snap := s.m.step(&s.policy, &op, int64(time.Since(s.base)))
	s.seq++
	snap.Seq = s.seq
	return snap, nil
}
