package dedup

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/brace-go/brace/middleware"
)

// defaultMaxEntries is the cache bound used when Config.TTL is set and
// Config.MaxEntries is zero.
const defaultMaxEntries = 1024

// Config configures a [Group]. The zero value deduplicates concurrent
// calls only: no cache, no observer.
type Config struct {
	// TTL, if positive, turns on the result cache: a result is kept for
	// TTL after its call returns, and a call with the same key within that
	// time gets it without running the stage. Zero means no cache. Must
	// not be negative.
	TTL time.Duration

	// MaxEntries bounds each stage's cache. When it is full, expired
	// entries are dropped first and then the oldest one. Zero means
	// 1024. Must not be negative, and must be zero when TTL
	// is zero.
	MaxEntries int

	// CacheErrors caches a call's error as well as its result. By default
	// only successful results are cached, so the next call after a failure
	// runs the stage again. Must be false when TTL is zero.
	CacheErrors bool

	// Name is the instance's name in its events ([middleware.Event].Name).
	Name string

	// Observer, if not nil, receives a [middleware.Joined] event for each
	// call that shares another call's execution (Reason "cache" when it
	// was served from the cache), and a [middleware.Rejected] event
	// (Reason "key") for each call refused with [ErrNaNKey]. It is called
	// on the caller's goroutine, outside any lock.
	Observer middleware.Observer
}

// Stats is a snapshot of what a [Group] has done, over every stage its
// adapters decorate.
type Stats struct {
	Joined       uint64 // calls that shared a call already running (Joined events without a Reason)
	CacheHits    uint64 // calls served from a cache (Joined events with Reason "cache")
	Rejected     uint64 // calls refused because their key was not equal to itself (NaN)
	InFlight     int64  // shared calls running now
	CacheEntries int64  // results held in the caches now
}

// ErrGoexit is returned to every caller of a shared call that called
// runtime.Goexit (for example through t.FailNow) instead of returning.
var ErrGoexit = errors.New("dedup: shared call called runtime.Goexit")

// ErrNaNKey is returned, without running the stage, for a call whose key
// is not equal to itself: a key that holds a floating-point NaN could
// never be found again in the table of running calls or in the cache.
// Its Rejected method reports true and its Retryable method false.
var ErrNaNKey error = nanKeyError{}

type nanKeyError struct{}

func (nanKeyError) Error() string   { return "dedup: key is not equal to itself (NaN)" }
func (nanKeyError) Rejected() bool  { return true }
func (nanKeyError) Retryable() bool { return false }

// Group holds the settings and the counts of deduplicating middlewares.
// Build it with [New] and apply it with [Middleware], which takes the key
// func. It is safe for concurrent use.
type Group struct {
	ttl         time.Duration
	maxEntries  int
	cacheErrors bool
	name        string
	obs         middleware.Observer

	rejected atomic.Uint64

	// Joins, cache hits and running calls are counted by each table under
	// the mutex it holds anyway, so that no call touches a shared counter;
	// Stats adds them up.
	coresMu sync.Mutex
	cores   []*tableCore // one per table built, kept for Stats (a few words each)

	// newTable, if not nil, is told about each table built (tests only).
	newTable func(size func() int)
}

// New returns a Group for cfg, or an error naming the first invalid field.
func New(cfg Config) (*Group, error) {
	switch {
	case cfg.TTL < 0:
		return nil, fmt.Errorf("dedup: TTL must not be negative, got %v", cfg.TTL)
	case cfg.MaxEntries < 0:
		return nil, fmt.Errorf("dedup: MaxEntries must not be negative, got %d", cfg.MaxEntries)
	case cfg.TTL == 0 && cfg.MaxEntries != 0:
		return nil, fmt.Errorf("dedup: MaxEntries must be zero when TTL is zero (no cache), got %d", cfg.MaxEntries)
	case cfg.TTL == 0 && cfg.CacheErrors:
		return nil, errors.New("dedup: CacheErrors must be false when TTL is zero (no cache)")
	}
	if cfg.TTL > 0 && cfg.MaxEntries == 0 {
		cfg.MaxEntries = defaultMaxEntries
	}
	return &Group{
		ttl:         cfg.TTL,
		maxEntries:  cfg.MaxEntries,
		cacheErrors: cfg.CacheErrors,
		name:        cfg.Name,
		obs:         cfg.Observer,
	}, nil
}

// Stats returns the counts so far, summed over every stage the Group's
// adapters decorate. It has no side effects.
func (g *Group) Stats() Stats {
	g.coresMu.Lock()
	cores := g.cores
	g.coresMu.Unlock()
	st := Stats{Rejected: g.rejected.Load()}
	for _, c := range cores {
		c.mu.Lock()
		st.InFlight += c.inFlight
		st.Joined += c.joined
		st.CacheHits += c.cacheHits
		st.CacheEntries += int64(c.cacheEntries)
		c.mu.Unlock()
	}
	return st
}

