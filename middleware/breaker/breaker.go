package breaker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/brace-go/brace/internal/xerrors"
	"github.com/brace-go/brace/middleware"
)

// Config configures a [Breaker]. The zero value is a consecutive-failure
// breaker that opens after 5 failures in a row, stays open 30s, then lets
// one probe through, with its state in memory and no observer.
type Config struct {
	// Name names the guarded service in errors and events.
	Name string
	// Observer, when set, receives the breaker's events (see the Events
	// section of the package documentation). Nil observes nothing.
	Observer middleware.Observer

	// Threshold is the number of consecutive failures that opens the
	// breaker (consecutive mode). Default 5; negative is an error. It
	// cannot be combined with FailureRate.
	Threshold int

	// FailureRate, when set (0 < FailureRate <= 1), selects rate mode: the
	// breaker opens when, over the rolling Window, at least MinCalls
	// results were recorded and the share of failures reaches FailureRate.
	FailureRate float64
	// Window is the length of the rolling window (rate mode). Default 30s.
	Window time.Duration
	// Buckets is how many buckets the window is divided into; counts
	// leave the window one bucket at a time. Default 10; at most 1000.
	Buckets int
	// MinCalls is the number of results the window must hold before the
	// rate is judged (rate mode). Default 10.
	MinCalls int
	// SlowCallDuration, when positive, marks calls that take at least this
	// long as slow (rate mode).
	SlowCallDuration time.Duration
	// SlowCallRate, when positive (at most 1), also opens the breaker when
	// the share of slow calls in the window reaches it. It needs
	// SlowCallDuration.
	SlowCallRate float64

	// OpenTimeout is how long the breaker stays open before it lets
	// probes through. Default 30s.
	OpenTimeout time.Duration
	// OpenDelay, when set, is asked for the open time with the error of
	// every failure, outside any lock; its answer is used if that failure
	// opens the breaker, and a result <= 0 means OpenTimeout. Use it to
	// honour a Retry-After hint. A huge result keeps the breaker open
	// that long (time arithmetic saturates). If it panics, the failure is
	// recorded with OpenTimeout and the panic goes on to the caller.
	OpenDelay func(err error) time.Duration

	// HalfOpenProbes is the number of calls admitted in half-open state.
	// Default 1.
	HalfOpenProbes int
	// SuccessThreshold is how many probes must succeed to close the
	// breaker; one failing probe opens it again. Default HalfOpenProbes;
	// it must be between 1 and HalfOpenProbes.
	SuccessThreshold int
	// ProbeTimeout is the lease of a half-open probe slot: once every
	// slot is taken and ProbeTimeout has passed since the last one was
	// taken, the slots of probes that have not succeeded are given to new
	// probes, so a probe whose result never arrives (a lost reply, a
	// crashed process, a Permit never finished) cannot keep the breaker
	// half-open for ever. A late result of such a probe still counts.
	// Default 10s; it must be positive. Set it above the longest call you
	// expect, or a slow probe lets a second probe through.
	ProbeTimeout time.Duration

	// Classify maps a call's error to an Outcome. Default
	// [DefaultClassify]: nil is a success, context.Canceled is ignored,
	// any other error is a failure. It is called outside any lock; if it
	// panics, the result is recorded as a failure and the panic goes on
	// to the caller.
	Classify func(err error) Outcome

	// Store, when set, holds the state shared with other breakers (see
	// [Store]). Nil keeps the state in this breaker, the fastest.
	Store Store
	// StoreSync is how long the breaker serves calls from its local view of
	// the Store before it reads the store again, how long it waits after
	// a store error before trying the store again, and the time bound of a
	// background refresh started by [Breaker.State]. Default 1s.
	StoreSync time.Duration
	// MaxKeys bounds the table of per-key breakers of [Keyed]: a new key
	// beyond it evicts the least recently used key with no call in flight
	// (a closed one if there is one). Default 1024; negative is an error.
	MaxKeys int
	// KeyIdle is how long a key of [Keyed] may go without calls before it
	// is forgotten (unless it has a call in flight, is open before its
	// open time ends, or is forced): it comes back as a new, closed
	// breaker. Keys are forgotten lazily, never in the background.
	// Default 10m; negative is an error.
	KeyIdle time.Duration
}

