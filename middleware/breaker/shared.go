package breaker

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/brace-go/brace/internal/xtime"
	"github.com/brace-go/brace/middleware"
)

// The shared path: a breaker with a Store. The store holds the state; the
// breaker's machine (b.m) is its view of it, adopted from the snapshots
// the store returns (in Seq order), and its fallback while the store
// fails. The rules that move the state are the machine's step, run by the
// store; this file decides only when to call the store, what to adopt,
// and when to fall back.

type shared struct {
	b     *Breaker
	store Store
	sync  int64 // StoreSync in ns

	synced     atomic.Int64 // when a snapshot was last adopted, on the breaker's clock
	retryAt    atomic.Int64 // no store operation before this time (after an error)
	pending    atomic.Int64 // rate mode: successes not yet sent to the store
	adopts     atomic.Uint64
	failures   atomic.Uint64 // store errors, for Stats
	refreshing atomic.Bool   // a background refresh started by State is running

	// Under b.mu.
	seq     uint64 // Seq of the last snapshot adopted
	last    Counts // its counts
	lastGen uint64 // and generation
}

func newShared(b *Breaker, s Store, sync time.Duration) *shared {
	if sync == 0 {
		sync = time.Second
	}
	sh := &shared{b: b, store: s, sync: int64(sync)}
	sh.synced.Store(-sh.sync) // stale: the first call reads the store
	return sh
}

// acquire admits or rejects a call from the local view while it is fresh
// (younger than StoreSync, or, after a store error, until the store may be
// tried again), and asks the store otherwise.
func (sh *shared) acquire(ctx context.Context, p *Permit) error {
	b := sh.b
	now := b.now()
	v := b.view.Load()
	// A view decided locally after a store error stays fresh only until
	// it is time to try the store again, so shared operation resumes when
	// the store comes back, in any state.
	fresh := now-sh.synced.Load() < sh.sync || (v.local && now < sh.retryAt.Load())
	switch {
	case fresh && (v.state == Closed || v.state == ForcedClosed):
		*p = Permit{b: b, ctx: ctx, gen: v.gen, start: now, local: v.local}
		return nil
	case fresh && v.state == ForcedOpen:
		return b.reject(ctx, v.err, 0)
	case fresh && v.state == Open && now < v.until:
		return b.reject(ctx, v.err, time.Duration(v.until-now))
	}
	s, local := sh.update(ctx, Op{Kind: OpAcquire}, nil)
	if !s.Admitted {
		return b.rejectSnapshot(ctx, &s)
	}
	*p = Permit{b: b, ctx: ctx, gen: s.Gen, start: b.now(), probe: s.Probe, local: local}
	return nil
}

// record sends a result to the store when it can change something: a
// failure, a probe's result, a success that resets a failure streak. Rate
// mode successes are batched into the next result sent.
func (sh *shared) record(q *Permit, o Outcome, openFor time.Duration, err error) {
	b := sh.b
	slow := false
	if b.rate && b.slow > 0 {
		slow = b.now()-q.start >= b.slow
	}
	if o == Success && !q.probe && !slow {
		if !b.rate {
			if b.fails.Load() == 0 {
				return
			}
		} else if !q.local {
			if v := b.view.Load(); v.gen == q.gen && v.state == Closed {
				sh.pending.Add(1)
				return
			}
		}
	}
	op := resultOp(q, o, openFor, slow)
	if q.local {
		// Admitted by the fallback: recorded where it was admitted.
		b.stepLocal(q.ctx, op, err)
		return
	}
	// A result is worth recording after its caller has gone.
	sh.update(context.WithoutCancel(q.ctx), op, err)
}

// update applies op to the store and adopts the snapshot, or, when the
// store fails or is being skipped after an error, applies it to the local
// machine. It reports whether the state was decided locally.
func (sh *shared) update(ctx context.Context, op Op, cause error) (Snapshot, bool) {
	b := sh.b
	if b.now() >= sh.retryAt.Load() {
		v := b.view.Load()
		if b.rate && op.Kind == OpResult && op.Gen == v.gen && !v.local {
			// Batched successes go with a result of their generation,
			// never with an acquire, which records nothing.
			if n := sh.pending.Swap(0); n > 0 {
				op.Successes += int(n)
			}
		}
		seen := sh.adopts.Load()
		s, err := sh.store.Update(ctx, op)
		if err == nil {
			err = validate(&s)
		}
		if err == nil {
			sh.adopt(ctx, &s, seen, &op, cause)
			return s, false
		}
		sh.fail(ctx, err)
		if op.Kind == OpResult && !op.Probe {
			// Best effort: count the result in the local generation. The
			// view's generation is the machine's, published under b.mu.
			op.Gen = b.view.Load().gen
		}
	}
	return b.stepLocal(ctx, op, cause), true
}

// fail records a store error: the breaker uses its local state until
// StoreSync has passed.
func (sh *shared) fail(ctx context.Context, err error) {
	b := sh.b
	sh.retryAt.Store(xtime.Add(b.now(), sh.sync))
	sh.failures.Add(1)
	if b.obs != nil {
		middleware.Emit(ctx, b.obs, middleware.Event{Kind: middleware.StoreFailed, Concern: "breaker", Name: b.name, Err: err})
	}
}

// force applies an operator's change to the store, and to this breaker
// only when the store applied it.
func (sh *shared) force(ctx context.Context, st State) error {
	op := Op{Kind: OpForce, State: st}
	seen := sh.adopts.Load()
	s, err := sh.store.Update(ctx, op)
	if err == nil {
		err = validate(&s)
	}
	if err != nil {
		sh.fail(ctx, err)
		return fmt.Errorf("breaker: the store failed; the state was not changed to %v: %w", st, err)
	}
	sh.adopt(ctx, &s, seen, &op, nil)
	return nil
}

