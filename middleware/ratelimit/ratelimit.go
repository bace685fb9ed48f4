package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
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
// The same *LimitedError may be returned to many callers: treat it as
// read-only.
type LimitedError struct {
	// Delay is how long until the limiter would admit one call, as
	// estimated at the moment of the refusal and rounded up (see
	// [Limiter.Acquire]).
	Delay time.Duration
}

func (e *LimitedError) Error() string { return "ratelimit: limited, retry after " + e.Delay.String() }

// Is reports whether target is [ErrLimited].
func (e *LimitedError) Is(target error) bool { return target == ErrLimited }

// RetryAfter returns Delay.
func (e *LimitedError) RetryAfter() time.Duration { return e.Delay }

// Rejected reports true: the call was refused before it reached the
// downstream, so a circuit breaker around the limiter does not count it as
// the downstream's failure.
func (e *LimitedError) Rejected() bool { return true }

// ErrNaNKey is returned by a [Keyed] adapter, without running the stage or
// taking a token, for a key that is not equal to itself: a key holding a
// floating-point NaN could never be found again in the table. Its
// Rejected method reports true and its Retryable method false.
var ErrNaNKey error = nanKeyError{}

type nanKeyError struct{}

func (nanKeyError) Error() string   { return "ratelimit: key is not equal to itself (NaN)" }
func (nanKeyError) Rejected() bool  { return true }
func (nanKeyError) Retryable() bool { return false }

// Config configures a [Limiter]. Rate is required; every other field has a
// default.
type Config struct {
	// Rate is the sustained number of calls admitted per second, for
	// example 100 or rate.Every(10*time.Millisecond). It must be positive;
	// rate.Inf admits everything. There is no default: a rate limit without
	// a rate would be a guess.
	Rate rate.Limit

	// Burst is the number of calls that may be admitted at once after a
	// quiet period (the bucket size). Zero means one second's worth of Rate,
	// rounded up, and at least 1.
	Burst int

	// MaxWait selects the mode. Zero rejects a call at once when no token
	// is available. A positive MaxWait lets a call wait for its token up to
	// that long, and rejects it at once when the wait would be longer, or
	// would outlast the caller's context deadline.
	MaxWait time.Duration

	// MaxKeys bounds the number of keys each [Keyed] table holds. When a
	// new key arrives and the table is full, the least recently used key
	// is forgotten. Zero means 10,000. Unused without Keyed.
	MaxKeys int

	// IdleTimeout is how long a key must go unused before a [Keyed] table
	// may forget it, which happens only once its bucket has also refilled,
	// so forgetting never changes what a key is allowed. Zero means
	// one minute. Unused without Keyed.
	IdleTimeout time.Duration

	// Name is the instance's name in its events ([middleware.Event].Name).
	Name string

	// Observer, if not nil, receives a [middleware.Rejected] event for each
	// refusal (Reason "rate" with Delay the retry-after, or Reason "key"
	// for [ErrNaNKey]) and a [middleware.Waited] event for each call
	// admitted after waiting (Wait), on the caller's goroutine, outside
	// any lock.
	Observer middleware.Observer
}

// Stats is a snapshot of what a [Limiter] has done.
type Stats struct {
	Rejected uint64 // calls refused (Rejected events): rate limited, or a NaN key
	Waited   uint64 // calls admitted after waiting for their token (Waited events)
	Keys     int64  // keys held now, over all of the Limiter's Keyed tables
}

// settings is the validated, immutable part of a Limiter.
type settings struct {
	rate    float64 // tokens per second; +Inf or MaxFloat64 (rate.Inf) for no limit
	inf     bool
	burst   int
	maxWait time.Duration

	// errs holds the refusals of reject mode, one per step of grid up to
	// the time one token takes, built on first use and shared from then
	// on, so that a refusal allocates nothing.
	grid time.Duration
	errs []atomic.Pointer[LimitedError]
}

// maxErrs bounds the refusals kept per Limiter.
const maxErrs = 256

