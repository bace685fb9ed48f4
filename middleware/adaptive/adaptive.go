package adaptive

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/priority"
)

// ErrLimitExceeded is returned, without running the stage, when a call
// arrives while as many calls are in flight as the current limit allows.
// It is a plain sentinel, so shedding under overload allocates nothing.
// It has the methods Retryable() bool, reporting false (it means "send
// less", and an immediate retry would defeat it), and Rejected() bool,
// reporting true (the call never reached the downstream, so a circuit
// breaker does not count it as the downstream's failure).
var ErrLimitExceeded error = limitExceeded{}

type limitExceeded struct{}

func (limitExceeded) Error() string { return "adaptive: limit exceeded" }

// Retryable reports false: retrying at once defeats the limit.
func (limitExceeded) Retryable() bool { return false }

// Rejected reports true: the call was refused before it reached the
// downstream.
func (limitExceeded) Rejected() bool { return true }

// Defaults for the zero [Config].
const (
	defaultMin     = 1
	defaultMax     = 1000
	defaultInitial = 20
)

// minWindow is the fewest latency samples one limit update is based on.
const minWindow = 10

// probeEvery is the number of updates between two baseline probes.
const probeEvery = 50

// firstProbe is the number of updates before the first probe.
const firstProbe = 5

// Config configures a [Limiter]. The zero value is ready to use: a limit
// between 1 and 1000 that starts at 20, with no observer.
type Config struct {
	// Name names the limiter in its events.
	Name string

	// Min and Max bound the limit. Zero means 1 and 1000. Min must be
	// at least 1 and at most Max.
	Min, Max int

	// Initial is the limit before anything has been measured. Zero means
	// 20, moved into [Min, Max] if it falls outside.
	Initial int

	// Priorities turns on shedding by priority: each call's level is
	// read from its context with [priority.From], and a call of level l
	// is admitted only while fewer calls than Shares.Limit(l, limit) are
	// in flight — all of them counted, whatever their level — so a
	// sheddable call is refused once half the limit is in use by
	// default, a default call at 90%, and a critical call only at the
	// limit itself. Under overload sheddable calls are refused first, and
	// critical calls use what the others leave. False (the default) reads
	// no level: every call may use the whole limit.
	Priorities bool

	// Shares is how much of the limit each level below Critical may fill
	// when Priorities is on; the zero value means priority's defaults
	// (Sheddable 0.5, Default 0.9). It must be zero when Priorities is
	// off.
	Shares priority.Shares

	// Observer receives the limiter's events (see docs/adaptive.md):
	// LimitChanged and Rejected. Nil means none.
	Observer middleware.Observer
}

// Limiter is an adaptive concurrency limit: it admits calls while fewer
// than the limit are in flight, and moves the limit with the latency it
// observes. Build it with [New] and apply it with [Middleware], or use
// [Limiter.Acquire] and [Permit.Done] directly. One Limiter guards
// stages of any types; it is safe for concurrent use.
type Limiter struct {
	min, max float64
	obs      middleware.Observer
	name     string
	prio     bool            // Config.Priorities
	shares   priority.Shares // resolved, when prio

	mu       sync.Mutex
	estimate float64 // the limit the algorithm has arrived at
	limit    int     // the limit enforced now: the estimate, or less while probing
	inflight int
	rejected uint64

	// the current window
	samples, peak int
	sum           time.Duration

	baseline time.Duration // lowest window mean latency: the no-load latency
	updates  int           // windows since the last probe
	probing  bool
	// probeStart is when the current probe began; only calls admitted
	// after it measure the latency at the reduced limit.
	probeStart time.Time

	// reported is the limit last reported (LimitChanged), changes how
	// many times it changed; guarded by mu. reporting is set while one
	// goroutine reports (see report).
	reported  int
	changes   uint64
	reporting atomic.Bool
}

