package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/brace-go/brace/middleware"
)

// Defaults for Config.MaxKeys and Config.IdleTimeout.
const (
	defaultMaxKeys     = 10_000
	defaultIdleTimeout = time.Minute
)

// ErrLimited is the sentinel every rate-limit rejection matches:
// errors.Is(err, ratelimit.ErrLimited) holds for each *[LimitedError].
var ErrLimited = errors.New("ratelimit: limited")

// LimitedError is returned when a call is refused by the limiter. It
// matches [ErrLimited] and carries how long the caller should wait before
// trying again. Its RetryAfter method is the server-hint contract retry
// honours, so a retry around the limiter waits at least that long.
//
// It also names the limit that refused, with that limit's quota and
// window, which is what the IETF RateLimit and RateLimit-Policy header
// fields carry (httpx sends them). With several limits, the one named is
// the one that would keep the call waiting longest.
//
// The same *LimitedError may be returned to many callers: treat it as
// read-only.
type LimitedError struct {
	// Delay is how long until the limiter would admit the call, as
	// estimated at the moment of the refusal and rounded up (see
	// [Limiter.Acquire]).
	Delay time.Duration

	// Limit is the name of the limit that refused: its [Limit].Name, or,
	// for a Limiter configured with Config.Rate, Config.Name ("" if
	// unset).
	Limit string

	// Quota is that limit's burst: the most it admits at once.
	Quota int64

	// Window is the time that limit takes to refill its whole Quota from
	// empty (Quota divided by its rate), rounded up to the nanosecond.
	Window time.Duration
}

func (e *LimitedError) Error() string {
	if e.Limit != "" {
		return "ratelimit: limited by " + strconv.Quote(e.Limit) + ", retry after " + e.Delay.String()
	}
	return "ratelimit: limited, retry after " + e.Delay.String()
}

// Is reports whether target is [ErrLimited].
func (e *LimitedError) Is(target error) bool { return target == ErrLimited }

// RetryAfter returns Delay.
func (e *LimitedError) RetryAfter() time.Duration { return e.Delay }

// Rejected reports true: the call was refused before it reached the
// downstream, so a circuit breaker around the limiter does not count it as
// the downstream's failure.
func (e *LimitedError) Rejected() bool { return true }

// CostError is returned, without waiting and without taking anything, for
// a call whose cost could never be admitted: a cost larger than the burst
// of a limit it is charged to (waiting would never end), or a negative
// cost. It does not match [ErrLimited]: the call is at fault, not the
// load. Its Rejected method reports true and its Retryable method false.
type CostError struct {
	Limit string // the limit whose burst the cost exceeds; "" for a negative cost
	Cost  int64  // the call's cost
	Burst int64  // that limit's burst; 0 for a negative cost
}

func (e *CostError) Error() string {
	if e.Cost < 0 {
		return fmt.Sprintf("ratelimit: cost must not be negative, got %d", e.Cost)
	}
	return fmt.Sprintf("ratelimit: cost %d exceeds the burst %d of limit %q: it could never be admitted", e.Cost, e.Burst, e.Limit)
}

// Rejected reports true: the call was refused before it reached the
// downstream.
func (e *CostError) Rejected() bool { return true }

// Retryable reports false: the same call would be refused again.
func (e *CostError) Retryable() bool { return false }

// ErrNaNKey is returned by a [Keyed] adapter, without running the stage or
// taking a token, for a key that is not equal to itself: a key holding a
// floating-point NaN could never be found again in the table. Its
// Rejected method reports true and its Retryable method false.
var ErrNaNKey error = nanKeyError{}

type nanKeyError struct{}

func (nanKeyError) Error() string   { return "ratelimit: key is not equal to itself (NaN)" }
func (nanKeyError) Rejected() bool  { return true }
func (nanKeyError) Retryable() bool { return false }

