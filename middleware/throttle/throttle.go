package throttle

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/brace-go/brace/internal/xrand"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/priority"
)

// Defaults for the zero [Config].
const (
	defaultK              = 2
	defaultWindow         = 10 * time.Second
	defaultBuckets        = 10
	defaultMinRequests    = 10
	defaultMaxProbability = 0.9
	maxBuckets            = 1000
)

// The states a throttler reports in [middleware.StateChanged] events and
// in [Stats].State.
const (
	// StatePassing: no call is being rejected (the probability is zero
	// for every level).
	StatePassing = "passing"
	// StateThrottling: calls are being rejected with a positive
	// probability (for at least the lowest level in use).
	StateThrottling = "throttling"
)

// Config configures a [Throttler]. The zero value is valid and means the
// defaults: K 2, a 10 s window in 10 buckets, at least 10 requests in the
// window before rejecting, a rejection probability of at most 0.9, the
// [DefaultAccepted] classification, no priorities, a random seed, no name
// and no observer.
type Config struct {
	// Name is the throttler's name in its events and errors. Optional.
	Name string

	// K is the SRE book's multiplier: the throttler lets through about K
	// calls for every call the downstream accepted in the window, and
	// rejects the rest locally. Lower is more aggressive. Zero means 2.
	// It must be at least 1 and finite (a K below 1 would reject calls to
	// a downstream that accepts every one of them).
	K float64

	// Window is how long a request or an accept counts. Zero means 10 s.
	// It must not be negative. The recovery bound (see the package doc)
	// is a small number of windows, so a shorter window recovers sooner
	// but decides on fewer calls.
	Window time.Duration

	// Buckets is how many parts the window is divided into: counts fall
	// out of the window one bucket at a time, never all at once. Zero
	// means 10. It must be between 1 and 1000, and Window/Buckets at least
	// 1 ns.
	Buckets int

	// MinRequests is how many requests the window must hold before the
	// throttler rejects anything, so a handful of failures on a quiet
	// client does not throttle it. Zero means 10. It must not be negative.
	MinRequests int

	// MaxProbability caps the rejection probability, so that some calls
	// always reach the downstream and notice when it recovers; it is what
	// bounds the recovery time. Zero means 0.9. It must be in (0, 1]; 1
	// means no cap (the SRE book's formula alone, which recovers slowly
	// after a long outage: see the package doc).
	MaxProbability float64

	// Accepted reports whether the downstream accepted a call that ended
	// with the non-nil error err. A nil error is always accepted; a local
	// rejection (Rejected() true) and context.Canceled are never given to
	// it and count neither as requests nor as accepts. Nil means
	// [DefaultAccepted]. It is called on the caller's goroutine with no
	// lock held; if it panics, the call is not counted and the panic goes
	// on to the caller.
	Accepted func(err error) bool

	// Priorities turns on priority shedding: the throttler reads each
	// call's level with [priority.From] and gives the rejections to the
	// lowest levels first. The window's counts and the probability p are
	// the same as without priorities; what changes is who bears them:
	// the p × requests rejections the formula asks for are assigned to
	// sheddable calls first, then to default calls, and critical calls
	// are rejected only when the lower levels, rejected entirely, are not
	// enough. So under overload sheddable calls are rejected first and
	// most, critical calls last and least, and the downstream sees the
	// same number of calls. Off (false), no call pays for a context
	// lookup.
	Priorities bool

	// Seed seeds the random source that draws rejections, for
	// reproducible tests. Zero means a random seed.
	Seed uint64

	// Observer, if set, receives a [middleware.Rejected] event (Reason
	// "throttle") for every rejection and a [middleware.StateChanged]
	// event when throttling starts or stops. Nil means none.
	Observer middleware.Observer
}