// Middleware returns a middleware that deduplicates calls by key(in):
// while a call for a key is running, calls with the same key wait for it
// and get its result instead of running the stage again. With
// Config.TTL set, results are also cached for TTL.
//
// Each stage the middleware decorates gets its own table of running calls
// and its own cache, typed by In, Out and K: calls are shared only within
// one decorated stage, never between two stages, even with equal keys.
// The Group's settings apply to all of them, and its [Group.Stats] add
// up over all of them.
//
// Results are shared: every caller of a shared call, and every cache hit,
// gets the same Out value. When Out holds a pointer, slice or map, callers
// must treat what it points to as read-only.
//
// The shared call runs on its own goroutine, with a context that carries
// the values of the caller that started it but none of its deadline or
// cancellation (context.WithoutCancel). That context is cancelled when the
// last caller waiting for the call has left. A caller whose own context
// ends returns ctx.Err() at once; the others keep waiting. A caller whose
// context has already ended returns ctx.Err() and starts nothing.
//
// If the shared call panics, every caller waiting for it panics with the
// same *[middleware.PanicError], which carries the value and the stack of the shared
// call: a panic still reaches each caller, as it would without dedup, and
// no caller hangs. ([middleware.Recover] outside dedup turns it into an
// error for each caller; inside dedup, it turns the panic into an ordinary
// shared error.) If it calls runtime.Goexit, each caller gets
// [ErrGoexit]. Neither is cached, and the next call runs the stage afresh.
//
// A call whose key is not equal to itself (a NaN) gets [ErrNaNKey]; the
// stage is not run and nothing is stored. A panic in key propagates to
// the caller; nothing has been taken by then.
//
// A nil g or key is a programmer error: Middleware panics.
func Middleware[In, Out any, K comparable](g *Group, key func(In) K) middleware.Middleware[In, Out] {
	if g == nil {
		panic("dedup: nil *Group (was New's error ignored?)")
	}
	if key == nil {
		panic("dedup: nil key func")
	}
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		if next == nil {
			panic("middleware: nil stage")
		}
		t := &table[In, Out, K]{
			tableCore: new(tableCore),
			g:         g,
			key:       key,
			next:      next,
			flights:   make(map[K]*flight[Out]),
		}
		if g.ttl > 0 {
			t.cache = &cache[K, Out]{ttl: g.ttl, max: g.maxEntries, m: make(map[K]*entry[K, Out]), size: &t.cacheEntries}
		}
		g.coresMu.Lock()
		g.cores = append(g.cores, t.tableCore)
		g.coresMu.Unlock()
		if g.newTable != nil {
			g.newTable(t.size)
		}
		return t.call
	}
}

// tableCore is the part of a table that its Group keeps for Stats: the
// table's mutex and the counts kept under it.
type tableCore struct {
	mu           sync.Mutex
	joined       uint64 // guarded by mu
	cacheHits    uint64 // guarded by mu
	cacheEntries int    // guarded by mu
	inFlight     int64  // shared calls running, guarded by mu
}

// table is the state of one decorated stage.
type table[In, Out any, K comparable] struct {
	*tableCore
	g    *Group
	key  func(In) K
	next middleware.Stage[In, Out]

	flights map[K]*flight[Out] // running shared calls, guarded by mu
	cache   *cache[K, Out]     // nil without TTL, guarded by mu

	// free holds flights whose leader got the result and that no other
	// caller ever joined, for the next call to reuse (with their lead
	// channel).
	free sync.Pool
}

// size returns the number of running calls and cached results (tests).
func (t *table[In, Out, K]) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(t.flights)
	if t.cache != nil {
		n += len(t.cache.m)
	}
	return n
}

// flight is one shared call.
type flight[Out any] struct {
	// lead gets one value when the result fields are set: the leader (the
	// caller that started the call) waits on it. It has room for the
	// value, so the shared call never blocks on a leader that has left.
	lead chan struct{}
	// done is closed when the result fields are set, for the callers that
	// joined. It is made by the first one (guarded by table.mu), so a call
	// that nobody joins makes no channel.
	done   chan struct{}
	cancel context.CancelFunc // nil when no caller can leave early

	// Set by the shared call's goroutine before lead gets its value and
	// done is closed; read by callers after.
	out      Out
	err      error
	panicked error // a *sharedPanic around the *middleware.PanicError

	waiters   int  // callers still waiting, guarded by table.mu
	abandoned bool // every caller left before the result, guarded by table.mu
}

