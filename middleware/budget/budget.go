package budget

import (
	"fmt"
	"math"
	"sync"
	"time"
)

// Defaults used for zero-valued Config fields. They are tower's defaults.
const (
	DefaultRatio        = 0.2
	DefaultMinPerSecond = 10
	DefaultWindow       = 10 * time.Second
)

// None, given as Ratio or MinPerSecond, sets that term to zero: Ratio: None
// allows only the per-second minimum, MinPerSecond: None allows only the
// fraction of calls. (The zero value of a field means its default.)
const None = -1

// slots is the number of buckets the window is divided into. Deposits and
// withdrawals older than the window fall out one bucket at a time, so the
// budget never resets all at once.
const slots = 10

// Config configures a [Budget]. The zero value is valid and means the
// defaults: 20% of calls plus 10 per second, over a 10 s window.
type Config struct {
	// Ratio is how many extra attempts each call adds to the budget:
	// 0.2 allows retries (or hedges) worth 20% of the calls seen in the
	// window. Zero means DefaultRatio; None means no ratio term.
	Ratio float64

	// MinPerSecond is a reserve that is always available, so that a
	// client with little traffic can still retry: MinPerSecond × Window
	// withdrawals per window on top of the ratio term. Zero means
	// DefaultMinPerSecond; None means no reserve.
	MinPerSecond float64

	// Window is how long a deposit or a withdrawal counts. Zero means
	// DefaultWindow; it must be at least 10 ns (one nanosecond per bucket).
	Window time.Duration
}

// Budget is a token bucket shared by the callers that may send extra
// attempts (retries, hedges) to one downstream. Every call deposits; every
// extra attempt withdraws. A withdrawal succeeds while the withdrawals made
// in the last Window stay within
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
	ratio   float64
	reserve float64       // MinPerSecond × Window, in withdrawals
	width   time.Duration // Window / slots
	origin  time.Time     // monotonic reference for bucket numbers

	mu      sync.Mutex
	buckets [slots]bucket
}

type bucket struct {
	epoch       int64 // which bucket of time this is; stale when older than the window
	deposits    int64
	withdrawals int64
}

// New returns a Budget for cfg, or an error naming the field that is
// invalid.
func New(cfg Config) (*Budget, error) {
	ratio, err := term("Ratio", cfg.Ratio, DefaultRatio)
	if err != nil {
		return nil, err
	}
	perSec, err := term("MinPerSecond", cfg.MinPerSecond, DefaultMinPerSecond)
	if err != nil {
		return nil, err
	}
	window := cfg.Window
	switch {
	case window == 0:
		window = DefaultWindow
	case window < slots:
		return nil, fmt.Errorf("budget: Window must be at least %v, got %v", time.Duration(slots), window)
	}
	return &Budget{
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

// Deposit records one call. Call it once per call, before or after its first
// attempt, whether or not extra attempts follow.
func (b *Budget) Deposit() {
	now := b.epoch() // read the clock before taking the lock, as Withdraw does
	b.mu.Lock()
	b.current(now).deposits++
	b.mu.Unlock()
}

// Withdraw takes one extra attempt from the budget and reports whether it
// was allowed. A false result means the caller must not make the attempt.
func (b *Budget) Withdraw() bool {
	now := b.epoch()
	b.mu.Lock()
	defer b.mu.Unlock()
	d, w := b.sums(now)
	if float64(w+1) > b.limit(d) {
		return false
	}
	b.current(now).withdrawals++
	return true
}

// Available returns how many withdrawals would succeed now if no more
// deposits arrived. It is a snapshot, for logs and metrics.
func (b *Budget) Available() int {
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

// limit returns how many withdrawals the window allows for d deposits. The
// small tolerance keeps float rounding (0.29 × 100 = 28.999999999999996)
// from costing a whole withdrawal.
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

// sums returns the deposits and withdrawals of the last window. b.mu must
// be held.
func (b *Budget) sums(e int64) (deposits, withdrawals int64) {
	for i := range b.buckets {
		bk := &b.buckets[i]
		if bk.epoch > e-slots && bk.epoch <= e {
			deposits += bk.deposits
			withdrawals += bk.withdrawals
		}
	}
	return deposits, withdrawals
}
