package redisstore

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/ratelimit"
	"github.com/redis/go-redis/v9"
)

// Defaults and bounds of a [RateLimiter].
const (
	defaultBatchWindow = 100 * time.Millisecond
	maxRate            = 1 << 40
	// rateCells is the number of per-key cells a keyed RateLimiter keeps
	// in memory (local batches and fallback limits). Keys are hashed onto
	// them; memory does not grow with the number of keys.
	rateCells = 1024
	// maxFillWaits is how many other callers' batch fills a call waits
	// for before it makes a round trip of its own: a call waits at most
	// (maxFillWaits+1) × Timeout.
	maxFillWaits = 2
)

// ErrRateLimited is matched by the error of a call a [RateLimiter]
// refused: a *[RateLimitError].
var ErrRateLimited = errors.New("redisstore: global rate limit reached")

// RateLimitError is the error of a call refused by a [RateLimiter]. It
// matches [ErrRateLimited] and ratelimit.ErrLimited, and errors.As finds
// a *ratelimit.LimitedError in it (with the same Delay, Limit, Quota and
// Window), so that httpx answers it with 429, Retry-After and the IETF
// RateLimit fields (httpx.SetRateLimitFields) as it does a local rate
// limit's refusal. Its RetryAfter method is the server-hint contract retry
// honours.
//
// The same *RateLimitError may be returned to many callers (all the calls
// a process refuses locally while it knows the limit is exhausted): treat
// it as read-only.
type RateLimitError struct {
	// Delay is how long until the limit admits the call again, as known
	// when the refusal was decided (rounded up to a microsecond). A
	// refusal shared by many callers carries the delay from its first
	// one: an upper bound.
	Delay time.Duration
	// Reset is how long until the limit is full again (Quota tokens).
	Reset time.Duration
	// Limit is the name of the limit that refused: the RateLimiter's Name.
	Limit string
	// Quota is that limit's burst: Burst, or the local fallback's share
	// of it.
	Quota int64
	// Window is the time the limit takes to refill its whole Quota from
	// empty.
	Window time.Duration
	// Local reports a refusal by the local fallback limit.
	Local bool
}

func (e *RateLimitError) Error() string {
	where := "global"
	if e.Local {
		where = "local fallback"
	}
	return fmt.Sprintf("redisstore: %s rate limit reached, retry after %v", where, e.Delay)
}

// Unwrap returns [ErrRateLimited].
func (e *RateLimitError) Unwrap() error { return ErrRateLimited }

// Is reports whether target is ratelimit.ErrLimited (Unwrap gives
// [ErrRateLimited]).
func (e *RateLimitError) Is(target error) bool { return target == ratelimit.ErrLimited }

// As sets a **ratelimit.LimitedError target to the same refusal in
// ratelimit's terms.
func (e *RateLimitError) As(target any) bool {
	if p, ok := target.(**ratelimit.LimitedError); ok {
		*p = &ratelimit.LimitedError{Delay: e.Delay, Limit: e.Limit, Quota: e.Quota, Window: e.Window}
		return true
	}
	return false
}

// RetryAfter returns Delay.
func (e *RateLimitError) RetryAfter() time.Duration { return e.Delay }

// Rejected reports true: the call was refused without running.
func (e *RateLimitError) Rejected() bool { return true }

// Retryable reports true: tokens come back with time.
func (e *RateLimitError) Retryable() bool { return true }

// RateLimiterConfig configures a [RateLimiter]. Client, Name and Rate are
// required; the zero value of every other field means its default.
type RateLimiterConfig struct {
	// Client is the Redis client (see [BreakerStoreConfig.Client]).
	Client redis.UniversalClient
	// Name is the limiter's shared name (events, errors and keys). It must
	// not contain '{' or '}'.
	Name string
	// Rate is the number of calls admitted per Per across every process
	// (for a keyed limiter: per key): between 1 and 2^40. Required.
	Rate int64
	// Per is the period of Rate. Default 1s.
	Per time.Duration
	// Burst is the number of calls admitted at once after a quiet period
	// (GCRA's tolerance): in any interval of length T the limit admits at
	// most Burst + Rate·T/Per calls. Default: Rate.
	Burst int64
	// Replicas is the number of processes sharing the limit; while Redis
	// is skipped or failing each process admits LocalShare of the rate,
	// by default 1/Replicas. Default 1.
	Replicas int
	// LocalShare is the fraction of Rate and Burst (at least one call) the
	// local fallback limit admits while Redis is skipped or failing: in
	// (0, 1]. Default 1/Replicas.
	LocalShare float64
	// MaxBatch is the largest number of tokens a process reserves in one
	// round trip and hands out locally (see docs/distributed.md,
	// "Batching"). The batch adapts to the process's own call rate
	// between 1 and MaxBatch. Default 1: every call is a round trip. At
	// most Burst.
	MaxBatch int64
	// BatchWindow is how long reserved tokens may be handed out after
	// Redis granted them; the unused rest expires. Default 100ms.
	BatchWindow time.Duration
	// Prefix starts every key. Default "brace".
	Prefix string
	// Timeout bounds each Redis command. Default 100ms.
	Timeout time.Duration
	// Observer receives Rejected (Reason "rate", Delay the retry-after),
	// StoreFailed and the client's health StateChanged events.
	Observer middleware.Observer
}

