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
	if !s.init || s.policy != *p {
		// The first use, or a breaker with another policy: (re)shape the
		// machine, keeping state and generation.
		st, gen, until := s.m.state, s.m.gen, s.m.until
		s.m = newMachine(p)
		if s.init {
			s.m.state, s.m.gen, s.m.until = st, gen, until
		}
		s.policy, s.init = *p, true
	}
	return s.m.step(p, &op, int64(time.Since(s.base))), nil
}
