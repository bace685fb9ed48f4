package adaptive

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/brace-go/brace/middleware"
)

// ErrLimitExceeded is returned, without running the stage, when a call
// arrives while as many calls are in flight as the current limit allows.
// It is a plain sentinel so that shedding under overload allocates nothing.
// Its Retryable method reports false (Retry's classification contract): it
// means "send less", and an immediate retry would defeat it.
var ErrLimitExceeded error = limitExceeded{}

type limitExceeded struct{}

func (limitExceeded) Error() string   { return "adaptive: limit exceeded" }
func (limitExceeded) Retryable() bool { return false }

// Rejected reports true: the call never reached the downstream, so a
// circuit breaker around the limiter does not count it as the downstream's
// failure (breaker.DefaultClassify ignores it).
func (limitExceeded) Rejected() bool { return true }

// Defaults for the zero [Config].
const (
	DefaultMin     = 1
	DefaultMax     = 1000
	DefaultInitial = 20
)

// minWindow is the fewest latency samples one limit update is based on.
const minWindow = 10

// probeEvery is the number of updates between two baseline probes.
const probeEvery = 50

// firstProbe is the number of updates before the first probe.
const firstProbe = 5

// Config configures a [Limiter]. The zero value is ready to use.
type Config struct {
	// Min and Max bound the limit. Zero means DefaultMin (1) and
	// DefaultMax (1000). Min must be at least 1 and at most Max.
	Min, Max int

	// Initial is the limit before anything has been measured. Zero means
	// DefaultInitial (20), moved into [Min, Max] if it falls outside.
	Initial int

	// OnLimitChange, if set, is called with the old and the new limit each
	// time the enforced limit changes. It is called outside any lock.
	OnLimitChange func(from, to int)

	// OnReject, if set, is called with the current limit each time a call
	// is rejected. It is called outside any lock.
	OnReject func(limit int)

	// Logger, if set, receives a Debug record "adaptive: limit changed"
	// with the attributes "from", "to", "latency" (the window's mean) and
	// "name" each time the limit changes. Nil means silent.
	Logger *slog.Logger

	// Name, if not empty, is added to log records as "name".
	Name string

	// Counter, if set, counts admitted and rejected calls and limit
	// changes (see [Counter]). Nil means no counting.
	Counter *Counter
}

// Limiter is an adaptive concurrency limit: it admits calls while fewer
// than Limit() are in flight, and moves the limit with the latency it
// observes. Build it with [New] and apply it with [Middleware], or use
// [Limiter.Acquire] and [Permit.Release] directly. One Limiter guards
// stages of any types; it is safe for concurrent use.
type Limiter struct {
	min, max      float64
	onLimitChange func(from, to int)
	onReject      func(int)
	logger        *slog.Logger
	name          string
	counter       *Counter

	mu       sync.Mutex
	estimate float64 // the limit the algorithm has arrived at
	limit    int     // the limit enforced now: the estimate, or less while probing
	inflight int

	// the current window
	samples, peak int
	sum           time.Duration

	baseline time.Duration // lowest window mean latency: the no-load latency
	updates  int           // windows since the last probe
	probing  bool
	// probeStart is when the current probe began; only calls admitted
	// after it measure the latency at the reduced limit.
	probeStart time.Time
}

// New returns a Limiter for cfg, or an error naming the first invalid
// field.
func New(cfg Config) (*Limiter, error) {
	if cfg.Min == 0 {
		cfg.Min = DefaultMin
	}
	if cfg.Max == 0 {
		cfg.Max = DefaultMax
	}
	switch {
	case cfg.Min < 1:
		return nil, fmt.Errorf("adaptive: Min must be at least 1, got %d", cfg.Min)
	case cfg.Max < cfg.Min:
		return nil, fmt.Errorf("adaptive: Max must be at least Min (%d), got %d", cfg.Min, cfg.Max)
	case cfg.Initial < 0:
		return nil, fmt.Errorf("adaptive: Initial must not be negative, got %d", cfg.Initial)
	}
	if cfg.Initial == 0 {
		cfg.Initial = min(max(DefaultInitial, cfg.Min), cfg.Max)
	}
	if cfg.Initial < cfg.Min || cfg.Initial > cfg.Max {
		return nil, fmt.Errorf("adaptive: Initial must be between Min (%d) and Max (%d), got %d", cfg.Min, cfg.Max, cfg.Initial)
	}
	return &Limiter{
		min:           float64(cfg.Min),
		max:           float64(cfg.Max),
		onLimitChange: cfg.OnLimitChange,
		onReject:      cfg.OnReject,
		logger:        cfg.Logger,
		name:          cfg.Name,
		counter:       cfg.Counter,
		estimate:      float64(cfg.Initial),
		limit:         cfg.Initial,
		// The first probe comes early: the first windows may all have
		// been measured above capacity, giving no true baseline.
		updates: probeEvery - firstProbe,
	}, nil
}

// Limit returns the limit enforced now.
func (l *Limiter) Limit() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limit
}

// Inflight returns the number of calls admitted and not yet released.
func (l *Limiter) Inflight() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inflight
}

// A Permit is one admitted call. Release it exactly once.
type Permit struct {
	l     *Limiter
	start time.Time
}

