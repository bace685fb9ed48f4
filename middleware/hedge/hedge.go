package hedge

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/brace-go/brace/internal/xtime"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/budget"
)

// Defaults for the zero [Config].
const (
	defaultDelay      = 100 * time.Millisecond
	defaultPercentile = 0.95
	defaultSamples    = 200
	defaultMaxHedges  = 1
)

// Fixed, given as Config.Percentile, makes every hedge wait exactly
// Config.Delay instead of a percentile of recent latencies.
const Fixed = -1

// minSamples is how many latencies must be known before the percentile
// replaces Delay; the percentile is recomputed every recompute samples.
const (
	minSamples = 20
	recompute  = 10
)

// Config configures a [Hedger]. The zero value is ready to use: one hedge,
// sent when the first attempt has taken longer than the 95th percentile of
// recent successful attempts (100ms until 20 are known), drawing from a
// private budget with budget's defaults, unnamed and unobserved.
type Config struct {
	// Delay is how long each attempt is given before the next one starts:
	// with Percentile Fixed always, otherwise until enough latencies are
	// known. Zero means 100 ms.
	Delay time.Duration

	// Percentile, in (0, 1), sets the delay to that percentile of the
	// latencies of the last Samples successful attempts, so only the
	// slowest calls are hedged. Zero means 0.95; Fixed
	// means always Delay.
	Percentile float64

	// Samples is the number of recent latencies kept (a ring buffer) for
	// Percentile. Zero means 200.
	Samples int

	// MaxHedges is the most extra attempts one call may start. Zero means
	// 1.
	MaxHedges int

	// Budget caps hedges across calls: each call deposits once
	// ([budget.Budget.Deposit]) and each hedge takes a token
	// ([budget.Budget.Acquire]); a hedge the budget refuses is not sent,
	// so hedging cannot multiply the load of a slow or failing downstream.
	// Share one budget with the Retry middlewares that send extra attempts
	// to the same downstream. Nil means a private budget with budget's
	// defaults (hedges worth 20% of calls plus 10 a second).
	Budget *budget.Budget

	// Name names this Hedger in its events (Event.Name), and so in logs
	// and metrics. Empty means unnamed.
	Name string

	// Observer, if not nil, receives a [middleware.Hedged] event for each
	// hedge sent and a [middleware.Rejected] event (Reason "budget") for
	// each hedge the budget refused. Nil means unobserved.
	Observer middleware.Observer
}

// Hedger holds what hedging learns about one downstream: recent latencies
// and the budget. Build it with [New] and apply it with [Middleware]; one
// Hedger may serve stages of different types that call the same
// downstream. It is safe for concurrent use.
type Hedger struct {
	fixed      time.Duration
	percentile float64 // 0 for Fixed
	maxHedges  int
	budget     *budget.Budget
	name       string
	obs        middleware.Observer

	delay atomic.Int64 // the current delay, in nanoseconds

	// Counted on the hedge paths only, for Stats.
	hedged, wins, rejected atomic.Uint64

	mu      sync.Mutex
	ring    []time.Duration
	scratch []time.Duration
	n       int // latencies recorded, ever
}

// New returns a Hedger for cfg, or an error naming the first invalid field.
func New(cfg Config) (*Hedger, error) {
	switch {
	case cfg.Delay < 0:
		return nil, fmt.Errorf("hedge: Delay must not be negative, got %v", cfg.Delay)
	case cfg.Percentile != Fixed && (math.IsNaN(cfg.Percentile) || cfg.Percentile < 0 || cfg.Percentile >= 1):
		return nil, fmt.Errorf("hedge: Percentile must be in (0, 1) or Fixed, got %v", cfg.Percentile)
	case cfg.Samples < 0:
		return nil, fmt.Errorf("hedge: Samples must not be negative, got %d", cfg.Samples)
	case cfg.MaxHedges < 0:
		return nil, fmt.Errorf("hedge: MaxHedges must not be negative, got %d", cfg.MaxHedges)
	}
	if cfg.Delay == 0 {
		cfg.Delay = defaultDelay
	}
	if cfg.Percentile == 0 {
		cfg.Percentile = defaultPercentile
	}
	if cfg.Samples == 0 {
		cfg.Samples = defaultSamples
	}
	if cfg.MaxHedges == 0 {
		cfg.MaxHedges = defaultMaxHedges
	}
	if cfg.Budget == nil {
		b, err := budget.New(budget.Config{})
		if err != nil {
			return nil, fmt.Errorf("hedge: default budget: %w", err)
		}
		cfg.Budget = b
	}
	h := &Hedger{
		fixed:     cfg.Delay,
		maxHedges: cfg.MaxHedges,
		budget:    cfg.Budget,
		name:      cfg.Name,
		obs:       cfg.Observer,
	}
	if cfg.Percentile != Fixed {
		h.percentile = cfg.Percentile
		h.ring = make([]time.Duration, cfg.Samples)
		h.scratch = make([]time.Duration, 0, cfg.Samples)
	}
	h.delay.Store(int64(cfg.Delay))
	return h, nil
}

