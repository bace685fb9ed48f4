// Package redisstore keeps Brace's shared state in Redis, so that the
// processes of one service share one circuit breaker per downstream
// instead of each rediscovering an outage on its own.
//
// It is a package of its own so that programs that do not import it do not
// build github.com/redis/go-redis/v9. Every constructor takes a
// redis.UniversalClient: a single-node, Sentinel (failover) or Cluster
// client all work.
//
// # Breaker store
//
// A [BreakerStore] implements [breaker.Store]:
//
//	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
//	store, err := redisstore.NewBreakerStore(rdb, "payments", redisstore.BreakerConfig{})
//	...
//	b, err := breaker.New(breaker.Config{Name: "payments", Store: store})
//
// Every breaker, in any process, whose store has the same prefix and name
// shares one state: failures in one open it for all, half-open probe slots
// are global, and a process that starts joins the state as it is. The state
// of a breaker is one hash, brace:{breaker:<name>}:state; the braces are a
// hash tag, so on a Cluster all of one breaker's data lives in one slot.
//
// Each [BreakerStore.Update] is one Lua script (EVALSHA, re-sent with EVAL
// when the server answers NOSCRIPT, as after a restart or SCRIPT FLUSH)
// that applies breaker's state machine atomically on the server's clock
// (TIME), so N concurrent failures from any number of processes are counted
// N times, and clocks of different machines never meet. No lock is held
// between two scripts, let alone across the guarded call. The script
// mirrors breaker's Go state machine rule for rule; TestConformance runs
// both on the same random operations and compares every snapshot.
//
// # Result cache
//
// A [Cache] keeps results of type Out for a TTL, encoded by a [Codec]
// (JSON by default) and bounded in size per entry. It is a
// dedup.Cache[string, Out]: dedup.NewWithCache collapses concurrent calls
// within a process and shares their results through Redis with every
// other process; [Cached] serves a stage from it without dedup. Anything
// that goes wrong — Redis down, an entry that does not decode, one too
// large — is a miss, reported through OnError and the Logger, never a
// failed call or a panic.
//
// # Calls in flight across processes
//
// [Flights] and [Deduplicated] extend dedup across processes: while a call
// for a key runs in one process, calls with the same key in the others
// wait for its result instead of running the stage again. Put Deduplicated
// inside dedup.New (or dedup.NewWithCache), which collapses each process's
// calls into one first:
//
//	flights, err := redisstore.NewFlights[User](rdb, "users", redisstore.FlightConfig{Lease: 5 * time.Second})
//	byID, err := dedup.New[int, User](func(id int) int { return id }, dedup.Config{})
//	get := middleware.Apply(fetchUser, byID, redisstore.Deduplicated(flights, strconv.Itoa))
//
// The first call takes a lease on the key (SET NX PX, one script) and
// leads; the others poll for its result, pausing 1ms, then twice as long
// each time up to PollInterval (20ms), for at most MaxWait (default: the
// Lease, 10s), and then run the stage themselves. A leader publishes a
// successful result for ResultTTL and releases its lease in one script; a
// failed leader publishes only that it failed, and its followers run the
// stage themselves, so each gets a real error of its own. A leader that
// crashes leaves its lease to expire and a follower takes over. When Redis
// fails, calls run the stage unshared, reported through OnError. Nothing
// runs in the background: followers poll on their own goroutines.
//
// # Global concurrency limit
//
// A [Limiter] bounds the calls in flight across processes; [Limit] guards
// stages with it and sheds calls beyond the capacity with a
// *backpressure.ShedError. Each admitted call holds a lease that expires
// after Lease, so a crashed process cannot keep its slots. While Redis
// fails, a local backpressure.Limiter admits calls instead.
//
// # Cost in round trips
//
// The breaker keeps a local view of the shared state and serves
// closed-state calls from it for up to breaker.Config.StoreSync (1s): a
// closed-state success costs no round trip (in consecutive mode, one only
// when it resets a failure count; in rate mode successes are counted
// locally and sent with the next operation), a failure, a probe or a stale
// view costs one. docs/distributed.md has the full table and the key
// layout.
//
// # Faults
//
// Every operation is bounded by its Timeout (default 100ms) whatever the
// caller's context says, and is never retried by go-redis: a script whose
// reply was lost may have run, and running it again would count a failure
// twice. When Redis is down, slow or hung, the operation fails within the
// bound and the breaker falls back to its local state (it still trips),
// reports the error through OnStoreError and its Logger, and goes back to
// Redis after StoreSync. The bound holds only if the client lets a
// context deadline reach the socket: constructors reject a *redis.Client,
// *redis.ClusterClient or *redis.Ring without ContextTimeoutEnabled, unless
// its ReadTimeout and WriteTimeout are within Timeout.
//
// Keys expire when unused: a breaker's state after its TTL (default 1h,
// never less than twice the open timeout and the window, nor before an
// open breaker's time is up). An expired breaker reads as a fresh one.
//
// # Requirements
//
// Redis 5 or later (scripts that read TIME and then write are replicated
// by their effects; Redis 7 does nothing else). The state survives a
// restart only if Redis persists it; without persistence a restarted
// Redis holds fresh, closed breakers, which every process adopts.
//
// # Concurrency
//
// Every type in the package is safe for concurrent use.
//
// # Cost
//
// Measured on a 2-core AMD EPYC VM against redis-server 7.0 on loopback
// (BenchmarkBreakerClosed, one run): a closed-state success through
// breaker.Middleware costs 30 ns with a BreakerStore, as with a
// MemoryStore, against 10 ns with no store (a direct call: 1.4 ns), and
// allocates nothing; the difference to no store is the clock read that
// ages the view. One store operation (BenchmarkRoundTrip) costs 29 µs on
// loopback against 19 µs for a PING (38 µs in rate mode with 10 buckets),
// and about 1.3 KB in 20–22 allocations, most of them go-redis's. A cache hit
// is one round trip, a miss two; a limited call two.
//
// A call through Deduplicated (BenchmarkFlights, a busier run of the same
// machine, PING at 54 µs) costs 110–125 µs as a leader: two round trips
// (take the lease, publish), about 2.2 KB in 48 allocations. A follower
// whose leader has finished costs two round trips too, but returns only
// at its first look, after 1ms: 1.2 ms. A follower waits at most one pause
// (up to PollInterval) longer than its leader runs, and sends one round
// trip per look.
package redisstore
