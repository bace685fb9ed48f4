package backpressure

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/priority"
)

// Mode says what a call does when the limiter is at capacity.
type Mode uint8

const (
	// Shed fails the call at once with [ErrShed]. It is the default.
	Shed Mode = iota
	// Wait queues the call for up to Config.MaxWait behind at most
	// Config.MaxQueue other calls, in the order Config.Queue says, and
	// sheds it when either bound is exceeded.
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

// Discipline is the order in which a Wait-mode limiter serves its queue
// within one priority level (Config.Queue). Levels always come first: a
// waiting critical call is served before any default one, and a default
// one before any sheddable one.
type Discipline uint8

const (
	// FIFO serves the oldest waiter first. It is the default.
	FIFO Discipline = iota
	// LIFO is adaptive LIFO (Facebook, "Fail at Scale", ACM Queue 2015):
	// first in, first out while the queue comes and goes, and last in,
	// first out once it has been standing — non-empty without a break for
	// longer than Config.Interval. Under standing overload the newest
	// waiters, whose callers are most likely still there, are served,
	// and the oldest wait until their callers give up.
	LIFO
	// CoDel is first in, first out with controlled delay (Fail at Scale,
	// after Nichols and Jacobson's CoDel): a call queued while the queue
	// has been standing for longer than Config.Interval waits at most
	// Config.Target, and otherwise at most Config.Interval; past that it
	// is dropped, as a rejection with Reason "codel". A standing queue so
	// drains to a short one instead of serving calls whose callers are
	// gone.
	CoDel
)

func (d Discipline) String() string {
	switch d {
	case FIFO:
		return "fifo"
	case LIFO:
		return "lifo"
	case CoDel:
		return "codel"
	}
	return fmt.Sprintf("Discipline(%d)", uint8(d))
}

// The defaults of Config.Target and Config.Interval, Fail at Scale's.
const (
	DefaultTarget   = 5 * time.Millisecond
	DefaultInterval = 100 * time.Millisecond
)

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

	// Priorities turns on shedding by priority: each call's level is
	// read from its context with [priority.From], and a call of level l
	// is admitted only while the weight in flight, its own included,
	// stays within Shares.Limit(l, Capacity) — a sheddable call within
	// half the capacity by default, a default call within 90%, a
	// critical call within all of it. So under overload sheddable calls
	// are refused first, and critical calls use the capacity the others
	// leave. In Wait mode, waiters are served by level, highest first,
	// and a full queue makes room for a call by shedding the oldest
	// waiter of a lower level. False (the default) reads no level: every
	// call is a default call with the whole capacity.
	Priorities bool

	// Shares is how much of the capacity each level below Critical may
	// fill when Priorities is on; the zero value means priority's
	// defaults (Sheddable 0.5, Default 0.9). It must be zero when
	// Priorities is off.
	Shares priority.Shares

	// Queue is the order in which Wait mode serves the waiters of one
	// level: FIFO (the default), LIFO (adaptive LIFO) or CoDel. It must
	// be FIFO in Shed mode.
	Queue Discipline

	// Target is how long a call may wait, with Queue CoDel, once the
	// queue has been standing for longer than Interval. Zero means
	// [DefaultTarget] (5ms). It must not be negative, must not exceed
	// Interval, and must be zero unless Queue is CoDel.
	Target time.Duration

	// Interval is how long the queue must stay non-empty to count as
	// standing (LIFO and CoDel), and, with CoDel, how long a call may
	// wait while it is not. Zero means [DefaultInterval] (100ms). It must
	// not be negative, and must be zero with Queue FIFO.
	Interval time.Duration

	// Observer receives the limiter's events (see docs/backpressure.md):
	// Rejected, Waited and StateChanged. Nil means none.
	Observer middleware.Observer
}