// RateLimiter is a global rate limit shared by every process that builds
// one with the same server, prefix and name: the generic cell rate
// algorithm (GCRA) run in one Lua script on the server's clock, for the
// whole limiter ([RateLimiter.Acquire]) or per key ([RateLimiter.AcquireKey],
// [RateLimiterKeyed]). While Redis is skipped or failing, a local GCRA
// limit of LocalShare of the rate admits calls instead. With MaxBatch
// above 1, a process reserves several tokens per round trip. It is safe
// for concurrent use.
type RateLimiter struct {
	*common
	emission  float64 // µs per token on the server
	tolerance float64 // Burst·emission, µs
	rate      int64
	per       time.Duration
	burst     int64
	maxBatch  int64
	window    time.Duration
	globalKey string

	// local fallback: ns per token and tolerance, monotonic clock
	lemission  float64
	ltolerance float64
	llimit     int64
	lburst     int64

	global *rcell
	cells  []rcell // keyed, allocated on first keyed use
	once   sync.Once
	seed   maphash.Seed

	rejected   atomic.Int64
	localAdmit atomic.Int64
	batched    atomic.Int64
}

// rcell is one key's (or the global limit's) local state: its batch of
// reserved tokens, the refusal the server last gave, and its local
// fallback limit.
type rcell struct {
	mu        sync.Mutex
	key       string // keyed: whose batch this is
	tokens    int64  // reserved, not yet handed out
	until     int64  // mono ns: the tokens expire
	blocked   int64  // mono ns: the server refused until then
	blockErr  *RateLimitError
	remaining int64 // the server's remaining at its last answer
	reset     time.Duration
	batch     int64 // the next batch size
	asked     int64 // tokens asked for since lastFill
	lastFill  int64 // mono ns
	filling   chan struct{}
	lastFail  bool // the last refill failed

	ltat float64 // local fallback GCRA: theoretical arrival time, mono ns
}

// mono is the package's monotonic clock in nanoseconds.
var monoStart = time.Now()

func mono() int64 { return int64(time.Since(monoStart)) }