// DefaultClassify is the classifier used when Config.Classify is nil: nil
// is a Success; an error matching context.Canceled is Ignored (the caller
// went away; the downstream is not to blame); so is a local rejection, an
// error with a method Rejected() bool that reports true, such as a
// backpressure shed, a rate limit or another breaker's rejection (the
// downstream was never called, so it says nothing about its health);
// anything else, including context.DeadlineExceeded, is a Failure.
func DefaultClassify(err error) Outcome {
	switch {
	case err == nil:
		return Success
	case errors.Is(err, context.Canceled), xerrors.Rejected(err):
		return Ignore
	}
	return Failure
}

// Breaker is a circuit breaker guarding one downstream. Build it with
// [New]; use it through [Middleware] or with [Breaker.Acquire] and
// [Permit.Done]. It is safe for concurrent use.
//
// Its state lives in one of two places. Without a Store, the machine in
// the breaker is the state (local.go). With one, the store holds it and
// the machine is this process's view of it and its fallback while the
// store fails (shared.go). The rules themselves are in one place, the
// machine's step (state.go), which MemoryStore runs too.
type Breaker struct {
	// Read on every call: after a cache line of padding, so that the
	// end of the object before this one in memory, which other
	// goroutines may write, does not share their line.
	_     [64]byte
	view  atomic.Pointer[view]
	fails atomic.Int64 // consecutive failures as last seen: a success must reset them
	_     [48]byte
	// Rate mode: the bucketRef of the current bucket of the window while a
	// timer vouches for it, 0 when the clock must be read (bucketNow).
	// Written once per bucket: on a cache line of its own.
	coarse atomic.Uint64
	_      [56]byte
	// Written by every rejection: striped, on cache lines of their own,
	// so that rejections do not slow the reads of view and fails, nor
	// each other on different CPUs.
	rejected stripedCounter

	policy   Policy
	base     time.Time // origin of the breaker's clock, see now
	name     string
	obs      middleware.Observer
	slow     int64 // SlowCallDuration in ns; 0 = not measured
	rate     bool
	classify func(error) Outcome
	// nilIsSuccess: classify is DefaultClassify, so a nil error is a
	// success without calling it.
	nilIsSuccess bool
	// fast: what view.fast is in Closed state.
	fast  uint8
	delay func(error) time.Duration
	sh    *shared   // nil without a Store
	keys  *keyTable // the breakers of Keyed, by key

	mu          sync.Mutex
	m           machine // without a store: the state; with one: the view and the fallback
	transitions uint64  // state changes, for Stats
	events      []queued
	delivering  bool
}

// view is what the fast paths read: one atomic load gives a consistent
// state, generation, open deadline and the error to reject with. A new view
// is allocated only when the state changes.
type view struct {
	state State
	// fast: Closed state on the local path with the default classifier
	// and no slow-call measure, where a call needs no Permit (see
	// Middleware): fastConsecutive or fastRate; 0 otherwise.
	fast  uint8
	local bool // store mode: state decided locally after a store error
	gen   uint64
	until int64 // Open: when probes may start, on the breaker's clock
	err   *OpenError
	// near (Open, local path) is set by a timer armed when the view is
	// published, a little before until (see openHint). Until it is set
	// the open time cannot have passed, so a rejection needs no clock
	// read; once it is set, the clock decides, so the move to half-open
	// happens exactly at until.
	near atomic.Bool
	// A view is read by every call: padded to 128 bytes, a size class
	// whose objects start on a cache line and fill two, so that no other
	// object written by other goroutines shares a line with it. (A view
	// is allocated only when the state changes.)
	_ [80]byte
}

// The kinds of view.fast.
const (
	fastConsecutive = 1 + iota
	fastRate
)

// fastIn is view.fast for a view in state s.
func (b *Breaker) fastIn(s State) uint8 {
	if s != Closed {
		return 0
	}
	return b.fast
}

// effective is the state at time now: an open breaker whose open time has
// passed is half-open (the machine moves there at the next operation).
func (v *view) effective(now int64) State {
	if v.state == Open && now >= v.until {
		return HalfOpen
	}
	return v.state
}

// queued is a state change waiting to be delivered to the observer.
type queued struct {
	ctx    context.Context
	t      transition
	reason string
	err    error
}

