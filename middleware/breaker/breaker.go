package breaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a [Breaker]. The zero value is a consecutive-failure
// breaker that opens after 5 failures in a row, stays open 30s, then lets
// one probe through.
type Config struct {
	// Name names the guarded service in errors and logs.
	Name string

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
	// OpenDelay, when set, is asked for the open time when a failure
	// opens the breaker, with that failure's error; a result <= 0 means
	// OpenTimeout. Use it to honour a Retry-After hint.
	OpenDelay func(err error) time.Duration

	// HalfOpenProbes is the number of calls admitted in half-open state.
	// Default 1.
	HalfOpenProbes int
	// SuccessThreshold is how many probes must succeed to close the
	// breaker; one failing probe opens it again. Default HalfOpenProbes;
	// it must be between 1 and HalfOpenProbes.
	SuccessThreshold int

	// Classify maps a call's error to an Outcome. Default
	// [DefaultClassify]: nil is a success, context.Canceled is ignored,
	// any other error is a failure.
	Classify func(err error) Outcome

	// OnStateChange, when set, is called after every state change, in the
	// order the changes happened, outside any lock, with the counts of the
	// generation that ended. It may call back into the breaker.
	OnStateChange func(from, to State, counts Counts)
	// OnStoreError, when set, is called when the Store fails and the
	// breaker falls back to its local state.
	OnStoreError func(err error)
	// Logger, when set, receives state changes (info; warn when opening)
	// and store errors (warn). Nil is silent.
	Logger *slog.Logger

	// Store, when set, holds the state shared with other breakers (see
	// [Store]). Nil keeps the state in this breaker, the fastest.
	Store Store
	// StoreSync is how long the breaker serves calls from its local view of
	// the Store before it reads the store again, and how long it waits after
	// a store error before trying the store again. Default 1s.
	StoreSync time.Duration

	// Counter, when set, counts results, rejections and state changes
	// (see [Counter]). Nil means no counting, at the cost of one nil
	// check per call.
	Counter *Counter
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
	case errors.Is(err, context.Canceled), rejected(err):
		return Ignore
	}
	return Failure
}

// rejected reports whether err's chain holds a local rejection: an error
// with a Rejected() bool method that reports true. This is the contract by
// which Brace's policies mark "the downstream was not called" without
// importing each other.
func rejected(err error) bool {
	// A hand-written walk of the chain: errors.As would move its target to
	// the heap and allocate on every failure.
	for err != nil {
		if r, ok := err.(interface{ Rejected() bool }); ok && r.Rejected() {
			return true
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if rejected(e) {
					return true
				}
			}
			return false
		default:
			return false
		}
	}
	return false
}

// Breaker is a circuit breaker guarding one downstream. Build it with
// [New]; use it through [Middleware] or with [Breaker.Allow] and
// [Breaker.Done]. It is safe for concurrent use.
type Breaker struct {
	// Read on every call.
	view    atomic.Pointer[view]
	fails   atomic.Int64 // consecutive failures as last seen: a success must reset them
	synced  atomic.Int64 // store mode: when the view was last read from the store
	retryAt atomic.Int64 // store mode: no store operation before this time (after an error)
	pending atomic.Int64 // store, rate mode: successes not yet sent to the store

	policy   Policy
	base     time.Time // origin of the breaker's clock, see now
	name     string
	slow     int64 // SlowCallDuration in ns; 0 = not measured
	sync     int64
	rate     bool
	classify func(error) Outcome
	// nilIsSuccess: classify is DefaultClassify, so a nil error is a
	// success without calling it.
	nilIsSuccess bool
	delay        func(error) time.Duration
	onChange     func(from, to State, counts Counts)
	onStore      func(error)
	log          *slog.Logger
	store        Store
	counter      *Counter

	// Store mode: snapshots adopted, so that a reply that arrives after a
	// newer one is not adopted over it (see adopt). Written under mu.
	adopts atomic.Uint64

	mu         sync.Mutex
	m          machine // without a store: the state; with one: the fallback
	seq        uint64  // store mode: Seq of the last snapshot adopted
	events     []transition
	delivering bool
}

// view is what the fast paths read: one atomic load gives a consistent
// state, generation, open deadline and the error to reject with. A new view
// is allocated only when the state changes.
type view struct {
	state State
	gen   uint64
	until int64 // Open: when probes may start, on the breaker's clock
	err   *OpenError
	local bool // store mode: state decided locally after a store error
}

// Ticket is the permission to make one call, returned by [Breaker.Allow]
// and handed back to [Breaker.Done] or [Breaker.Record]. It is a small
// value: it ties the result to the generation it was admitted in, tells
// whether it holds a probe slot, and carries the start time when slow
// calls are measured. The zero Ticket is ignored by Done and Record.
type Ticket struct {
	gen   uint64
	start int64
	probe bool
	local bool
}