// ErrShed is the error of every shed call: the limiter was at capacity, or
// at its share for the call's level (and, in Wait mode, the queue was full,
// MaxWait passed, a higher level took the call's place in the queue, or
// CoDel dropped it). It is a plain value,
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
// capacity (with Priorities, above its level's share of the capacity):
// such a call could never be admitted, so it is rejected at once instead
// of waiting forever.
type WeightError struct {
	Weight   int64
	Capacity int64 // the most the call may take: the capacity, or its level's share of it
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
	prio      bool                   // Config.Priorities
	limits    [priority.Levels]int64 // per level index: what a level may fill
	queue     Discipline             // Config.Queue
	target    time.Duration          // CoDel
	interval  time.Duration          // LIFO, CoDel

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

	mu sync.Mutex
	// The queued calls, one list per level index, oldest first; and when
	// the queue was last empty (LIFO, CoDel). Guarded by mu.
	q         [priority.Levels]waitList
	lastEmpty time.Time

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
	level      int           // priority level index
	ready      chan struct{} // closed when the waiter is admitted or evicted
	state      waiterState   // guarded by Limiter.mu
	prev, next *waiter       // guarded by Limiter.mu
}

type waiterState uint8

const (
	queued   waiterState = iota
	admitted             // holds its weight
	evicted              // shed to make room for a higher level
)

// waitList is a doubly linked list of waiters, oldest at head.
type waitList struct {
	head, tail *waiter
}

func (q *waitList) push(w *waiter) {
	w.prev = q.tail
	if q.tail != nil {
		q.tail.next = w
	} else {
		q.head = w
	}
	q.tail = w
}

