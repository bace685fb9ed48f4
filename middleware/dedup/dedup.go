package dedup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/brace-go/brace/middleware"
)

// DefaultMaxEntries is the cache bound used when Config.TTL is set and
// Config.MaxEntries is zero.
const DefaultMaxEntries = 1024

// Config configures a deduplicating middleware. The zero value
// deduplicates concurrent calls only: no cache, no hook, no logging.
type Config struct {
	// TTL, if positive, turns on the result cache: a result is kept for
	// TTL after its call returns, and a call with the same key within that
	// time gets it without running the stage. Zero means no cache. Must
	// not be negative.
	TTL time.Duration

	// MaxEntries bounds the cache. When it is full, expired entries are
	// dropped first and then the oldest one. Zero means
	// DefaultMaxEntries. Must not be negative, and must be zero when TTL
	// is zero.
	MaxEntries int

	// CacheErrors caches a call's error as well as its result. By default
	// only successful results are cached, so the next call after a failure
	// runs the stage again. Must be false when TTL is zero.
	CacheErrors bool

	// OnServe, if not nil, is called once per call, when the call has been
	// classified as Executed, Joined or Cached, on the caller's goroutine
	// and outside any lock. [Counter.Observe] is a ready-made OnServe.
	OnServe func(Served)

	// Logger, if not nil, receives a Debug record per call ("served",
	// "key"), a Debug record when a shared call is cancelled because all
	// its callers left, and an Error record when a shared call panics or
	// calls runtime.Goexit. Nil is silent.
	Logger *slog.Logger

	// Name, if not empty, is added to log records as "name".
	Name string

	// Counter, if not nil, counts calls by how they were served, as
	// OnServe would with Counter.Observe, alongside OnServe. Nil means no
	// counting.
	Counter *Counter
}

// ErrGoexit is returned to every caller of a shared call that called
// runtime.Goexit (for example through t.FailNow) instead of returning.
var ErrGoexit = errors.New("dedup: shared call called runtime.Goexit")

// Served says how a call was served.
type Served uint8

const (
	// NotServed is the zero value: no dedup stage has served the call.
	NotServed Served = iota
	// Executed (new): the call found no call running for its key and
	// started the shared call.
	Executed
	// Joined (in progress): the call joined a shared call already running
	// for its key.
	Joined
	// Cached: the call got a cached result and nothing ran.
	Cached
)

func (s Served) String() string {
	switch s {
	case NotServed:
		return "not served"
	case Executed:
		return "new"
	case Joined:
		return "in progress"
	case Cached:
		return "cached"
	}
	return fmt.Sprintf("Served(%d)", uint8(s))
}

// New returns a middleware that deduplicates calls by key(in): while a call
// for a key is running, calls with the same key wait for it and get its
// result instead of running the stage again. With Config.TTL set, results
// are also cached for TTL.
//
// Results are shared: every caller of a shared call, and every cache hit,
// gets the same Out value. When Out holds a pointer, slice or map, callers
// must treat what it points to as read-only.
//
// Each stage the middleware decorates has its own table of running calls
// and its own cache; the hooks and logger are shared.
//
// The shared call runs on its own goroutine, with a context that carries
// the values of the caller that started it but none of its deadline or
// cancellation (context.WithoutCancel). That context is cancelled when the
// last caller waiting for the call has left. A caller whose own context
// ends returns ctx.Err() at once; the others keep waiting.
//
// If the shared call panics, every caller waiting for it panics with the
// same *[PanicError], which carries the value and the stack of the shared
// call: a panic still reaches each caller, as it would without Dedup, and
// no caller hangs. ([middleware.Recover] outside Dedup turns it into an
// error for each caller; inside Dedup, it turns the panic into an ordinary
// shared error.) If it calls runtime.Goexit, each caller gets
// [ErrGoexit]. Neither is cached, and the next call runs the stage afresh.
//
// key must not be nil; an invalid Config field is reported as an error
// naming it.
func New[In, Out any, K comparable](key func(In) K, cfg Config) (middleware.Middleware[In, Out], error) {
	if key == nil {
		return nil, errors.New("dedup: key func must not be nil")
	}
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
		cfg.MaxEntries = DefaultMaxEntries
	}
	return build[In, Out](key, nil, cfg), nil
}