// NewRateLimiter returns the global rate limiter called cfg.Name.
func NewRateLimiter(cfg RateLimiterConfig) (*RateLimiter, error) {
	switch {
	case cfg.Rate < 1 || cfg.Rate > maxRate:
		return nil, fmt.Errorf("redisstore: Rate must be between 1 and %d, got %d", int64(maxRate), cfg.Rate)
	case cfg.Per < 0 || (cfg.Per > 0 && cfg.Per < time.Millisecond):
		return nil, fmt.Errorf("redisstore: Per must be at least 1ms, got %v", cfg.Per)
	case cfg.Per > 365*24*time.Hour:
		return nil, fmt.Errorf("redisstore: Per must be at most a year, got %v", cfg.Per)
	case cfg.Burst < 0 || cfg.Burst > maxRate:
		return nil, fmt.Errorf("redisstore: Burst must be between 0 and %d, got %d", int64(maxRate), cfg.Burst)
	case cfg.Replicas < 0:
		return nil, fmt.Errorf("redisstore: Replicas must not be negative, got %d", cfg.Replicas)
	case cfg.LocalShare < 0 || cfg.LocalShare > 1 || cfg.LocalShare != cfg.LocalShare:
		return nil, fmt.Errorf("redisstore: LocalShare must be in (0, 1], got %v", cfg.LocalShare)
	case cfg.MaxBatch < 0:
		return nil, fmt.Errorf("redisstore: MaxBatch must not be negative, got %d", cfg.MaxBatch)
	case cfg.BatchWindow < 0 || (cfg.BatchWindow > 0 && cfg.BatchWindow < time.Millisecond):
		return nil, fmt.Errorf("redisstore: BatchWindow must be at least 1ms, got %v", cfg.BatchWindow)
	}
	if cfg.Per == 0 {
		cfg.Per = time.Second
	}
	if cfg.Burst == 0 {
		cfg.Burst = cfg.Rate
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = 1
	}
	if cfg.MaxBatch > cfg.Burst {
		return nil, fmt.Errorf("redisstore: MaxBatch must be at most Burst (%d), got %d", cfg.Burst, cfg.MaxBatch)
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if cfg.LocalShare == 0 {
		cfg.LocalShare = 1 / float64(cfg.Replicas)
	}
	if cfg.BatchWindow == 0 {
		cfg.BatchWindow = defaultBatchWindow
	}
	c, err := newCommon("rate limiter", cfg.Client, cfg.Name, cfg.Prefix, cfg.Timeout, cfg.Observer)
	if err != nil {
		return nil, err
	}
	em := float64(cfg.Per/time.Microsecond) / float64(cfg.Rate)
	lrate := max(float64(cfg.Rate)*cfg.LocalShare, 1e-9)
	lburst := max(math.Floor(float64(cfg.Burst)*cfg.LocalShare), 1)
	lem := float64(cfg.Per) / lrate
	l := &RateLimiter{
		common: c, emission: em, tolerance: em * float64(cfg.Burst),
		rate: cfg.Rate, per: cfg.Per, burst: cfg.Burst, maxBatch: cfg.MaxBatch, window: cfg.BatchWindow,
		globalKey: c.key("rate", "tat"),
		lemission: lem, ltolerance: lem * lburst, llimit: max(int64(lrate), 1), lburst: int64(lburst),
		global: &rcell{batch: 1}, seed: maphash.MakeSeed(),
	}
	return l, nil
}

// RateStats are the counts of a [RateLimiter].
type RateStats struct {
	// Rejected counts calls refused (Rejected events).
	Rejected int64
	// StoreFailures counts failed Redis operations and values repaired
	// (StoreFailed events).
	StoreFailures int64
	// LocalAdmitted counts calls admitted by the local fallback limit.
	LocalAdmitted int64
	// Reserved counts tokens reserved in batches (MaxBatch above 1).
	Reserved int64
	// Down reports whether the client is skipped now.
	Down bool
}

// Stats returns the limiter's counts. It does no I/O.
func (l *RateLimiter) Stats() RateStats {
	return RateStats{Rejected: l.rejected.Load(), StoreFailures: l.failures.Load(),
		LocalAdmitted: l.localAdmit.Load(), Reserved: l.batched.Load(), Down: l.health.isDown()}
}

// RatePermit is an admitted call's answer: what the limit had left.
// Rate tokens are not given back; Done does nothing and exists for the
// package's one admitter shape.
type RatePermit struct {
	// Remaining is the number of calls the limit would still admit at
	// once, as last known to this process (the server's count at its last
	// answer plus this process's reserved tokens).
	Remaining int64
	// Reset is how long until the limit is full again, as of the server's
	// last answer.
	Reset time.Duration
	// Local reports a call admitted by the local fallback limit.
	Local bool
}

// Done does nothing: a rate token is spent when it is taken.
func (p *RatePermit) Done(error) {}

// Acquire takes one token of the global limit.
func (l *RateLimiter) Acquire(ctx context.Context) (RatePermit, error) {
	return l.acquire(ctx, l.global, l.globalKey, "", 1)
}

// AcquireN takes n tokens of the global limit at once (all or none).
func (l *RateLimiter) AcquireN(ctx context.Context, n int64) (RatePermit, error) {
	if n < 1 || n > l.burst {
		return RatePermit{}, l.errorf("AcquireN: n must be between 1 and Burst (%d), got %d", l.burst, n)
	}
	return l.acquire(ctx, l.global, l.globalKey, "", n)
}

// AcquireKey takes one token of key's limit: every key has its own limit
// of Rate per Per, shared by every process. Any string is a key.
func (l *RateLimiter) AcquireKey(ctx context.Context, key string) (RatePermit, error) {
	return l.AcquireKeyN(ctx, key, 1)
}

// AcquireKeyN takes n tokens of key's limit at once (all or none).
func (l *RateLimiter) AcquireKeyN(ctx context.Context, key string, n int64) (RatePermit, error) {
	if n < 1 || n > l.burst {
		return RatePermit{}, l.errorf("AcquireKeyN: n must be between 1 and Burst (%d), got %d", l.burst, n)
	}
	l.once.Do(func() { l.cells = make([]rcell, rateCells) })
	c := &l.cells[maphash.String(l.seed, key)%rateCells]
	return l.acquire(ctx, c, "", key, n)
}

// keyOf returns the Redis key of a keyed limit: the name and the key are
// length-prefixed (no two pairs share a key) and the hash tag holds the
// key, so keys spread over a Cluster; each limit is one Redis key, so it
// is never split across slots.
func (l *RateLimiter) keyOf(key string) string {
	return l.prefix + ":rate:" + strconv.Itoa(len(l.name)) + ":" + l.name +
		":{" + strconv.Itoa(len(key)) + ":" + key + "}"
}

// acquire admits n tokens for cell c: from its batch, from a refusal it
// already knows, from Redis, or from the local fallback.
func (l *RateLimiter) acquire(ctx context.Context, c *rcell, rkey, key string, n int64) (RatePermit, error) {
	if err := ctx.Err(); err != nil {
		return RatePermit{}, err
	}
	waits := 0
	for {
		now := mono()
		c.mu.Lock()
		if c.key != key {
			// A keyed cell taken over by another key: the old key's
			// tokens are dropped (fewer calls admitted, never more).
			// The key is copied: the cell must not keep the caller's
			// larger buffer alive.
			c.key, c.tokens, c.blocked, c.blockErr, c.remaining, c.reset, c.batch = strings.Clone(key), 0, 0, nil, 0, 0, 1
		}
		c.asked += n
		if c.tokens >= n && now < c.until {
			c.tokens -= n
			p := RatePermit{Remaining: c.remaining + c.tokens, Reset: c.reset}
			c.mu.Unlock()
			return p, nil
		}
		if now < c.blocked {
			e := c.blockErr
			c.mu.Unlock()
			return RatePermit{}, l.reject(ctx, e)
		}
		if l.maxBatch == 1 {
			c.mu.Unlock()
			if rkey == "" {
				rkey = l.keyOf(key)
			}
			return l.fill(ctx, c, rkey, key, n, n, nil)
		}
		if waits > 0 && c.lastFail {
			// The fill this call waited for failed: no second wait.
			c.mu.Unlock()
			return l.acquireLocal(ctx, c, n)
		}
		if ch := c.filling; ch != nil {
			if waits >= maxFillWaits {
				// Waited for other callers' fills enough: one round
				// trip of its own, outside the batch.
				c.mu.Unlock()
				if rkey == "" {
					rkey = l.keyOf(key)
				}
				return l.fill(ctx, c, rkey, key, n, n, nil)
			}
			c.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return RatePermit{}, ctx.Err()
			}
			waits++
			continue
		}
		// This call fills the batch for every caller of the cell.
		want := l.batchSize(c, now, n)
		ch := make(chan struct{})
		c.filling = ch
		c.mu.Unlock()
		if rkey == "" {
			rkey = l.keyOf(key)
		}
		return l.fill(ctx, c, rkey, key, want, n, ch)
	}
}

