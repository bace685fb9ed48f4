// Package redisstore keeps Brace's shared state in Redis, so that the
// processes of one service share one circuit breaker per downstream, one
// concurrency limit and one set of results, instead of each process
// rediscovering an outage, overloading a database or recomputing a value
// on its own.
//
// It is a module of its own so that programs that do not import it do not
// build github.com/redis/go-redis/v9. Every constructor takes a Config
// whose Client is a redis.UniversalClient: a single-node, Sentinel
// (failover) or Cluster client all work. Every type is safe for concurrent
// use.
//
// # One shape
//
// Each part is built from a Config with its Client and its Name (the one
// name used in its events, its errors and its Redis keys); Client and
// Name are required, the zero value of every other field means its
// documented default, and an invalid field is an error naming it:
//
//	store, err := redisstore.NewBreakerStore(redisstore.BreakerStoreConfig{Client: rdb, Name: "payments"})
//	limit, err := redisstore.NewLimiter(redisstore.LimiterConfig{Client: rdb, Name: "db", Capacity: 32})
//	rate, err := redisstore.NewRateLimiter(redisstore.RateLimiterConfig{Client: rdb, Name: "api", Rate: 100})
//	retries, err := redisstore.NewBudgetStore(redisstore.BudgetStoreConfig{Client: rdb, Name: "payments"})
//	users, err := redisstore.NewDedup(redisstore.DedupConfig{Client: rdb, Name: "users", TTL: time.Minute})
//
// Config.Observer receives [middleware.Event]s (Concern "redisstore"):
// StoreFailed for every failed Redis operation or value refused, with the
// real cause in Err; StateChanged when the client's health goes "up" →
// "down" or back; Rejected (Reason "limit") for a call the global limit
// refused; Joined for a call served by another call's result (Reason
// "cache" from the cache). Stats() on each type is pure: no I/O.
//
// # Breaker store
//
// A [BreakerStore] implements breaker.Store; breaker.New binds it to the
// breaker's policy:
//
//	store, err := redisstore.NewBreakerStore(redisstore.BreakerStoreConfig{Client: rdb, Name: "payments"})
//	b, err := breaker.New(breaker.Config{Name: "payments", Threshold: 5, Store: store})
//
// Every breaker, in any process, whose store has the same server, prefix
// and name shares one state: failures in one open it for all, half-open
// probe slots are global, and a process that starts joins the state as it
// is. Each Update is one Lua script that applies breaker's state machine
// atomically on the server's clock; the script mirrors breaker's Go
// machine rule for rule (TestConformance runs both on the same random
// operations). Half-open probe slots are leases on the server's clock
// (breaker.Config.ProbeTimeout): a probe whose result never arrives frees
// its slot when the lease runs out. A state Redis holds that is not one
// the machine knows (a newer version's, or garbage) is refused with
// [ErrCorrupt] and the breaker uses its local state.
//
// # Global concurrency limit
//
// A [Limiter] bounds the calls in flight across processes;
// [LimiterMiddleware] guards stages with it, and [Limiter.Acquire] and
// [Permit.Done] guard work that is not a stage. A call beyond the capacity
// is refused with a *[LimitError]. Each admitted call holds a lease that
// it renews every Lease/3 while it runs (a timer that ends with the call),
// so a crashed process's slots come back within Lease (3s by default).
// While Redis is skipped or fails, a local limit of LocalCapacity admits
// calls instead.
//
// # Global rate limit
//
// A [RateLimiter] admits Rate calls per Per across every process, globally
// or per key ([RateLimiterKeyed]), with GCRA (the generic cell rate
// algorithm) in one script on the server's clock: in any interval T the
// fleet is admitted at most Burst + Rate·T/Per calls. A refusal is a
// [*RateLimitError] with the retry-after, and it matches
// ratelimit.ErrLimited, so httpx answers it with 429, Retry-After and the
// IETF RateLimit fields. With MaxBatch above 1, a process reserves tokens
// in batches sized to its own call rate and hands them out locally, so
// that below the limit most calls make no round trip; the slack is at
// most MaxBatch per process. While Redis is down or slow, each process
// admits LocalShare (default 1/Replicas) of the rate on its own and goes
// back to the global limit by itself.
//
// # Retry budget
//
// A [BudgetStore] implements budget.Store: every process's budget.Budget
// with the same store name draws on one window of the fleet's calls and
// extra attempts, so that during an outage the fleet's retries stay within
// the budget's ratio of the fleet's calls plus one reserve. A call that
// does not retry makes no round trip: deposits are counted locally and
// travel with the next Acquire or a background flush.
//
// # Quorum mode
//
// With BreakerStoreConfig.Quorum or QuorumFraction, the shared breaker
// opens only when enough distinct processes see the downstream failing,
// so one replica with a bad network path cannot open it for the fleet.
// Processes identify themselves (Process) and age out on the server's
// clock (ProcessTTL). A BreakerStore is also a breaker.KeyedStore: each
// key of a breaker.Keyed middleware shares its own state.
//
// # Dedup across processes
//
// A [Dedup] is the one entry point for sharing results across processes.
// [DedupMiddleware] serves a call from the shared cache (DedupConfig.TTL),
// else waits for the same key's call in flight in any process, else runs
// the stage as the leader and publishes its result. Put it inside
// dedup.Middleware, which collapses the calls within a process first:
//
//	g, err := dedup.New(dedup.Config{Name: "users"})
//	d, err := redisstore.NewDedup(redisstore.DedupConfig{Client: rdb, Name: "users", TTL: time.Minute})
//	get := middleware.Apply(fetchUser,
//		dedup.Middleware[int, User](g, func(id int) int { return id }),
//		redisstore.DedupMiddleware[int, User](d, strconv.Itoa))
//
// Keys length-prefix both the name and the key, so no two (name, key)
// pairs share a Redis key. Values are read only after their size is
// checked in Redis (MaxValueBytes); values of the wrong size, type or
// encoding are reported, deleted where the package owns them, and the
// stage runs. Errors are never shared: a follower of a leader that failed
// runs the stage itself.
//
// # Faults
//
// Every Redis operation is bounded by its Timeout (default 100ms),
// whatever the caller's context says, and a script is never retried by
// go-redis: a script whose reply was lost may have run. When Redis fails,
// every part falls back to local state (the breaker's own, the local
// limit, the stage run unshared); it never fails a call because of Redis.
//
// All the parts built on one client share one notion of its health: after
// 3 consecutive failed operations the client is "down" and every part
// skips Redis for 1s, at no cost per call; then
// the first call to find the pause over starts one probe (a PING) in the
// background, which brings the client up or starts another pause.
// Answers from Redis that are errors about the data (a wrong type, a
// corrupt value) do not count as failures.
//
// The cause of a failure (connection refused, i/o timeout) is in the
// error and the StoreFailed event, also when go-redis reports only the
// context's deadline.
//
// # Client options
//
// The bounds hold only if the client lets a context deadline reach the
// socket: constructors reject a *redis.Client, *redis.ClusterClient or
// *redis.Ring without ContextTimeoutEnabled, unless its ReadTimeout and
// WriteTimeout are within Timeout. Recommended:
//
//	rdb := redis.NewClient(&redis.Options{
//		Addr:                  addr,
//		ContextTimeoutEnabled: true, // deadlines reach the socket
//		MaxRetries:            -1,   // a command is sent once (scripts are anyway)
//		DialerRetries:         1,    // a refused connection fails at once, not after 5 dials
//		DialTimeout:           time.Second,
//	})
//
// With go-redis's default DialerRetries (5, 100ms apart), an operation
// on a server that refuses connections waits out its Timeout; the client
// is then marked down after three of them.
//
// # Cost
//
// A closed-state breaker call with a BreakerStore costs what it costs with
// breaker's in-memory store: the breaker serves it from its local view,
// with no round trip and no allocation, and refreshes the view once per
// breaker.Config.StoreSync. A store operation is one round trip. A
// limited call costs two round trips and a timer, or, with Batch, a
// slot from the process's block: no round trip, no allocation. A rate
// limited call costs one round trip, or, with MaxBatch, a token from the
// local batch: no round trip, no allocation. A retry budget costs nothing
// on a call that does not retry and one round trip per extra attempt. A
// cache hit costs one round trip; a dedup leader two. While the client is
// down, a call costs no round trip and no allocation. docs/distributed.md has the table and the
// measurements.
//
// # Requirements
//
// Redis 5 or later (scripts that read TIME and then write are replicated
// by their effects). The state survives a restart only if Redis persists
// it; a restarted empty Redis holds fresh, closed breakers, which every
// process adopts.
package redisstore