// New returns a breaker configured by cfg, or an error naming the field
// and the rule when cfg is invalid. With a Store, New binds it to the
// breaker's [Policy] ([Store.Bind]) and returns its error if it refuses.
func New(cfg Config) (*Breaker, error) {
	p, err := cfg.policy()
	if err != nil {
		return nil, err
	}
	b := &Breaker{
		policy:   p,
		base:     time.Now(),
		name:     cfg.Name,
		obs:      cfg.Observer,
		slow:     int64(cfg.SlowCallDuration),
		rate:     p.Threshold == 0,
		classify: cfg.Classify,
		delay:    cfg.OpenDelay,
	}
	if b.classify == nil {
		b.classify, b.nilIsSuccess = DefaultClassify, true
	}
	b.m = newMachine(&b.policy)
	if b.rate && cfg.Store == nil {
		b.m.addStripes()
	}
	if cfg.Store != nil {
		if err := cfg.Store.Bind(p); err != nil {
			return nil, fmt.Errorf("breaker: Store.Bind refused the policy: %w", err)
		}
		b.sh = newShared(b, cfg.Store, cfg.StoreSync)
	}
	if b.sh == nil && b.nilIsSuccess && b.slow == 0 {
		b.fast = fastConsecutive
		if b.rate {
			b.fast = fastRate
		}
	}
	b.keys = newKeyTable(b, &cfg)
	b.view.Store(&view{state: Closed, gen: 1, fast: b.fast})
	return b, nil
}

func (c *Config) policy() (Policy, error) {
	p := Policy{
		Threshold:        c.Threshold,
		FailureRate:      c.FailureRate,
		SlowCallRate:     c.SlowCallRate,
		MinCalls:         c.MinCalls,
		Buckets:          c.Buckets,
		OpenTimeout:      c.OpenTimeout,
		Probes:           c.HalfOpenProbes,
		SuccessThreshold: c.SuccessThreshold,
		ProbeLease:       c.ProbeTimeout,
	}
	fail := func(format string, args ...any) (Policy, error) {
		return Policy{}, fmt.Errorf("breaker: "+format, args...)
	}
	switch {
	case c.Threshold < 0:
		return fail("Threshold must be at least 1, got %d", c.Threshold)
	case c.FailureRate < 0 || c.FailureRate > 1 || c.FailureRate != c.FailureRate:
		return fail("FailureRate must be in (0, 1], got %v", c.FailureRate)
	case c.Threshold > 0 && c.FailureRate > 0:
		return fail("Threshold and FailureRate select different modes; set one, got %d and %v", c.Threshold, c.FailureRate)
	case c.SlowCallRate < 0 || c.SlowCallRate > 1 || c.SlowCallRate != c.SlowCallRate:
		return fail("SlowCallRate must be in (0, 1], got %v", c.SlowCallRate)
	case c.SlowCallDuration < 0:
		return fail("SlowCallDuration must not be negative, got %v", c.SlowCallDuration)
	case c.SlowCallRate > 0 && c.SlowCallDuration == 0:
		return fail("SlowCallRate needs SlowCallDuration, got 0")
	case (c.SlowCallRate > 0 || c.SlowCallDuration > 0) && c.FailureRate == 0:
		return fail("SlowCallDuration and SlowCallRate need rate mode (FailureRate), got FailureRate 0")
	case c.Window < 0:
		return fail("Window must be positive, got %v", c.Window)
	case c.Buckets < 0 || c.Buckets > 1000:
		return fail("Buckets must be between 1 and 1000, got %d", c.Buckets)
	case c.MinCalls < 0:
		return fail("MinCalls must be at least 1, got %d", c.MinCalls)
	case c.OpenTimeout < 0:
		return fail("OpenTimeout must be positive, got %v", c.OpenTimeout)
	case c.HalfOpenProbes < 0:
		return fail("HalfOpenProbes must be at least 1, got %d", c.HalfOpenProbes)
	case c.ProbeTimeout < 0:
		return fail("ProbeTimeout must be positive, got %v", c.ProbeTimeout)
	case c.StoreSync < 0:
		return fail("StoreSync must be positive, got %v", c.StoreSync)
	case c.MaxKeys < 0:
		return fail("MaxKeys must be at least 1, got %d", c.MaxKeys)
	case c.KeyIdle < 0:
		return fail("KeyIdle must be positive, got %v", c.KeyIdle)
	}
	if p.FailureRate == 0 && p.Threshold == 0 {
		p.Threshold = 5
	}
	if p.FailureRate > 0 {
		window := c.Window
		if window == 0 {
			window = 30 * time.Second
		}
		if p.Buckets == 0 {
			p.Buckets = 10
		}
		p.BucketWidth = window / time.Duration(p.Buckets)
		if p.BucketWidth < time.Millisecond {
			return fail("Window / Buckets must be at least 1ms, got %v / %d", window, p.Buckets)
		}
		if p.MinCalls == 0 {
			p.MinCalls = 10
		}
	} else {
		p.Buckets, p.MinCalls = 0, 0
	}
	if p.OpenTimeout == 0 {
		p.OpenTimeout = 30 * time.Second
	}
	if p.Probes == 0 {
		p.Probes = 1
	}
	if p.SuccessThreshold == 0 {
		p.SuccessThreshold = p.Probes
	}
	if p.SuccessThreshold < 1 || p.SuccessThreshold > p.Probes {
		return fail("SuccessThreshold must be between 1 and HalfOpenProbes (%d), got %d", p.Probes, p.SuccessThreshold)
	}
	if p.ProbeLease == 0 {
		p.ProbeLease = 10 * time.Second
	}
	return p, nil
}

