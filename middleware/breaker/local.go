package breaker

import (
	"context"
	"sync/atomic"
	"time"
	"unsafe"
)

// The local path: a breaker without a Store. Its machine (b.m) is the
// state. The fast paths read the published view and touch no lock; every
// other operation steps the machine under b.mu. These functions are also
// the shared path's fallback while its store fails (stepLocal).

// acquire is Acquire filling p in place, as Middleware uses it: copying a
// Permit between calls (results stored field by field, then moved in
// 16-byte words) stalls the CPU for longer than the fast path takes. A
// breaker with a Store goes to the shared path; without one, this is the
// local path.
func (b *Breaker) acquire(ctx context.Context, p *Permit) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.sh != nil {
		return b.sh.acquire(ctx, p)
	}
	return b.acquireLocal(ctx, b.view.Load(), p)
}

// acquireLocal admits or rejects a call on the local path, given the view
// it loaded.
func (b *Breaker) acquireLocal(ctx context.Context, v *view, p *Permit) error {
	switch v.state {
	case Closed, ForcedClosed:
		p.b, p.ctx, p.gen = b, ctx, v.gen
		if b.slow > 0 {
			p.start = b.now()
		}
		return nil
	case ForcedOpen:
		return b.reject(ctx, v.err, 0)
	case Open:
		if !v.near.Load() {
			return b.rejectOpen(ctx, v)
		}
		if now := b.now(); now < v.until {
			return b.reject(ctx, v.err, time.Duration(v.until-now))
		}
	}
	return b.acquireStep(ctx, p)
}

// rejectOpen refuses a call while the open time of v has not nearly
// passed (v.near is not set): no clock read, unless the observer needs
// the delay.
func (b *Breaker) rejectOpen(ctx context.Context, v *view) error {
	b.rejected.add()
	if b.obs != nil {
		b.emitOpen(ctx, v)
	}
	return v.err
}

// emitOpen reports a rejection by rejectOpen, with the open time left.
func (b *Breaker) emitOpen(ctx context.Context, v *view) {
	b.emitRejected(ctx, v.err, max(time.Duration(v.until-b.now()), 0))
}

// hintLead is the most the open-time timer fires ahead of the end of the
// open time; see armHint.
const hintLead = int64(time.Second)

// armHint arms the timer that sets v.near ahead of v.until, at
// until - min(max(d/2, 1ns), hintLead) where d is the open time left. Until it
// fires, a rejected call reads no clock: the open time cannot have passed.
// Once it has fired, every call reads the clock, so the move to half-open
// happens exactly at until. A timer fires late, never early: the move is
// exact unless the runtime runs the timer more than that lead late (a
// process starved of CPU for a second); then the first probe is admitted
// when it runs. The timer starts no goroutine until it fires, works in a
// testing/synctest bubble, and is not stopped when the state changes
// before it fires (a timer created in a synctest bubble must not be
// stopped from outside it): it then sets the flag of a view nobody reads.
// b.mu is held.
func (b *Breaker) armHint(v *view) {
	d := v.until - b.now()
	lead := min(max(d/2, 1), hintLead) // at least 1ns ahead: a timer due at until may run after a call at until
	if d-lead <= 0 {
		v.near.Store(true)
		return
	}
	time.AfterFunc(time.Duration(d-lead), func() { v.near.Store(true) })
}

// acquireStep admits a call that the view cannot decide (half-open, or
// open past its time) by stepping the local machine.
func (b *Breaker) acquireStep(ctx context.Context, p *Permit) error {
	s := b.stepLocal(ctx, Op{Kind: OpAcquire}, nil)
	if !s.Admitted {
		return b.rejectSnapshot(ctx, &s)
	}
	*p = Permit{b: b, ctx: ctx, gen: s.Gen, start: b.now(), probe: s.Probe}
	return nil
}

// resultFast records the result of a call admitted without a Permit
// (view.fast; see Middleware) that was not a plain success with no
// failure streak to reset.
func (b *Breaker) resultFast(ctx context.Context, gen uint64, err error) {
	q := Permit{b: b, ctx: ctx, gen: gen}
	if err == nil {
		b.recordLocal(&q, Success, 0, nil)
		return
	}
	b.finish(&q, err)
}

// abandonFast records a call admitted without a Permit that panicked or
// called runtime.Goexit, as a failure.
func (b *Breaker) abandonFast(ctx context.Context, gen uint64) {
	q := Permit{b: b, ctx: ctx, gen: gen}
	b.recordLocal(&q, Failure, 0, errAbandoned)
}

// recordLocal records the result of a call admitted by acquireLocal.
func (b *Breaker) recordLocal(q *Permit, o Outcome, openFor time.Duration, err error) {
	var now int64
	slow := false
	if b.rate {
		if o == Success && !q.probe && b.slow == 0 {
			// A plain success in rate mode: counted in the current
			// bucket, found without a clock read when it can be.
			if b.addSuccess(q.gen, b.bucketNow()) {
				return
			}
		}
		now = b.now()
		slow = b.slow > 0 && now-q.start >= b.slow
	}
	if o == Success && !q.probe && !slow {
		// The fast paths: a success in closed state changes nothing but a
		// counter, unless there are consecutive failures to reset.
		if !b.rate {
			if b.fails.Load() == 0 {
				return
			}
		} else if b.addSuccess(q.gen, b.refAt(now)) {
			return
		}
	}
	b.stepLocal(q.ctx, resultOp(q, o, openFor, slow), err)
}