// New returns a breaker configured by cfg, or an error naming the field
// and the rule when cfg is invalid.
func New(cfg Config) (*Breaker, error) {
	p, err := cfg.policy()
	if err != nil {
		return nil, err
	}
	b := &Breaker{
		policy:   p,
		base:     time.Now(),
		name:     cfg.Name,
		slow:     int64(cfg.SlowCallDuration),
		sync:     int64(cfg.StoreSync),
		rate:     p.Threshold == 0,
		classify: cfg.Classify,
		delay:    cfg.OpenDelay,
		onChange: cfg.OnStateChange,
		onStore:  cfg.OnStoreError,
		log:      cfg.Logger,
		store:    cfg.Store,
		counter:  cfg.Counter,
	}
	if b.classify == nil {
		b.classify, b.nilIsSuccess = DefaultClassify, true
	}
	if b.sync == 0 {
		b.sync = int64(time.Second)
	}
	b.m = newMachine(&b.policy)
	b.view.Store(&view{state: Closed, gen: 1})
	b.synced.Store(-b.sync) // stale: the first call reads the store
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
	case c.StoreSync < 0:
		return fail("StoreSync must be positive, got %v", c.StoreSync)
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
	return p, nil
}

// now is the breaker's clock: monotonic nanoseconds since New.
func (b *Breaker) now() int64 { return int64(time.Since(b.base)) }

// Allow asks permission for one call. It returns a Ticket to hand to
// [Breaker.Done] or [Breaker.Record] when the call ends, or an
// [*OpenError] (matching [ErrOpen]) when the call must not be made; then
// there is nothing to report. ctx is passed to the Store, if any.
func (b *Breaker) Allow(ctx context.Context) (Ticket, error) {
	v := b.view.Load()
	if b.store == nil {
		switch v.state {
		case Closed, ForcedClosed:
			t := Ticket{gen: v.gen}
			if b.slow > 0 {
				t.start = b.now()
			}
			return t, nil
		case ForcedOpen:
			return b.reject(v.err)
		case Open:
			if b.now() < v.until {
				return b.reject(v.err)
			}
		}
	} else {
		now := b.now()
		// The view is fresh while it is younger than StoreSync. A view
		// decided locally after a store error stays fresh only until it
		// is time to try the store again, so shared operation resumes
		// when the store comes back, in any state.
		fresh := now-b.synced.Load() < b.sync || (v.local && now < b.retryAt.Load())
		switch {
		case fresh && (v.state == Closed || v.state == ForcedClosed):
			return Ticket{gen: v.gen, start: now, local: v.local}, nil
		case fresh && v.state == ForcedOpen, fresh && v.state == Open && now < v.until:
			return b.reject(v.err)
		}
	}
	return b.allowSlow(ctx)
}

// reject refuses a call with err, counting it.
func (b *Breaker) reject(err *OpenError) (Ticket, error) {
	if b.counter != nil {
		b.counter.rejections.Add(1)
	}
	return Ticket{}, err
}

func (b *Breaker) allowSlow(ctx context.Context) (Ticket, error) {
	s, local := b.apply(ctx, Op{Kind: OpAcquire})
	if !s.Admitted {
		return b.reject(b.rejection(&s))
	}
	return Ticket{gen: s.Gen, start: b.now(), probe: s.Probe, local: local}, nil
}

// rejection returns the error for a call that s did not admit. It is the
// view's error, shared by every rejection in that state, unless the view
// admits calls: another goroutine published a newer state (closed) between
// this operation and now. Then the error describes s.
func (b *Breaker) rejection(s *Snapshot) *OpenError {
	if err := b.view.Load().err; err != nil {
		return err
	}
	e := &OpenError{Name: b.name, State: s.State}
	if s.State == Open {
		e.Until = time.Now().Add(s.RetryAfter)
	}
	return e
}

// Done reports the end of a call admitted by [Breaker.Allow], classifying
// err with Config.Classify. Call it exactly once per Ticket, also when the
// call panicked (as a failure), or a half-open probe slot stays taken.
// Results of calls admitted before the state last changed do not count
// against the new state. ctx is passed, without its cancellation, to the
// Store if one is set.
func (b *Breaker) Done(ctx context.Context, t Ticket, err error) {
	o := Success
	if err != nil || !b.nilIsSuccess {
		o = b.classify(err)
	}
	b.record(ctx, t, o, err)
}

// Record is [Breaker.Done] with an outcome the caller classified itself.
func (b *Breaker) Record(ctx context.Context, t Ticket, o Outcome) {
	b.record(ctx, t, o, nil)
}