// New returns a Limiter for cfg, or an error naming the first invalid
// field.
func New(cfg Config) (*Limiter, error) {
	if cfg.Min == 0 {
		cfg.Min = defaultMin
	}
	if cfg.Max == 0 {
		cfg.Max = defaultMax
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
		cfg.Initial = min(max(defaultInitial, cfg.Min), cfg.Max)
	}
	if cfg.Initial < cfg.Min || cfg.Initial > cfg.Max {
		return nil, fmt.Errorf("adaptive: Initial must be between Min (%d) and Max (%d), got %d", cfg.Min, cfg.Max, cfg.Initial)
	}
	var shares priority.Shares
	if cfg.Priorities {
		var err error
		if shares, err = cfg.Shares.Resolve("adaptive", "Shares"); err != nil {
			return nil, err
		}
	} else if cfg.Shares != (priority.Shares{}) {
		return nil, fmt.Errorf("adaptive: Shares must be zero when Priorities is off, got %+v", cfg.Shares)
	}
	return &Limiter{
		min:      float64(cfg.Min),
		max:      float64(cfg.Max),
		obs:      cfg.Observer,
		name:     cfg.Name,
		prio:     cfg.Priorities,
		shares:   shares,
		estimate: float64(cfg.Initial),
		limit:    cfg.Initial,
		reported: cfg.Initial,
		// The first probe comes early: the first windows may all have
		// been measured above capacity, giving no true baseline.
		updates: probeEvery - firstProbe,
	}, nil
}

// A Permit is one admitted call's slot. Finish it with [Permit.Done]
// exactly once; Done zeroes the Permit, so a second Done on the same
// Permit does nothing. The zero Permit holds nothing.
type Permit struct {
	l     *Limiter
	start time.Time
}

// Acquire admits one call, or returns [ErrLimitExceeded] if the limit is
// reached (with Config.Priorities, the share of the limit the call's
// level may fill), or ctx.Err() if ctx has ended (even with room under
// the limit). It never waits: an adaptive limit sheds load rather than
// queue it. On success, finish the returned Permit with [Permit.Done].
func (l *Limiter) Acquire(ctx context.Context) (Permit, error) {
	if err := ctx.Err(); err != nil {
		return Permit{}, err
	}
	level := priority.Default
	if l.prio {
		level = priority.From(ctx) // outside the lock: a context lookup
	}
	l.mu.Lock()
	limit := l.limit
	if l.prio {
		// One decision under the lock, against all the calls in flight.
		limit = int(l.shares.Limit(level, int64(limit)))
	}
	if l.inflight >= limit {
		l.rejected++
		inflight := l.inflight
		l.mu.Unlock()
		if l.obs != nil {
			middleware.Emit(ctx, l.obs, middleware.Event{Kind: middleware.Rejected, Concern: "adaptive", Name: l.name,
				Reason: "limit", InFlight: int64(inflight), Limit: int64(limit), Err: ErrLimitExceeded, Priority: level})
		}
		return Permit{}, ErrLimitExceeded
	}
	l.inflight++
	l.peak = max(l.peak, l.inflight)
	l.mu.Unlock()
	return Permit{l: l, start: time.Now()}, nil
}

// Done ends the call and gives its slot back. err is the work's outcome:
// only a success (nil) is a latency sample; a failure, a cancellation or a
// panic says nothing about the downstream's latency under load (a fast
// failure would look like spare capacity). Done on a zero or finished
// Permit does nothing. Copies of one Permit share its slot: finish only
// one of them.
func (p *Permit) Done(err error) {
	l, start := p.l, p.start
	if l == nil {
		return
	}
	*p = Permit{}
	var rtt time.Duration
	if err == nil {
		rtt = time.Since(start)
	}
	l.mu.Lock()
	l.inflight--
	changed := err == nil && l.record(start, rtt)
	l.mu.Unlock()
	if changed {
		l.report()
	}
}

// report reports the limit if it differs from the limit last reported.
// One goroutine reports at a time, and it reports until the reported limit
// is the one in force, so the observer sees the limits in the order they
// were set and the last event carries the limit in force; changes made
// while one is being reported may be reported together, as one event. A
// goroutine finding a report under way leaves it to that one, so an
// observer may call back into the limiter.
func (l *Limiter) report() {
	for l.unreported() {
		if !l.reporting.CompareAndSwap(false, true) {
			return // the goroutine reporting will see this change
		}
		l.reportAll()
	}
}