// Cache is a result cache that a deduplicating middleware built with
// [NewWithCache] uses instead of its own in-memory one: for example a cache
// in Redis (package redisstore's *Cache[Out] is a Cache[string, Out]),
// which shares results between processes.
//
// Get returns the result cached for key and true, or false on a miss; a
// cache that fails (its store is down, an entry does not decode) reports a
// miss, so the stage runs. Set stores a result; the cache decides how long
// it keeps it and how many it holds, and a Set that fails is dropped. Both
// are called by the shared call, once per shared call, with its context
// (see [New]); they must be safe for concurrent use and should bound their
// own time, since the callers of the shared call wait for them. A panic in
// either reaches the callers as a panic of the shared call would.
type Cache[K comparable, Out any] interface {
	Get(ctx context.Context, key K) (Out, bool)
	Set(ctx context.Context, key K, out Out)
}

// NewWithCache is [New] with an external result cache instead of the
// in-memory one: a shared call first asks cache for its key and, on a
// miss, runs the stage and stores a successful result with cache.Set
// before its callers get it. Concurrent calls with one key still share one
// shared call, and so one Get (and at most one run and one Set). Errors,
// panics and calls abandoned by all their callers are never stored.
//
// The cache owns expiry and size, so Config.TTL and Config.MaxEntries must
// be zero, and Config.CacheErrors false. A call that starts a shared call
// is reported (OnServe, Counter, Tracker, Logger) when it ends: as Cached
// when the shared call was served by the cache, as Executed when it ran
// the stage or when the caller left before it ended. Calls that join it
// are Joined.
func NewWithCache[In, Out any, K comparable](key func(In) K, cache Cache[K, Out], cfg Config) (middleware.Middleware[In, Out], error) {
	switch {
	case key == nil:
		return nil, errors.New("dedup: key func must not be nil")
	case cache == nil:
		return nil, errors.New("dedup: cache must not be nil")
	case cfg.TTL != 0:
		return nil, fmt.Errorf("dedup: TTL must be zero with NewWithCache (the cache decides how long it keeps results), got %v", cfg.TTL)
	case cfg.MaxEntries != 0:
		return nil, fmt.Errorf("dedup: MaxEntries must be zero with NewWithCache (the cache bounds itself), got %d", cfg.MaxEntries)
	case cfg.CacheErrors:
		return nil, errors.New("dedup: CacheErrors must be false with NewWithCache (errors are never stored in an external cache)")
	}
	return build[In](key, cache, cfg), nil
}

// build returns the middleware for a validated cfg and, if not nil, an
// external cache.
func build[In, Out any, K comparable](key func(In) K, ext Cache[K, Out], cfg Config) middleware.Middleware[In, Out] {
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		g := &group[In, Out, K]{
			key:     key,
			next:    middleware.Apply(next), // a nil next fails with middleware.ErrNilStage
			cfg:     cfg,
			ext:     ext,
			flights: make(map[K]*flight[Out]),
		}
		if cfg.TTL > 0 {
			g.cache = &cache[K, Out]{ttl: cfg.TTL, max: cfg.MaxEntries, m: make(map[K]*entry[K, Out])}
		}
		return g.call
	}
}

// group is the state of one decorated stage.
type group[In, Out any, K comparable] struct {
	key  func(In) K
	next middleware.Stage[In, Out]
	cfg  Config
	ext  Cache[K, Out] // NewWithCache's cache, or nil

	mu      sync.Mutex
	flights map[K]*flight[Out] // running shared calls, guarded by mu
	cache   *cache[K, Out]     // nil without TTL, guarded by mu
}

// flight is one shared call.
type flight[Out any] struct {
	done   chan struct{} // closed when the result fields are set
	cancel context.CancelFunc

	// Set by the shared call's goroutine before done is closed; read by
	// callers after it is.
	out      Out
	err      error
	panicked *PanicError

	waiters   int  // callers still waiting, guarded by group.mu
	abandoned bool // every caller left before the result, guarded by group.mu
	hit       bool // served by the external cache; set like out
}

