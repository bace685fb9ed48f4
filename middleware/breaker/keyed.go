package breaker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/brace-go/brace/middleware"
)

// Per-key breakers: a table on the breaker of one breaker per key, built
// with the breaker's Config, bounded by MaxKeys, its idle keys forgotten
// lazily after KeyIdle.

// Keyed returns a middleware that guards each call with the breaker of
// key(in): every distinct key (a host, a provider, a tenant) gets a
// breaker of its own, with b's Config, named b's Name + "/" + key in its
// errors and events, and reporting to b's Observer. These breakers are
// apart from b's own state (that of [Middleware] and [Breaker.Acquire]):
// one key opening affects no other key and not b. Every Keyed middleware
// on b shares b's table of keys, whatever its types.
//
// The table holds at most Config.MaxKeys keys. A new key beyond that
// first forgets the idle keys (below), then evicts the least recently
// used key that has no call in flight and is closed (forgetting its
// counts); only when there is none does it evict one that is open,
// half-open or forced (its rejections stop early), and when every key has
// a call in flight the call is refused with [ErrTooManyKeys] without
// running. A key unused for Config.KeyIdle that has no call in flight and
// is neither open (before its open time ends) nor forced is forgotten, and
// comes back as a new, closed breaker. Nothing runs in the background:
// keys are forgotten when a new key is inserted, or when their next call
// finds them idle. A key is never removed while a call through Keyed is on
// it; a [Permit] taken from a breaker that [Breaker.Key] returned finishes
// on that breaker, even if the key was evicted meanwhile, and does not
// touch the key's new breaker.
//
// With a Store, Config.Store must be a [KeyedStore]: the breaker of each
// key keeps its state in Store.Key(key) (see KeyedStore). Keyed panics
// otherwise, when it is called.
//
// Any string is a key, the empty one too. A panic in key propagates to
// the caller; nothing has been taken by then. A nil b or key panics.
func Keyed[In, Out any](b *Breaker, key func(In) string) middleware.Middleware[In, Out] {
	if b == nil {
		panic("breaker: nil *Breaker (was New's error ignored?)")
	}
	if key == nil {
		panic("breaker: nil key func")
	}
	t := b.keys
	if t.cfg.Store != nil && t.store == nil {
		panic(fmt.Sprintf("breaker: Keyed needs a Store that implements KeyedStore; %T does not (use a store with per-key state, or no Store)", t.cfg.Store))
	}
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		if next == nil {
			panic("breaker: nil stage")
		}
		return func(ctx context.Context, in In) (Out, error) {
			if err := ctx.Err(); err != nil {
				var zero Out
				return zero, err
			}
			k := key(in)
			e, i := t.get(ctx, k)
			if e == nil {
				var zero Out
				return zero, ErrTooManyKeys
			}
			defer e.inflight[i].n.Add(-1)
			return run(ctx, e.b, next, in)
		}
	}
}

// ErrTooManyKeys is returned by a [Keyed] middleware for a call whose key
// is not in the table when the table is full (Config.MaxKeys) and every
// key in it has a call in flight: there is no breaker to guard the call
// with, so it is not made. It reports Rejected() true and Retryable() true.
var ErrTooManyKeys error = tooManyKeys{}

type tooManyKeys struct{}

func (tooManyKeys) Error() string {
	return "breaker: too many keys: every key in the table has a call in flight (Config.MaxKeys)"
}

// Rejected reports true: the call was refused before it reached the
// downstream.
func (tooManyKeys) Rejected() bool { return true }

// Retryable reports true: the table has room again as soon as a call on
// another key ends.
func (tooManyKeys) Retryable() bool { return true }

// Key returns the breaker of key in b's table of [Keyed] breakers, and
// whether there is one: false for a key never used, evicted, or idle for
// Config.KeyIdle (a key Keyed would forget). Use it to observe a key
// (State, Stats) or to force it (ForceOpen, Reset). It has no side
// effects. A breaker it returns that is later evicted is no longer used by
// Keyed.
func (b *Breaker) Key(key string) (*Breaker, bool) {
	t := b.keys
	v, ok := t.m.Load(key)
	if !ok {
		return nil, false
	}
	e := v.(*keyEntry)
	if t.forgettable(e, b.now()) {
		return nil, false
	}
	return e.b, true
}