// now is the breaker's clock: monotonic nanoseconds since New.
func (b *Breaker) now() int64 { return int64(time.Since(b.base)) }

// Permit is the permission to make one call, returned by
// [Breaker.Acquire]; finish it with [Permit.Done]. It is a small value:
// it ties the result to the state generation it was admitted in, tells
// whether it holds a half-open probe slot, and carries the start time when
// slow calls are measured. Done zeroes it, so a second Done does nothing;
// the zero Permit's Done does nothing.
type Permit struct {
	b     *Breaker
	ctx   context.Context // the call's: for the Store and the Observer
	gen   uint64
	start int64
	probe bool
	local bool // store mode: admitted by the local fallback
}

// Acquire asks permission for one call. It returns a Permit to finish with
// [Permit.Done] when the call ends, or an [*OpenError] (matching
// [ErrOpen]) when the call must not be made; then there is nothing to
// finish. A ctx that has already ended gets ctx.Err() and takes nothing.
// ctx is given to the Store, if any, and to the Observer.
func (b *Breaker) Acquire(ctx context.Context) (p Permit, err error) {
	err = b.acquire(ctx, &p)
	return p, err
}

// Done reports the end of the call, classifying err with Config.Classify:
// a success, a failure or nothing (ignored; an ignored probe gives its
// slot back). Finish every Permit, also when the call panicked (as a
// failure, as [Middleware] does), or a half-open probe slot stays taken
// until its lease (Config.ProbeTimeout) runs out. A result of a call
// admitted before the state last changed does not count against the new
// state. Done zeroes p.
func (p *Permit) Done(err error) {
	b := p.b
	if b == nil {
		return
	}
	if err == nil && b.nilIsSuccess && !p.probe && !b.rate && b.fails.Load() == 0 {
		// The fast path, with or without a store: a success in consecutive
		// mode with no failure streak to reset changes nothing.
		*p = Permit{}
		return
	}
	q := p.take()
	if err == nil && b.nilIsSuccess {
		b.record(&q, Success, 0, nil)
		return
	}
	b.finish(&q, err)
}

// take returns a copy of p and zeroes p. It copies field by field: see
// acquire.
func (p *Permit) take() Permit {
	q := Permit{b: p.b, ctx: p.ctx, gen: p.gen, start: p.start, probe: p.probe, local: p.local}
	*p = Permit{}
	return q
}

// finish classifies a result and records it. The user's callbacks run
// here, outside any lock; if one panics, the result is recorded as a
// failure (so that no probe slot is lost) and the panic goes on.
func (b *Breaker) finish(q *Permit, err error) {
	settled := false
	defer func() {
		if !settled {
			b.record(q, Failure, 0, err)
		}
	}()
	o := b.classify(err)
	var openFor time.Duration
	if o == Failure && b.delay != nil && err != nil {
		openFor = b.delay(err)
	}
	settled = true
	b.record(q, o, openFor, err)
}

