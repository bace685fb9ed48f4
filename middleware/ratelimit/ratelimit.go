package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"golang.org/x/time/rate"

	"github.com/brace-go/brace/middleware"
)

// ErrLimited is the sentinel every rate-limit rejection matches:
// errors.Is(err, ratelimit.ErrLimited) holds for each *[LimitedError].
var ErrLimited = errors.New("ratelimit: limited")

// LimitedError is returned when a call is refused by the limiter. It
// matches [ErrLimited] and carries how long the caller should wait before
// trying again. Its RetryAfter method is the server-hint contract Retry
// honours, so Retry around RateLimit waits at least that long.
type LimitedError struct {
	// Delay is how long until the limiter would admit one call, as
	// estimated at the moment of the refusal.
	Delay time.Duration
}

func (e *LimitedError) Error() string { return "ratelimit: limited, retry after " + e.Delay.String() }

// Is reports whether target is [ErrLimited].
func (e *LimitedError) Is(target error) bool { return target == ErrLimited }

// RetryAfter returns Delay.
func (e *LimitedError) RetryAfter() time.Duration { return e.Delay }

// Rejected reports true: the call was refused before it reached the
// downstream, so a circuit breaker around the limiter does not count it as
// the downstream's failure (breaker.DefaultClassify ignores it).
func (e *LimitedError) Rejected() bool { return true }

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

	// OnLimited, if set, is called after each rejection with the delay the
	// caller is told to wait. It is called outside any lock.
	OnLimited func(delay time.Duration)

	// Logger, if set, receives a Warn record "ratelimit: limited" with the
	// attribute "delay" (and "name") for each rejection. Nil means silent.
	Logger *slog.Logger

	// Name, if not empty, is added to log records as "name".
	Name string

	// Counter, if set, counts admitted and limited calls (see [Counter]).
	// Nil means no counting, at the cost of one nil check per call.
	Counter *Counter
}

// settings is the validated form shared by Limiter and Keyed.
type settings struct {
	limit   rate.Limit
	burst   int
	maxWait time.Duration
}

func validate(r rate.Limit, burst int, maxWait time.Duration) (settings, error) {
	switch {
	case math.IsNaN(float64(r)) || r <= 0:
		return settings{}, fmt.Errorf("ratelimit: Rate must be positive (or rate.Inf), got %v", float64(r))
	case burst < 0:
		return settings{}, fmt.Errorf("ratelimit: Burst must not be negative, got %d", burst)
	case maxWait < 0:
		return settings{}, fmt.Errorf("ratelimit: MaxWait must not be negative, got %v", maxWait)
	}
	if burst == 0 {
		burst = 1
		if r != rate.Inf && float64(r) > 1 {
			burst = int(min(math.Ceil(float64(r)), math.MaxInt32))
		}
	}
	return settings{limit: r, burst: burst, maxWait: maxWait}, nil
}

// Limiter is a token-bucket rate limiter shared by every stage it guards,
// whatever their types. Build it with [New] and apply it with
// [Middleware], or call [Limiter.Admit] directly. It is safe for
// concurrent use.
type Limiter struct {
	lim       *rate.Limiter
	s         settings
	onLimited func(time.Duration)
	logger    *slog.Logger
	name      string
	counter   *Counter
}

// New returns a Limiter for cfg, or an error naming the first invalid
// field.
func New(cfg Config) (*Limiter, error) {
	s, err := validate(cfg.Rate, cfg.Burst, cfg.MaxWait)
	if err != nil {
		return nil, err
	}
	return &Limiter{
		lim:       rate.NewLimiter(s.limit, s.burst),
		s:         s,
		onLimited: cfg.OnLimited,
		logger:    cfg.Logger,
		name:      cfg.Name,
		counter:   cfg.Counter,
	}, nil
}

// Burst returns the bucket size in use (Config.Burst or its default).
func (l *Limiter) Burst() int { return l.s.burst }

// Admit takes a token for one call. It returns nil when the call may go
// ahead, a *[LimitedError] when it is refused, and ctx.Err() when the
// context has ended, before or while waiting; a token taken for a waiter
// that leaves is given back.
func (l *Limiter) Admit(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := time.Now()
	if l.lim.AllowN(now, 1) {
		l.counter.admit(nil)
		return nil
	}
	if l.s.maxWait == 0 {
		return l.refuse(ctx, delayFor(l.lim, now))
	}
	err := l.wait(ctx, now)
	l.counter.admit(err)
	return err
}

// wait reserves a token and waits for it, within MaxWait and the context.
func (l *Limiter) wait(ctx context.Context, now time.Time) error {
	r := l.lim.ReserveN(now, 1)
	delay, ok := waitable(ctx, r, now, l.s.maxWait)
	if !ok {
		return l.refuse(ctx, delay)
	}
	return sleep(ctx, r, delay)
}

func (l *Limiter) refuse(ctx context.Context, delay time.Duration) error {
	l.counter.limit()
	if l.onLimited != nil {
		l.onLimited(delay)
	}
	if l.logger != nil {
		logLimited(ctx, l.logger, l.name, slog.Duration("delay", delay))
	}
	return &LimitedError{Delay: delay}
}

// logLimited logs a rejection with attrs and, if set, name.
func logLimited(ctx context.Context, logger *slog.Logger, name string, attrs ...slog.Attr) {
	if !logger.Enabled(ctx, slog.LevelWarn) {
		return
	}
	if name != "" {
		attrs = append(attrs, slog.String("name", name))
	}
	logger.LogAttrs(ctx, slog.LevelWarn, "ratelimit: limited", attrs...)
}

// delayFor estimates how long until lim holds one whole token.
func delayFor(lim *rate.Limiter, now time.Time) time.Duration {
	missing := 1 - lim.TokensAt(now)
	if missing <= 0 {
		return 0
	}
	return time.Duration(math.Ceil(missing / float64(lim.Limit()) * float64(time.Second)))
}

// waitable reports the reservation's delay and whether the caller may wait
// that long; if not, the reservation has been cancelled.
func waitable(ctx context.Context, r *rate.Reservation, now time.Time, maxWait time.Duration) (time.Duration, bool) {
	delay := r.DelayFrom(now)
	if !r.OK() {
		return delay, false // cannot happen with Burst >= 1; kept for safety
	}
	if dl, has := ctx.Deadline(); delay > maxWait || (has && now.Add(delay).After(dl)) {
		r.CancelAt(now)
		return delay, false
	}
	return delay, true
}

// sleep waits out a reservation, giving it back if ctx ends first.
func sleep(ctx context.Context, r *rate.Reservation, delay time.Duration) error {
	if delay <= 0 {
		return nil
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		r.Cancel()
		return ctx.Err()
	}
}

// errNilLimiter is what a stage guarded by a nil limiter returns.
var errNilLimiter = errors.New("ratelimit: nil limiter")

// Middleware returns a middleware that admits each call through l before
// running the stage, and returns l's refusal or the context error without
// running it otherwise. One Limiter may guard stages of different types;
// they all draw from the same bucket. A nil l makes every call fail with an
// error rather than go unlimited.
func Middleware[In, Out any](l *Limiter) middleware.Middleware[In, Out] {
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		next = middleware.Apply(next)
		return func(ctx context.Context, in In) (Out, error) {
			if l == nil {
				var zero Out
				return zero, errNilLimiter
			}
			if err := l.Admit(ctx); err != nil {
				var zero Out
				return zero, err
			}
			return next(ctx, in)
		}
	}
}