// Limit is one of several limits a [Limiter] enforces together
// (Config.Limits), such as the requests per minute and the tokens per
// minute an LLM provider allows. A call is admitted only when every limit
// has room for it, and then takes from all of them at once.
type Limit struct {
	// Name names the limit in refusals ([LimitedError].Limit,
	// [CostError].Limit) and in the IETF RateLimit header fields. It is
	// required, unique within Config.Limits, and made of printable ASCII
	// other than '"' and '\' (it is sent as a structured-field string).
	Name string

	// Rate is the number of units the limit admits per Per, sustained.
	// It must be positive; math.Inf(1) (or float64(rate.Inf)) means no
	// limit.
	Rate float64

	// Per is the period Rate is counted over. Zero means one second.
	// 60 per time.Minute is the same limit as 1 per second; only the
	// default Burst differs.
	Per time.Duration

	// Burst is the most units admitted at once after a quiet period (the
	// bucket size). Zero means one Per's worth of Rate, rounded up, and
	// at least 1. A call costing more than Burst is refused with a
	// *[CostError].
	Burst int64

	// PerCall makes every call cost 1 unit of this limit, whatever its
	// cost: a limit on requests. Without it a call costs its cost (the
	// n of [Limiter.AcquireN], the cost func of [Costed]; 1 for
	// Acquire and Middleware): a limit on tokens, bytes or other units.
	PerCall bool
}

// Config configures a [Limiter]: either Rate (and Burst) for one limit,
// or Limits for several. Every other field has a default.
type Config struct {
	// Rate is the sustained number of units admitted per second, for
	// example 100 or rate.Every(10*time.Millisecond). A call costs one
	// unit, or its cost with [Limiter.AcquireN] and [Costed]. It must be
	// positive, or rate.Inf to admit everything, unless Limits is set
	// instead. There is no default: a rate limit without a rate would be
	// a guess.
	Rate rate.Limit

	// Burst is the number of units that may be admitted at once after a
	// quiet period (the bucket size). Zero means one second's worth of
	// Rate, rounded up, and at least 1. It must be zero with Limits.
	Burst int

	// Limits, instead of Rate and Burst, sets several limits that every
	// call must satisfy together (see [Limit]). Each Keyed key gets its
	// own buckets for all of them.
	Limits []Limit

	// MaxWait selects the mode. Zero rejects a call at once when no token
	// is available. A positive MaxWait lets a call wait for its tokens up
	// to that long, and rejects it at once when the wait would be longer,
	// or would outlast the caller's context deadline. With one limit a
	// waiting call reserves its tokens and calls are admitted in the
	// order they arrived; with several, a waiting call sleeps until every
	// limit would have room and tries again, so a costly call may be
	// overtaken by cheap ones (MaxWait still bounds its total wait).
	MaxWait time.Duration

	// MaxKeys bounds the number of keys each [Keyed] table holds. When a
	// new key arrives and the table is full, the least recently used key
	// is forgotten. Zero means 10,000. Unused without Keyed.
	MaxKeys int

	// IdleTimeout is how long a key must go unused before a [Keyed] table
	// may forget it, which happens only once its buckets have also
	// refilled, so forgetting never changes what a key is allowed. Zero
	// means one minute. Unused without Keyed.
	IdleTimeout time.Duration

	// Name is the instance's name in its events ([middleware.Event].Name),
	// and the name of the limit that Rate sets.
	Name string

	// Observer, if not nil, receives a [middleware.Rejected] event for each
	// refusal (Reason "rate" with Delay the retry-after and Limit the
	// refusing limit's burst, Reason "cost" for a *[CostError] with Limit
	// the burst it exceeds, or Reason "key" for [ErrNaNKey]) and a
	// [middleware.Waited] event for each call admitted after waiting
	// (Wait), on the caller's goroutine, outside any lock.
	Observer middleware.Observer
}

// Stats is a snapshot of what a [Limiter] has done.
type Stats struct {
	Rejected uint64 // calls refused (Rejected events): rate limited, a cost that never fits, or a NaN key
	Waited   uint64 // calls admitted after waiting for their tokens (Waited events)
	Keys     int64  // keys held now, over all of the Limiter's Keyed tables
}