// Delay returns the delay after which the next hedge starts: the fixed
// Delay, or the current percentile of recent latencies. It is pure.
func (h *Hedger) Delay() time.Duration { return time.Duration(h.delay.Load()) }

// record adds the latency of a successful attempt.
func (h *Hedger) record(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ring[h.n%len(h.ring)] = d
	h.n++
	if h.n < min(minSamples, len(h.ring)) || h.n%recompute != 0 {
		return
	}
	h.scratch = append(h.scratch[:0], h.ring[:min(h.n, len(h.ring))]...)
	slices.Sort(h.scratch)
	i := int(math.Ceil(h.percentile*float64(len(h.scratch)))) - 1
	h.delay.Store(int64(h.scratch[max(i, 0)]))
}

// Errors that stand for a hedge that did not return normally. errGoexit is
// what the caller sees when every attempt failed and one of them was a
// hedge that called runtime.Goexit.
var (
	errGoexit   = errors.New("hedge: attempt called runtime.Goexit")
	errPanicked = errors.New("hedge: attempt panicked")
)

// Middleware returns a middleware that hedges the stage it wraps with h.
// It panics if h is nil (the error of [New] was ignored).
//
// Each call runs the stage (the first attempt) on the caller's goroutine.
// If no attempt has succeeded after h.Delay(), a timer starts another
// attempt in a goroutine of its own, up to MaxHedges extra attempts one
// delay apart, each only if the budget allows. The first success is
// returned. Every attempt runs on its own context derived from the
// caller's; when the call returns, all of them have been cancelled and
// every attempt's goroutine has finished: nothing outlives the call. A
// result that depends on its attempt's context (an http.Response body)
// must therefore be consumed inside the stage.
//
// A failure does not start a hedge (that is Retry's job): when every
// attempt started has failed, the call fails — with the error itself if
// only one attempt ran, otherwise with errors.Join of the attempts' errors
// in the order they were started. If the caller's context ends before an
// attempt succeeds, the call returns ctx.Err() once the cancelled attempts
// have returned; if it has ended before the call, nothing runs. A panic in the first attempt
// continues on the caller's goroutine, and a panic in a hedge is re-raised
// there, in both cases after the other attempts have returned.
func Middleware[In, Out any](h *Hedger) middleware.Middleware[In, Out] {
	if h == nil {
		panic("hedge: nil *Hedger (was New's error ignored?)")
	}
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		next = middleware.Apply(next) // panics on a nil stage
		return func(ctx context.Context, in In) (Out, error) {
			if err := ctx.Err(); err != nil {
				var zero Out
				return zero, err
			}
			return run(ctx, h, next, in)
		}
	}
}

// call is the state of one hedged call, shared by the caller's goroutine
// (which runs the first attempt) and the timer's goroutines (which run the
// hedges). It is allocated per call; the fields under mu are the only ones
// written after the call starts.
type call[In, Out any] struct {
	h     *Hedger
	next  middleware.Stage[In, Out]
	ctx   context.Context // the caller's
	in    In
	timer *time.Timer // runs fire; armed at most once at a time

	mu      sync.Mutex
	armed   bool          // timer set, its fire not yet begun
	at      time.Duration // when the armed timer fires, counted from the call's start
	closed  bool          // the call is over: send no more hedges
	running int           // fires in progress (each one a hedge, or a hedge being decided)
	started int           // attempts started, the first included
	cancel  context.CancelFunc
	hedges  []hedgeState // hedge i+2 is hedges[i]
	won     bool
	winner  int // the attempt that won, from 1
	out     Out
	panics  bool
	pval    any           // the value a hedge panicked with
	wake    chan struct{} // made when the caller first waits; signalled when state changes
}

type hedgeState struct {
	cancel context.CancelFunc
	err    error
}

func run[In, Out any](ctx context.Context, h *Hedger, next middleware.Stage[In, Out], in In) (Out, error) {
	h.budget.Deposit()
	c := &call[In, Out]{h: h, next: next, ctx: ctx, in: in, started: 1}
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	var began time.Time
	if h.percentile != 0 {
		began = time.Now()
	}
	// The lock orders the arming before any fire: a fire takes it first.
	c.mu.Lock()
	c.cancel = cancel
	c.at = h.Delay()
	c.armed = true
	c.timer = time.AfterFunc(c.at, c.fire)
	c.mu.Unlock()

	// If the first attempt panics or calls runtime.Goexit, stop the
	// hedges and wait for them before the caller's goroutine unwinds.
	returned := false
	defer func() {
		if !returned {
			c.mu.Lock()
			c.close()
			c.wait()
			c.mu.Unlock()
		}
	}()
	out, err := next(actx, in)
	returned = true
	var latency time.Duration
	if h.percentile != 0 {
		latency = time.Since(began)
	}

	c.mu.Lock()
	if err == nil && !c.won && !c.panics {
		c.won, c.winner, c.out = true, 1, out
	}
	c.wait()
	won, winner, result, panics, pval := c.won, c.winner, c.out, c.panics, c.pval
	hedges := c.hedges
	c.mu.Unlock()

	switch {
	case panics:
		panic(pval)
	case won:
		if winner > 1 {
			h.wins.Add(1)
		} else if h.percentile != 0 {
			h.record(latency)
		}
		return result, nil
	}
	var zero Out
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	if len(hedges) == 0 {
		return zero, err
	}
	errs := make([]error, 1+len(hedges))
	errs[0] = err
	for i, hs := range hedges {
		errs[i+1] = hs.err
	}
	return zero, errors.Join(errs...)
}