// Throttler is client-side adaptive throttling (Google SRE book, "Handling
// Overload"): it counts, over a rolling window, the requests its caller
// made and the ones the downstream accepted, and rejects each new call
// locally with probability
//
//	max(0, (requests − K·accepts) / (requests + 1))
//
// capped at MaxProbability. Build it with [New]; use it through
// [Middleware] or with [Throttler.Acquire] and [Permit.Done]. It is safe
// for concurrent use. Its zero value is not usable.
type Throttler struct {
	name     string
	obs      middleware.Observer
	accepted func(error) bool
	prio     bool
	k        float64
	maxP     float64
	minReq   int64
	width    time.Duration // one bucket
	origin   time.Time
	rnd      *xrand.Source
	errs     [101]RejectedError // one per percent of probability

	// p caches the rejection probability per level index, as float bits,
	// computed when the window last changed (a finished call, a
	// rejection). Acquire reads it with one atomic load.
	p        [priority.Levels]atomic.Uint64
	pEpoch   atomic.Int64  // the bucket p was computed in
	rejected atomic.Uint64 // counted on the rejection path only

	mu         sync.Mutex
	latest     int64 // the newest bucket seen: a late clock reading never goes back
	buckets    []bucket
	win        bucket // the window's totals, as of bucket winAt
	winAt      int64
	throttling bool  // the state last reported
	changed    int64 // the bucket in which the state last changed; -1 before
	calm       bool  // at the last update, requests − K·accepts ≤ 0
}

type bucket struct {
	epoch    int64 // which bucket of time this is; stale when older than the window
	requests int64
	accepts  int64
	byLevel  [priority.Levels]int64 // requests per level index, with priorities on
}