// keyTable is a breaker's table of per-key breakers. Calls find their key
// without a lock (a sync.Map); keys are added and removed under mu.
//
// A call holds its entry by adding one to inflight and then checking that
// the entry is not dead; a key is removed by setting dead and then
// checking that inflight is zero (and clearing dead again if it is not).
// inflight is striped like Stats().Rejected, so that calls on one hot key
// from several CPUs mostly write different cache lines.
// With sequentially consistent atomics at least one of the two sees the
// other: either the call finds the entry dead and goes to the slow path,
// or the remover finds the call and keeps the key. So a key is never
// removed while a call holds it.
type keyTable struct {
	parent *Breaker
	cfg    Config     // the parent's, for the keys' breakers
	store  KeyedStore // cfg.Store, if it is one
	max    int
	idle   int64 // KeyIdle in ns
	gran   int64 // how long a coarse clock reading is used; 0: always read

	// coarse is the time on the parent's clock plus 1 while a timer
	// vouches for it (within gran), 0 when the clock must be read.
	coarse atomic.Int64

	m sync.Map // string -> *keyEntry; written under mu

	mu    sync.Mutex
	n     int   // keys in m
	swept int64 // when idle keys were last forgotten
	// Counts, under mu.
	evicted, forgotten, full uint64
}

// keyEntry is one key's breaker. Its first cache line is read by every
// call (written by one per coarse clock tick, and on removal); the count
// of calls holding it is striped on lines of their own.
type keyEntry struct {
	b    *Breaker
	used atomic.Int64 // last call start, on the table's clock (coarse)
	dead atomic.Bool  // being removed, or removed
	_    [44]byte
	// inflight counts the calls holding the entry: a call adds one to the
	// stripe of its goroutine and takes it back from the same stripe.
	inflight [stripeCount]struct {
		n atomic.Int64
		_ [56]byte
	}
}

// busy reports whether a call holds e.
func (e *keyEntry) busy() bool {
	var n int64
	for i := range e.inflight {
		n += e.inflight[i].n.Load()
	}
	return n != 0
}

func newKeyTable(b *Breaker, cfg *Config) *keyTable {
	t := &keyTable{parent: b, cfg: *cfg, max: cfg.MaxKeys, idle: int64(cfg.KeyIdle)}
	if t.max == 0 {
		t.max = 1024
	}
	if t.idle == 0 {
		t.idle = int64(10 * time.Minute)
	}
	t.gran = min(t.idle/16, int64(time.Second))
	t.store, _ = cfg.Store.(KeyedStore)
	return t
}

// clock returns the time on the parent's clock, possibly up to gran (plus
// the lateness of a timer) behind: the clock is read once per gran while
// calls come, and a timer says when to read it again.
func (t *keyTable) clock() int64 {
	if c := t.coarse.Load(); c != 0 {
		return c - 1
	}
	now := t.parent.now()
	if t.gran > 0 && t.coarse.CompareAndSwap(0, now+1) {
		c := now + 1
		time.AfterFunc(time.Duration(t.gran), func() { t.coarse.CompareAndSwap(c, 0) })
	}
	return now
}

// get returns the entry of key, held for one call in stripe i of its
// inflight count (release it with e.inflight[i].n.Add(-1)), creating it if
// it is not in the table, or nil when the table is full of keys with calls
// in flight.
func (t *keyTable) get(ctx context.Context, key string) (e *keyEntry, i uintptr) {
	i = stripe()
	if v, ok := t.m.Load(key); ok {
		e := v.(*keyEntry)
		now := t.clock()
		if now-e.used.Load() < t.idle {
			e.inflight[i].n.Add(1)
			if !e.dead.Load() {
				if e.used.Load() < now {
					e.used.Store(now)
				}
				return e, i
			}
			e.inflight[i].n.Add(-1)
		}
	}
	return t.insert(ctx, key, i), i
}

// insert is get's slow path: a key not in the table, found idle, or being
// removed.
func (t *keyTable) insert(ctx context.Context, key string, i uintptr) *keyEntry {
	now := t.parent.now()
	t.mu.Lock()
	if v, ok := t.m.Load(key); ok {
		e := v.(*keyEntry)
		if !t.forgettable(e, now) || !t.remove(key, e) {
			e.inflight[i].n.Add(1) // no remover runs: mu is held
			e.used.Store(max(e.used.Load(), now))
			t.mu.Unlock()
			return e
		}
		t.forgotten++
	}
	if t.n >= t.max || now-t.swept >= t.idle {
		t.sweep(now)
	}
	if t.n >= t.max && !t.evict(now) {
		t.full++
		t.mu.Unlock()
		if obs := t.parent.obs; obs != nil {
			middleware.Emit(ctx, obs, middleware.Event{Kind: middleware.Rejected, Concern: "breaker",
				Name: t.parent.name + "/" + key, Reason: "keys", Err: ErrTooManyKeys})
		}
		return nil
	}
	e := &keyEntry{b: t.newBreaker(key)}
	e.used.Store(now)
	e.inflight[i].n.Store(1)
	t.m.Store(key, e)
	t.n++
	t.mu.Unlock()
	return e
}

