package ratelimit

import (
	"context"
	"sync"
	"time"

	"github.com/brace-go/brace/middleware"
)

// Keyed returns a middleware that admits each call through the bucket of
// key(in): every key (a tenant, a user, a client address) gets its own
// token buckets, one per limit of l (Rate and Burst, or each of Limits),
// with l's MaxWait. Each call costs 1. These buckets are apart from the
// shared ones of [Middleware] and [Limiter.Acquire].
//
// The buckets live in a table per key type K on l: every Keyed adapter on
// l with the same K shares it (so stages with different inputs that map to
// the same tenant share that tenant's bucket). A table holds at most
// Config.MaxKeys keys: a new key beyond that forgets the least recently
// used one, which starts again with a full bucket if it comes back. A key
// unused for Config.IdleTimeout whose bucket has refilled is
// indistinguishable from a new key, so it is forgotten, lazily, when a
// later call finds it at the cold end of the list. Nothing runs in the
// background.
//
// A call whose key is not equal to itself (a NaN) gets [ErrNaNKey]; the
// stage is not run and nothing is stored. A panic in key propagates to the
// caller; nothing has been taken by then. A nil l or key is a programmer
// error: Keyed panics.
func Keyed[In, Out any, K comparable](l *Limiter, key func(In) K) middleware.Middleware[In, Out] {
	if l == nil {
		panic("ratelimit: nil *Limiter (was New's error ignored?)")
	}
	if key == nil {
		panic("ratelimit: nil key func")
	}
	t := tableFor[K](l)
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		if next == nil {
			panic("middleware: nil stage")
		}
		return func(ctx context.Context, in In) (Out, error) {
			var zero Out
			if err := ctx.Err(); err != nil {
				return zero, err
			}
			k := key(in)
			if k != k {
				return zero, l.refuseKey(ctx)
			}
			if err := t.admit(ctx, k); err != nil {
				return zero, err
			}
			return next(ctx, in)
		}
	}
}

type tableKey[K comparable] struct{}

// tableFor returns l's table for key type K, creating it on first use.
func tableFor[K comparable](l *Limiter) *table[K] {
	l.tablesMu.Lock()
	defer l.tablesMu.Unlock()
	if l.tables == nil {
		l.tables = make(map[any]any)
	}
	var id any = tableKey[K]{} // one distinct type per K
	if t, ok := l.tables[id]; ok {
		return t.(*table[K])
	}
	t := &table[K]{l: l, keys: make(map[K]*entry[K])}
	t.lru.next, t.lru.prev = &t.lru, &t.lru
	l.tables[id] = t
	return t
}

// table is a set of token buckets, one per key, bounded in number. Tokens
// are taken under mu so that forgetting a full bucket can never race with
// a call draining it: a forgotten key comes back with exactly the tokens
// it had.
type table[K comparable] struct {
	l *Limiter

	mu   sync.Mutex
	keys map[K]*entry[K]
	lru  entry[K] // sentinel: lru.next is the most recently used
}

type entry[K comparable] struct {
	key        K
	one        [1]bucket // bs for a Limiter with one limit, without a second allocation
	bs         []bucket  // one bucket per limit
	used       time.Time // last admission attempt
	prev, next *entry[K]
}

// admit takes a call of cost 1 from k's buckets. k is equal to itself.
func (t *table[K]) admit(ctx context.Context, k K) error {
	l := t.l
	if l.s.inf {
		return nil
	}
	now := time.Now()
	t.mu.Lock()
	e := t.get(k, now)
	ok, worst, d := l.s.tryTake(e.bs, now, 1)
	if ok {
		t.mu.Unlock()
		return nil
	}
	if l.s.maxWait == 0 {
		t.mu.Unlock()
		return l.refuse(ctx, worst, d)
	}
	dl, hasDL := ctx.Deadline()
	if len(l.s.limits) == 1 {
		ls := &l.s.limits[0]
		c := ls.cost(1)
		wait, ok := e.bs[0].reserve(now, ls, c, l.s.maxWait, dl, hasDL)
		t.mu.Unlock()
		if !ok {
			return l.refuse(ctx, 0, wait)
		}
		if err := sleep(ctx, wait); err != nil {
			t.mu.Lock()
			// The entry may have been forgotten meanwhile (only when it
			// was evicted at MaxKeys: a bucket with a pending
			// reservation is not full, so it is never forgotten for
			// being idle); giving the token back to a forgotten entry is
			// harmless.
			e.bs[0].cancel(time.Now(), now.Add(wait), ls, c)
			t.mu.Unlock()
			return err
		}
		l.waitedFor(ctx, wait)
		return nil
	}
	t.mu.Unlock()
	start := now
	for { // several limits: see Limiter.AcquireN
		if waited := now.Sub(start); d > l.s.maxWait-waited || (hasDL && now.Add(d).After(dl)) {
			return l.refuse(ctx, worst, d)
		}
		if err := sleep(ctx, d); err != nil {
			return err
		}
		now = time.Now()
		t.mu.Lock()
		ok, worst, d = l.s.tryTake(t.get(k, now).bs, now, 1)
		t.mu.Unlock()
		if ok {
			l.waitedFor(ctx, now.Sub(start))
			return nil
		}
	}
}

// get returns k's entry, creating it if needed, and marks it most recently
// used. It forgets at most one idle entry per call, so the cost stays
// constant. t.mu is held.
func (t *table[K]) get(k K, now time.Time) *entry[K] {
	if e, ok := t.keys[k]; ok {
		e.used = now
		t.unlink(e)
		t.pushFront(e)
		t.forgetIdle(now, e)
		return e
	}
	t.forgetIdle(now, nil)
	for len(t.keys) >= t.l.maxKeys && t.lru.prev != &t.lru {
		t.remove(t.lru.prev)
	}
	e := &entry[K]{key: k, used: now}
	if n := len(t.l.s.limits); n == 1 {
		e.bs = e.one[:]
	} else {
		e.bs = make([]bucket, n)
	}
	t.keys[k] = e
	t.l.keys.Add(1)
	t.pushFront(e)
	return e
}

// forgetIdle drops the least recently used entry, unless it is keep, if
// it has been idle for IdleTimeout and its buckets have refilled: full
// buckets behave exactly like new ones.
func (t *table[K]) forgetIdle(now time.Time, keep *entry[K]) {
	old := t.lru.prev
	if old == &t.lru || old == keep || now.Sub(old.used) < t.l.idle {
		return
	}
	for i := range old.bs {
		if !old.bs[i].full(now, &t.l.s.limits[i]) {
			return
		}
	}
	t.remove(old)
}

func (t *table[K]) remove(e *entry[K]) {
	t.unlink(e)
	delete(t.keys, e.key)
	t.l.keys.Add(-1)
}

func (t *table[K]) unlink(e *entry[K]) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (t *table[K]) pushFront(e *entry[K]) {
	e.prev, e.next = &t.lru, t.lru.next
	t.lru.next.prev = e
	t.lru.next = e
}

// size returns the number of keys in the table's map (tests).
func (t *table[K]) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.keys)
}