// limitSettings is the validated, immutable part of one limit.
type limitSettings struct {
	name    string
	rate    float64 // units per second
	inf     bool
	burst   float64 // a whole number
	perCall bool
	window  time.Duration // burst / rate

	// errs holds the refusals of reject mode, one per step of grid up to
	// the time one token takes, and coarse holds those of larger delays,
	// one per step of coarseGrid (1, 2 or 5 ms times a power of ten, at
	// least 1/1024 of window) up to window (a costly call); both are
	// built on first use and shared from then on, so that a refusal
	// allocates nothing.
	grid       time.Duration
	errs       []atomic.Pointer[LimitedError]
	coarseGrid time.Duration
	coarse     []atomic.Pointer[LimitedError]
}

// cost returns what a call of cost n takes from the limit.
func (s *limitSettings) cost(n int64) float64 {
	if s.perCall {
		return 1
	}
	return float64(n)
}

// settings is the validated, immutable part of a Limiter.
type settings struct {
	limits  []limitSettings
	inf     bool // every limit is infinite
	maxWait time.Duration
}

// maxErrs and maxCoarse bound the refusals kept per table.
const (
	maxErrs   = 256
	maxCoarse = 1024
)

func validate(cfg Config) (settings, error) {
	switch {
	case cfg.Burst < 0:
		return settings{}, fmt.Errorf("ratelimit: Burst must not be negative, got %d", cfg.Burst)
	case cfg.MaxWait < 0:
		return settings{}, fmt.Errorf("ratelimit: MaxWait must not be negative, got %v", cfg.MaxWait)
	case cfg.MaxKeys < 0:
		return settings{}, fmt.Errorf("ratelimit: MaxKeys must not be negative, got %d", cfg.MaxKeys)
	case cfg.IdleTimeout < 0:
		return settings{}, fmt.Errorf("ratelimit: IdleTimeout must not be negative, got %v", cfg.IdleTimeout)
	}
	s := settings{maxWait: cfg.MaxWait, inf: true}
	if len(cfg.Limits) == 0 {
		r := float64(cfg.Rate)
		if math.IsNaN(r) || r <= 0 {
			return settings{}, fmt.Errorf("ratelimit: Rate must be positive (or rate.Inf), got %v", r)
		}
		s.limits = []limitSettings{newLimit(cfg.Name, r, int64(cfg.Burst), false)}
	} else {
		switch {
		case cfg.Rate != 0:
			return settings{}, fmt.Errorf("ratelimit: Rate must be zero when Limits is set, got %v", float64(cfg.Rate))
		case cfg.Burst != 0:
			return settings{}, fmt.Errorf("ratelimit: Burst must be zero when Limits is set, got %d", cfg.Burst)
		}
		s.limits = make([]limitSettings, len(cfg.Limits))
		for i, lim := range cfg.Limits {
			field := fmt.Sprintf("Limits[%d]", i)
			switch {
			case lim.Name == "":
				return settings{}, fmt.Errorf("ratelimit: %s.Name must not be empty", field)
			case !validName(lim.Name):
				return settings{}, fmt.Errorf("ratelimit: %s.Name must be printable ASCII without '\"' or '\\', got %q", field, lim.Name)
			case math.IsNaN(lim.Rate) || lim.Rate <= 0:
				return settings{}, fmt.Errorf("ratelimit: %s.Rate must be positive (or +Inf), got %v", field, lim.Rate)
			case lim.Per < 0:
				return settings{}, fmt.Errorf("ratelimit: %s.Per must not be negative, got %v", field, lim.Per)
			case lim.Burst < 0:
				return settings{}, fmt.Errorf("ratelimit: %s.Burst must not be negative, got %d", field, lim.Burst)
			}
			for j := range i {
				if cfg.Limits[j].Name == lim.Name {
					return settings{}, fmt.Errorf("ratelimit: %s.Name %q is already the name of Limits[%d]", field, lim.Name, j)
				}
			}
			per := lim.Per
			if per == 0 {
				per = time.Second
			}
			r := lim.Rate / per.Seconds() // per second
			if r <= 0 {
				return settings{}, fmt.Errorf("ratelimit: %s.Rate per %s.Per must be a positive rate, got %v per %v", field, field, lim.Rate, per)
			}
			burst := lim.Burst
			if burst == 0 && !math.IsInf(r, 1) && lim.Rate < math.MaxFloat64 {
				burst = int64(min(math.Ceil(lim.Rate), math.MaxInt32))
			}
			if lim.Rate >= math.MaxFloat64 {
				r = math.Inf(1)
			}
			s.limits[i] = newLimit(lim.Name, r, burst, lim.PerCall)
		}
	}
	for i := range s.limits {
		s.inf = s.inf && s.limits[i].inf
	}
	return s, nil
}