// refreshIfStale starts one background refresh of the view when it is
// older than StoreSync (and the store is not being skipped after an
// error). The goroutine does one OpSync, bounded by StoreSync, and ends.
func (sh *shared) refreshIfStale(now int64) {
	if now-sh.synced.Load() < sh.sync || now < sh.retryAt.Load() {
		return
	}
	if !sh.refreshing.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer sh.refreshing.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(sh.sync))
		defer cancel()
		sh.update(ctx, Op{Kind: OpSync}, nil)
	}()
}

// validate checks a snapshot read from a store: values out of range are a
// store error, and the breaker uses its local state instead.
func validate(s *Snapshot) error {
	c := &s.Counts
	var why string
	switch {
	case s.State > ForcedClosed:
		why = fmt.Sprintf("state %d", s.State)
	case s.Gen == 0:
		why = "generation 0"
	case c.Successes < 0 || c.Failures < 0 || c.Slow < 0 || c.ConsecutiveFailures < 0 || c.Probes < 0 || c.ProbeSuccesses < 0:
		why = fmt.Sprintf("negative counts %+v", *c)
	case s.RetryAfter < 0:
		why = fmt.Sprintf("negative retry-after %v", s.RetryAfter)
	case s.Probe && !s.Admitted:
		why = "a probe that was not admitted"
	default:
		return nil
	}
	return fmt.Errorf("breaker: the store returned an invalid snapshot: %s", why)
}

// adopt makes a store snapshot the local view, unless it is older than the
// last one adopted. Replies to concurrent operations can arrive in another
// order than the store applied them, and adopting an older snapshot over a
// newer one would, for example, close a breaker that has just opened. seen
// is sh.adopts when op was sent; cause is the error of the result op
// records, if any.
//
// A snapshot is older only if its Seq is smaller and another snapshot was
// adopted while its operation was on its way. An operation sent after the
// last adoption was applied after it, so its snapshot is adopted whatever
// its Seq: a store whose Seq went back (one that breaks the contract, or a
// Redis whose clock jumped back while its key expired) costs at most one
// ignored reply, and the breaker follows it from its next operation on.
func (sh *shared) adopt(ctx context.Context, s *Snapshot, seen uint64, op *Op, cause error) {
	b := sh.b
	b.mu.Lock()
	if s.Seq < sh.seq && sh.adopts.Load() != seen {
		b.mu.Unlock()
		return
	}
	sh.seq = s.Seq
	sh.adopts.Add(1)
	now := b.now()
	m := &b.m
	m.ntrans = 0
	if s.Gen != m.gen || s.State != m.state {
		// Ours: this operation made the change (one generation on, by a
		// kind of operation that makes such a change); otherwise another
		// breaker made it and the store told us: "adopted".
		ours := s.Gen == m.gen+1 && (op.Kind == OpResult && op.Gen == m.gen || op.Kind == OpForce ||
			(m.state == Open && s.State == HalfOpen))
		t := transition{from: m.state, to: s.State, gen: s.Gen, counts: sh.ended(op, ours, s.State, now)}
		reason, err := "", cause
		if !ours {
			reason, err = "adopted", nil
		}
		m.setState(&b.policy, s.State, now)
		m.ntrans = 0
		if t.from != t.to {
			// (Only the generation moved, as when a new breaker joins a
			// store that has been used: nothing to report.)
			b.enqueue(ctx, []transition{t}, reason, err)
		}
		sh.pending.Store(0)
	}
	m.gen = s.Gen
	m.until = xtime.Add(now, int64(s.RetryAfter))
	m.consec, m.probes, m.probeOK = s.Counts.ConsecutiveFailures, s.Counts.Probes, s.Counts.ProbeSuccesses
	if m.state == HalfOpen {
		// Should the store fail, the fallback gives the slots it saw
		// taken one lease from now.
		m.lease = xtime.Add(now, int64(b.policy.ProbeLease))
	}
	if m.win == nil || m.state != Closed {
		m.succ, m.fail = s.Counts.Successes, s.Counts.Failures
	}
	sh.last, sh.lastGen = s.Counts, s.Gen
	b.publish(false)
	sh.synced.Store(now)
	queued := len(b.events) > 0
	b.mu.Unlock()
	if queued {
		b.deliver()
	}
}

// ended returns the counts of the generation a snapshot ended, as well as
// this breaker knows them: the last snapshot's counts for it (the local
// ones if it was decided locally) plus the results op carried if op made
// the change. In consecutive mode a change from closed to open was made by
// Threshold consecutive failures, wherever they were recorded. b.mu is
// held.
func (sh *shared) ended(op *Op, ours bool, to State, now int64) Counts {
	b := sh.b
	m := &b.m
	var c Counts
	if sh.lastGen == m.gen && !b.view.Load().local {
		c = sh.last
	} else {
		c = m.counts(&b.policy, now)
	}
	if ours && op.Kind == OpResult {
		c.Successes += op.Successes
		c.Failures += op.Failures
		c.Slow += op.Slow
		if op.Successes > 0 {
			c.ConsecutiveFailures = 0
		}
		c.ConsecutiveFailures += op.Failures
	}
	if b.policy.Threshold > 0 && m.state == Closed && to == Open {
		c.ConsecutiveFailures = max(c.ConsecutiveFailures, b.policy.Threshold)
		c.Failures = max(c.Failures, c.ConsecutiveFailures)
	}
	return c
}