func (b *Breaker) record(ctx context.Context, t Ticket, o Outcome, err error) {
	if t.gen == 0 {
		return
	}
	if b.counter != nil {
		b.counter.result(o)
	}
	var now int64
	slow := false
	if b.rate {
		now = b.now()
		slow = b.slow > 0 && now-t.start >= b.slow
	}
	if o == Success && !t.probe && !slow {
		// The fast paths: a success in closed state changes nothing but a
		// counter, unless there are consecutive failures to reset.
		if !b.rate {
			if b.fails.Load() == 0 {
				return
			}
		} else if b.store == nil {
			if b.addSuccess(t.gen, now) {
				return
			}
		} else if !t.local {
			if v := b.view.Load(); v.gen == t.gen && v.state == Closed {
				b.pending.Add(1)
				return
			}
		}
	}
	op := Op{Kind: OpResult, Gen: t.gen, Probe: t.probe}
	switch o {
	case Success:
		op.Successes = 1
	case Failure:
		op.Failures = 1
		if b.delay != nil && err != nil {
			op.OpenFor = b.delay(err)
		}
	default:
		op.Ignored = 1
	}
	if slow {
		op.Slow = 1
	}
	if b.store != nil && t.local {
		b.applyLocal(&op)
		return
	}
	if b.store != nil {
		ctx = context.WithoutCancel(ctx)
	}
	b.apply(ctx, op)
}

// addSuccess counts a rate-mode success without the lock when the bucket
// for now is current; it reports false when the slow path must do it.
func (b *Breaker) addSuccess(gen uint64, now int64) bool {
	v := b.view.Load()
	if v.gen != gen {
		return true // from an earlier generation: not counted
	}
	if v.state != Closed {
		return false
	}
	n := now / int64(b.policy.BucketWidth)
	bk := &b.m.win[n%int64(len(b.m.win))]
	if bk.num.Load() != n {
		return false
	}
	bk.succ.Add(1)
	return true
}

// apply runs op against the store, or locally when there is none or it
// fails. It reports whether the state was decided locally.
func (b *Breaker) apply(ctx context.Context, op Op) (Snapshot, bool) {
	if b.store == nil {
		return b.applyLocal(&op), true
	}
	now := b.now()
	if now >= b.retryAt.Load() {
		v := b.view.Load()
		if b.rate && (op.Kind != OpResult || op.Gen == v.gen) && !v.local {
			if n := b.pending.Swap(0); n > 0 {
				if op.Kind != OpResult {
					op.Gen = v.gen
				}
				op.Successes += int(n)
			}
		}
		seen := b.adopts.Load()
		s, err := b.store.Update(ctx, &b.policy, op)
		if err == nil {
			b.adopt(&s, seen)
			return s, false
		}
		b.retryAt.Store(b.now() + b.sync)
		if b.log != nil {
			b.logAttrs(slog.LevelWarn, "breaker: store failed; using local state", slog.Any("err", err))
		}
		if b.onStore != nil {
			b.onStore(err)
		}
		if op.Kind == OpResult && !op.Probe {
			// Best effort: count the result locally. The view's generation
			// is the machine's, published under b.mu; reading b.m here,
			// without the lock, would race with adopt.
			op.Gen = b.view.Load().gen
		}
	}
	return b.applyLocal(&op), true
}

// applyLocal steps the local machine.
func (b *Breaker) applyLocal(op *Op) Snapshot {
	b.mu.Lock()
	s := b.m.step(&b.policy, op, b.now())
	b.publish(b.store != nil)
	queued := len(b.events) > 0
	b.mu.Unlock()
	if queued {
		b.deliver()
	}
	return s
}

// adopt makes a store snapshot the local state, unless it is older than the
// last one adopted. Replies to concurrent operations can arrive in another
// order than the store applied them, and adopting an older snapshot over a
// newer one would, for example, close a breaker that has just opened. seen
// is b.adopts when the operation was sent.
//
// A snapshot is older only if its Seq is smaller and another snapshot was
// adopted while its operation was on its way. An operation sent after the
// last adoption was applied after it, so its snapshot is adopted whatever
// its Seq: a store whose Seq went back (one that breaks the contract, or a
// Redis whose clock jumped back while its key expired) costs at most one
// ignored reply, and the breaker follows it from its next operation on.
// Falling back to local state after a store error changes nothing here:
// the next operation that reaches the store is adopted by the same rule.
func (b *Breaker) adopt(s *Snapshot, seen uint64) {
	b.mu.Lock()
	if s.Seq < b.seq && b.adopts.Load() != seen {
		b.mu.Unlock()
		return
	}
	b.seq = s.Seq
	b.adopts.Add(1)
	now := b.now()
	m := &b.m
	m.ntrans = 0
	if s.Gen != m.gen || s.State != m.state {
		m.setState(&b.policy, s.State, now)
		b.pending.Store(0)
	}
	m.gen = s.Gen
	m.until = now + int64(s.RetryAfter)
	m.consec, m.probes, m.probeOK = s.Counts.ConsecutiveFailures, s.Counts.Probes, s.Counts.ProbeSuccesses
	if m.win == nil || m.state != Closed {
		m.succ, m.fail = s.Counts.Successes, s.Counts.Failures
	}
	b.publish(false)
	b.synced.Store(now)
	queued := len(b.events) > 0
	b.mu.Unlock()
	if queued {
		b.deliver()
	}
}