// batchSize returns the tokens to ask for: the cell's call rate over the
// last fill interval times BatchWindow, between n and MaxBatch. Called
// with c.mu held.
func (l *RateLimiter) batchSize(c *rcell, now int64, n int64) int64 {
	if el := now - c.lastFill; c.lastFill != 0 && el > 0 {
		rate := float64(c.asked) / float64(el) // tokens per ns
		b := int64(math.Ceil(rate * float64(l.window)))
		c.batch = min(max(b, 1), l.maxBatch)
	}
	c.asked, c.lastFill = 0, now
	return max(c.batch, n)
}

// fill runs the GCRA script for at most want and at least n tokens; with
// ch set (a batch fill) it keeps the rest in the cell and closes ch.
func (l *RateLimiter) fill(ctx context.Context, c *rcell, rkey, key string, want, n int64, ch chan struct{}) (RatePermit, error) {
	if l.skip(ctx) {
		l.endFill(c, ch, true)
		return l.acquireLocal(ctx, c, n)
	}
	rctx, cancel := context.WithTimeout(ctx, l.timeout)
	v, err := gcraScript.run(rctx, l.client, []string{rkey}, strconv.FormatFloat(l.emission, 'g', -1, 64),
		strconv.FormatFloat(l.tolerance, 'g', -1, 64), want, n)
	cancel()
	if err != nil {
		err = l.errorf("acquire: %w", err)
		l.done(ctx, err)
		l.endFill(c, ch, true)
		if ctx.Err() != nil {
			return RatePermit{}, ctx.Err()
		}
		return l.acquireLocal(ctx, c, n)
	}
	l.done(ctx, nil)
	r, ok := v.([]any)
	if !ok || len(r) != 5 {
		l.report(ctx, l.errorf("%w: unexpected script reply %v", ErrCorrupt, v))
		l.endFill(c, ch, true)
		return l.acquireLocal(ctx, c, n)
	}
	got, _ := r[0].(int64)
	remaining, _ := r[1].(int64)
	retry, _ := r[2].(int64)
	reset, _ := r[3].(int64)
	if repaired, _ := r[4].(string); repaired != "" {
		l.report(ctx, l.errorf("%w: key %q: %s; repaired", ErrCorrupt, rkey, repaired))
	}
	resetD := time.Duration(reset) * time.Microsecond
	now := mono()
	c.mu.Lock()
	if c.key != key {
		// The cell went to another key while this round trip ran: keep
		// nothing in it (this key's tokens are dropped, never given to
		// another key).
		if ch != nil {
			c.filling = nil
			close(ch)
		}
		c.mu.Unlock()
		if got < n || got < 0 {
			d := time.Duration(retry) * time.Microsecond
			return RatePermit{}, l.reject(ctx, l.limitError(max(d, time.Microsecond), resetD, false))
		}
		return RatePermit{Remaining: remaining, Reset: resetD}, nil
	}
	c.remaining, c.reset, c.lastFail = remaining, resetD, false
	if got < n || got < 0 {
		// Refused: nobody can take a token before retry; a batching
		// process asks again only when its batch could be granted.
		d := time.Duration(retry) * time.Microsecond
		if ch != nil && want > n {
			d += time.Duration(float64(want-n) * l.emission * float64(time.Microsecond))
		}
		e := l.limitError(max(d, time.Microsecond), resetD, false)
		c.blocked, c.blockErr = now+int64(d), e
		if ch != nil {
			c.filling = nil
			close(ch)
		}
		c.mu.Unlock()
		return RatePermit{}, l.reject(ctx, e)
	}
	if ch != nil {
		l.batched.Add(got)
		c.tokens, c.until = got-n, now+int64(l.window)
		if remaining < want {
			// The limit is near exhaustion: once these tokens are handed
			// out, ask again only when a whole batch could be granted
			// (a partial grant leaves nothing: a whole batch's time).
			d := time.Duration(float64(want-remaining) * l.emission * float64(time.Microsecond))
			c.blocked, c.blockErr = now+int64(d), l.limitError(d, resetD, false)
		}
		c.filling = nil
		close(ch)
	}
	p := RatePermit{Remaining: remaining + c.tokens, Reset: resetD}
	c.mu.Unlock()
	return p, nil
}

