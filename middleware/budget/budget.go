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

	// Store, if set, shares the budget with every process whose budget
	// uses the same store (for example redisstore.NewBudgetStore): the
	// rule above then holds for the whole fleet's calls and extra
	// attempts, within the window of the store's clock. New binds it to
	// the budget's [Policy]. A call that makes no extra attempt still
	// sends nothing: deposits are counted locally and reach the store in
	// batches (see [Store] and docs/budget.md, "Shared budget"). Nil means
	// the budget is this process's alone.
	Store Store

	// FlushAfter is how old this process's oldest deposit not yet sent to
	// the Store may get before a Deposit starts one background flush (a
	// goroutine, at most one at a time, that sends the batch and ends).
	// Zero means Window/10; None means no background flush: deposits
	// travel only with the Acquires that need the store. It must be at
	// most Window/2 (a batch counts from its oldest deposit, so an older
	// one would hardly count). Without a Store it is unused.
	FlushAfter time.Duration

	// Observer, if set, receives a [middleware.Rejected] event (Reason
	// "budget") for every refused Acquire, and a [middleware.StoreFailed]
	// event for every failed Store operation. Nil means none.
	Observer middleware.Observer
}

// Policy is a budget's rule with its defaults resolved ([None] is 0),
// given by [New] to [Store.Bind] so that a store can apply the same rule
// to the fleet's counts.
type Policy struct {
	Ratio        float64       // extra attempts per call
	MinPerSecond float64       // the reserve, in tokens per second of Window
	Window       time.Duration // how long a deposit or a token taken counts
}

// Store shares one budget's window among processes. Its operations are
// called outside every lock of the budget; the budget never holds
// anything across them.
//
// Bind is called once by [New] with the budget's policy; a store shared
// by budgets returns an error if a later Bind brings another policy.
//
// Take adds deposits (calls this process made and has not sent before,
// the oldest of them made age ago) to the fleet's window and, when token
// is true, takes one token for an extra attempt if the fleet's window
// allows it under the policy's rule, reporting whether it did. All time
// is the store's own clock; only the age crosses the interface. A store
// must count a batch from no earlier than (its now − age), so batching
// never makes a deposit count longer than it would locally. Take must
// bound its own time (a networked store: a short timeout, whatever ctx
// says).
//
// An error means the budget could not use the store: the budget then
// decides from its local window (this process's own calls and extra
// attempts, its own Ratio and reserve), reports a StoreFailed event, and
// drops the batch (a store whose reply was lost may have applied it; the
// budget never sends a batch twice, so a failure can only undercount the
// fleet's calls, which errs toward fewer extra attempts). A panic in Take
// is recovered and handled as an error (a flush runs in a goroutine of its
// own, where it would end the process).
type Store interface {
	Bind(p Policy) error
	Take(ctx context.Context, deposits int64, age time.Duration, token bool) (granted bool, err error)
}

// flushTimeout bounds a background flush when the store does not bound it
// sooner.
const flushTimeout = 5 * time.Second

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

	rejected atomic.Uint64 // Acquires refused by the store; counted on the refusal path only

	store      Store
	flushAfter int64       // ns; < 0: no background flush
	flushing   atomic.Bool // a background flush is in flight
	failures   atomic.Uint64

	mu        sync.Mutex
	buckets   [slots]bucket
	head      int64  // the newest epoch the totals were advanced to
	totD      int64  // deposits in the buckets of (head-slots, head]
	totT      int64  // tokens taken in the same buckets
	refused   uint64 // Acquires refused by the local window (under mu: no atomic add)
	pend      int64  // deposits not yet sent to the store
	pendSince int64  // ns since origin of the oldest of them
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
	flush := cfg.FlushAfter
	switch {
	case flush == 0:
		flush = window / slots
	case flush == None:
		flush = -1
	case flush < 0:
		return nil, fmt.Errorf("budget: FlushAfter must be positive, 0 (default) or budget.None, got %v", flush)
	case flush > window/2:
		// A batch is counted from its oldest deposit: one as old as the
		// window would not count at all.
		return nil, fmt.Errorf("budget: FlushAfter must be at most half the Window (%v), got %v", window/2, flush)
	}
	if cfg.Store != nil {
		if err := cfg.Store.Bind(Policy{Ratio: ratio, MinPerSecond: perSec, Window: window}); err != nil {
			return nil, fmt.Errorf("budget: Store.Bind refused the policy: %w", err)
		}
	}
	return &Budget{
		name:       cfg.Name,
		obs:        cfg.Observer,
		ratio:      ratio,
		reserve:    perSec * window.Seconds(),
		width:      window / slots,
		origin:     time.Now(),
		store:      cfg.Store,
		flushAfter: int64(flush),
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
//
// With a Store, the deposit is also added to this process's batch for the
// store; when the batch's oldest deposit is FlushAfter old, Deposit starts
// one background flush (unless one is in flight) and returns at once:
// Deposit never waits for the store.
func (b *Budget) Deposit() {
	ns := b.clock() // read the clock before taking the lock
	b.mu.Lock()
	b.current(b.advance(ns/int64(b.width))).deposits++
	b.totD++
	flush := false
	if b.store != nil {
		if b.pend == 0 {
			b.pendSince = ns
		}
		b.pend++
		flush = b.flushAfter >= 0 && ns-b.pendSince >= b.flushAfter
	}
	b.mu.Unlock()
	if flush && b.flushing.CompareAndSwap(false, true) {
		go b.flush()
	}
}

// batch takes the deposits not yet sent and the age of the oldest. b.mu
// must be held.
func (b *Budget) batch(ns int64) (int64, time.Duration) {
	d, age := b.pend, time.Duration(max(ns-b.pendSince, 0))
	b.pend = 0
	if d == 0 {
		age = 0
	}
	return d, age
}

// flush sends the batch in the background: at most one runs at a time
// (b.flushing), bounded by flushTimeout and by the store's own timeout.
func (b *Budget) flush() {
	defer b.flushing.Store(false)
	ns := b.clock()
	b.mu.Lock()
	d, age := b.batch(ns)
	b.mu.Unlock()
	if d == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	if _, err := b.take(ctx, d, age, false); err != nil {
		b.storeFailed(ctx, err)
	}
}

// take calls the store, turning a panic into an error: a flush runs in a
// goroutine of its own, where a panicking store would end the process.
func (b *Budget) take(ctx context.Context, d int64, age time.Duration, token bool) (ok bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			ok, err = false, fmt.Errorf("budget: Store.Take panicked: %v", r)
		}
	}()
	return b.store.Take(ctx, d, age, token)
}