// publish makes the machine's state visible to the fast paths and queues
// its transitions for delivery. b.mu is held.
func (b *Breaker) publish(local bool) {
	m := &b.m
	b.fails.Store(int64(m.consec))
	b.events = append(b.events, m.trans[:m.ntrans]...)
	v := b.view.Load()
	if v.state == m.state && v.gen == m.gen && v.local == local && (m.state != Open || v.until == m.until) {
		return
	}
	nv := &view{state: m.state, gen: m.gen, until: m.until, local: local}
	switch m.state {
	case Open:
		until := b.base.Add(time.Duration(m.until))
		nv.err = &OpenError{Name: b.name, State: Open, Until: until}
	case HalfOpen, ForcedOpen:
		nv.err = &OpenError{Name: b.name, State: m.state}
	}
	b.view.Store(nv)
}

// deliver calls the hooks for queued transitions, in order, outside the
// lock. One goroutine delivers at a time; others leave their transitions
// to it, so a hook that calls back into the breaker does not deadlock.
func (b *Breaker) deliver() {
	b.mu.Lock()
	if b.delivering {
		b.mu.Unlock()
		return
	}
	b.delivering = true
	defer func() { // also when a hook panics
		b.delivering = false
		b.mu.Unlock()
	}()
	for i := 0; i < len(b.events); i++ {
		t := b.events[i]
		b.mu.Unlock()
		b.emit(t)
		b.mu.Lock()
	}
	clear(b.events)
	b.events = b.events[:0]
}

func (b *Breaker) emit(t transition) {
	if b.counter != nil {
		b.counter.transitions[t.to].Add(1)
	}
	if b.log != nil {
		level := slog.LevelInfo
		if t.to == Open || t.to == ForcedOpen {
			level = slog.LevelWarn
		}
		b.logAttrs(level, "breaker: state changed",
			slog.String("from", t.from.String()), slog.String("to", t.to.String()),
			slog.Int("failures", t.counts.Failures), slog.Int("consecutive_failures", t.counts.ConsecutiveFailures))
	}
	if b.onChange != nil {
		b.onChange(t.from, t.to, t.counts)
	}
}

// logAttrs logs a record with attrs and, when the breaker has one, its
// name. b.log is not nil.
func (b *Breaker) logAttrs(level slog.Level, msg string, attrs ...slog.Attr) {
	ctx := context.Background()
	if !b.log.Enabled(ctx, level) {
		return
	}
	if b.name != "" {
		attrs = append(attrs, slog.String("name", b.name))
	}
	b.log.LogAttrs(ctx, level, msg, attrs...)
}

// State returns the current state. An open breaker whose open time has
// passed reports HalfOpen. With a Store it is the local view, at most
// StoreSync old.
func (b *Breaker) State() State {
	if b.store == nil {
		return b.applyLocal(&Op{Kind: OpSync}).State
	}
	v := b.view.Load()
	if v.state == Open && b.now() >= v.until {
		return HalfOpen
	}
	return v.state
}

// Counts returns the counts of the current generation. With a Store it
// asks the store (one operation, so the counts include other breakers'
// results) and returns the local view's counts when the store fails.
func (b *Breaker) Counts() Counts {
	if b.store == nil {
		return b.applyLocal(&Op{Kind: OpSync}).Counts
	}
	s, _ := b.apply(context.Background(), Op{Kind: OpSync})
	return s.Counts
}

// ForceOpen opens the breaker until [Breaker.Reset] or
// [Breaker.ForceClosed]; time does not close it.
func (b *Breaker) ForceOpen() { b.apply(context.Background(), Op{Kind: OpForce, State: ForcedOpen}) }

// ForceClosed admits every call and never opens until [Breaker.Reset] or
// [Breaker.ForceOpen]; results are still counted.
func (b *Breaker) ForceClosed() {
	b.apply(context.Background(), Op{Kind: OpForce, State: ForcedClosed})
}

// Reset closes the breaker and clears its counts.
func (b *Breaker) Reset() { b.apply(context.Background(), Op{Kind: OpForce, State: Closed}) }
