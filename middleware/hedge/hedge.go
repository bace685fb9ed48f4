package hedge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/budget"
)

// Defaults for the zero [Config].
const (
	DefaultDelay      = 100 * time.Millisecond
	DefaultPercentile = 0.95
	DefaultSamples    = 200
	DefaultMaxHedges  = 1
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
// private budget with budget's defaults.
type Config struct {
	// Delay is how long each attempt is given before the next one starts:
	// with Percentile Fixed always, otherwise until enough latencies are
	// known. Zero means DefaultDelay.
	Delay time.Duration

	// Percentile, in (0, 1), sets the delay to that percentile of the
	// latencies of the last Samples successful attempts, so only the
	// slowest calls are hedged. Zero means DefaultPercentile (0.95); Fixed
	// means always Delay.
	Percentile float64

	// Samples is the number of recent latencies kept (a ring buffer) for
	// Percentile. Zero means DefaultSamples.
	Samples int

	// MaxHedges is the most extra attempts one call may start. Zero means
	// DefaultMaxHedges (1).
	MaxHedges int

	// Budget caps hedges across calls: each call deposits once and each
	// hedge withdraws once, and a hedge is not sent when the withdrawal
	// fails, so hedging cannot multiply the load of a slow or failing
	// downstream. Share one budget with the Retry middlewares that send
	// extra attempts to the same downstream. Nil means a private budget
	// with budget's defaults (hedges worth 20% of calls plus 10 a second).
	Budget *budget.Budget

	// OnHedge, if set, is called with the attempt number (2 for the first
	// hedge) each time a hedge is started. It is called outside any lock.
	OnHedge func(attempt int)

	// Logger, if set, receives a Debug record "hedge: attempt" with the
	// attributes "attempt" and "delay" for each hedge, and a Debug record
	// "hedge: budget exhausted" with "attempt" when the budget refuses one.
	// Nil means silent. Both carry "name" when Name is set.
	Logger *slog.Logger

	// Name, if not empty, is added to log records as "name".
	Name string

	// Counter, if set, counts calls, hedges, hedges that won and hedges
	// the budget refused (see [Counter]). Nil means no counting.
	Counter *Counter
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
	onHedge    func(int)
	logger     *slog.Logger
	name       string
	counter    *Counter

	delay atomic.Int64 // the current delay, in nanoseconds

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
		cfg.Delay = DefaultDelay
	}
	if cfg.Percentile == 0 {
		cfg.Percentile = DefaultPercentile
	}
	if cfg.Samples == 0 {
		cfg.Samples = DefaultSamples
	}
	if cfg.MaxHedges == 0 {
		cfg.MaxHedges = DefaultMaxHedges
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
		onHedge:   cfg.OnHedge,
		logger:    cfg.Logger,
		name:      cfg.Name,
		counter:   cfg.Counter,
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
// Delay, or the current percentile of recent latencies.
func (h *Hedger) Delay() time.Duration { return time.Duration(h.delay.Load()) }

// record adds the latency of a successful attempt.
func (h *Hedger) record(d time.Duration) {
	if h.percentile == 0 {
		return
	}
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

// errGoexit is reported for an attempt that called runtime.Goexit.
var errGoexit = errors.New("hedge: attempt called runtime.Goexit")

type result[Out any] struct {
	index    int // which attempt, in the order started
	out      Out
	err      error
	latency  time.Duration
	panicked bool
	value    any // the panic value
}

// Middleware returns a middleware that hedges the stage it wraps with h.
//
// Each call starts the stage; if no attempt has succeeded after h.Delay(),
// it starts another, up to MaxHedges extra attempts, each only if the budget
// allows. The first success is returned. Every attempt runs on its own
// context derived from the caller's; when the call returns, all of them are
// cancelled and every attempt's goroutine has finished: nothing outlives
// the call. A result that depends on its attempt's context (an
// http.Response body) must therefore be consumed inside the stage.
//
// A failure does not start a hedge (that is Retry's job): when every
// attempt started has failed, the call fails — with the error itself if
// only one attempt ran, otherwise with errors.Join of the attempts' errors
// in the order they were started. If the caller's context ends, the call
// returns ctx.Err() once the cancelled attempts have returned. A panic in
// an attempt is re-raised in the caller's goroutine after the others have
// returned.
//
// A nil h makes every call fail with an error.
func Middleware[In, Out any](h *Hedger) middleware.Middleware[In, Out] {
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		next = middleware.Apply(next)
		return func(ctx context.Context, in In) (Out, error) {
			if h == nil {
				var zero Out
				return zero, errNilHedger
			}
			return run(ctx, h, next, in)
		}
	}
}

var errNilHedger = errors.New("hedge: nil hedger")

// attempt is one started attempt: its cancel func and, once it has
// finished, its error.
type attempt struct {
	cancel context.CancelFunc
	err    error
}

func run[In, Out any](ctx context.Context, h *Hedger, next middleware.Stage[In, Out], in In) (Out, error) {
	var zero Out
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	h.budget.Deposit()
	if h.counter != nil {
		h.counter.calls.Add(1)
	}

	results := make(chan result[Out], 1+h.maxHedges) // buffered: no sender ever blocks
	attempts := make([]attempt, 0, 1+h.maxHedges)
	running := 0
	start := func() {
		actx, cancel := context.WithCancel(ctx)
		index := len(attempts)
		attempts = append(attempts, attempt{cancel: cancel})
		running++
		go func() {
			began := time.Now()
			sent := false
			defer func() {
				if !sent {
					// A panic or runtime.Goexit: report it, so that the
					// caller never waits for a result that will not come.
					v := recover()
					results <- result[Out]{index: index, err: errGoexit, panicked: v != nil, value: v}
				}
			}()
			out, err := next(actx, in)
			sent = true
			results <- result[Out]{index: index, out: out, err: err, latency: time.Since(began)}
		}()
	}
	// finish cancels every attempt and waits until all have returned.
	finish := func() {
		for _, a := range attempts {
			a.cancel()
		}
		for ; running > 0; running-- {
			<-results
		}
	}

	start()
	var timer *time.Timer
	var timerC <-chan time.Time
	if h.maxHedges > 0 {
		timer = time.NewTimer(h.Delay())
		defer timer.Stop()
		timerC = timer.C
	}
	for {
		select {
		case r := <-results:
			running--
			switch {
			case r.panicked:
				finish()
				panic(r.value)
			case r.err == nil:
				if h.counter != nil && r.index > 0 {
					h.counter.wins.Add(1)
				}
				h.record(r.latency)
				finish()
				return r.out, nil
			}
			attempts[r.index].err = r.err
			if running > 0 {
				continue // a slower attempt may still succeed
			}
			finish()
			if err := ctx.Err(); err != nil {
				return zero, err
			}
			return zero, joined(attempts)
		case <-timerC:
			n := len(attempts) + 1
			if !h.budget.Withdraw() {
				timerC = nil // no more hedges for this call
				if h.counter != nil {
					h.counter.refused.Add(1)
				}
				if h.logger != nil {
					h.log(ctx, "hedge: budget exhausted", slog.Int("attempt", n))
				}
				continue
			}
			delay := h.Delay()
			if h.counter != nil {
				h.counter.hedges.Add(1)
			}
			if h.onHedge != nil {
				h.onHedge(n)
			}
			if h.logger != nil {
				h.log(ctx, "hedge: attempt", slog.Int("attempt", n), slog.Duration("delay", delay))
			}
			start()
			if len(attempts) <= h.maxHedges {
				timer.Reset(delay)
			} else {
				timerC = nil
			}
		case <-ctx.Done():
			finish()
			return zero, ctx.Err()
		}
	}
}

// log writes a Debug record with attrs and, if set, the name. h.logger is
// not nil.
func (h *Hedger) log(ctx context.Context, msg string, attrs ...slog.Attr) {
	if !h.logger.Enabled(ctx, slog.LevelDebug) {
		return
	}
	if h.name != "" {
		attrs = append(attrs, slog.String("name", h.name))
	}
	h.logger.LogAttrs(ctx, slog.LevelDebug, msg, attrs...)
}

// joined returns the one error of a single attempt unchanged, or all the
// attempts' errors joined in the order they were started.
func joined(attempts []attempt) error {
	if len(attempts) == 1 {
		return attempts[0].err
	}
	errs := make([]error, len(attempts))
	for i, a := range attempts {
		errs[i] = a.err
	}
	return errors.Join(errs...)
}