func (b *Budget) storeFailed(ctx context.Context, err error) {
	b.failures.Add(1)
	if b.obs != nil {
		middleware.Emit(ctx, b.obs, middleware.Event{
			Kind: middleware.StoreFailed, Concern: "budget", Name: b.name, Err: err,
		})
	}
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
//
// With a Store, Acquire is one store operation (one round trip for a
// networked store) that carries this process's batch of deposits and
// takes the token from the fleet's window; the store decides. When the
// store fails (an error, its timeout), Acquire decides from the local
// window as if there were no store and reports a StoreFailed event; if ctx
// ended meanwhile it returns ctx.Err() and takes nothing (the batch the
// operation carried is dropped, as for any failed operation).
func (b *Budget) Acquire(ctx context.Context) (Permit, error) {
	if err := ctx.Err(); err != nil {
		return Permit{}, err
	}
	ns := b.clock()
	now := ns / int64(b.width)
	if b.store != nil {
		b.mu.Lock()
		d, age := b.batch(ns)
		b.mu.Unlock()
		ok, err := b.take(ctx, d, age, true)
		if err == nil {
			if ok {
				// Count the token locally too, so that the local
				// window stays this process's own when the store fails.
				b.mu.Lock()
				b.current(b.advance(now)).taken++
				b.totT++
				b.mu.Unlock()
				return Permit{b: b}, nil
			}
			return b.refuse(ctx)
		}
		if cerr := ctx.Err(); cerr != nil {
			// The caller left: not the store's failure.
			return Permit{}, cerr
		}
		b.storeFailed(ctx, err)
		ns = b.clock()
		now = ns / int64(b.width)
	}
	b.mu.Lock()
	e := b.advance(now)
	ok := float64(b.totT+1) <= b.limit(b.totD)
	if ok {
		b.current(e).taken++
		b.totT++
	} else {
		b.refused++
	}
	b.mu.Unlock()
	if ok {
		return Permit{b: b}, nil
	}
	return b.reject(ctx)
}

// refuse counts a refusal by the store and reports it.
func (b *Budget) refuse(ctx context.Context) (Permit, error) {
	b.rejected.Add(1)
	return b.reject(ctx)
}

// reject reports a refusal already counted.
func (b *Budget) reject(ctx context.Context) (Permit, error) {
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
	// deposits arrived, by the local window (with a Store: this
	// process's own calls and extra attempts, what it falls back to).
	Available int
	// StoreFailures counts failed Store operations (StoreFailed events).
	StoreFailures uint64
}

// Stats returns a snapshot of the budget. It has no side effects: it
// reads the clock and, briefly, the window under the budget's lock.
func (b *Budget) Stats() Stats {
	avail, refused := b.window()
	return Stats{Rejected: b.rejected.Load() + refused, Available: avail, StoreFailures: b.failures.Load()}
}

// window returns how many Acquires the local window would admit now, and
// how many it has refused.
func (b *Budget) window() (int, uint64) {
	now := b.epoch()
	b.mu.Lock()
	d, w := b.sums(now)
	refused := b.refused
	b.mu.Unlock()
	return available(b.limit(d), w), refused
}

func available(limit float64, w int64) int {
	avail := math.Floor(limit) - float64(w)
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
	return b.clock() / int64(b.width)
}

// clock returns the time since origin in ns (monotonic, never negative).
func (b *Budget) clock() int64 {
	return int64(max(time.Since(b.origin), 0))
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

// advance moves the running totals to the window ending at epoch e,
// subtracting the buckets that left it, and returns the epoch to count in:
// e, or the newest epoch already counted when e is older (a caller that
// read the clock before another took the lock). It walks at most slots
// buckets, and none while the epoch stays the same, so the hot paths do
// not sum the window. b.mu must be held.
func (b *Budget) advance(e int64) int64 {
	if e <= b.head {
		return b.head
	}
	for x := max(b.head-slots+1, 0); x <= min(b.head, e-slots); x++ {
		if bk := &b.buckets[x%slots]; bk.epoch == x {
			b.totD -= bk.deposits
			b.totT -= bk.taken
			*bk = bucket{epoch: -1}
		}
	}
	b.head = e
	return e
}

// sums returns the deposits and tokens taken in the last window, from the
// buckets themselves (Stats uses it: it changes nothing). b.mu must be
// held.
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
