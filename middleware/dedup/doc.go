// Package dedup collapses concurrent calls with the same key into one call
// of the stage, and can cache its result for a while.
//
//	g, err := dedup.New(dedup.Config{Name: "users", TTL: time.Second})
//	...
//	getUser := middleware.Apply(fetchUser, dedup.Middleware[UserID, *User](g, func(id UserID) UserID { return id }))
//
// While a call for a key is running, every other call with that key waits
// for it and gets the same result or error.
//
// # One Group, one adapter
//
// [New] builds a non-generic [*Group] from a [Config]: the cache settings,
// the Name and the Observer. [Middleware] takes the key func, of any
// comparable key type (a struct of fields can be the key without
// formatting it into a string), and is typed by the stage's In and Out.
// Each stage it decorates gets its own table of running calls and its own
// cache: calls are shared only within one decorated stage, never between
// two stages, even with equal keys. [Group.Stats] add up over every stage
// the Group's adapters decorate. A nil *Group or key func is a programmer
// error: Middleware panics.
//
// # Shared results
//
// Every caller of a shared call, and every cache hit, gets the very same
// Out value. If Out is or holds a pointer, slice or map, callers share what
// it points to and must treat it as read-only (or copy it).
//
// # Cancellation
//
// The shared call runs on its own goroutine with a context that keeps the
// values of the caller that started it but drops its deadline and
// cancellation (context.WithoutCancel). Each caller waits on its own
// context: a caller whose context ends returns ctx.Err() at once, and the
// others keep waiting — the first caller leaving does not cancel the call
// or start a second one. When the last waiting caller leaves, the shared
// call's context is cancelled and the key is forgotten, so a caller that
// arrives afterwards starts a fresh call rather than joining one that is
// being cancelled. Bound the shared call itself with a timeout inside
// dedup. A caller whose context has already ended gets ctx.Err() and
// starts, joins and reads nothing.
//
// # Panics and runtime.Goexit
//
// A panic in the shared call is recovered on its goroutine — it must not
// crash the process or strand the callers, as it does with
// singleflight.DoChan — and every waiting caller then panics with the same
// error, which wraps a *[middleware.PanicError] carrying the value and the
// shared call's stack (errors.As finds it) and whose text shows that stack.
// Without a recover the program still crashes, as it would without dedup; with
// [middleware.Recover] outside dedup, each caller gets an error. If the
// shared call calls runtime.Goexit, every caller gets [ErrGoexit]. Neither
// outcome is cached, and the next call starts fresh.
//
// # Keys that are not equal to themselves
//
// A key holding a floating-point NaN is not equal to itself, so it could
// never be found again in a table or a cache. Such a call gets
// [ErrNaNKey] (Rejected() true, Retryable() false); the stage is not run
// and nothing is stored.
//
// # Cache
//
// With Config.TTL set, a successful result is cached for TTL (errors only
// with CacheErrors). Each stage's cache holds at most MaxEntries results
// (default 1024); when it is full, expired entries are
// dropped first and then the oldest. Expired entries are removed when a
// call looks them up or when a new result is stored: nothing runs in the
// background. To share results between processes, put redisstore's cache
// middleware inside dedup: dedup collapses the callers in one process, the
// store answers across processes.
//
// # Events and Stats
//
// Config.Observer receives a [middleware.Joined] event for each call that
// shares a call already running, and one with Reason "cache" for each
// call served from the cache; the caller that starts a shared call has no
// event. A call refused for a NaN key is a [middleware.Rejected] event
// with Reason "key". Events are delivered on the caller's goroutine,
// outside any lock. [Group.Stats] counts the same things (Joined,
// CacheHits, Rejected) and measures the shared calls running (InFlight)
// and the results cached (CacheEntries); it is pure.
//
// # Defaults and the zero value
//
// The zero [Config] deduplicates concurrent calls only: no cache, no
// observer. New rejects invalid fields with an error naming them.
//
// # Why not singleflight directly
//
// golang.org/x/sync/singleflight is the model (the comparison benchmarks
// live in internal/benchcmp). Dedup keeps its own small table because
// singleflight cannot count the callers waiting on a key (needed to cancel
// the shared call when the last one leaves and to forget exactly that
// call), crashes the process when a DoChan func panics, strands DoChan
// callers on runtime.Goexit, and takes only string keys.
//
// # Concurrency
//
// A Group, its middlewares and the stages they return are safe for
// concurrent use. Each decorated stage takes one mutex per call.
//
// # Cost
//
// A call that starts a shared call pays for the mutex and a goroutine, as
// singleflight.DoChan does; its record and the channel it waits on are
// reused by the next call when nobody joined it, and the shared call's own
// context (two contexts) is made only when the caller's context can end
// (its Done is not nil: a caller with context.Background can never leave,
// so the call needs no context of its own). Running calls are counted
// under the mutex, so no call touches a shared counter. A call that joins
// one pays for the mutex, and the first to join a call for a channel. A
// cache hit reads the clock, takes the mutex and allocates nothing: joins
// and cache hits are counted under the mutex, so neither touches a shared
// counter. A refused NaN key costs one atomic add and allocates nothing.
// [Group.Stats] takes each stage's mutex in turn; the Group keeps a few
// words per decorated stage for it, so build chains once, not per call.
package dedup