// validName reports whether name can be sent as a structured-field
// string without escapes.
func validName(name string) bool {
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// newLimit returns the settings of a limit of r units per second (rate.Inf
// or +Inf for none) and the given burst (0 for one second's worth).
func newLimit(name string, r float64, burst int64, perCall bool) limitSettings {
	s := limitSettings{name: name, rate: r, inf: r == float64(rate.Inf) || math.IsInf(r, 1), perCall: perCall}
	if burst == 0 {
		burst = 1
		if !s.inf && r > 1 {
			burst = int64(min(math.Ceil(r), math.MaxInt32))
		}
	}
	s.burst = float64(burst)
	if s.inf {
		return s
	}
	s.window = durationCeil(s.burst / r * float64(time.Second))
	// A refusal of one unit in reject mode waits for at most one token.
	interval := durationCeil(float64(time.Second) / r)
	s.grid = max(time.Millisecond, durationCeil(float64(interval)/maxErrs))
	if n := steps(interval, s.grid) + 1; n <= maxErrs+1 {
		s.errs = make([]atomic.Pointer[LimitedError], n)
	}
	// A costly one waits for at most the whole burst.
	if s.window > interval && s.errs != nil {
		s.coarseGrid = max(s.grid, roundStep(steps(s.window, maxCoarse)))
		if n := steps(s.window, s.coarseGrid) + 1; n <= maxCoarse+1 {
			s.coarse = make([]atomic.Pointer[LimitedError], n)
		}
	}
	return s
}

// roundStep returns the smallest of 1, 2 and 5 ms times a power of ten
// that is at least d (at most 1 h): a step that whole seconds are
// multiples of, so that a retry-after rounded up to it and then to whole
// seconds (a Retry-After header) is not pushed into the next second.
func roundStep(d time.Duration) time.Duration {
	for step := time.Millisecond; step < time.Hour; step *= 10 {
		for _, m := range []time.Duration{1, 2, 5} {
			if m*step >= d {
				return m * step
			}
		}
	}
	return time.Hour
}

// steps returns d/grid, rounded up.
func steps(d, grid time.Duration) time.Duration {
	n := d / grid
	if d%grid != 0 {
		n++
	}
	return n
}

// limitedError returns the refusal for a retry-after of d: d rounded up
// to the grid, shared with every refusal of that step, or a new one when
// d is beyond the tables (a refusal in wait mode, or of a bucket in debt).
func (s *limitSettings) limitedError(d time.Duration) *LimitedError {
	if d < 0 {
		return s.newError(d)
	}
	if e := s.shared(s.errs, s.grid, d); e != nil {
		return e
	}
	if e := s.shared(s.coarse, s.coarseGrid, d); e != nil {
		return e
	}
	return s.newError(d)
}

func (s *limitSettings) newError(d time.Duration) *LimitedError {
	return &LimitedError{Delay: d, Limit: s.name, Quota: int64(s.burst), Window: s.window}
}

// shared returns the refusal of table errs for d, or nil when d is beyond
// it.
func (s *limitSettings) shared(errs []atomic.Pointer[LimitedError], grid, d time.Duration) *LimitedError {
	if grid <= 0 {
		return nil
	}
	i := steps(d, grid)
	if i >= time.Duration(len(errs)) || i > math.MaxInt64/grid {
		return nil // beyond the table, or a step that would overflow
	}
	if e := errs[i].Load(); e != nil {
		return e
	}
	e := s.newError(i * grid)
	if !errs[i].CompareAndSwap(nil, e) {
		return errs[i].Load()
	}
	return e
}

// check returns a *CostError if a call of cost n could never be admitted.
// It allocates only for such a call.
func (s *settings) check(n int64) *CostError {
	if n < 0 {
		return &CostError{Cost: n}
	}
	for i := range s.limits {
		ls := &s.limits[i]
		if !ls.inf && !ls.perCall && float64(n) > ls.burst {
			return &CostError{Limit: ls.name, Cost: n, Burst: int64(ls.burst)}
		}
	}
	return nil
}

// tryTake takes a call of cost n from every limit's bucket in bs at now if
// every one has room, and otherwise takes nothing and returns the index
// of the limit that needs the longest wait, and that wait. The caller
// holds the lock guarding bs.
func (s *settings) tryTake(bs []bucket, now time.Time, n int64) (ok bool, worst int, wait time.Duration) {
	ok = true
	for i := range s.limits {
		ls := &s.limits[i]
		if ls.inf {
			continue
		}
		c := ls.cost(n)
		if tokens := bs[i].advance(now, ls); tokens+tolerance(c) < c {
			if d := max(durationCeil((c-tokens)/ls.rate*float64(time.Second)), 1); ok || d > wait {
				ok, worst, wait = false, i, d
			}
		}
	}
	if !ok {
		return false, worst, wait
	}
	for i := range s.limits {
		if ls := &s.limits[i]; !ls.inf {
			bs[i].take(now, ls, ls.cost(n))
		}
	}
	return true, 0, 0
}

// settle charges the difference between actual and the n a call was
// admitted with to every limit charged by cost. The caller holds the lock
// guarding bs.
func (s *settings) settle(bs []bucket, now time.Time, n, actual int64) {
	for i := range s.limits {
		if ls := &s.limits[i]; !ls.inf && !ls.perCall {
			bs[i].adjust(now, ls, float64(actual)-float64(n))
		}
	}
}

// Limiter is a token-bucket rate limiter shared by every stage it guards,
// whatever their types: one bucket per limit (Config.Rate, or each of
// Config.Limits). Build it with [New] and apply it with [Middleware] (one
// set of buckets for all calls), [Costed] and [Settled] (the same, with a
// cost per call) or [Keyed] (one set per key), or use [Limiter.Acquire]
// and [Limiter.AcquireN] directly. It is safe for concurrent use.
type Limiter struct {
	s        settings
	maxKeys  int
	idle     time.Duration
	name     string
	obs      middleware.Observer
	rejected atomic.Uint64
	waited   atomic.Uint64
	keys     atomic.Int64

	mu sync.Mutex
	bs []bucket // the shared buckets of Middleware and Acquire, one per limit, guarded by mu

	tablesMu sync.Mutex
	tables   map[any]any // Keyed tables by key type, see table
}

// New returns a Limiter for cfg, or an error naming the first invalid
// field.
func New(cfg Config) (*Limiter, error) {
	s, err := validate(cfg)
	if err != nil {
		return nil, err
	}
	l := &Limiter{s: s, maxKeys: cfg.MaxKeys, idle: cfg.IdleTimeout, name: cfg.Name, obs: cfg.Observer,
		bs: make([]bucket, len(s.limits))}
	if l.maxKeys == 0 {
		l.maxKeys = defaultMaxKeys
	}
	if l.idle == 0 {
		l.idle = defaultIdleTimeout
	}
	return l, nil
}

// Stats returns the counts so far. It has no side effects.
func (l *Limiter) Stats() Stats {
	return Stats{Rejected: l.rejected.Load(), Waited: l.waited.Load(), Keys: l.keys.Load()}
}

// Policy describes one of a Limiter's limits as the IETF RateLimit-Policy
// header field does: a quota of units per window.
type Policy struct {
	Name    string        // the limit's name (Limit.Name, or Config.Name for Config.Rate)
	Quota   int64         // its burst: the most units admitted at once
	Window  time.Duration // the time it takes to refill Quota from empty; 0 for an infinite rate
	PerCall bool          // a call costs 1 unit, whatever its cost
}

// Policies returns the Limiter's limits, in the order of Config.Limits (one
// for Config.Rate). It has no side effects; it allocates the slice.
func (l *Limiter) Policies() []Policy {
	ps := make([]Policy, len(l.s.limits))
	for i := range l.s.limits {
		ls := &l.s.limits[i]
		q := int64(ls.burst)
		if ls.inf {
			q = 0
		}
		ps[i] = Policy{Name: ls.name, Quota: q, Window: ls.window, PerCall: ls.perCall}
	}
	return ps
}

// Permit is an admission by [Limiter.Acquire] or [Limiter.AcquireN].
// Finish it with Done when the work it admitted is over, after Settle
// when its real cost is known. It is a small value: taking one allocates
// nothing.
type Permit struct {
	l *Limiter
	n int64 // the cost charged so far
}

// Done finishes the permit with the work's error. The tokens stay spent
// (the error does not refund them; call Settle for that), so Done only
// zeroes the permit. A second Done, or Done on the zero Permit, does
// nothing.
func (p *Permit) Done(err error) { *p = Permit{} }

// Settle corrects the permit's cost to actual, once the real cost of the
// work is known (the tokens an LLM really produced): the limits charged
// by cost get the difference, charged or refunded at once. A refund never
// fills a bucket above its burst. A charge may leave a bucket in debt:
// later calls wait, or are refused with a retry-after that includes the
// debt, until it has refilled. Settle may be called more than once (each
// call corrects to its actual); a negative actual counts as 0; limits
// charged per call are not affected. Settle after Done, or on the zero
// Permit, does nothing. It is not safe to call Settle concurrently on the
// same Permit.
func (p *Permit) Settle(actual int64) {
	l := p.l
	if l == nil || l.s.inf {
		return
	}
	actual = max(actual, 0)
	if actual == p.n {
		return
	}
	now := time.Now()
	l.mu.Lock()
	l.s.settle(l.bs, now, p.n, actual)
	l.mu.Unlock()
	p.n = actual
}

// Acquire takes one unit from each of the Limiter's shared buckets:
// AcquireN(ctx, 1).
func (l *Limiter) Acquire(ctx context.Context) (Permit, error) {
	return l.AcquireN(ctx, 1)
}

// AcquireN takes a call of cost n from the Limiter's shared buckets: n
// units from each limit charged by cost, one from each limit charged per
// call (rate.Limiter.ReserveN, .NET's RateLimiter.AcquireAsync(permitCount),
// resilience4j's acquirePermission(permits), Envoy's hits_addend). The
// call is admitted only when every limit has room, and then takes from all
// of them under one lock: a refusal takes nothing from any. A cost of 0
// takes nothing from the limits charged by cost.
//
// It returns a Permit when the call may go ahead; a *[CostError] at once,
// taking nothing, when n is negative or larger than the burst of a limit
// charged by cost; a *[LimitedError] when it is refused, whose Delay is
// when every limit would have room (rounded up, in reject mode, to a step
// of 1ms or of 1/256 of the time one token takes, whichever is larger, or
// for a delay longer than one token, of 1/1024 of the time the whole burst
// takes, rounded up to 1, 2 or 5 ms times a power of ten, so that
// refusals can be shared and
// allocate nothing; a delay longer than the whole burst takes, which only
// a debt left by Settle causes, allocates its refusal); and
// ctx.Err() when the context has ended, before (taking nothing) or while
// waiting (giving the reserved tokens back).
func (l *Limiter) AcquireN(ctx context.Context, n int64) (Permit, error) {
	if err := ctx.Err(); err != nil {
		return Permit{}, err
	}
	if n < 0 || n > 1 { // every burst is at least 1
		if err := l.s.check(n); err != nil {
			return Permit{}, l.refuseCost(ctx, err)
		}
	}
	if l.s.inf {
		return Permit{l, n}, nil
	}
	now := time.Now()
	l.mu.Lock()
	ok, worst, d := l.s.tryTake(l.bs, now, n)
	if ok {
		l.mu.Unlock()
		return Permit{l, n}, nil
	}
	if l.s.maxWait == 0 {
		l.mu.Unlock()
		return Permit{}, l.refuse(ctx, worst, d)
	}
	dl, hasDL := ctx.Deadline()
	if len(l.s.limits) == 1 {
		ls := &l.s.limits[0]
		c := ls.cost(n)
		wait, ok := l.bs[0].reserve(now, ls, c, l.s.maxWait, dl, hasDL)
		l.mu.Unlock()
		if !ok {
			return Permit{}, l.refuse(ctx, 0, wait)
		}
		if err := sleep(ctx, wait); err != nil {
			l.mu.Lock()
			l.bs[0].cancel(time.Now(), now.Add(wait), ls, c)
			l.mu.Unlock()
			return Permit{}, err
		}
		l.waitedFor(ctx, wait)
		return Permit{l, n}, nil
	}
	l.mu.Unlock()
	// Several limits: sleep until every one would have room, then try
	// again, so that what each admits is never taken before it is there.
	start := now
	for {
		if waited := now.Sub(start); d > l.s.maxWait-waited || (hasDL && now.Add(d).After(dl)) {
			return Permit{}, l.refuse(ctx, worst, d)
		}
		if err := sleep(ctx, d); err != nil {
			return Permit{}, err
		}
		now = time.Now()
		l.mu.Lock()
		ok, worst, d = l.s.tryTake(l.bs, now, n)
		l.mu.Unlock()
		if ok {
			l.waitedFor(ctx, now.Sub(start))
			return Permit{l, n}, nil
		}
	}
}

// refuse counts and reports a refusal by limit i with a retry-after of d.
func (l *Limiter) refuse(ctx context.Context, i int, d time.Duration) error {
	l.rejected.Add(1)
	err := l.s.limits[i].limitedError(d)
	if l.obs != nil {
		middleware.Emit(ctx, l.obs, middleware.Event{Kind: middleware.Rejected, Concern: "ratelimit", Name: l.name, Reason: "rate", Delay: err.Delay, Limit: err.Quota, Err: err})
	}
	return err
}

// refuseCost counts and reports the refusal of a cost that never fits.
func (l *Limiter) refuseCost(ctx context.Context, err *CostError) error {
	l.rejected.Add(1)
	if l.obs != nil {
		middleware.Emit(ctx, l.obs, middleware.Event{Kind: middleware.Rejected, Concern: "ratelimit", Name: l.name, Reason: "cost", Limit: err.Burst, Err: err})
	}
	return err
}

// refuseKey counts and reports a refusal of a NaN key.
func (l *Limiter) refuseKey(ctx context.Context) error {
	l.rejected.Add(1)
	if l.obs != nil {
		middleware.Emit(ctx, l.obs, middleware.Event{Kind: middleware.Rejected, Concern: "ratelimit", Name: l.name, Reason: "key", Err: ErrNaNKey})
	}
	return ErrNaNKey
}

// waitedFor counts and reports an admission after a wait of d.
func (l *Limiter) waitedFor(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	l.waited.Add(1)
	if l.obs != nil {
		middleware.Emit(ctx, l.obs, middleware.Event{Kind: middleware.Waited, Concern: "ratelimit", Name: l.name, Wait: d})
	}
}

// sleep waits for d, or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Middleware returns a middleware that admits each call through l's
// shared bucket ([Limiter.Acquire]) before running the stage, and returns
// l's refusal or the context error without running it otherwise. One
// Limiter may guard stages of different types; they all draw from the
// same bucket. A nil l is a programmer error: Middleware panics.
func Middleware[In, Out any](l *Limiter) middleware.Middleware[In, Out] {
	if l == nil {
		panic("ratelimit: nil *Limiter (was New's error ignored?)")
	}
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		if next == nil {
			panic("middleware: nil stage")
		}
		return func(ctx context.Context, in In) (out Out, err error) {
			p, err := l.Acquire(ctx)
			if err != nil {
				return out, err
			}
			defer func() { p.Done(err) }()
			return next(ctx, in)
		}
	}
}