func validate(cfg Config) (settings, error) {
	r := float64(cfg.Rate)
	switch {
	case math.IsNaN(r) || r <= 0:
		return settings{}, fmt.Errorf("ratelimit: Rate must be positive (or rate.Inf), got %v", r)
	case cfg.Burst < 0:
		return settings{}, fmt.Errorf("ratelimit: Burst must not be negative, got %d", cfg.Burst)
	case cfg.MaxWait < 0:
		return settings{}, fmt.Errorf("ratelimit: MaxWait must not be negative, got %v", cfg.MaxWait)
	case cfg.MaxKeys < 0:
		return settings{}, fmt.Errorf("ratelimit: MaxKeys must not be negative, got %d", cfg.MaxKeys)
	case cfg.IdleTimeout < 0:
		return settings{}, fmt.Errorf("ratelimit: IdleTimeout must not be negative, got %v", cfg.IdleTimeout)
	}
	s := settings{rate: r, inf: cfg.Rate == rate.Inf || math.IsInf(r, 1), burst: cfg.Burst, maxWait: cfg.MaxWait}
	if s.burst == 0 {
		s.burst = 1
		if !s.inf && r > 1 {
			s.burst = int(min(math.Ceil(r), math.MaxInt32))
		}
	}
	if !s.inf {
		// A refusal in reject mode waits for at most one token.
		interval := durationCeil(float64(time.Second) / r)
		s.grid = max(time.Millisecond, durationCeil(float64(interval)/maxErrs))
		steps := interval / s.grid // the step of a delay of interval, rounded up
		if interval%s.grid != 0 {
			steps++
		}
		if n := steps + 1; n <= maxErrs+1 {
			s.errs = make([]atomic.Pointer[LimitedError], n)
		}
	}
	return s, nil
}

// limitedError returns the refusal for a retry-after of d: d rounded up
// to the grid, shared with every refusal of that step, or a new one when
// d is beyond the table (a refusal in wait mode).
func (s *settings) limitedError(d time.Duration) *LimitedError {
	if s.grid <= 0 || d < 0 {
		return &LimitedError{Delay: d}
	}
	i := d / s.grid
	if d%s.grid != 0 {
		i++
	}
	if i >= time.Duration(len(s.errs)) || i > math.MaxInt64/s.grid {
		return &LimitedError{Delay: d} // beyond the table, or a step that would overflow
	}
	if e := s.errs[i].Load(); e != nil {
		return e
	}
	e := &LimitedError{Delay: i * s.grid}
	if !s.errs[i].CompareAndSwap(nil, e) {
		return s.errs[i].Load()
	}
	return e
}

// Limiter is a token-bucket rate limiter shared by every stage it guards,
// whatever their types. Build it with [New] and apply it with
// [Middleware] (one bucket for all calls) or [Keyed] (one bucket per
// key), or use [Limiter.Acquire] directly. It is safe for concurrent use.
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
	b  bucket // the shared bucket of Middleware and Acquire, guarded by mu

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
	l := &Limiter{s: s, maxKeys: cfg.MaxKeys, idle: cfg.IdleTimeout, name: cfg.Name, obs: cfg.Observer}
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

// Permit is an admission by [Limiter.Acquire]. Finish it with Done when
// the work it admitted is over. It is a small value: taking one allocates
// nothing.
type Permit struct {
	l *Limiter
}

// Done finishes the permit with the work's error. A rate limiter has
// nothing to settle today (the token is spent when the call is admitted),
// so Done only zeroes the permit; it is where a limiter that charges by
// cost will settle it. A second Done, or Done on the zero Permit, does
// nothing.
func (p *Permit) Done(err error) { *p = Permit{} }

// Acquire takes a token from the Limiter's shared bucket. It returns a
// Permit when the call may go ahead; a *[LimitedError] when it is refused,
// whose Delay is when capacity returns (rounded up, in reject mode, to a
// step of 1ms or of 1/256 of the time one token takes, whichever is
// larger, so that refusals can be shared and allocate nothing); and
// ctx.Err() when the context has ended, before (taking no token) or while
// waiting (giving the reserved token back).
func (l *Limiter) Acquire(ctx context.Context) (Permit, error) {
	if err := ctx.Err(); err != nil {
		return Permit{}, err
	}
	if l.s.inf {
		return Permit{l}, nil
	}
	now := time.Now()
	l.mu.Lock()
	if l.b.take(now, &l.s) {
		l.mu.Unlock()
		return Permit{l}, nil
	}
	if l.s.maxWait == 0 {
		d := l.b.delay(now, &l.s)
		l.mu.Unlock()
		return Permit{}, l.refuse(ctx, d)
	}
	dl, hasDL := ctx.Deadline()
	wait, ok := l.b.reserve(now, &l.s, l.s.maxWait, dl, hasDL)
	l.mu.Unlock()
	if !ok {
		return Permit{}, l.refuse(ctx, wait)
	}
	if err := sleep(ctx, wait); err != nil {
		l.mu.Lock()
		l.b.cancel(time.Now(), now.Add(wait), &l.s)
		l.mu.Unlock()
		return Permit{}, err
	}
	l.waitedFor(ctx, wait)
	return Permit{l}, nil
}

// refuse counts and reports a refusal with a retry-after of d.
func (l *Limiter) refuse(ctx context.Context, d time.Duration) error {
	l.rejected.Add(1)
	err := l.s.limitedError(d)
	if l.obs != nil {
		middleware.Emit(ctx, l.obs, middleware.Event{Kind: middleware.Rejected, Concern: "ratelimit", Name: l.name, Reason: "rate", Delay: err.Delay, Err: err})
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
