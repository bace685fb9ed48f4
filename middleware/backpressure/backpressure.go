package backpressure

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Mode says what a call does when the limiter is at capacity.
type Mode uint8

const (
	// Shed fails the call at once with a *[ShedError]. It is the default.
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

// Config configures a [Limiter]. The zero value is a shedding limiter with
// no soft limit that logs nothing; only the capacity, an argument of [New],
// has no default.
type Config struct {
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

	// SoftLimit is a depth at which the limiter warns but still admits:
	// when the weight in flight rises to SoftLimit or above, OnSoftLimit is
	// called and a warning is logged. Zero means no soft limit. Must be
	// below the capacity.
	SoftLimit int64

	// OnSoftLimit, if not nil, is called each time an admitted call takes
	// the depth from below SoftLimit to SoftLimit or above, with the depth
	// after admission. It is called on the caller's goroutine, before the
	// stage runs, outside any lock.
	OnSoftLimit func(depth, softLimit int64)

	// OnShed, if not nil, is called with the error of every shed call, on
	// the caller's goroutine, outside any lock.
	OnShed func(err *ShedError)

	// Logger, if not nil, receives a Warn record each time the soft limit
	// is reached and an Info record for each shed call. Nil is silent.
	Logger *slog.Logger

	// Name, if not empty, is added to log records as "name".
	Name string

	// Counter, if not nil, counts admitted, queued and shed calls (see
	// [Counter]). Nil means no counting, at the cost of one nil check per
	// call.
	Counter *Counter
}

// ErrShed is the error every shed call's error wraps:
// errors.Is(err, backpressure.ErrShed) reports whether a call was shed.
var ErrShed = errors.New("backpressure: shed")

// ErrNilLimiter is returned by every call of a stage decorated by
// [Middleware] or [Weighted] with a nil *Limiter.
var ErrNilLimiter = errors.New("backpressure: nil Limiter")

// ShedError is the error of a shed call. It unwraps to [ErrShed].
type ShedError struct {
	Depth    int64         // weight in flight when the call was shed
	Capacity int64         // the limiter's capacity
	Weight   int64         // the shed call's weight
	Queued   int64         // calls waiting for a slot when the call was shed
	Waited   time.Duration // how long the call queued before it was shed; 0 if it never queued
}

func (e *ShedError) Error() string {
	if e.Waited > 0 {
		return fmt.Sprintf("backpressure: shed at depth %d of capacity %d after waiting %v", e.Depth, e.Capacity, e.Waited)
	}
	return fmt.Sprintf("backpressure: shed at depth %d of capacity %d", e.Depth, e.Capacity)
}

// Unwrap returns [ErrShed].
func (e *ShedError) Unwrap() error { return ErrShed }

// Retryable reports false: a shed means the protected resource must get
// less traffic, and retrying at once would add to it. It is the contract by
// which the retry package classifies errors without this package importing
// it.
func (e *ShedError) Retryable() bool { return false }

// Rejected reports true: the call was refused before it reached the
// downstream, so a circuit breaker must not count it as the downstream's
// failure (breaker.DefaultClassify ignores it).
func (e *ShedError) Rejected() bool { return true }

// WeightError is returned for a call whose weight is below 1 or above the
// capacity: such a call could never be admitted, so it is rejected at once
// instead of waiting forever.
type WeightError struct {
	Weight   int64
	Capacity int64
}

// Retryable reports false: the same weight is rejected on every attempt.
func (e *WeightError) Retryable() bool { return false }

// Rejected reports true: the call never reached the downstream.
func (e *WeightError) Rejected() bool { return true }

func (e *WeightError) Error() string {
	return fmt.Sprintf("backpressure: weight must be between 1 and capacity %d, got %d", e.Capacity, e.Weight)
}

// A Limiter bounds the weight of calls in flight. It is shared, non-generic
// state: one Limiter can guard stages of any types through [Middleware] and
// [Weighted]. A Limiter is safe for concurrent use and must be created with
// [New].
type Limiter struct {
	capacity  int64
	softLimit int64
	mode      Mode
	maxWait   time.Duration
	maxQueue  int64
	onSoft    func(depth, softLimit int64)
	onShed    func(*ShedError)
	logger    *slog.Logger
	name      string
	counter   *Counter

	// state packs the weight in flight (low 32 bits) and the number of
	// queued waiters (high 32 bits) into one word, so that admission is a
	// single compare-and-swap that can see both. A call is admitted on the
	// fast path only when nobody waits (first in, first out). The waiter
	// count changes only with mu held; the weight changes lock-free on the
	// fast path and with mu held when waiters are admitted.
	state atomic.Uint64

	mu         sync.Mutex
	head, tail *waiter // FIFO of queued calls, guarded by mu
}

const oneWaiter = 1 << 32

func split(s uint64) (inflight, queued int64) { return int64(uint32(s)), int64(s >> 32) }

// waiter is a call queued for a slot.
type waiter struct {
	weight     int64
	ready      chan struct{} // closed when the waiter is admitted
	admitted   bool          // guarded by Limiter.mu
	depth      int64         // weight in flight just after admission; read after ready is closed
	prev, next *waiter       // guarded by Limiter.mu
}

// New returns a Limiter that admits calls while the weight in flight stays
// within capacity. Capacity must be between 1 and [MaxCapacity]; an invalid
// capacity or Config field is reported as an error naming it.
func New(capacity int64, cfg Config) (*Limiter, error) {
	switch {
	case capacity < 1:
		return nil, fmt.Errorf("backpressure: capacity must be at least 1, got %d", capacity)
	case capacity > MaxCapacity:
		return nil, fmt.Errorf("backpressure: capacity must be at most %d, got %d", MaxCapacity, capacity)
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
	case cfg.SoftLimit >= capacity:
		return nil, fmt.Errorf("backpressure: SoftLimit must be below capacity %d, got %d", capacity, cfg.SoftLimit)
	}
	l := &Limiter{
		capacity:  capacity,
		softLimit: cfg.SoftLimit,
		mode:      cfg.Mode,
		maxWait:   cfg.MaxWait,
		maxQueue:  int64(cfg.MaxQueue),
		onSoft:    cfg.OnSoftLimit,
		onShed:    cfg.OnShed,
		logger:    cfg.Logger,
		name:      cfg.Name,
		counter:   cfg.Counter,
	}
	if l.maxQueue == 0 {
		l.maxQueue = capacity
	}
	return l, nil
}

// Capacity returns the capacity the Limiter was created with.
func (l *Limiter) Capacity() int64 { return l.capacity }

// Depth returns the weight of the calls in flight: admitted and not yet
// returned. It never exceeds the capacity.
func (l *Limiter) Depth() int64 {
	d, _ := split(l.state.Load())
	return d
}

// Queued returns the number of calls waiting for a slot (Wait mode).
func (l *Limiter) Queued() int64 {
	_, q := split(l.state.Load())
	return q
}

// SoftLimitRatio returns Depth divided by the soft limit: 1 or more means
// the soft limit is reached. It is 0 when no soft limit is set.
func (l *Limiter) SoftLimitRatio() float64 {
	if l.softLimit == 0 {
		return 0
	}
	return float64(l.Depth()) / float64(l.softLimit)
}

// acquire admits a call of weight w or returns why not: the caller's
// context error, a *WeightError or a *ShedError. On success the caller must
// call release(w) exactly once.
func (l *Limiter) acquire(ctx context.Context, w int64) error {
	// A caller that has already gone is not admitted, even with capacity
	// free (golang/go#63615): its work would be wasted.
	if err := ctx.Err(); err != nil {
		return err
	}
	if w < 1 || w > l.capacity {
		return &WeightError{Weight: w, Capacity: l.capacity}
	}
	for {
		s := l.state.Load()
		inflight, queued := split(s)
		if queued != 0 || inflight+w > l.capacity {
			if l.mode == Shed {
				return l.shed(ctx, w, s, 0)
			}
			return l.wait(ctx, w)
		}
		if l.state.CompareAndSwap(s, s+uint64(w)) {
			l.admitted()
			l.checkSoftLimit(ctx, inflight+w, w)
			return nil
		}
	}
}

// release returns w to the limiter and admits queued calls that now fit.
func (l *Limiter) release(w int64) {
	if s := l.state.Add(^uint64(w - 1)); s>>32 != 0 { // minus w
		l.mu.Lock()
		l.admitLocked()
		l.mu.Unlock()
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
				h.depth = inflight + h.weight
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
func (l *Limiter) wait(ctx context.Context, w int64) error {
	l.mu.Lock()
	var s uint64
	for {
		s = l.state.Load()
		inflight, queued := split(s)
		if queued == 0 && inflight+w <= l.capacity {
			// Capacity was freed since the fast path looked.
			if l.state.CompareAndSwap(s, s+uint64(w)) {
				l.mu.Unlock()
				l.admitted()
				l.checkSoftLimit(ctx, inflight+w, w)
				return nil
			}
			continue
		}
		if queued >= l.maxQueue {
			l.mu.Unlock()
			return l.shed(ctx, w, s, 0)
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
	if l.counter != nil {
		l.counter.waited.Add(1)
	}

	start := time.Now()
	var timeout <-chan time.Time
	if l.maxWait > 0 {
		t := time.NewTimer(l.maxWait)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-wt.ready:
		l.admitted()
		l.checkSoftLimit(ctx, wt.depth, w)
		return nil
	case <-ctx.Done():
		if l.leave(wt) {
			// Admitted as the context ended: the caller has gone, so the
			// slot goes back.
			l.release(w)
		}
		if l.counter != nil {
			l.counter.canceled.Add(1)
		}
		return ctx.Err()
	case <-timeout:
		if l.leave(wt) {
			// Admitted as the wait ran out: keep the slot.
			l.admitted()
			l.checkSoftLimit(ctx, wt.depth, w)
			return nil
		}
		return l.shed(ctx, w, l.state.Load(), time.Since(start))
	}
}

// admitted counts an admission made off the fast path.
func (l *Limiter) admitted() {
	if l.counter != nil {
		l.counter.admitted.Add(1)
	}
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

// checkSoftLimit reports the soft limit when admitting weight w took the
// depth from below it to depth.
func (l *Limiter) checkSoftLimit(ctx context.Context, depth, w int64) {
	if l.softLimit > 0 && depth >= l.softLimit && depth-w < l.softLimit {
		l.softLimitReached(ctx, depth)
	}
}

func (l *Limiter) shed(ctx context.Context, w int64, s uint64, waited time.Duration) error {
	inflight, queued := split(s)
	err := &ShedError{Depth: inflight, Capacity: l.capacity, Weight: w, Queued: queued, Waited: waited}
	if l.counter != nil {
		l.counter.shed.Add(1)
	}
	if l.onShed != nil {
		l.onShed(err)
	}
	if l.logger != nil {
		l.log(ctx, slog.LevelInfo, "backpressure: shed",
			slog.Int64("depth", inflight), slog.Int64("capacity", l.capacity),
			slog.Int64("weight", w), slog.Int64("queued", queued), slog.Duration("waited", waited))
	}
	return err
}

func (l *Limiter) softLimitReached(ctx context.Context, depth int64) {
	if l.onSoft != nil {
		l.onSoft(depth, l.softLimit)
	}
	if l.logger != nil {
		l.log(ctx, slog.LevelWarn, "backpressure: soft limit reached",
			slog.Int64("depth", depth), slog.Int64("soft_limit", l.softLimit), slog.Int64("capacity", l.capacity))
	}
}

func (l *Limiter) log(ctx context.Context, level slog.Level, msg string, attrs ...slog.Attr) {
	if !l.logger.Enabled(ctx, level) {
		return
	}
	if l.name != "" {
		attrs = append(attrs, slog.String("name", l.name))
	}
	l.logger.LogAttrs(ctx, level, msg, attrs...)
}