// abandon finishes a permit whose call ended without returning (a panic or
// runtime.Goexit) as a failure.
func (p *Permit) abandon() {
	if b := p.b; b != nil {
		q := p.take()
		b.record(&q, Failure, 0, errAbandoned)
	}
}

var errAbandoned = errors.New("breaker: the call panicked or called runtime.Goexit")

func (b *Breaker) record(q *Permit, o Outcome, openFor time.Duration, err error) {
	if b.sh != nil {
		b.sh.record(q, o, openFor, err)
		return
	}
	b.recordLocal(q, o, openFor, err)
}

// resultOp is the operation that records one result.
func resultOp(q *Permit, o Outcome, openFor time.Duration, slow bool) Op {
	op := Op{Kind: OpResult, Gen: q.gen, Probe: q.probe}
	switch o {
	case Success:
		op.Successes = 1
	case Failure:
		op.Failures = 1
		op.OpenFor = openFor
	default:
		op.Ignored = 1
	}
	if slow {
		op.Slow = 1
	}
	return op
}

// reject refuses a call with err, counting it and reporting it.
func (b *Breaker) reject(ctx context.Context, err *OpenError, retryAfter time.Duration) error {
	b.rejected.add()
	if b.obs != nil {
		b.emitRejected(ctx, err, retryAfter)
	}
	return err
}

func (b *Breaker) emitRejected(ctx context.Context, err *OpenError, retryAfter time.Duration) {
	middleware.Emit(ctx, b.obs, middleware.Event{Kind: middleware.Rejected, Concern: "breaker", Name: b.name,
		Reason: "open", Delay: retryAfter, Err: err})
}

// rejectSnapshot refuses a call that s did not admit. The error is the
// view's, shared by every rejection in that state, unless the view admits
// calls: another goroutine published a newer state (closed) between this
// operation and now. Then the error describes s.
func (b *Breaker) rejectSnapshot(ctx context.Context, s *Snapshot) error {
	e := b.view.Load().err
	if e == nil {
		e = &OpenError{Name: b.name, State: s.State}
		if s.State == Open {
			e.Until = time.Now().Add(s.RetryAfter)
		}
	}
	return b.reject(ctx, e, s.RetryAfter)
}

// enqueue counts state changes and queues them for the observer, with
// reason and, for a change to open, the error that opened it. b.mu is
// held.
func (b *Breaker) enqueue(ctx context.Context, ts []transition, reason string, cause error) {
	b.transitions += uint64(len(ts))
	if b.obs == nil {
		return
	}
	for _, t := range ts {
		q := queued{ctx: ctx, t: t, reason: reason}
		if t.to == Open {
			q.err = cause
		}
		b.events = append(b.events, q)
	}
}

// publish makes the machine's state visible to the fast paths. b.mu is
// held.
func (b *Breaker) publish(local bool) {
	m := &b.m
	b.fails.Store(int64(m.consec))
	v := b.view.Load()
	if v.state == m.state && v.gen == m.gen && v.local == local && (m.state != Open || v.until == m.until) {
		return
	}
	nv := &view{state: m.state, gen: m.gen, until: m.until, local: local,
		fast: b.fastIn(m.state)}
	switch m.state {
	case Open:
		nv.err = &OpenError{Name: b.name, State: Open, Until: b.base.Add(time.Duration(m.until))}
		if b.sh == nil {
			b.armHint(nv)
		} else {
			nv.near.Store(true) // with a Store the clock always decides
		}
	case HalfOpen, ForcedOpen:
		nv.err = &OpenError{Name: b.name, State: m.state}
	}
	b.view.Store(nv)
}

// deliver gives queued state changes to the observer, in order, outside
// the lock. One goroutine delivers at a time; others leave their changes
// to it, so an observer that calls back into the breaker does not
// deadlock, and changes are observed in the order they were made.
func (b *Breaker) deliver() {
	b.mu.Lock()
	if b.delivering {
		b.mu.Unlock()
		return
	}
	b.delivering = true
	defer func() {
		b.delivering = false
		b.mu.Unlock()
	}()
	for i := 0; i < len(b.events); i++ {
		q := b.events[i]
		b.mu.Unlock()
		middleware.Emit(q.ctx, b.obs, middleware.Event{
			Kind: middleware.StateChanged, Concern: "breaker", Name: b.name,
			From: q.t.from.String(), To: q.t.to.String(), Failures: int64(q.t.counts.Failures),
			Reason: q.reason, Err: q.err,
		})
		b.mu.Lock()
	}
	clear(b.events)
	b.events = b.events[:0]
}