func (q *waitList) remove(w *waiter) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		q.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		q.tail = w.prev
	}
	w.prev, w.next = nil, nil
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
	case !cfg.Priorities && cfg.Shares != (priority.Shares{}):
		return nil, fmt.Errorf("backpressure: Shares must be zero when Priorities is off, got %+v", cfg.Shares)
	case cfg.Queue > CoDel:
		return nil, fmt.Errorf("backpressure: Queue must be FIFO, LIFO or CoDel, got %v", cfg.Queue)
	case cfg.Mode == Shed && cfg.Queue != FIFO:
		return nil, fmt.Errorf("backpressure: Queue must be FIFO in Shed mode, got %v", cfg.Queue)
	case cfg.Target < 0:
		return nil, fmt.Errorf("backpressure: Target must not be negative, got %v", cfg.Target)
	case cfg.Interval < 0:
		return nil, fmt.Errorf("backpressure: Interval must not be negative, got %v", cfg.Interval)
	case cfg.Queue != CoDel && cfg.Target != 0:
		return nil, fmt.Errorf("backpressure: Target must be zero unless Queue is CoDel, got %v", cfg.Target)
	case cfg.Queue == FIFO && cfg.Interval != 0:
		return nil, fmt.Errorf("backpressure: Interval must be zero with Queue FIFO, got %v", cfg.Interval)
	}
	shares := priority.Shares{}
	if cfg.Priorities {
		var err error
		if shares, err = cfg.Shares.Resolve("backpressure", "Shares"); err != nil {
			return nil, err
		}
	}
	if cfg.Queue != FIFO {
		if cfg.Interval == 0 {
			cfg.Interval = DefaultInterval
		}
		if cfg.Queue == CoDel && cfg.Target == 0 {
			cfg.Target = min(DefaultTarget, cfg.Interval)
		}
		if cfg.Target > cfg.Interval {
			return nil, fmt.Errorf("backpressure: Target (%v) must not exceed Interval (%v)", cfg.Target, cfg.Interval)
		}
	}
	l := &Limiter{
		capacity:  cfg.Capacity,
		softLimit: cfg.SoftLimit,
		mode:      cfg.Mode,
		maxWait:   cfg.MaxWait,
		maxQueue:  int64(cfg.MaxQueue),
		obs:       cfg.Observer,
		name:      cfg.Name,
		prio:      cfg.Priorities,
		queue:     cfg.Queue,
		target:    cfg.Target,
		interval:  cfg.Interval,
	}
	if l.maxQueue == 0 {
		l.maxQueue = l.capacity
	}
	for _, lv := range []priority.Level{priority.Sheddable, priority.Default, priority.Critical} {
		l.limits[lv.Index()] = l.capacity
		if cfg.Priorities {
			l.limits[lv.Index()] = shares.Limit(lv, l.capacity)
		}
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
// mode it queues, in the order of Config.Queue, and fails with ErrShed
// when MaxWait passes, the queue is full or CoDel drops it, or with
// ctx.Err() when ctx ends first. With Config.Priorities, n must fit
// within the share of the call's level (see [Config]). A context that has
// already ended fails with ctx.Err() even when capacity is free. A weight
// below 1 or above what the call may ever take fails at once with a
// *[WeightError]. On success, finish the returned Permit with
// [Permit.Done].
func (l *Limiter) AcquireN(ctx context.Context, n int64) (Permit, error) {
	// A caller that has already gone is not admitted, even with capacity
	// free (golang/go#63615): its work would be wasted.
	if err := ctx.Err(); err != nil {
		return Permit{}, err
	}
	// With priorities off, every call may fill the whole capacity and
	// no level is read from the context.
	limit, level := l.capacity, priority.Default
	if l.prio {
		level = priority.From(ctx)
		limit = l.limits[level.Index()]
	}
	if n < 1 || n > limit {
		return Permit{}, l.reject(ctx, "weight", &WeightError{Weight: n, Capacity: limit}, l.state.Load(), 0, level)
	}
	if inflight, queued := split(l.state.Load()); n == 1 && l.softLimit == 0 && queued == 0 && inflight < limit {
		// There is room: one atomic add, which never fails, unlike a
		// compare-and-swap that two CPUs make fail in turn. The call is
		// admitted if its unit still fits under its limit and nobody
		// waits. Otherwise (another call took the room meanwhile) the
		// unit goes back as a release gives it back, admitting the
		// waiters it may have held back, and the call is judged exactly
		// below. A unit added and taken back never admits a call beyond
		// its limit: every admitted call saw a total, its own unit and
		// every racing unit included, within its limit; while the unit
		// is there, a racing call may find the limiter full a moment
		// early, as it would have had this call come first. A full
		// limiter is not touched: a shed is one load. Not with a soft
		// limit: the unit could cross it and back, and report both.
		if inflight, queued := split(l.state.Add(1)); queued == 0 && inflight <= limit {
			return Permit{l, 1}, nil
		}
		l.release(1)
	}
	for {
		s := l.state.Load()
		inflight, queued := split(s)
		if queued != 0 || inflight+n > limit {
			if l.mode == Shed {
				return Permit{}, l.reject(ctx, "shed", ErrShed, s, 0, level)
			}
			return l.wait(ctx, n, level, limit)
		}
		if l.state.CompareAndSwap(s, s+uint64(n)) {
			if l.softLimit > 0 && inflight < l.softLimit && inflight+n >= l.softLimit {
				l.announce(ctx, n, false, 0, inflight+n, level)
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
func (l *Limiter) announce(ctx context.Context, w int64, waited bool, wait time.Duration, inflight int64, level priority.Level) {
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
				Wait: wait, InFlight: inflight, Priority: level})
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

// admitLocked admits queued waiters while they fit: by level, highest
// first, and within a level in the order of the discipline. It stops at
// the first waiter that does not fit under its level's limit, so a heavy
// call is not starved by light ones served after it. l.mu is held.
func (l *Limiter) admitLocked() {
	lifo := false
	if l.queue == LIFO {
		// Standing: non-empty without a break for longer than Interval.
		lifo = time.Since(l.lastEmpty) > l.interval
	}
	for i := priority.Levels - 1; i >= 0; i-- {
		q := &l.q[i]
		for {
			h := q.head
			if lifo {
				h = q.tail
			}
			if h == nil {
				break
			}
			for {
				s := l.state.Load()
				inflight, _ := split(s)
				if inflight+h.weight > l.limits[i] {
					return
				}
				if l.state.CompareAndSwap(s, s+uint64(h.weight)-oneWaiter) {
					break
				}
			}
			q.remove(h)
			h.state = admitted
			close(h.ready)
		}
	}
}

// waitersFrom reports whether any call of level index i or higher waits.
// l.mu is held.
func (l *Limiter) waitersFrom(i int) bool {
	for ; i < priority.Levels; i++ {
		if l.q[i].head != nil {
			return true
		}
	}
	return false
}

// evictBelowLocked sheds the oldest waiter of the lowest level below
// index i, if any waits, to make room in a full queue for a call of
// level i. l.mu is held.
func (l *Limiter) evictBelowLocked(i int) bool {
	for j := range i {
		if w := l.q[j].head; w != nil {
			l.q[j].remove(w)
			l.state.Add(^uint64(oneWaiter - 1)) // minus one waiter
			w.state = evicted
			close(w.ready)
			return true
		}
	}
	return false
}

// wait queues a call of weight w and level level (Wait mode) until it is
// admitted, its context ends, MaxWait passes or CoDel drops it. limit is
// what its level may fill.
func (l *Limiter) wait(ctx context.Context, w int64, level priority.Level, limit int64) (Permit, error) {
	idx := level.Index()
	l.mu.Lock()
	var s uint64
	var queuedBefore int64
	for {
		s = l.state.Load()
		inflight, queued := split(s)
		if inflight+w <= limit && !l.waitersFrom(idx) {
			// Capacity was freed since the fast path looked, or only
			// lower levels wait: they come after this call.
			if l.state.CompareAndSwap(s, s+uint64(w)) {
				l.mu.Unlock()
				if l.softLimit > 0 && inflight < l.softLimit && inflight+w >= l.softLimit {
					l.announce(ctx, w, false, 0, inflight+w, level)
				}
				return Permit{l, w}, nil
			}
			continue
		}
		if queued >= l.maxQueue {
			if l.prio && l.evictBelowLocked(idx) {
				continue // a lower level's place is this call's now
			}
			l.mu.Unlock()
			return Permit{}, l.reject(ctx, "shed", ErrShed, s, 0, level)
		}
		// Enqueue only from the state just judged full: a release in
		// between fails the swap, and one after it sees the waiter.
		if l.state.CompareAndSwap(s, s+oneWaiter) {
			queuedBefore = queued
			break
		}
	}
	start := time.Now()
	// How long the call may wait, and what it is called when that passes.
	maxWait, reason := l.maxWait, "shed"
	if l.queue != FIFO {
		standing := queuedBefore > 0 && start.Sub(l.lastEmpty) > l.interval
		if queuedBefore == 0 {
			l.lastEmpty = start // the queue was empty until now
		}
		if l.queue == CoDel {
			d := l.interval
			if standing {
				d = l.target
			}
			if maxWait == 0 || d <= maxWait {
				maxWait, reason = d, "codel"
			}
		}
	}
	wt := &waiter{weight: w, level: idx, ready: make(chan struct{})}
	l.q[idx].push(wt)
	l.mu.Unlock()

	var timeout <-chan time.Time
	if maxWait > 0 {
		t := time.NewTimer(maxWait)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-wt.ready:
	case <-ctx.Done():
		if l.leave(wt) == admitted {
			// Admitted as the context ended: the caller has gone, so the
			// slot goes back.
			l.release(w)
		}
		return Permit{}, ctx.Err()
	case <-timeout:
		switch l.leave(wt) {
		case queued:
			return Permit{}, l.reject(ctx, reason, ErrShed, l.state.Load(), time.Since(start), level)
		case evicted:
			return Permit{}, l.reject(ctx, "shed", ErrShed, l.state.Load(), time.Since(start), level)
		}
		// Admitted as the wait ran out: keep the slot.
	}
	if wt.state == evicted { // written before ready was closed
		return Permit{}, l.reject(ctx, "shed", ErrShed, l.state.Load(), time.Since(start), level)
	}
	inflight, _ := split(l.state.Load())
	l.announce(ctx, w, true, time.Since(start), inflight, level)
	return Permit{l, w}, nil
}

// leave takes a waiter that gave up out of the queue and returns the state
// it was in: admitted meanwhile (it holds its slot), evicted meanwhile (it
// is out already), or queued (it is out now). A waiter leaving lets the
// waiters after it in when they fit (golang/sync#10).
func (l *Limiter) leave(wt *waiter) waiterState {
	l.mu.Lock()
	defer l.mu.Unlock()
	if wt.state != queued {
		return wt.state
	}
	l.q[wt.level].remove(wt)
	l.state.Add(^uint64(oneWaiter - 1)) // minus one waiter
	l.admitLocked()
	return queued
}

// reject counts a refused call, reports it and returns err. s is the state
// the refusal was judged on; wait is how long the call queued.
func (l *Limiter) reject(ctx context.Context, reason string, err error, s uint64, wait time.Duration, level priority.Level) error {
	l.rejected.Add(1)
	if l.obs != nil {
		inflight, _ := split(s)
		inflight = min(inflight, l.capacity) // without the units of racing calls about to give them back
		// Limit is what the call's level may fill: the capacity, or its
		// share of it with priorities.
		middleware.Emit(ctx, l.obs, middleware.Event{Kind: middleware.Rejected, Concern: "backpressure", Name: l.name,
			Reason: reason, InFlight: inflight, Limit: l.limits[level.Index()], Wait: wait, Err: err, Priority: level})
	}
	return err
}