func (g *group[In, Out, K]) call(ctx context.Context, in In) (Out, error) {
	var zero Out
	// A caller that has already gone does not start or join a call.
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	k := g.key(in)
	tr, _ := ctx.Value(trackerKey{}).(*Tracker)

	var now time.Time
	if g.cache != nil {
		now = time.Now() // before the lock: every call for this stage waits on it
	}
	g.mu.Lock()
	if g.cache != nil {
		if e := g.cache.get(k, now); e != nil {
			out, err := e.out, e.err
			g.mu.Unlock()
			g.served(ctx, k, Cached, tr)
			return out, err
		}
	}
	f, how := g.flights[k], Joined
	if f != nil {
		f.waiters++
		g.mu.Unlock()
	} else {
		how = Executed
		// The shared call must outlive this caller if others join it, so
		// it runs detached from this caller's cancellation and is
		// cancelled by the last caller to leave.
		fctx := context.WithoutCancel(ctx)
		if tr != nil {
			// This caller's Tracker is for this caller; a dedup stage
			// inside the shared call must not write to it.
			fctx = context.WithValue(fctx, trackerKey{}, (*Tracker)(nil))
		}
		fctx, cancel := context.WithCancel(fctx)
		f = &flight[Out]{done: make(chan struct{}), cancel: cancel, waiters: 1}
		g.flights[k] = f
		g.mu.Unlock()
		go g.run(fctx, k, in, f)
	}
	// With an external cache, the caller that started the shared call
	// learns whether it was served by the cache only when it ends.
	late := how == Executed && g.ext != nil
	if !late {
		g.served(ctx, k, how, tr)
	}

	select {
	case <-f.done:
	case <-ctx.Done():
		g.leave(ctx, k, f)
		if late {
			g.served(ctx, k, Executed, tr)
		}
		return zero, ctx.Err()
	}
	if late {
		if f.hit {
			how = Cached
		}
		g.served(ctx, k, how, tr)
	}
	if f.panicked != nil {
		panic(f.panicked)
	}
	return f.out, f.err
}

// served reports how a call is served to the hook, the log and the
// caller's Tracker.
func (g *group[In, Out, K]) served(ctx context.Context, k K, how Served, tr *Tracker) {
	if tr != nil {
		tr.v.Store(uint32(how))
	}
	if g.cfg.Counter != nil {
		g.cfg.Counter.Observe(how)
	}
	if g.cfg.OnServe != nil {
		g.cfg.OnServe(how)
	}
	if g.cfg.Logger != nil {
		g.log(ctx, slog.LevelDebug, "dedup: served", slog.String("served", how.String()), slog.Any("key", k))
	}
}

// leave records that a waiting caller has gone. When it was the last, the
// shared call is cancelled and forgotten, so a caller arriving later starts
// a fresh call instead of joining one that is being cancelled.
func (g *group[In, Out, K]) leave(ctx context.Context, k K, f *flight[Out]) {
	g.mu.Lock()
	f.waiters--
	last := f.waiters == 0
	if last {
		f.abandoned = true
		if g.flights[k] == f {
			delete(g.flights, k)
		}
	}
	g.mu.Unlock()
	if last {
		f.cancel()
		if g.cfg.Logger != nil {
			g.log(ctx, slog.LevelDebug, "dedup: shared call cancelled, all callers left", slog.Any("key", k))
		}
	}
}

// run is the shared call's goroutine. It turns a panic or runtime.Goexit
// in the stage into an outcome for the waiting callers: a goroutine of our
// own must neither crash the process nor leave callers waiting forever.
func (g *group[In, Out, K]) run(ctx context.Context, k K, in In, f *flight[Out]) {
	returned := false
	defer func() {
		if !returned {
			// Since Go 1.21 every panic recovers a non-nil value, so nil
			// here means runtime.Goexit is unwinding the goroutine.
			if v := recover(); v != nil {
				f.panicked = &PanicError{Value: v, Stack: debug.Stack()}
			} else {
				f.err = ErrGoexit
			}
		}
		g.finish(ctx, k, f, returned)
		// Here rather than in finish, whose frame would otherwise be on
		// the stack too: the shared call's goroutine starts with a small
		// stack, and cancelling a context goes deep.
		f.cancel()
	}()
	if g.ext != nil {
		g.external(ctx, k, in, f)
	} else {
		f.out, f.err = g.next(ctx, in)
	}
	returned = true
}