// wait closes the call once it is decided — an attempt won or panicked, or
// every attempt started has failed — and returns when no hedge is running
// and no timer is armed. c.mu is held, and is released while waiting.
func (c *call[In, Out]) wait() {
	for {
		if c.won || c.panics || c.running == 0 {
			c.close()
		}
		if c.closed && c.running == 0 && !c.armed {
			return
		}
		if c.wake == nil {
			c.wake = make(chan struct{}, 1)
		}
		w := c.wake
		c.mu.Unlock()
		<-w
		c.mu.Lock()
	}
}

// close ends the call: no more hedges, the armed timer stopped if it has
// not fired, every attempt cancelled. c.mu is held. Cancelling calls no
// user code.
func (c *call[In, Out]) close() {
	if c.closed {
		return
	}
	c.closed = true
	if c.armed && c.timer.Stop() {
		c.armed = false // else its fire runs, sees closed, and clears armed
	}
	c.cancel()
	for _, hs := range c.hedges {
		hs.cancel()
	}
}

// signal wakes the caller if it is waiting. c.mu is held.
func (c *call[In, Out]) signal() {
	select {
	case c.wake <- struct{}{}:
	default: // nil (the caller is not waiting yet) or already signalled
	}
}

// fire runs on the timer's goroutine when a hedge delay has passed: it
// asks the budget for a token and, if given one, runs the hedge on this
// goroutine.
func (c *call[In, Out]) fire() {
	c.mu.Lock()
	c.armed = false
	if c.closed {
		c.signal()
		c.mu.Unlock()
		return
	}
	c.running++ // the caller now waits for this goroutine
	attempt, at := c.started+1, c.at
	c.mu.Unlock()

	h := c.h
	// Outside the lock: the budget may call its own observer.
	permit, err := h.budget.Acquire(c.ctx)
	if err != nil {
		if c.ctx.Err() == nil {
			h.rejected.Add(1)
			if h.obs != nil {
				middleware.Emit(c.ctx, h.obs, middleware.Event{Kind: middleware.Rejected, Concern: "hedge", Name: h.name,
					Attempt: attempt, Reason: "budget", Err: err})
			}
		}
		c.mu.Lock()
		c.running-- // and no more hedges for this call: the timer stays unarmed
		c.signal()
		c.mu.Unlock()
		return
	}

	c.mu.Lock()
	if c.closed { // decided while we asked the budget: the hedge is not sent
		c.running--
		c.signal()
		c.mu.Unlock()
		permit.Done(context.Canceled)
		return
	}
	actx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	c.started = attempt
	index := len(c.hedges)
	c.hedges = append(c.hedges, hedgeState{cancel: cancel})
	if attempt <= h.maxHedges {
		d := h.Delay()
		c.at = time.Duration(xtime.Add(int64(c.at), int64(d)))
		c.armed = true
		c.timer.Reset(d)
	}
	c.mu.Unlock()

	h.hedged.Add(1)
	if h.obs != nil {
		middleware.Emit(c.ctx, h.obs, middleware.Event{Kind: middleware.Hedged, Concern: "hedge", Name: h.name,
			Attempt: attempt, Delay: at})
	}
	c.hedge(actx, index, attempt, &permit)
}

// hedge runs hedge number attempt (index in c.hedges) and records its
// outcome. A panic or runtime.Goexit in the stage is recorded too, so the
// caller never waits for a hedge that will not report.
func (c *call[In, Out]) hedge(actx context.Context, index, attempt int, permit *budget.Permit) {
	var began time.Time
	if c.h.percentile != 0 {
		began = time.Now()
	}
	returned := false
	defer func() {
		if returned {
			return
		}
		v := recover() // nil for runtime.Goexit, which goes on after this
		err := errGoexit
		if v != nil {
			err = errPanicked
		}
		permit.Done(err)
		c.mu.Lock()
		c.hedges[index].err = err
		if v != nil && !c.panics {
			c.panics, c.pval = true, v
			c.close() // stop the other attempts; the caller re-raises v
		}
		c.running--
		c.signal()
		c.mu.Unlock()
	}()
	out, err := c.next(actx, c.in)
	returned = true
	permit.Done(err)

	c.mu.Lock()
	c.hedges[index].err = err
	won := err == nil && !c.won && !c.closed
	if won {
		c.won, c.winner, c.out = true, attempt, out
		c.close() // cancel the first attempt and the other hedges
	}
	if won && c.h.percentile != 0 {
		c.h.record(time.Since(began)) // takes h.mu, calls nothing of the user's
	}
	c.running--
	c.signal()
	c.mu.Unlock()
}
