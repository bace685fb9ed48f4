package budget

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/brace-go/brace/middleware"
)

// Defaults used for zero-valued Config fields. They are tower's defaults.
const (
	defaultRatio        = 0.2
	defaultMinPerSecond = 10
	defaultWindow       = 10 * time.Second
)

// None, given as Ratio or MinPerSecond, sets that term to zero: Ratio: None
// allows only the per-second minimum, MinPerSecond: None allows only the
// fraction of calls. (The zero value of a field means its default.)
const None = -1

// slots is the number of buckets the window is divided into. Deposits and
// withdrawals older than the window fall out one bucket at a time, so the
// budget never resets all at once.
const slots = 10

// ErrExhausted is the error [Budget.Acquire] returns when the budget has no
// token left for an extra attempt. It is a local rejection: it has a method
// Rejected() reporting true (the attempt never reached the downstream) and
// a method Retryable() reporting false (retrying a refusal of the retry
// budget would defeat it).
var ErrExhausted error = exhaustedError{}

type exhaustedError struct{}

func (exhaustedError) Error() string   { return "budget: exhausted, no token for an extra attempt" }
func (exhaustedError) Rejected() bool  { return true }
func (exhaustedError) Retryable() bool { return false }

// Config configures a [Budget]. The zero value is valid and means the
// defaults: 20% of calls plus 10 per second, over a 10 s window, no name,
// no observer.
type Config struct {
	// Name is the budget's name in its events. Optional.
	Name string

	// Ratio is how many extra attempts each call adds to the budget:
	// 0.2 allows retries (or hedges) worth 20% of the calls seen in the
	// window. Zero means 0.2; None means no ratio term.
	Ratio float64

	// MinPerSecond is a reserve that is always available, so that a
	// client with little traffic can still retry: MinPerSecond × Window
	// tokens per window on top of the ratio term. Zero means
	// 10; None means no reserve.
	MinPerSecond float64

	// Window is how long a deposit or a token taken counts. Zero means
	// 10 s; it must be at least 10 ns (one nanosecond per
	// bucket).
	Window time.Duration

	// Observer, if set, receives a [middleware.Rejected] event (Reason
	// "budget") for every refused Acquire. Nil means none.
	Observer middleware.Observer
}

// Budget is a token bucket shared by the callers that may send extra
// attempts (retries, hedges) to one downstream. Every call deposits
// ([Budget.Deposit]); every extra attempt takes a token ([Budget.Acquire]).
// Acquire succeeds while the tokens taken in the last Window stay within
//
//	Ratio × deposits in the last Window + MinPerSecond × Window
//
// so an outage cannot multiply the load on the downstream by more than
// 1 + Ratio once the reserve is used up.
//
// Time is read when a method is called; there is no background goroutine.
// A Budget is safe for concurrent use. Its zero value is not usable; build
// one with [New].
type Budget struct {
	name    string
	obs     middleware.Observer
	ratio   float64
	reserve float64       // MinPerSecond × Window, in tokens
	width   time.Duration // Window / slots
	origin  time.Time     // monotonic reference for bucket numbers

	rejected atomic.Uint64 // refused Acquires; counted on the refusal path only

	mu      sync.Mutex
	buckets [slots]bucket
}

type bucket struct {
	epoch    int64 // which bucket of time this is; stale when older than the window
	deposits int64
	taken    int64
}

// New returns a Budget for cfg, or an error naming the field that is
// invalid.
func New(cfg Config) (*Budget, error) {
	ratio, err := term("Ratio", cfg.Ratio, defaultRatio)
	if err != nil {
		return nil, err
	}
	perSec, err := term("MinPerSecond", cfg.MinPerSecond, defaultMinPerSecond)
	if err != nil {
		return nil, err
	}
	window := cfg.Window
	switch {
	case window == 0:
		window = defaultWindow
	case window < slots:
		return nil, fmt.Errorf("budget: Window must be at least %v, got %v", time.Duration(slots), window)
	}
	return &Budget{
		name:    cfg.Name,
		obs:     cfg.Observer,
		ratio:   ratio,
		reserve: perSec * window.Seconds(),
		width:   window / slots,
		origin:  time.Now(),
	}, nil
}

func term(name string, v, def float64) (float64, error) {
	switch {
	case v == 0:
		return def, nil
	case v == None:
		return 0, nil
	case v < 0 || math.IsNaN(v) || math.IsInf(v, 0):
		return 0, fmt.Errorf("budget: %s must be positive, 0 (default) or budget.None, got %v", name, v)
	}
	return v, nil
}