func (l *RateLimiter) endFill(c *rcell, ch chan struct{}, failed bool) {
	if ch == nil {
		return
	}
	c.mu.Lock()
	c.filling, c.lastFail = nil, failed
	close(ch)
	c.mu.Unlock()
}

// acquireLocal admits n tokens from the cell's local fallback limit: GCRA
// on this process's monotonic clock at LocalShare of the rate.
func (l *RateLimiter) acquireLocal(ctx context.Context, c *rcell, n int64) (RatePermit, error) {
	now := float64(mono())
	c.mu.Lock()
	tat := max(c.ltat, now)
	newTat := tat + float64(n)*l.lemission
	if allowAt := newTat - l.ltolerance; allowAt > now {
		c.mu.Unlock()
		d := time.Duration(math.Ceil(allowAt - now))
		return RatePermit{}, l.reject(ctx, l.limitError(d, time.Duration(tat-now), true))
	}
	c.ltat = newTat
	left := int64((l.ltolerance - (newTat - now)) / l.lemission)
	c.mu.Unlock()
	l.localAdmit.Add(1)
	return RatePermit{Remaining: left, Reset: time.Duration(newTat - now), Local: true}, nil
}

// limitError returns the refusal of the global limit, or of the local
// fallback.
func (l *RateLimiter) limitError(d, reset time.Duration, local bool) *RateLimitError {
	if local {
		return &RateLimitError{Delay: d, Reset: reset, Limit: l.name, Quota: l.lburst, Local: true,
			Window: time.Duration(math.Ceil(l.ltolerance))}
	}
	return &RateLimitError{Delay: d, Reset: reset, Limit: l.name, Quota: l.burst,
		Window: time.Duration(math.Ceil(l.tolerance * float64(time.Microsecond)))}
}

