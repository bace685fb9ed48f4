// Package breaker is a circuit breaker: shared state that guards one
// downstream and fails calls fast while the downstream is unhealthy, so it
// gets time to recover and callers do not wait on it.
//
// A [*Breaker] is built once from a [Config] with [New] and guards any
// number of stages of any types through [Middleware], or any code through
// the two-step form: [Breaker.Acquire] before the call, [Permit.Done]
// after it.
//
//	b, err := breaker.New(breaker.Config{Name: "payments"})
//	if err != nil { ... }
//	charge := middleware.Apply(chargeCard, breaker.Middleware[Order, Receipt](b))
//
//	p, err := b.Acquire(ctx) // an *OpenError when rejected
//	if err != nil { return err }
//	err = call(ctx)
//	p.Done(err)              // classified by Config.Classify
//
// # States
//
// Closed admits every call and counts results. It opens after Threshold
// consecutive failures (consecutive mode, the default: 5), or, in rate mode
// (FailureRate set), when a rolling Window holds at least MinCalls results
// and the failure rate — or the slow-call rate, with SlowCallDuration and
// SlowCallRate — reaches the limit. The window rolls one bucket at a time;
// nothing resets all counts at once. Open rejects every call with an
// [*OpenError] that matches [ErrOpen] and names the service, for
// OpenTimeout (30s), or for what OpenDelay says for the error that opened
// it (a Retry-After hint, say; a huge delay stays huge). Then the breaker
// is half-open: exactly HalfOpenProbes calls (1) are admitted, however
// many arrive at once; one failing probe opens it again, SuccessThreshold
// successful probes (all of them by default) close it, and a probe whose
// result is ignored gives its slot back. A probe whose result never comes
// holds its slot for ProbeTimeout (10s) at most. [Breaker.ForceOpen],
// [Breaker.ForceClosed] and [Breaker.Reset] override the state by hand.
// Time moves the state only when the breaker is used: [Breaker.State]
// reports an open breaker whose time is up as half-open, and the next
// call moves it there.
//
// The diagram and the exact rules are in docs/breaker.md.
//
// # Classification and late results
//
// Config.Classify maps an error to [Success], [Failure] or [Ignore].
// [DefaultClassify] ignores context.Canceled (the caller left; the
// downstream is not to blame) and local rejections (errors whose
// Rejected() reports true), and counts every other error, including
// context.DeadlineExceeded, as a failure. Under [Middleware] a stage that
// panics is a failure, and the panic goes on. Classify and OpenDelay run
// outside any lock; if one panics, the result is recorded as a failure and
// the panic goes on to the caller of Done.
//
// Every state change starts a new generation, and a [Permit] remembers the
// generation its call was admitted in. A result that arrives after the
// state moved on — a call admitted before the breaker opened, a probe that
// lost the race to another probe's failure — is not counted against the
// new state, so a racing success never overrides a probe failure and an
// old outage's failures never trip a recovered breaker.
//
// # Events and Stats
//
// Config.Observer receives a [middleware.Event] with Concern "breaker"
// for every state change (StateChanged: From and To as [State.String]
// spells them, Failures counted in the generation that ended, Err the
// failure that opened it, Reason "adopted" for a change made by another
// breaker and read from the Store), every rejection (Rejected: Reason
// "open", Delay the retry-after, Err the *OpenError; Reason "too many
// keys" and Err [ErrTooManyKeys] for a [Keyed] call refused by a full
// table) and every store error (StoreFailed). A key's breaker emits under
// the name Name + "/" + key. State changes are delivered in the order they happened,
// outside any lock; an observer may call back into the breaker.
// [Breaker.Stats] returns the state, the counts, and the numbers of
// transitions, rejections and store failures, and of keys in, evicted
// from and forgotten by the table of [Keyed], without side effects.
//
// # Shared state
//
// Without a Store, a breaker's state lives in the breaker. With one,
// breakers in one process ([NewMemoryStore]) or in many (a networked store
// such as redisstore's) share it: each keeps a local view, serves
// closed-state calls from it for up to StoreSync (1s), and goes to the
// store for failures, probes and state changes, one [Store.Update] each.
// Replies to concurrent updates may arrive out of order; [Snapshot.Seq]
// tells the breaker which is newer. When the store fails, or returns a
// snapshot out of range, the breaker decides locally, reports StoreFailed,
// and tries the store again after StoreSync. [Breaker.State] does no I/O:
// when its view is older than StoreSync it starts one background refresh
// (a goroutine bounded by StoreSync) and returns the view it has. The
// [Store] contract is in docs/breaker.md.
//
// # Per-key breakers
//
// [Keyed] guards each call with the breaker of its key — a host, a
// provider, a tenant — computed by a function of the input: one key
// opening affects no other. Each key's breaker has the Config of the
// breaker it is built from, is named Name + "/" + key in its errors and
// events, and reports to the same Observer. The table of keys belongs to
// that breaker and is apart from its own state. It holds at most
// Config.MaxKeys keys (1024): a new key evicts the least recently used key
// with no call in flight, a closed one before an open one; when every key
// has a call in flight the call is refused with [ErrTooManyKeys]. A key
// unused for Config.KeyIdle (10m) is forgotten unless it is open or
// forced. Nothing runs in the background: keys are forgotten when a new
// key arrives or when their own next call finds them idle. [Breaker.Key]
// returns a key's breaker, to observe or force it. With a Store, the
// Store must be a [KeyedStore], and each key keeps its state in
// Store.Key(key).
//
// # Zero value and concurrency
//
// The zero Config is valid (consecutive mode, 5 failures, 30s, one probe);
// the zero Breaker is not: use [New]. A Breaker is safe for concurrent use.
//
// # Cost
//
// Through the middleware, a closed-state success in consecutive mode is
// one atomic pointer load before the call and one atomic load after it: no
// lock, no clock read, no allocation, no Permit. In rate mode a success
// adds one to the counter of its bucket (one atomic add) in one of eight
// stripes chosen by the goroutine's stack, so that CPUs calling at once
// mostly write different cache lines (without a Store, the breaker holds
// eight copies of its window's success counts, eight bytes per bucket
// each); it finds the bucket without a clock read while a timer, armed by
// the first call that reads the clock in a bucket (one small allocation
// per bucket in which calls arrive), vouches for it (the clock is read
// again from shortly before the bucket ends). An open breaker rejects with one
// atomic load of a flag, one atomic add to count the rejection and an
// *OpenError built once per state: no clock read and no allocation, until
// a timer armed when the breaker opened sets the flag shortly before the
// open time ends; from then on each call reads the clock, so the move to
// half-open is exact. Slow-call measurement reads the clock twice per
// call. Through [Keyed], a call also finds its key in a lock-free map (a
// hash of the key) and adds one to, then takes one from, the key's count
// of calls in flight (two atomic adds, striped like the rejection count);
// a new key takes a mutex and builds a breaker. Failures and state changes take a mutex. With a Store, every
// admission reads the clock (to know whether its view of the store is
// fresh) and no round trip is made while it is. docs/performance.md has
// the measurements.
package breaker
