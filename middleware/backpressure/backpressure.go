package backpressure

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/brace-go/brace/middleware"
)

// Mode says what a call does when the limiter is at capacity.
type Mode uint8

const (
	// Shed fails the call at once with [ErrShed]. It is the default.
	Shed Mode = iota
	// Wait queues the call, first in first out, for up to Config.MaxWait
	// behind at most Config.MaxQueue other calls, and sheds it when either
	// bound is exceeded.
	Wait
)

func (m Mode) String() string {
	switch m {
	case Shed:
		return "shed"
	case Wait:
		return "wait"
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// MaxCapacity is the largest capacity a [Limiter] accepts.
const MaxCapacity = math.MaxInt32

// The soft-limit states reported in [middleware.StateChanged] events
// (From and To).
const (
	StateNormal        = "normal"          // the weight in flight is below Config.SoftLimit
	StateOverSoftLimit = "over-soft-limit" // it is at Config.SoftLimit or above
)

// Config configures a [Limiter]. Capacity is required; the zero value of
// every other field means its documented default, so Config{Capacity: n}
// is a shedding limiter of n with no soft limit and no observer.
type Config struct {
	// Name names the limiter in its events.
	Name string

	// Capacity is the total weight allowed in flight at once, between 1
	// and [MaxCapacity]. It has no default: only the caller knows what the
	// protected resource can take.
	Capacity int64

	// Mode is Shed (the default) or Wait.
	Mode Mode

	// MaxWait bounds how long a call waits for a slot in Wait mode; when it
	// passes, the call is shed. Zero means the call waits as long as its
	// context allows. Must not be negative, and must be zero in Shed mode.
	MaxWait time.Duration

	// MaxQueue bounds how many calls may wait at once in Wait mode; a call
	// that would be one more is shed at once. Zero means the capacity. Must
	// not be negative, and must be zero in Shed mode.
	MaxQueue int

	// SoftLimit is a weight in flight, below the capacity, at which the
	// limiter still admits but reports a state change: a
	// [middleware.StateChanged] event from "normal" to "over-soft-limit"
	// when the weight in flight rises to SoftLimit or above, and back when
	// it falls below. Zero means no soft limit.
	SoftLimit int64

	// Observer receives the limiter's events (see docs/backpressure.md):
	// Rejected, Waited and StateChanged. Nil means none.
	Observer middleware.Observer
}

// ErrShed is the error of every shed call: the limiter was at capacity (and,
// in Wait mode, the queue was full or MaxWait passed). It is a plain value,
// so a shed allocates nothing; the depth and the wait are in the
// [middleware.Rejected] event and in [Limiter.Stats].
//
// It has the methods Rejected() bool, reporting true (the call never
// reached the downstream, so a circuit breaker does not count it), and
// Retryable() bool, reporting false (a shed means "send less"; an
// immediate retry adds load where there is too much already).
var ErrShed error = shedError{}

type shedError struct{}

func (shedError) Error() string { return "backpressure: shed" }

// Rejected reports true: the call was refused before it reached the
// downstream.
func (shedError) Rejected() bool { return true }

// Retryable reports false: retrying a shed at once adds to the overload.
func (shedError) Retryable() bool { return false }

// WeightError is returned for a call whose weight is below 1 or above the
// capacity: such a call could never be admitted, so it is rejected at once
// instead of waiting forever.
type WeightError struct {
	Weight   int64
	Capacity int64
}

func (e *WeightError) Error() string {
	return fmt.Sprintf("backpressure: weight must be between 1 and capacity %d, got %d", e.Capacity, e.Weight)
}

// Rejected reports true: the call never reached the downstream.
func (e *WeightError) Rejected() bool { return true }

// Retryable reports false: the same weight is rejected on every attempt.
func (e *WeightError) Retryable() bool { return false }

// A Limiter bounds the weight of calls in flight. It is shared, non-generic
// state: one Limiter can guard stages of any types through [Middleware] and
// [Weighted], and code that is not a stage through [Limiter.Acquire]. A
// Limiter is safe for concurrent use and must be created with [New].
type Limiter struct {
	capacity  int64
	softLimit int64
	mode      Mode
	maxWait   time.Duration
	maxQueue  int64
	obs       middleware.Observer
	name      string

	// state packs the weight in flight (low 32 bits) and the number of
	// queued waiters (high 32 bits) into one word, so that admission is a
	// single compare-and-swap that can see both. A call is admitted on the
	// fast path only when nobody waits (first in, first out). The waiter
	// count changes only with mu held; the weight changes lock-free on the
	// fast path and with mu held when waiters are admitted. Written by
	// every call: on a cache line of its own, so that two CPUs admitting
	// calls do not also fight over the line of the fields every call
	// reads (capacity, mode, soft limit, observer).
	_     [64]byte
	state atomic.Uint64
	_     [56]byte

	mu         sync.Mutex
	head, tail *waiter // FIFO of queued calls, guarded by mu

	// Counters for Stats, touched only off the success path.
	rejected, waited atomic.Uint64

	// The soft-limit state last reported, and whether some goroutine is
	// reporting it now (see syncSoftState).
	over, reporting atomic.Bool
}

const oneWaiter = 1 << 32

func split(s uint64) (inflight, queued int64) { return int64(uint32(s)), int64(s >> 32) }

// waiter is a call queued for a slot.
type waiter struct {
	weight     int64
	ready      chan struct{} // closed when the waiter is admitted
	admitted   bool          // guarded by Limiter.mu
	prev, next *waiter       // guarded by Limiter.mu
}

// New returns a Limiter that admits calls while the weight in flight stays
// within cfg.Capacity, or an error naming the first invalid field.
func New(cfg Config) (*Limiter, error) {
	switch {
	case cfg.Capacity < 1:
		return nil, fmt.Errorf("backpressure: Capacity must be at least 1, got %d", cfg.Capacity)
	case cfg.Capacity > MaxCapacity:
		return nil, fmt.Errorf("backpressure: Capacity must be at most %d, got %d", MaxCapacity, cfg.Capacity)
	case cfg.Mode != Shed && cfg.Mode != Wait:
		return nil, fmt.Errorf("backpressure: Mode must be Shed or Wait, got %v", cfg.Mode)
	case cfg.MaxWait < 0:
		return nil, fmt.Errorf("backpressure: MaxWait must not be negative, got %v", cfg.MaxWait)
	case cfg.MaxQueue < 0:
		return nil, fmt.Errorf("backpressure: MaxQueue must not be negative, got %d", cfg.MaxQueue)
	case cfg.Mode == Shed && cfg.MaxWait != 0:
		return nil, fmt.Errorf("backpressure: MaxWait must be zero in Shed mode, got %v", cfg.MaxWait)
	case cfg.Mode == Shed && cfg.MaxQueue != 0:
		return nil, fmt.Errorf("backpressure: MaxQueue must be zero in Shed mode, got %d", cfg.MaxQueue)
	case cfg.SoftLimit < 0:
		return nil, fmt.Errorf("backpressure: SoftLimit must not be negative, got %d", cfg.SoftLimit)
	case cfg.SoftLimit >= cfg.Capacity:
		return nil, fmt.Errorf("backpressure: SoftLimit must be below Capacity (%d), got %d", cfg.Capacity, cfg.SoftLimit)
	}
	l := &Limiter{
		capacity:  cfg.Capacity,
		softLimit: cfg.SoftLimit,
		mode:      cfg.Mode,
		maxWait:   cfg.MaxWait,
		maxQueue:  int64(cfg.MaxQueue),
		obs:       cfg.Observer,
		name:      cfg.Name,
	}
	if l.maxQueue == 0 {
		l.maxQueue = l.capacity
	}
	return l, nil
}

// A Permit is one admitted call's hold on the limiter's capacity. Finish
// it with [Permit.Done] exactly once; Done zeroes the Permit, so a second
// Done on the same Permit does nothing. The zero Permit holds nothing.
type Permit struct {
	l *Limiter
	w int64
}

// Done gives the permit's weight back to the limiter, admitting queued
// calls that now fit. err is the work's outcome; the limiter does not
// classify outcomes, so it only documents the call. Done on a zero or
// finished Permit does nothing. Done may be called from any goroutine,
// but copies of one Permit share its hold: finish only one of them.
func (p *Permit) Done(err error) {
	l, w := p.l, p.w
	if l == nil {
		return
	}
	*p = Permit{}
	l.release(w)
}

// Acquire admits one call of weight 1, as [Limiter.AcquireN] does.
func (l *Limiter) Acquire(ctx context.Context) (Permit, error) {
	return l.AcquireN(ctx, 1)
}

// AcquireN admits one call of weight n, honouring the limiter's Mode: in
// Shed mode it fails at once with [ErrShed] when n does not fit; in Wait
// mode it queues, first in first out, and fails with ErrShed when MaxWait
// passes or the queue is full, or with ctx.Err() when ctx ends first. A
// context that has already ended fails with ctx.Err() even when capacity
// is free. A weight below 1 or above the capacity fails at once with a
// *[WeightError]. On success, finish the returned Permit with
// [Permit.Done].
func (l *Limiter) AcquireN(ctx context.Context, n int64) (Permit, error) {
	// A caller that has already gone is not admitted, even with capacity
	// free (golang/go#63615): its work would be wasted.
	if err := ctx.Err(); err != nil {
		return Permit{}, err
	}
	if n < 1 || n > l.capacity {
		return Permit{}, l.reject(ctx, "weight", &WeightError{Weight: n, Capacity: l.capacity}, l.state.Load(), 0)
	}
	if inflight, queued := split(l.state.Load()); n == 1 && l.softLimit == 0 && queued == 0 && inflight < l.capacity {
		// There is room: one atomic add, which never fails, unlike a
		// compare-and-swap that two CPUs make fail in turn. The call is
		// admitted if its unit still fits and nobody waits. Otherwise
		// (another call took the room meanwhile) the unit goes back as a
		// release gives it back, admitting the waiters it may have held
		// back, and the call is judged exactly below. A unit added and
		// taken back never admits a call beyond the capacity; while it is
		// there, a racing call may find the limiter full a moment early,
		// as it would have had this call come first. A full limiter is
		// not touched: a shed is one load. Not with a soft limit: the
		// unit could cross it and back, and report both.
		if inflight, queued := split(l.state.Add(1)); queued == 0 && inflight <= l.capacity {
			return Permit{l, 1}, nil
		}
		l.release(1)
	}
	for {
		s := l.state.Load()
		inflight, queued := split(s)
		if queued != 0 || inflight+n > l.capacity {
			if l.mode == Shed {
				return Permit{}, l.reject(ctx, "shed", ErrShed, s, 0)
			}
			return l.wait(ctx, n)
		}
		if l.state.CompareAndSwap(s, s+uint64(n)) {
			if l.softLimit > 0 && inflight < l.softLimit && inflight+n >= l.softLimit {
				l.announce(ctx, n, false, 0, inflight+n)
			}
			return Permit{l, n}, nil
		}
	}
}

// announce reports what an admission of weight w needs reported — the
// wait, if waited, and the soft-limit state — for a call already admitted.
// If an observer does not return (runtime.Goexit; a panic is recovered by
// middleware.Emit), the weight goes back before the goroutine ends, so no
// user code runs between an admission and the code that guarantees its
// release.
func (l *Limiter) announce(ctx context.Context, w int64, waited bool, wait time.Duration, inflight int64) {
	ok := false
	defer func() {
		if !ok {
			l.release(w)
		}
	}()
	if waited {
		l.waited.Add(1)
		if l.obs != nil {
			middleware.Emit(ctx, l.obs, middleware.Event{Kind: middleware.Waited, Concern: "backpressure", Name: l.name,
				Wait: wait, InFlight: inflight})
		}
	}
	if l.softLimit > 0 {
		l.syncSoftState(ctx)
	}
	ok = true
}

// release returns w to the limiter, admits queued calls that now fit, and
// reports a fall below the soft limit.
func (l *Limiter) release(w int64) {
	s := l.state.Add(^uint64(w - 1)) // minus w
	if s>>32 != 0 {
		l.mu.Lock()
		l.admitLocked()
		l.mu.Unlock()
	}
	if inflight, _ := split(s); l.softLimit > 0 && inflight < l.softLimit && inflight+w >= l.softLimit {
		l.syncSoftState(context.Background())
	}
}

// syncSoftState reports the soft-limit state if it differs from the state
// last reported. One goroutine reports at a time, and it reports until the
// reported state is the real one, so the observer sees the changes in
// order, each From being the previous To, and the last event is the
// state in force; a burst that crosses and recrosses the line while a
// change is being reported is reported once, or not at all. Another
// goroutine finding a report under way leaves it to that one, so an
// observer may call back into the limiter.
func (l *Limiter) syncSoftState(ctx context.Context) {
	for l.isOver() != l.over.Load() {
		if !l.reporting.CompareAndSwap(false, true) {
			return // the goroutine reporting will see this change
		}
		l.reportSoftState(ctx)
	}
}

func (l *Limiter) isOver() bool {
	inflight, _ := split(l.state.Load())
	return inflight >= l.softLimit
}

func (l *Limiter) reportSoftState(ctx context.Context) {
	defer l.reporting.Store(false)
	for {
		over := l.isOver()
		if over == l.over.Load() {
			return
		}
		l.over.Store(over)
		if l.obs == nil {
			continue
		}
		from, to := StateNormal, StateOverSoftLimit
		if !over {
			from, to = to, from
		}
		inflight, _ := split(l.state.Load())
		middleware.Emit(ctx, l.obs, middleware.Event{Kind: middleware.StateChanged, Concern: "backpressure", Name: l.name,
			From: from, To: to, InFlight: inflight, Limit: l.softLimit})
	}
}

// admitLocked admits waiters from the head of the queue while they fit. It
// stops at the first that does not, so a heavy call is not starved by light
// ones behind it.
func (l *Limiter) admitLocked() {
	for h := l.head; h != nil; h = l.head {
		for {
			s := l.state.Load()
			inflight, _ := split(s)
			if inflight+h.weight > l.capacity {
				return
			}
			if l.state.CompareAndSwap(s, s+uint64(h.weight)-oneWaiter) {
				break
			}
		}
		l.unlinkLocked(h)
		h.admitted = true
		close(h.ready)
	}
}

func (l *Limiter) unlinkLocked(w *waiter) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		l.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		l.tail = w.prev
	}
	w.prev, w.next = nil, nil
}

