package breaker

import (
	"context"
	"sync"
	"time"
)

// Store holds the state of one or more breakers that share it, such as the
// breakers of several processes guarding one downstream. Without a Store a
// breaker keeps its state in memory, which is the fastest.
//
// Update applies one [Op] atomically, on the store's own clock, and returns
// the state after it. It is called outside any lock, never across the
// guarded call: before a call only when the breaker's local view cannot
// decide (it is stale, or not closed), after a call only when the result
// changes something (a failure, a probe's result, a success that resets a
// failure count, or a batch of successes in rate mode). A breaker that gets
// an error from Update falls back to its local state for that operation,
// reports the error, and tries the store again on the next operation.
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
	Update(ctx context.Context, p *Policy, op Op) (Snapshot, error)
}

// MemoryStore is a [Store] in process memory, for breakers in one process
// that must share state, and the reference implementation of the Store
// contract. Its zero value is not usable; call [NewMemoryStore].
type MemoryStore struct {
	mu     sync.Mutex
	base   time.Time
	m      machine
	policy Policy
	init   bool
	seq    uint64 // Snapshot.Seq: one more on every Update
}

// NewMemoryStore returns an empty store: the first breaker that uses it
// finds it closed at generation 1.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{base: time.Now()}
}

// Update implements [Store]. It never returns an error.
func (s *MemoryStore) Update(_ context.Context, p *Policy, op Op) (Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.init {
		s.m, s.policy, s.init = newMachine(p), *p, true
	} else if s.policy != *p {
		// Breakers sharing a store should share a policy; if one does
		// not, keep the state and reshape only the window.
		if (p.Threshold == 0) != (s.policy.Threshold == 0) || p.Buckets != s.policy.Buckets || p.BucketWidth != s.policy.BucketWidth {
			s.m.win = newMachine(p).win
		}
		s.policy = *p
	}
	snap := s.m.step(p, &op, int64(time.Since(s.base)))
	s.seq++
	snap.Seq = s.seq
	return snap, nil
}