// remove removes key's entry e unless a call holds it, and reports
// whether it did. t.mu is held.
func (t *keyTable) remove(key string, e *keyEntry) bool {
	e.dead.Store(true)
	if e.busy() {
		e.dead.Store(false)
		return false
	}
	t.m.CompareAndDelete(key, e)
	t.n--
	return true
}

// newBreaker builds the breaker of key. It runs no user code (the key's
// store is asked for at its first Update). t.mu is held.
func (t *keyTable) newBreaker(key string) *Breaker {
	cfg := t.cfg
	cfg.Name = t.parent.name + "/" + key
	if t.store != nil {
		cfg.Store = &keyStore{parent: t.store, key: key}
	}
	b, err := New(cfg)
	if err != nil {
		// The parent's Config was valid, and a keyStore's Bind does not fail.
		panic("breaker: building the breaker of a key: " + err.Error())
	}
	// The parent's clock, so that the table compares the key's open time
	// with its own.
	b.base = t.parent.base
	return b
}

// forgettable reports whether e is idle: no call in flight, no call
// started for KeyIdle, and neither open before its open time ends nor
// forced.
func (t *keyTable) forgettable(e *keyEntry, now int64) bool {
	if now-e.used.Load() < t.idle || e.busy() {
		return false
	}
	v := e.b.view.Load()
	switch v.state {
	case ForcedOpen, ForcedClosed:
		return false
	case Open:
		return now >= v.until
	}
	return true
}

// sweep forgets every idle key. t.mu is held.
func (t *keyTable) sweep(now int64) {
	t.m.Range(func(k, v any) bool {
		if e := v.(*keyEntry); t.forgettable(e, now) && t.remove(k.(string), e) {
			t.forgotten++
		}
		return true
	})
	t.swept = now
}

// evict removes the least recently used key with no call in flight,
// preferring a closed one; it reports false when every key has a call in
// flight. t.mu is held.
func (t *keyTable) evict(now int64) bool {
	for range 4 { // a call may take the victim between the scan and remove
		var victim string
		var ve *keyEntry
		var closed bool
		t.m.Range(func(k, v any) bool {
			e := v.(*keyEntry)
			if e.busy() {
				return true
			}
			c := e.b.view.Load().state == Closed
			if ve == nil || (c && !closed) || (c == closed && e.used.Load() < ve.used.Load()) {
				victim, ve, closed = k.(string), e, c
			}
			return true
		})
		if ve == nil {
			return false
		}
		if t.remove(victim, ve) {
			t.evicted++
			return true
		}
	}
	return false
}

// keyStats fills the table's part of s.
func (t *keyTable) keyStats(s *Stats) {
	t.mu.Lock()
	s.Keys = t.n
	s.KeysEvicted, s.KeysForgotten, s.KeysFull = t.evicted, t.forgotten, t.full
	t.mu.Unlock()
}

// keyStore is the Store of one key's breaker: the KeyedStore's Key(key),
// asked for at the first Update (outside any lock) and bound then with the
// policy New gave. Until Key and Bind succeed, every Update fails with
// their error, so the breaker uses its local state and asks again after
// StoreSync.
type keyStore struct {
	parent KeyedStore
	key    string
	policy Policy
	s      atomic.Pointer[storeBox]
}

type storeBox struct{ s Store }

// Bind records the policy; New calls it before any Update.
func (k *keyStore) Bind(p Policy) error {
	k.policy = p
	return nil
}

func (k *keyStore) Update(ctx context.Context, op Op) (Snapshot, error) {
	box := k.s.Load()
	if box == nil {
		s, err := k.parent.Key(k.key)
		if err == nil && s == nil {
			err = errors.New("breaker: KeyedStore.Key returned a nil Store")
		}
		if err == nil {
			err = s.Bind(k.policy)
		}
		if err != nil {
			return Snapshot{}, fmt.Errorf("breaker: the store of key %q: %w", k.key, err)
		}
		box = &storeBox{s: s}
		if !k.s.CompareAndSwap(nil, box) {
			box = k.s.Load()
		}
	}
	return box.s.Update(ctx, op)
}