// State returns the current state. It has no side effects on the state:
// an open breaker whose open time has passed reports HalfOpen, and moves
// there at its next call. With a Store it is the local view, which
// follows the store at most StoreSync behind while the breaker is used;
// when State finds the view older than that, it starts one refresh in the
// background (one goroutine at most per breaker, bounded by StoreSync,
// that ends when the store answers) and returns the view it has, so a
// caller polling State sees another process's change within about
// StoreSync plus one round trip, even while the breaker gets no calls.
func (b *Breaker) State() State {
	v := b.view.Load()
	now := b.now()
	if b.sh != nil {
		b.sh.refreshIfStale(now)
	}
	return v.effective(now)
}

// Stats are what a breaker has counted, as [Breaker.Stats] returns them.
type Stats struct {
	// State is [Breaker.State].
	State State
	// Counts of the current generation, as this breaker knows them.
	// With a Store they are those of the last snapshot it adopted (or
	// its local ones while the store fails); in consecutive mode
	// successes are counted only when they end a failure streak.
	Counts Counts
	// Transitions counts state changes (StateChanged events).
	Transitions uint64
	// Rejected counts calls refused with an *OpenError.
	Rejected uint64
	// StoreFailures counts Store errors (StoreFailed events).
	StoreFailures uint64
	// Keys is the number of keys in the table of [Keyed] breakers,
	// including idle ones not forgotten yet (see [Breaker.Key]).
	Keys int
	// KeysEvicted counts keys removed from a full table to make room for
	// a new one; KeysForgotten, keys forgotten after Config.KeyIdle.
	KeysEvicted, KeysForgotten uint64
	// KeysFull counts calls refused with [ErrTooManyKeys] (Rejected events
	// with Reason "keys").
	KeysFull uint64
}

// Stats returns the breaker's state and counts. It has no side effects
// and does no I/O.
func (b *Breaker) Stats() Stats {
	v := b.view.Load()
	b.mu.Lock()
	now := b.now()
	s := Stats{State: b.m.state, Counts: b.m.counts(&b.policy, now), Transitions: b.transitions}
	until := b.m.until
	if b.sh != nil && !v.local && b.sh.lastGen == b.m.gen {
		s.Counts = b.sh.last
	}
	b.mu.Unlock()
	if s.State == Open && now >= until {
		s.State, s.Counts = HalfOpen, Counts{}
	}
	s.Rejected = b.rejected.load()
	if b.sh != nil {
		s.StoreFailures = b.sh.failures.Load()
	}
	b.keys.keyStats(&s)
	return s
}

// ForceOpen opens the breaker until [Breaker.Reset] or
// [Breaker.ForceClosed]; time does not close it. See [Breaker.Reset] for
// what happens when a Store fails.
func (b *Breaker) ForceOpen(ctx context.Context) error { return b.force(ctx, ForcedOpen) }

// ForceClosed admits every call and never opens until [Breaker.Reset] or
// [Breaker.ForceOpen]; results are still counted. See [Breaker.Reset] for
// what happens when a Store fails.
func (b *Breaker) ForceClosed(ctx context.Context) error { return b.force(ctx, ForcedClosed) }

// Reset closes the breaker and clears its counts. A ctx that has already
// ended gets ctx.Err() and changes nothing. With a Store, the change is
// made in the store (one Update, even while the breaker is using its
// local state after a store error) and adopted; when the store fails,
// Reset, ForceOpen and ForceClosed return an error wrapping the store's
// and change nothing, not even this process's state: processes never
// silently disagree. Without a Store they return nil.
func (b *Breaker) Reset(ctx context.Context) error { return b.force(ctx, Closed) }

func (b *Breaker) force(ctx context.Context, s State) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.sh != nil {
		return b.sh.force(ctx, s)
	}
	b.stepLocal(ctx, Op{Kind: OpForce, State: s}, nil)
	return nil
}