// external is the shared call with an external cache: it sets f's result
// to the cache's, or to the stage's, stored in the cache when it
// succeeded. It stores it
// before the shared call ends, so that a call arriving meanwhile joins the
// shared call and one arriving after it finds the result in the cache. A
// shared call abandoned by all its callers (its context is then cancelled)
// stores nothing.
//
// It is not inlined into run, so that the in-memory path's run keeps a
// small frame: the shared call's goroutine starts with a small stack.
//
//go:noinline
func (g *group[In, Out, K]) external(ctx context.Context, k K, in In, f *flight[Out]) {
	if out, ok := g.ext.Get(ctx, k); ok {
		f.out, f.hit = out, true
		return
	}
	f.out, f.err = g.next(ctx, in)
	if f.err == nil && ctx.Err() == nil {
		g.ext.Set(ctx, k, f.out)
	}
}

func (g *group[In, Out, K]) finish(ctx context.Context, k K, f *flight[Out], returned bool) {
	if g.cfg.Logger != nil {
		switch {
		case f.panicked != nil:
			g.log(ctx, slog.LevelError, "dedup: shared call panicked", slog.Any("key", k), slog.Any("panic", f.panicked.Value))
		case !returned:
			g.log(ctx, slog.LevelError, "dedup: shared call called runtime.Goexit", slog.Any("key", k))
		}
	}

	g.mu.Lock()
	// A newer call for the same key may have replaced this one after all
	// callers left it; only this call's own entry is removed (golang/go#31420).
	if g.flights[k] == f {
		delete(g.flights, k)
	}
	if g.cache != nil && returned && !f.abandoned && (f.err == nil || g.cfg.CacheErrors) {
		g.cache.put(k, f.out, f.err, time.Now())
	}
	close(f.done)
	g.mu.Unlock()
}

func (g *group[In, Out, K]) log(ctx context.Context, level slog.Level, msg string, attrs ...slog.Attr) {
	if !g.cfg.Logger.Enabled(ctx, level) {
		return
	}
	if g.cfg.Name != "" {
		attrs = append(attrs, slog.String("name", g.cfg.Name))
	}
	g.cfg.Logger.LogAttrs(ctx, level, msg, attrs...)
}

// PanicError is the value every caller of a shared call that panicked
// panics with. Its Error text includes the shared call's stack, so a crash
// report shows where the panic happened, not only where it was re-raised.
// When Value is an error, Unwrap returns it.
type PanicError struct {
	Value any    // the value the shared call panicked with
	Stack []byte // the shared call's stack at the panic
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("dedup: shared call panicked: %v\n\n%s", e.Value, e.Stack)
}

// Unwrap returns the panic value if it is an error, and nil otherwise.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// Tracker records how a call made with a context from [Track] was served.
// It is safe for concurrent use.
type Tracker struct{ v atomic.Uint32 }

type trackerKey struct{}

// Track returns a context that records, in the returned Tracker, how a
// dedup stage serves a call made with it. With several dedup stages in one
// chain, the outermost one's answer is recorded.
func Track(ctx context.Context) (context.Context, *Tracker) {
	t := new(Tracker)
	return context.WithValue(ctx, trackerKey{}, t), t
}

// Served returns how the last call made with the Tracker's context was
// served, or NotServed if no dedup stage has served one.
func (t *Tracker) Served() Served { return Served(t.v.Load()) }

// Counter counts calls by how they were served. Set it as Config.Counter
// (or use its Observe method as Config.OnServe). The zero value is ready to
// use, a Counter is safe for concurrent use, and one Counter may be shared
// by several middlewares to count them together.
type Counter struct {
	executions, joins, cacheHits atomic.Uint64
}

// Stats is a snapshot of a [Counter].
type Stats struct {
	Executions uint64 // calls that ran the stage
	Joins      uint64 // calls that joined a running call
	CacheHits  uint64 // calls served from the cache
}

// Observe counts one call served as s.
func (c *Counter) Observe(s Served) {
	switch s {
	case Executed:
		c.executions.Add(1)
	case Joined:
		c.joins.Add(1)
	case Cached:
		c.cacheHits.Add(1)
	}
}

// Stats returns the counts so far. A nil Counter returns zero Stats.
func (c *Counter) Stats() Stats {
	if c == nil {
		return Stats{}
	}
	return Stats{Executions: c.executions.Load(), Joins: c.joins.Load(), CacheHits: c.cacheHits.Load()}
}