// addSuccess counts a rate-mode success in bucket c (a [bucketRef])
// without the lock when that bucket is current; it reports false when the
// slow path must do it.
func (b *Breaker) addSuccess(gen uint64, c bucketRef) bool {
	v := b.view.Load()
	if v.gen != gen {
		return true // from an earlier generation: not counted
	}
	if v.state != Closed {
		return false
	}
	i := c & bucketIndexMask
	if b.m.win[i].num.Load() != int64(c>>bucketIndexBits)-1 {
		return false
	}
	b.m.stripes[stripe()][i].Add(1)
	return true
}

// stripedCounter is an exact counter that goroutines running at once on
// different CPUs mostly add to on different cache lines: one atomic add to
// the stripe of the calling goroutine. load sums the stripes.
type stripedCounter struct {
	stripes [stripeCount]struct {
		n atomic.Uint64
		_ [56]byte
	}
}

func (c *stripedCounter) add() { c.stripes[stripe()].n.Add(1) }

func (c *stripedCounter) load() uint64 {
	var n uint64
	for i := range c.stripes {
		n += c.stripes[i].n.Load()
	}
	return n
}

// stripe returns the stripe of the calling goroutine, one of stripeCount:
// a hash of the address of a variable on its stack. Goroutine stacks are
// at least 2 KiB and do not overlap, so the address differs between
// goroutines, and it changes only when the goroutine's stack grows: the
// goroutines running at once on different CPUs mostly add to different
// cache lines, each mostly to its own, instead of all to one. Goroutines
// may share a stripe; counts stay exact, as every add is atomic.
func stripe() uintptr {
	var x byte
	// Fibonacci hashing of the address in 2 KiB units: every bit of it
	// reaches the top bits that pick the stripe.
	return uintptr(uint64(uintptr(unsafe.Pointer(&x))>>11) * 0x9E3779B97F4A7C15 >> (64 - stripeBits))
}

// addSuccessIn is addSuccess for a call admitted under view v (Middleware's
// fast path), in a form cheap enough to be inlined: it counts the success
// only while v is still the published view (then its generation is
// current and the state closed), and otherwise reports false, leaving
// the result to the general path.
func (b *Breaker) addSuccessIn(v *view, c bucketRef) bool {
	i := c & bucketIndexMask
	if b.view.Load() != v || b.m.win[i].num.Load() != int64(c>>bucketIndexBits)-1 {
		return false
	}
	b.m.stripes[stripe()][i].Add(1)
	return true
}

// A bucketRef names a bucket of the rate window: 1 + its number (time /
// BucketWidth) in the high bits, its index in the window (number % Buckets)
// in the low bucketIndexBits, so that one atomic word holds both and no
// division is needed to find it.
type bucketRef uint64

const (
	bucketIndexBits = 10 // Buckets is at most 1000
	bucketIndexMask = 1<<bucketIndexBits - 1
)

// refAt returns the bucketRef of time now.
func (b *Breaker) refAt(now int64) bucketRef {
	n := now / int64(b.policy.BucketWidth)
	return bucketRef(n+1)<<bucketIndexBits | bucketRef(n%int64(len(b.m.win)))
}

// bucketLead is the most ahead of the end of a bucket that the bucket
// clock stops vouching for it; see bucketNow.
const bucketLead = int64(10 * time.Millisecond)

// bucketNow returns the bucket of the rate window for the current time,
// reading the clock only when it must. The first call that reads the
// clock in a bucket records the bucket in b.coarse and arms a timer that
// clears it ahead of the end of the bucket, at end - min(BucketWidth/4,
// bucketLead); until then every call takes the bucket from b.coarse, with
// no clock read and no division. A timer fires late, never early, so a
// success is counted in the bucket of its time unless the runtime runs the
// timer more than that lead late; then it is counted in the bucket before,
// and leaves the window one bucket early. The timer starts no goroutine
// until it fires and works in a testing/synctest bubble; none is armed
// while the breaker gets no calls. It allocates one timer per bucket in
// which calls arrive.
func (b *Breaker) bucketNow() bucketRef {
	if c := b.coarse.Load(); c != 0 {
		return bucketRef(c)
	}
	return b.bucketRead()
}

// bucketRead is bucketNow when the clock must be read.
func (b *Breaker) bucketRead() bucketRef {
	now := b.now()
	c := b.refAt(now)
	w := int64(b.policy.BucketWidth)
	left := w - now%w
	lead := min(w/4, bucketLead)
	if left > lead && b.coarse.CompareAndSwap(0, uint64(c)) {
		time.AfterFunc(time.Duration(left-lead), func() { b.coarse.CompareAndSwap(uint64(c), 0) })
	}
	return c
}

// stepLocal applies op to the local machine, publishes the result and
// delivers the state changes it made (cause is the error of the result
// that opened the breaker, if any). With a Store, the view it publishes is
// marked local: decided without the store.
func (b *Breaker) stepLocal(ctx context.Context, op Op, cause error) Snapshot {
	b.mu.Lock()
	s := b.m.step(&b.policy, &op, b.now())
	b.enqueue(ctx, b.m.trans[:b.m.ntrans], "", cause)
	b.publish(b.sh != nil)
	queued := len(b.events) > 0
	b.mu.Unlock()
	if queued {
		b.deliver()
	}
	return s
}