func (t *table[In, Out, K]) call(ctx context.Context, in In) (Out, error) {
	var zero Out
	// A caller that has already gone does not start or join a call.
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	k := t.key(in)
	if k != k {
		t.g.reject(ctx)
		return zero, ErrNaNKey
	}

	var now time.Time
	if t.cache != nil {
		now = time.Now() // before the lock: every call for this stage waits on it
	}
	t.mu.Lock()
	if t.cache != nil {
		if e := t.cache.get(k, now); e != nil {
			out, err := e.out, e.err
			t.cacheHits++
			t.mu.Unlock()
			if t.g.obs != nil {
				t.g.emitJoined(ctx, "cache")
			}
			return out, err
		}
	}
	f := t.flights[k]
	if f != nil {
		if f.done == nil {
			f.done = make(chan struct{})
		}
		f.waiters++
		t.joined++
		t.mu.Unlock()
		if t.g.obs != nil {
			t.g.emitJoined(ctx, "")
		}
		select {
		case <-f.done:
		case <-ctx.Done():
			t.leave(k, f)
			return zero, ctx.Err()
		}
		if f.panicked != nil {
			panic(f.panicked)
		}
		return f.out, f.err
	}

	f, _ = t.free.Get().(*flight[Out])
	if f == nil {
		f = &flight[Out]{lead: make(chan struct{}, 1)}
	}
	f.waiters = 1
	t.flights[k] = f
	t.inFlight++
	t.mu.Unlock()
	// The shared call must outlive this caller if others join it, so it
	// runs detached from this caller's cancellation and is cancelled by
	// the last caller to leave. A caller whose context can never end
	// (Done returns nil, as for context.Background) never leaves, so the
	// call needs no context of its own.
	fctx := ctx
	if ctx.Done() != nil {
		fctx, f.cancel = context.WithCancel(context.WithoutCancel(ctx))
	}
	go t.run(fctx, k, in, f)

	select {
	case <-f.lead:
	case <-ctx.Done():
		t.leave(k, f) // f is not reused: the shared call still sends to lead
		return zero, ctx.Err()
	}
	out, err, panicked := f.out, f.err, f.panicked
	// The shared call has finished with f (lead's value is the last thing
	// it does), and no caller joined (done is nil; none can join a
	// finished call): f may be reused.
	if f.done == nil {
		var z Out
		f.out, f.err, f.panicked, f.cancel, f.abandoned = z, nil, nil, nil, false
		t.free.Put(f)
	}
	if panicked != nil {
		panic(panicked)
	}
	return out, err
}

func (g *Group) emitJoined(ctx context.Context, reason string) {
	middleware.Emit(ctx, g.obs, middleware.Event{Kind: middleware.Joined, Concern: "dedup", Name: g.name, Reason: reason})
}

func (g *Group) reject(ctx context.Context) {
	g.rejected.Add(1)
	if g.obs != nil {
		middleware.Emit(ctx, g.obs, middleware.Event{Kind: middleware.Rejected, Concern: "dedup", Name: g.name, Reason: "key", Err: ErrNaNKey})
	}
}

// leave records that a waiting caller has gone. When it was the last, the
// shared call is cancelled and forgotten, so a caller arriving later starts
// a fresh call instead of joining one that is being cancelled.
func (t *table[In, Out, K]) leave(k K, f *flight[Out]) {
	t.mu.Lock()
	f.waiters--
	last := f.waiters == 0
	if last {
		f.abandoned = true
		if t.flights[k] == f {
			delete(t.flights, k)
		}
	}
	t.mu.Unlock()
	if last && f.cancel != nil {
		f.cancel()
	}
}

// run is the shared call's goroutine. It turns a panic or runtime.Goexit
// in the stage into an outcome for the waiting callers: a goroutine of our
// own must neither crash the process nor leave callers waiting forever.
func (t *table[In, Out, K]) run(ctx context.Context, k K, in In, f *flight[Out]) {
	returned := false
	defer func() {
		if !returned {
			// Since Go 1.21 every panic recovers a non-nil value, so nil
			// here means runtime.Goexit is unwinding the goroutine.
			if v := recover(); v != nil {
				f.panicked = &sharedPanic{&middleware.PanicError{Value: v, Stack: debug.Stack()}}
			} else {
				f.err = ErrGoexit
			}
		}
		cancel := f.cancel
		t.finish(k, f, returned)
		// Here rather than in finish, whose frame would otherwise be on
		// the stack too: the shared call's goroutine starts with a small
		// stack, and cancelling a context goes deep.
		if cancel != nil {
			cancel()
		}
		f.lead <- struct{}{} // the last use of f: the leader may reuse it
	}()
	f.out, f.err = t.next(ctx, in)
	returned = true
}

func (t *table[In, Out, K]) finish(k K, f *flight[Out], returned bool) {
	t.mu.Lock()
	// A newer call for the same key may have replaced this one after all
	// callers left it; only this call's own entry is removed (golang/go#31420).
	if t.flights[k] == f {
		delete(t.flights, k)
	}
	if t.cache != nil && returned && !f.abandoned && (f.err == nil || t.g.cacheErrors) {
		t.cache.put(k, f.out, f.err, time.Now())
	}
	if f.done != nil {
		close(f.done)
	}
	t.inFlight--
	t.mu.Unlock()
}

// sharedPanic is what every caller of a shared call that panicked panics
// with: an error wrapping the *middleware.PanicError (errors.As finds it),
// whose text also carries the shared call's stack, so that an unrecovered
// crash shows where the panic happened, not only where it was re-raised.
type sharedPanic struct{ pe *middleware.PanicError }

func (s *sharedPanic) Error() string {
	return fmt.Sprintf("dedup: shared call panicked: %v\n\n%s", s.pe.Value, s.pe.Stack)
}

func (s *sharedPanic) Unwrap() error { return s.pe }