func (l *Limiter) unreported() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limit != l.reported
}

func (l *Limiter) reportAll() {
	defer l.reporting.Store(false)
	for {
		l.mu.Lock()
		limit := l.limit
		if limit == l.reported {
			l.mu.Unlock()
			return
		}
		l.reported = limit
		l.changes++
		l.mu.Unlock()
		if l.obs != nil {
			middleware.Emit(context.Background(), l.obs, middleware.Event{Kind: middleware.LimitChanged, Concern: "adaptive", Name: l.name,
				Limit: int64(limit)})
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
func (l *Limiter) record(start time.Time, rtt time.Duration) (changed bool) {
	if l.probing && start.Before(l.probeStart) {
		return false // admitted under the full limit: not a no-load sample
	}
	l.samples++
	l.sum += rtt
	if l.samples < max(minWindow, l.limit) {
		return false
	}
	mean := l.sum / time.Duration(l.samples)
	peak := l.peak
	l.samples, l.sum, l.peak = 0, 0, l.inflight

	from := l.limit
	switch {
	case l.probing:
		l.probing = false
		l.baseline = mean
	case l.baseline == 0 || mean < l.baseline:
		l.baseline = mean
		fallthrough
	default:
		// A probe is due every probeEvery windows, but runs only after a
		// window that saw calls queue (by the baseline in force): a
		// window at the baseline says the baseline is not too low, and a
		// probe would shed calls for nothing.
		queued := l.queued(mean, peak)
		l.estimate = l.vegas(l.estimate, mean, peak)
		if l.updates = min(l.updates+1, probeEvery); l.updates >= probeEvery && queued >= 1 {
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
	return l.limit != from
}

// busy reports whether a window whose peak in flight was peak used enough
// of limit for the limit to grow: half of it, so that an idle service does
// not inflate its limit. With priorities, 80%: a limit may otherwise float
// to twice the calls in flight, and sheddable calls, admitted up to half
// of it, would fill it to the current demand, hold the limit up with
// their own peak, and push the downstream into overload, after which the
// cut of the limit falls on every level.
func (l *Limiter) busy(peak, limit int) bool {
	if l.prio {
		return 5*peak >= 4*limit
	}
	return 2*peak >= limit
}

// queued is Vegas's estimate of the calls of a window that queued rather
// than being served: used·(1 − B/M).
func (l *Limiter) queued(mean time.Duration, peak int) float64 {
	if mean <= 0 {
		return 0
	}
	used := min(l.estimate, float64(peak))
	return used * (1 - float64(l.baseline)/float64(mean))
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
	case queue < alpha && l.busy(peak, int(limit)):
		limit += step
	}
	return min(max(limit, l.min), l.max)
}

// Middleware returns a middleware that admits each call through l, as
// [Limiter.Acquire] does, and returns [ErrLimitExceeded] or the context's
// error without running the stage otherwise. The slot is given back when
// the stage returns, with its error, as [Permit.Done] does: only
// successful calls are latency samples; failures, cancellations and
// panics give their slot back without one.
//
// It panics if l is nil (most often New's ignored error).
func Middleware[In, Out any](l *Limiter) middleware.Middleware[In, Out] {
	if l == nil {
		panic("adaptive: nil *Limiter (was New's error ignored?)")
	}
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		return func(ctx context.Context, in In) (out Out, err error) {
			p, err := l.Acquire(ctx)
			if err != nil {
				return out, err
			}
			returned := false
			defer func() {
				if !returned {
					p.Done(errPanicked) // the stage panicked or called runtime.Goexit
				}
			}()
			out, err = next(ctx, in)
			returned = true
			p.Done(err)
			return out, err
		}
	}
}

// errPanicked finishes the permit of a stage that did not return.
var errPanicked = errors.New("adaptive: stage did not return")