// New returns a Throttler for cfg, or an error naming the field that is
// invalid. It starts no goroutine and no timer.
func New(cfg Config) (*Throttler, error) {
	k := cfg.K
	switch {
	case k == 0:
		k = defaultK
	case math.IsNaN(k) || math.IsInf(k, 0) || k < 1:
		return nil, fmt.Errorf("throttle: K must be a finite number of at least 1, got %v", cfg.K)
	}
	window := cfg.Window
	switch {
	case window == 0:
		window = defaultWindow
	case window < 0:
		return nil, fmt.Errorf("throttle: Window must be positive, got %v", window)
	}
	n := cfg.Buckets
	switch {
	case n == 0:
		n = defaultBuckets
	case n < 0 || n > maxBuckets:
		return nil, fmt.Errorf("throttle: Buckets must be between 1 and %d, got %d", maxBuckets, n)
	}
	if window < time.Duration(n) {
		return nil, fmt.Errorf("throttle: Window (%v) must be at least 1ns per bucket (Buckets %d)", window, n)
	}
	minReq := cfg.MinRequests
	switch {
	case minReq == 0:
		minReq = defaultMinRequests
	case minReq < 0:
		return nil, fmt.Errorf("throttle: MinRequests must not be negative, got %d", minReq)
	}
	maxP := cfg.MaxProbability
	switch {
	case maxP == 0:
		maxP = defaultMaxProbability
	case math.IsNaN(maxP) || maxP < 0 || maxP > 1:
		return nil, fmt.Errorf("throttle: MaxProbability must be in (0, 1], got %v", maxP)
	}
	t := &Throttler{
		name:     cfg.Name,
		obs:      cfg.Observer,
		accepted: cfg.Accepted,
		prio:     cfg.Priorities,
		k:        k,
		maxP:     maxP,
		minReq:   int64(minReq),
		width:    window / time.Duration(n),
		buckets:  make([]bucket, n),
		changed:  -1,
		winAt:    -1,
	}
	if t.accepted == nil {
		t.accepted = DefaultAccepted
	}
	for i := range t.errs {
		t.errs[i] = RejectedError{Name: cfg.Name, Probability: float64(i) / 100, after: t.width}
	}
	for i := range t.buckets {
		t.buckets[i].epoch = -1
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.rnd = xrand.New(seed)
	t.origin = time.Now()
	return t, nil
}

// Permit is a call admitted by [Throttler.Acquire]. It is a small value;
// the zero Permit is one that was refused or already finished.
type Permit struct {
	t   *Throttler
	ctx context.Context
	l   priority.Level
}

// Acquire decides whether a call may be made. It returns ctx.Err() without
// counting anything if ctx has already ended, a [*RejectedError] (matching
// [ErrThrottled]) if the throttler rejects the call, and otherwise a
// [Permit] to finish with [Permit.Done] once the call has its result. It
// never waits.
//
// An admitted call is counted when it is finished, so a call whose Permit
// is never finished (abandoned, or a stage that panicked) counts for
// nothing. A rejection counts as a request, as the SRE book's formula
// wants; it is counted in [Stats].Rejected and reported to the Observer as
// a [middleware.Rejected] event with Reason "throttle".
func (t *Throttler) Acquire(ctx context.Context) (Permit, error) {
	if err := ctx.Err(); err != nil {
		return Permit{}, err
	}
	l, err := t.admit(ctx)
	if err != nil {
		return Permit{}, err
	}
	return Permit{t: t, ctx: ctx, l: l}, nil
}

// Done finishes the permit with the call's error: nil, or an error the
// throttler classifies with Config.Accepted (a local rejection from an
// inner concern and context.Canceled count for nothing). A second Done is
// a no-op. If Accepted panics, the permit is finished, nothing is counted,
// and the panic goes on.
func (p *Permit) Done(err error) {
	t, ctx, l := p.t, p.ctx, p.l
	if t == nil {
		return
	}
	*p = Permit{}
	t.record(ctx, l, err)
}

// admit draws the call's fate from the cached probability of its level.
// ctx has not ended.
func (t *Throttler) admit(ctx context.Context) (priority.Level, error) {
	l := priority.Default
	if t.prio {
		l = priority.From(ctx)
	}
	i := l.Index()
	p := math.Float64frombits(t.p[i].Load())
	if p == 0 {
		return l, nil
	}
	// Throttling: make sure p is not from an older bucket (a quiet
	// spell after an outage must not reject a call on stale counts).
	e := t.epoch()
	if e != t.pEpoch.Load() {
		t.mu.Lock()
		e = t.advance(e)
		t.roll(e)
		ch, top := t.update(e)
		t.mu.Unlock()
		if ch != noChange && t.obs != nil {
			t.emitChange(ctx, ch, top)
		}
		p = math.Float64frombits(t.p[i].Load())
	}
	if p == 0 || t.rnd.Float64() >= p {
		return l, nil
	}
	return l, t.reject(ctx, e, l, p)
}

// reject counts a rejection as a request and builds its error and event.
func (t *Throttler) reject(ctx context.Context, e int64, l priority.Level, p float64) error {
	t.mu.Lock()
	e = t.advance(e)
	t.roll(e)
	b := t.current(e)
	b.requests++
	t.win.requests++
	if t.prio {
		b.byLevel[l.Index()]++
		t.win.byLevel[l.Index()]++
	}
	ch, top := t.update(e)
	t.mu.Unlock()
	t.rejected.Add(1)
	i := int(p*100 + 0.5)
	i = min(max(i, 1), 100)
	err := &t.errs[i]
	if t.obs != nil {
		ev := middleware.Event{
			Kind: middleware.Rejected, Concern: "throttle", Name: t.name, Reason: "throttle",
			Err: err, Probability: p, Delay: t.width,
		}
		if t.prio {
			ev.Priority = l
		}
		middleware.Emit(ctx, t.obs, ev)
		t.emitChange(ctx, ch, top)
	}
	return err
}

// record counts a finished call of level l.
func (t *Throttler) record(ctx context.Context, l priority.Level, err error) {
	acc := true
	if err != nil {
		if neither(err) {
			return
		}
		acc = t.accepted(err) // may panic: nothing is held or counted yet
	}
	e := t.epoch()
	t.mu.Lock()
	e = t.advance(e)
	t.roll(e)
	b := t.current(e)
	b.requests++
	t.win.requests++
	if acc {
		b.accepts++
		t.win.accepts++
	}
	if t.prio {
		b.byLevel[l.Index()]++
		t.win.byLevel[l.Index()]++
	}
	if acc && t.calm && e == t.pEpoch.Load() {
		// The success path: an accept cannot raise requests − K·accepts
		// (K ≥ 1) above zero, so every probability stays zero and the
		// window need not be summed again in this bucket.
		t.mu.Unlock()
		return
	}
	ch, p := t.update(e)
	t.mu.Unlock()
	if ch != noChange && t.obs != nil {
		t.emitChange(ctx, ch, p)
	}
}

// A change of state found by update.
const (
	noChange = iota
	started
	stopped
)

func (t *Throttler) emitChange(ctx context.Context, ch int, p float64) {
	switch ch {
	case started:
		middleware.Emit(ctx, t.obs, middleware.Event{
			Kind: middleware.StateChanged, Concern: "throttle", Name: t.name,
			From: StatePassing, To: StateThrottling, Probability: p,
		})
	case stopped:
		middleware.Emit(ctx, t.obs, middleware.Event{
			Kind: middleware.StateChanged, Concern: "throttle", Name: t.name,
			From: StateThrottling, To: StatePassing, Probability: p,
		})
	}
}

// update recomputes the cached probabilities from the window's totals,
// rolled to bucket e, and the state.
// It returns the change of state, if any, and the probability p in force
// (for all levels together). The state changes at most once per bucket,
// so a probability that hovers around zero cannot flood the log: a change
// within the bucket of the last one waits for the first update in a later
// bucket. t.mu must be held.
func (t *Throttler) update(e int64) (change int, p float64) {
	w := t.win
	t.calm = float64(w.requests)-t.k*float64(w.accepts) <= 0
	p = t.prob(w)
	if t.prio {
		levels := t.levels(w, p)
		for i := range t.p {
			t.p[i].Store(math.Float64bits(levels[i]))
		}
	} else {
		t.p[priority.Default.Index()].Store(math.Float64bits(p))
	}
	t.pEpoch.Store(e)
	if on := p > 0; on == t.throttling || e == t.changed {
		return noChange, p
	}
	t.changed = e
	t.throttling = !t.throttling
	if t.throttling {
		return started, p
	}
	return stopped, p
}

// prob is the SRE book's rejection probability for the window's counts,
// capped at MaxProbability, and zero below MinRequests.
func (t *Throttler) prob(w bucket) float64 {
	if w.requests < t.minReq {
		return 0
	}
	p := (float64(w.requests) - t.k*float64(w.accepts)) / float64(w.requests+1)
	if !(p > 0) {
		return 0
	}
	return min(p, t.maxP)
}

// levels returns the rejection probability of each level index for the
// window's counts w and probability p. Without priorities every level has
// p. With them, the p × requests rejections the formula asks for go to
// the lowest levels first, in proportion to each level's requests in the
// window: a level is rejected entirely before the next one up is
// rejected at all. A level with no requests in the window gets 1 if the
// rejections reach it, so its first calls are rejected rather than the
// higher levels'.
func (t *Throttler) levels(w bucket, p float64) (ps [priority.Levels]float64) {
	if !t.prio || p == 0 {
		for i := range ps {
			ps[i] = p
		}
		return ps
	}
	m := p * float64(w.requests) // rejections still to assign
	for i, r := range w.byLevel {
		switch rf := float64(r); {
		case m <= 0:
			// Nothing left to reject: this level and the ones above pass.
		case m >= rf:
			ps[i] = 1
			m -= rf
		default:
			ps[i] = m / rf
			m = 0
		}
	}
	return ps
}

// epoch returns the number of the bucket of time we are in.
func (t *Throttler) epoch() int64 {
	return int64(max(time.Since(t.origin), 0) / t.width)
}

// advance returns the bucket to count in for a clock reading of bucket e:
// e, or a newer bucket already seen by a caller that read the clock later
// (a reading delayed by a whole window must not clear newer counts).
// t.mu must be held.
func (t *Throttler) advance(e int64) int64 {
	if e < t.latest {
		return t.latest
	}
	t.latest = e
	return e
}

// roll moves the window's totals to bucket e (≥ every bucket seen before):
// the buckets that leave the window are subtracted, one at a time, or all
// at once after a quiet spell of a whole window. t.mu must be held.
func (t *Throttler) roll(e int64) {
	if e <= t.winAt {
		return
	}
	n := int64(len(t.buckets))
	if e-t.winAt >= n {
		t.win = bucket{}
	} else {
		for x := max(t.winAt-n+1, 0); x <= e-n; x++ {
			b := &t.buckets[x%n]
			if b.epoch != x {
				continue
			}
			t.win.requests -= b.requests
			t.win.accepts -= b.accepts
			for l := range t.win.byLevel {
				t.win.byLevel[l] -= b.byLevel[l]
			}
		}
	}
	t.winAt = e
}

// current returns the bucket for epoch e, clearing it if it holds an older
// epoch. t.mu must be held.
func (t *Throttler) current(e int64) *bucket {
	b := &t.buckets[e%int64(len(t.buckets))]
	if b.epoch != e {
		*b = bucket{epoch: e}
	}
	return b
}

// sums returns the counts of the window ending with bucket e, in a bucket
// (whose epoch means nothing), from the buckets themselves: the pure
// getters use it, leaving the running totals alone. t.mu must be held.
func (t *Throttler) sums(e int64) (w bucket) {
	oldest := e - int64(len(t.buckets))
	for i := range t.buckets {
		b := &t.buckets[i]
		if b.epoch > oldest && b.epoch <= e {
			w.requests += b.requests
			w.accepts += b.accepts
			for l := range w.byLevel {
				w.byLevel[l] += b.byLevel[l]
			}
		}
	}
	return w
}

// Stats is a snapshot of a [Throttler].
type Stats struct {
	// Requests is the number of requests in the window: admitted calls
	// that finished and were counted, plus rejected calls.
	Requests int64
	// Accepts is the number of calls in the window the downstream
	// accepted.
	Accepts int64
	// Probability is the rejection probability now, for all calls
	// together: max(0, (Requests − K·Accepts) / (Requests + 1)), capped
	// at MaxProbability, and 0 below MinRequests. With priorities on,
	// [Throttler.Probability] gives each level's share of it.
	Probability float64
	// State is StatePassing or StateThrottling, as last reported by a
	// StateChanged event (the state changes at most once per bucket).
	State string
	// Rejected counts the calls rejected since New.
	Rejected uint64
}

// Stats returns a snapshot of the throttler. It has no side effects: it
// reads the clock and, briefly, the window under the throttler's lock.
func (t *Throttler) Stats() Stats {
	e := t.epoch()
	t.mu.Lock()
	w := t.sums(max(e, t.latest))
	state := StatePassing
	if t.throttling {
		state = StateThrottling
	}
	t.mu.Unlock()
	return Stats{Requests: w.requests, Accepts: w.accepts, Probability: t.prob(w), State: state, Rejected: t.rejected.Load()}
}

// Probability returns the probability that a call of level l would be
// rejected now. Without Config.Priorities it is the same for every level,
// [Stats].Probability. It has no side effects.
func (t *Throttler) Probability(l priority.Level) float64 {
	e := t.epoch()
	t.mu.Lock()
	w := t.sums(max(e, t.latest))
	t.mu.Unlock()
	ps := t.levels(w, t.prob(w))
	return ps[l.Index()]
}