// Deposit records one call: call it once per call, before or after its
// first attempt, whether or not extra attempts follow. The first attempt
// is not admitted by the budget (it is never refused, and a budget that
// refused first attempts would be a rate limiter), so it takes no [Permit]:
// a deposit is a record, not an admission, and there is nothing to finish.
func (b *Budget) Deposit() {
	now := b.epoch() // read the clock before taking the lock
	b.mu.Lock()
	b.current(now).deposits++
	b.mu.Unlock()
}

// Permit is one token taken from a [Budget] by [Budget.Acquire]: the right
// to make one extra attempt (a retry or a hedge). It is a small value; the
// zero Permit is one that was refused or already finished.
type Permit struct {
	b *Budget
}

// Acquire takes one token for an extra attempt. It returns [ErrExhausted]
// if the budget has none left (the caller must not make the attempt), and
// ctx.Err() without taking anything if ctx has already ended. It never
// waits. A refusal is counted in [Stats].Rejected and reported to the
// Observer as a [middleware.Rejected] event with Reason "budget".
//
// A token is spent when it is taken: finishing the Permit with
// [Permit.Done] gives nothing back, whatever the attempt's outcome.
func (b *Budget) Acquire(ctx context.Context) (Permit, error) {
	if err := ctx.Err(); err != nil {
		return Permit{}, err
	}
	now := b.epoch()
	b.mu.Lock()
	d, w := b.sums(now)
	ok := float64(w+1) <= b.limit(d)
	if ok {
		b.current(now).taken++
	}
	b.mu.Unlock()
	if ok {
		return Permit{b: b}, nil
	}
	b.rejected.Add(1)
	if b.obs != nil {
		middleware.Emit(ctx, b.obs, middleware.Event{
			Kind: middleware.Rejected, Concern: "budget", Name: b.name, Reason: "budget", Err: ErrExhausted,
		})
	}
	return Permit{}, ErrExhausted
}

// Done finishes the permit with the outcome of the extra attempt it
// admitted. For a budget it only zeroes the permit: the token stays spent
// whatever err is (a retry that fails still loaded the downstream), so
// calling Done is optional. It is part of the two-step form every
// admitting concern shares, so code that takes permits from several
// concerns can finish them all alike. A second Done is a no-op.
func (p *Permit) Done(err error) {
	*p = Permit{}
}

// Stats is a snapshot of a [Budget].
type Stats struct {
	// Rejected counts the Acquires refused with ErrExhausted since New.
	Rejected uint64
	// Available is how many Acquires would succeed now if no more
	// deposits arrived.
	Available int
}

// Stats returns a snapshot of the budget. It has no side effects: it
// reads the clock and, briefly, the window under the budget's lock.
func (b *Budget) Stats() Stats {
	return Stats{Rejected: b.rejected.Load(), Available: b.available()}
}

func (b *Budget) available() int {
	now := b.epoch()
	b.mu.Lock()
	d, w := b.sums(now)
	b.mu.Unlock()
	avail := math.Floor(b.limit(d)) - float64(w)
	switch {
	case !(avail > 0): // also NaN
		return 0
	case avail >= math.MaxInt:
		// A huge Ratio or MinPerSecond: int(avail) would overflow (to
		// a negative number on amd64).
		return math.MaxInt
	}
	return int(avail)
}

// limit returns how many tokens the window allows for d deposits. The
// small tolerance keeps float rounding (0.29 × 100 = 28.999999999999996)
// from costing a whole token.
func (b *Budget) limit(d int64) float64 {
	return b.ratio*float64(d) + b.reserve + 1e-9
}

// epoch returns the number of the bucket of time we are in.
func (b *Budget) epoch() int64 {
	return int64(max(time.Since(b.origin), 0) / b.width)
}

// current returns the bucket for epoch e, clearing it if it holds an older
// epoch. b.mu must be held.
func (b *Budget) current(e int64) *bucket {
	bk := &b.buckets[e%slots]
	if bk.epoch != e {
		*bk = bucket{epoch: e}
	}
	return bk
}

// sums returns the deposits and tokens taken in the last window. b.mu must
// be held.
func (b *Budget) sums(e int64) (deposits, taken int64) {
	for i := range b.buckets {
		bk := &b.buckets[i]
		if bk.epoch > e-slots && bk.epoch <= e {
			deposits += bk.deposits
			taken += bk.taken
		}
	}
	return deposits, taken
}