// wait queues a call of weight w (Wait mode) until it is admitted, its
// context ends or MaxWait passes.
func (l *Limiter) wait(ctx context.Context, w int64) (Permit, error) {
	l.mu.Lock()
	var s uint64
	for {
		s = l.state.Load()
		inflight, queued := split(s)
		if queued == 0 && inflight+w <= l.capacity {
			// Capacity was freed since the fast path looked.
			if l.state.CompareAndSwap(s, s+uint64(w)) {
				l.mu.Unlock()
				if l.softLimit > 0 && inflight < l.softLimit && inflight+w >= l.softLimit {
					l.announce(ctx, w, false, 0, inflight+w)
				}
				return Permit{l, w}, nil
			}
			continue
		}
		if queued >= l.maxQueue {
			l.mu.Unlock()
			return Permit{}, l.reject(ctx, "shed", ErrShed, s, 0)
		}
		// Enqueue only from the state just judged full: a release in
		// between fails the swap, and one after it sees the waiter.
		if l.state.CompareAndSwap(s, s+oneWaiter) {
			break
		}
	}
	wt := &waiter{weight: w, ready: make(chan struct{}), prev: l.tail}
	if l.tail != nil {
		l.tail.next = wt
	} else {
		l.head = wt
	}
	l.tail = wt
	l.mu.Unlock()

	start := time.Now()
	var timeout <-chan time.Time
	if l.maxWait > 0 {
		t := time.NewTimer(l.maxWait)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-wt.ready:
	case <-ctx.Done():
		if l.leave(wt) {
			// Admitted as the context ended: the caller has gone, so the
			// slot goes back.
			l.release(w)
		}
		return Permit{}, ctx.Err()
	case <-timeout:
		if !l.leave(wt) {
			return Permit{}, l.reject(ctx, "shed", ErrShed, l.state.Load(), time.Since(start))
		}
		// Admitted as the wait ran out: keep the slot.
	}
	inflight, _ := split(l.state.Load())
	l.announce(ctx, w, true, time.Since(start), inflight)
	return Permit{l, w}, nil
}

// leave takes a waiter that gave up out of the queue and reports whether it
// had been admitted meanwhile, in which case it holds its slot. A waiter
// leaving the head lets the waiters behind it in when they fit
// (golang/sync#10).
func (l *Limiter) leave(wt *waiter) (admitted bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if wt.admitted {
		return true
	}
	l.unlinkLocked(wt)
	l.state.Add(^uint64(oneWaiter - 1)) // minus one waiter
	l.admitLocked()
	return false
}

// reject counts a refused call, reports it and returns err. s is the state
// the refusal was judged on; wait is how long the call queued.
func (l *Limiter) reject(ctx context.Context, reason string, err error, s uint64, wait time.Duration) error {
	l.rejected.Add(1)
	if l.obs != nil {
		inflight, _ := split(s)
		inflight = min(inflight, l.capacity) // without the units of racing calls about to give them back
		middleware.Emit(ctx, l.obs, middleware.Event{Kind: middleware.Rejected, Concern: "backpressure", Name: l.name,
			Reason: reason, InFlight: inflight, Limit: l.capacity, Wait: wait, Err: err})
	}
	return err
}