// Acquire admits one call, or returns [ErrLimitExceeded] if the limit is
// reached, or ctx.Err() if ctx has ended. It never waits: an adaptive limit
// sheds load rather than queue it.
func (l *Limiter) Acquire(ctx context.Context) (Permit, error) {
	if err := ctx.Err(); err != nil {
		return Permit{}, err
	}
	l.mu.Lock()
	if l.inflight >= l.limit {
		limit := l.limit
		l.mu.Unlock()
		if l.counter != nil {
			l.counter.rejected.Add(1)
		}
		if l.onReject != nil {
			l.onReject(limit)
		}
		return Permit{}, ErrLimitExceeded
	}
	l.inflight++
	l.peak = max(l.peak, l.inflight)
	l.mu.Unlock()
	if l.counter != nil {
		l.counter.admitted.Add(1)
	}
	return Permit{l: l, start: time.Now()}, nil
}

// Release ends the call. With sample true, its latency feeds the limit;
// pass false for calls whose latency says nothing about the downstream's
// load: failures that return early, cancellations, panics. Releasing a
// zero Permit does nothing.
func (p Permit) Release(sample bool) {
	l := p.l
	if l == nil {
		return
	}
	var rtt time.Duration
	if sample {
		rtt = time.Since(p.start)
	}
	l.mu.Lock()
	l.inflight--
	if !sample {
		l.mu.Unlock()
		return
	}
	from, to, mean, changed := l.record(p.start, rtt)
	l.mu.Unlock()
	if changed {
		if l.counter != nil {
			l.counter.changes.Add(1)
		}
		if l.onLimitChange != nil {
			l.onLimitChange(from, to)
		}
		if l.logger != nil {
			attrs := []slog.Attr{slog.Int("from", from), slog.Int("to", to), slog.Duration("latency", mean)}
			if l.name != "" {
				attrs = append(attrs, slog.String("name", l.name))
			}
			l.logger.LogAttrs(context.Background(), slog.LevelDebug, "adaptive: limit changed", attrs...)
		}
	}
}

// record adds one latency sample and, when the window is complete, updates
// the limit. l.mu is held.
//
// The update is TCP Vegas's, as in Netflix's concurrency-limits: with the
// no-load latency B (the baseline) and the window's mean latency M, about
// queue = N·(1 − B/M) of the N calls in flight (the window's peak, at most
// the limit L) are waiting rather than being served. Below alpha =
// 3·log10(L) the downstream has room, and the limit grows by log10(L) (at
// least 1) if the window used at least half of it; above beta = 6·log10(L)
// calls are queueing and it shrinks by as much, or, far above (2·beta),
// drops at once to the limit that would leave beta queued.
//
// The baseline is the lowest window mean seen. So that it can also rise
// (a downstream that became slower for good), every probeEvery windows the
// limit is set to half the calls in flight for one window and the
// baseline is replaced by the mean latency of the calls admitted under the
// halved limit, as BBR's ProbeRTT does.
func (l *Limiter) record(start time.Time, rtt time.Duration) (from, to int, mean time.Duration, changed bool) {
	if l.probing && start.Before(l.probeStart) {
		return 0, 0, 0, false // admitted under the full limit: not a no-load sample
	}
	l.samples++
	l.sum += rtt
	if l.samples < max(minWindow, l.limit) {
		return 0, 0, 0, false
	}
	mean = l.sum / time.Duration(l.samples)
	peak := l.peak
	l.samples, l.sum, l.peak = 0, 0, l.inflight

	from = l.limit
	switch {
	case l.probing:
		l.probing = false
		l.baseline = mean
	case l.baseline == 0 || mean < l.baseline:
		l.baseline = mean
		fallthrough
	default:
		l.estimate = l.vegas(l.estimate, mean, peak)
		if l.updates++; l.updates >= probeEvery {
			l.updates = 0
			l.probing = true
			l.probeStart = time.Now()
		}
	}
	l.limit = int(l.estimate)
	if l.probing {
		// Halve what is really in use, which may be far below the limit.
		l.limit = max(int(l.min), min(l.limit, peak)/2)
	}
	return from, l.limit, mean, l.limit != from
}

func (l *Limiter) vegas(limit float64, mean time.Duration, peak int) float64 {
	if mean <= 0 {
		return limit
	}
	step := max(1, math.Log10(limit))
	alpha, beta := max(1, 3*math.Log10(limit)), max(2, 6*math.Log10(limit))
	used := min(limit, float64(peak)) // calls in flight: below the limit when demand is
	queue := used * (1 - float64(l.baseline)/float64(mean))
	switch {
	case queue > 2*beta:
		limit = min(limit-step, used*float64(l.baseline)/float64(mean)+beta)
	case queue > beta:
		limit -= step
	case queue < alpha && 2*peak >= int(limit):
		limit += step
	}
	return min(max(limit, l.min), l.max)
}

// Middleware returns a middleware that admits each call through l, and
// returns [ErrLimitExceeded] or the context error without running the
// stage otherwise. Only successful calls are latency samples; failures,
// cancellations and panics release their slot without one. A nil l makes
// every call fail with an error rather than run unlimited.
func Middleware[In, Out any](l *Limiter) middleware.Middleware[In, Out] {
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		next = middleware.Apply(next)
		return func(ctx context.Context, in In) (out Out, err error) {
			if l == nil {
				return out, errNilLimiter
			}
			p, err := l.Acquire(ctx)
			if err != nil {
				return out, err
			}
			ok := false
			defer func() { p.Release(ok) }()
			out, err = next(ctx, in)
			ok = err == nil
			return out, err
		}
	}
}

var errNilLimiter = errors.New("adaptive: nil limiter")