func (l *RateLimiter) reject(ctx context.Context, e *RateLimitError) error {
	l.rejected.Add(1)
	if l.obs != nil {
		lim := l.rate
		if e.Local {
			lim = l.llimit
		}
		middleware.Emit(ctx, l.obs, middleware.Event{Kind: middleware.Rejected, Concern: "redisstore", Name: l.name,
			Reason: "rate", Delay: e.Delay, Limit: lim, Err: e})
	}
	return e
}

// RateLimiterMiddleware returns a middleware that admits each call
// through l's global limit: a call beyond it fails with a
// *[RateLimitError] without running the stage.
func RateLimiterMiddleware[In, Out any](l *RateLimiter) middleware.Middleware[In, Out] {
	if l == nil {
		panic("redisstore: nil *RateLimiter (was NewRateLimiter's error ignored?)")
	}
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		next = middleware.Apply(next)
		return func(ctx context.Context, in In) (out Out, err error) {
			if _, err := l.Acquire(ctx); err != nil {
				return out, err
			}
			return next(ctx, in)
		}
	}
}

// RateLimiterKeyed returns a middleware that admits each call through
// the limit of key(in): every key has its own global limit.
func RateLimiterKeyed[In, Out any](l *RateLimiter, key func(In) string) middleware.Middleware[In, Out] {
	if l == nil {
		panic("redisstore: nil *RateLimiter (was NewRateLimiter's error ignored?)")
	}
	if key == nil {
		panic("redisstore: RateLimiterKeyed: nil key func")
	}
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		next = middleware.Apply(next)
		return func(ctx context.Context, in In) (out Out, err error) {
			if _, err := l.AcquireKey(ctx, key(in)); err != nil {
				return out, err
			}
			return next(ctx, in)
		}
	}
}

// gcraScript is GCRA on the server's clock, as go-redis's redis_rate
// (AllowAtMost) does, in microseconds. KEYS[1] holds the theoretical
// arrival time (TAT) as a number. ARGV[1] is the emission interval (µs
// per token), ARGV[2] the tolerance (Burst × emission), ARGV[3] the most
// tokens to grant, ARGV[4] the fewest (fewer available is a refusal). A
// key of the wrong type is deleted; a value that is not a number, or a
// TAT further ahead than the tolerance allows (another configuration's),
// is replaced; both are reported as repaired. It returns {granted,
// remaining after, retry-after µs (refused), reset µs, repaired}.
var gcraScript = newScript(`
redis.replicate_commands()
local key = KEYS[1]
local em = tonumber(ARGV[1])
local tol = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local least = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local repaired = ''
local tat = now
local ty = redis.call('TYPE', key).ok
if ty == 'string' then
	local v = redis.call('GETRANGE', key, 0, 40)
	local x = nil
	if redis.call('STRLEN', key) <= 40 then x = tonumber(v) end
	if x == nil or x ~= x or x > now + tol + em then
		repaired = 'corrupt value'
	elseif x > now then
		tat = x
	end
elseif ty ~= 'none' then
	redis.call('DEL', key)
	repaired = 'wrong type ' .. ty
end
local avail = math.floor((now + tol - tat) / em + 1e-9)
if avail < least then
	local retry = math.ceil(tat + least * em - tol - now)
	if retry < 1 then retry = 1 end
	return {0, math.max(avail, 0), retry, math.ceil(tat - now), repaired}
end
local n = math.min(want, avail)
local newtat = tat + n * em
redis.call('SET', key, string.format('%.17g', newtat), 'PX', math.ceil((newtat - now) / 1000) + 1)
return {n, avail - n, 0, math.ceil(newtat - now), repaired}
`)
