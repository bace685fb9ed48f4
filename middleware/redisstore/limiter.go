package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/redis/go-redis/v9"
)

// defaultLease is how long a lease (a limiter's slot, a dedup leader's
// lock) outlives the last renewal by its holder, when a Config's Lease is
// zero. Holders renew every Lease/3 while the call runs, so a slot whose
// process crashed comes back within Lease.
const defaultLease = 3 * time.Second

// maxCapacity is the largest LimiterConfig.Capacity.
const maxCapacity = 1 << 40

// maxOrphans bounds the lease IDs a Limiter remembers to remove.
const maxOrphans = 1024

// ErrLimited is matched by the error of a call the global limit refused:
// a *[LimitError].
var ErrLimited = errors.New("redisstore: global concurrency limit reached")

// LimitError is the error of a call refused by a [Limiter]: Capacity
// calls were in flight across processes (or, with Local set, in this
// process while Redis was skipped). It matches [ErrLimited].
type LimitError struct {
	InFlight int64 // calls in flight when the call was refused
	Capacity int64 // the capacity in force
	Local    bool  // refused by the local fallback limit
}

func (e *LimitError) Error() string {
	where := "global"
	if e.Local {
		where = "local fallback"
	}
	return fmt.Sprintf("redisstore: %s concurrency limit reached (%d in flight, capacity %d)", where, e.InFlight, e.Capacity)
}

// Unwrap returns [ErrLimited].
func (e *LimitError) Unwrap() error { return ErrLimited }

// Rejected reports true: the call was refused without running.
func (e *LimitError) Rejected() bool { return true }

// Retryable reports true: capacity comes back when calls finish.
func (e *LimitError) Retryable() bool { return true }

// LimiterConfig configures a [Limiter]. Client, Name and Capacity are
// required; the zero value of every other field means its default.
type LimiterConfig struct {
	// Client is the Redis client (see [BreakerStoreConfig.Client]).
	Client redis.UniversalClient
	// Name is the limiter's shared name (events, and the key
	// prefix:{limiter:<Name>}:leases). It must not contain '{' or '}'.
	Name string
	// Capacity is the number of calls in flight allowed across every
	// process: between 1 and 2^40. Required.
	Capacity int64
	// Lease is how long a slot outlives its holder's last renewal: a
	// running call renews its slot every Lease/3, so a slot comes back at
	// most Lease after its process crashed or lost Redis. At least 3ms.
	// Default 3s. Limiters sharing a name must use the
	// same Lease.
	Lease time.Duration
	// LocalCapacity is the capacity of the local limit that admits calls
	// while Redis is skipped or fails, so protection never switches off.
	// Default: Capacity (each process then admits at most as many as all
	// of them together otherwise would).
	LocalCapacity int64
	// Batch is the most slots a process reserves in one round trip and
	// hands out locally (see docs/distributed.md, "Batching"): between 0 and
	// Capacity. 0 or 1: every call takes and gives back its own lease
	// (two round trips). Above 1, the process holds one block of slots in
	// Redis, sized to its calls in flight plus a batch that adapts between
	// 1 and Batch, renewed every Lease/3 while it holds any; calls taken
	// from the block cost no round trip.
	Batch int64
	// Prefix starts every key. Default "brace".
	Prefix string
	// Timeout bounds each Redis command. Default 100ms.
	Timeout time.Duration
	// Observer receives Rejected (Reason "limit"), StoreFailed and the
	// client's health StateChanged events.
	Observer middleware.Observer
}

// Limiter bounds the calls in flight across every process that builds one
// with the same server, prefix and name: a global concurrency limit that
// refuses (never queues) a call beyond Capacity with a *[LimitError].
//
// Each admitted call holds a lease, a member of a sorted set scored by its
// expiry on the server's clock, renewed every Lease/3 while the call runs
// (a timer, stopped when the call ends). Acquiring and releasing are one
// atomic script each; expired leases, leases of the wrong shape and keys
// of the wrong Redis type are dropped before every acquire, and the
// leases whose acquire reply was lost are released by the next operation
// that reaches Redis. While Redis is skipped or fails, a local limit of
// LocalCapacity admits calls instead. With Batch above 1, the process
// holds one block of slots instead (see [LimiterConfig.Batch]) and a call
// from the block costs no round trip. It is safe for concurrent use.
type Limiter struct {
	*common
	key      string
	capacity int64
	lease    time.Duration
	localCap int64
	local    atomic.Int64 // calls admitted locally, in flight
	rejected atomic.Int64

	id  string
	seq atomic.Uint64

	mu      sync.Mutex
	orphans []string // lease IDs that may be in Redis with no holder

	blocksKey, sizesKey string
	maxBatch            int64
	blk                 block
}

// block is a batching Limiter's reserved slots: held in Redis (one member
// of the blocks set, its size in the sizes hash), handed out locally.
type block struct {
	mu       sync.Mutex
	held     int64 // slots the block holds in Redis (never more than Redis records)
	inUse    int64 // slots handed out, not yet done
	peak     int64 // most inUse since the last renewal
	batch    int64 // the next growth: adapts between 1 and maxBatch
	until    int64 // mono ns: the block's lease ends (as sent, before the reply)
	filling  chan struct{}
	lastFail bool
	refused  bool        // the last growth was refused: the limit was full
	depth    int64       // the depth the last growth saw
	timer    *time.Timer // renews while held > 0
}

// NewLimiter returns the global limiter called cfg.Name.
func NewLimiter(cfg LimiterConfig) (*Limiter, error) {
	switch {
	case cfg.Capacity < 1 || cfg.Capacity > maxCapacity:
		return nil, fmt.Errorf("redisstore: Capacity must be between 1 and %d, got %d", int64(maxCapacity), cfg.Capacity)
	case cfg.Lease < 0 || (cfg.Lease > 0 && cfg.Lease < 3*time.Millisecond):
		return nil, fmt.Errorf("redisstore: Lease must be at least 3ms, got %v", cfg.Lease)
	case cfg.LocalCapacity < 0 || cfg.LocalCapacity > maxCapacity:
		return nil, fmt.Errorf("redisstore: LocalCapacity must be between 0 and %d, got %d", int64(maxCapacity), cfg.LocalCapacity)
	case cfg.Batch < 0 || cfg.Batch > cfg.Capacity:
		return nil, fmt.Errorf("redisstore: Batch must be between 0 and Capacity (%d), got %d", cfg.Capacity, cfg.Batch)
	}
	c, err := newCommon("limiter", cfg.Client, cfg.Name, cfg.Prefix, cfg.Timeout, cfg.Observer)
	if err != nil {
		return nil, err
	}
	if cfg.Lease == 0 {
		cfg.Lease = defaultLease
	}
	if cfg.LocalCapacity == 0 {
		cfg.LocalCapacity = cfg.Capacity
	}
	return &Limiter{
		common: c, key: c.key("limiter", "leases"), capacity: cfg.Capacity, lease: cfg.Lease,
		localCap: cfg.LocalCapacity, id: randomID(),
		blocksKey: c.key("limiter", "blocks"), sizesKey: c.key("limiter", "sizes"),
		maxBatch: max(cfg.Batch, 1), blk: block{batch: 1},
	}, nil
}

// Stats returns the limiter's counts: Rejected, StoreFailures,
// LocalInFlight and Down. It does no I/O.
func (l *Limiter) Stats() Stats {
	return Stats{
		Rejected: l.rejected.Load(), StoreFailures: l.failures.Load(),
		LocalInFlight: l.local.Load(), Down: l.health.isDown(),
	}
}

// Depth returns the number of slots held across all processes (live
// leases, and the slots of batching processes' blocks): one round trip,
// bounded by Timeout.
func (l *Limiter) Depth(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	v, err := depthScript.run(ctx, l.client, []string{l.key, l.blocksKey, l.sizesKey})
	if err != nil {
		return 0, l.errorf("depth: %w", err)
	}
	n, _ := v.(int64)
	return n, nil
}

// Permit is one admitted call's slot. Finish it with Done.
type Permit struct {
	l *Limiter
	r *renewal // nil for a slot of the local fallback or of the block
	b bool     // a slot of the block
}

// renewal is a Redis lease and the timer that renews it.
type renewal struct {
	id      string
	mu      sync.Mutex
	stopped bool
	timer   *time.Timer
}

// Acquire takes a slot: in Redis, or from the local limit while Redis is
// skipped or fails. A call beyond the capacity gets a *[LimitError]; a
// context that has ended, ctx.Err(). Finish the permit with Done when the
// call ends.
func (l *Limiter) Acquire(ctx context.Context) (Permit, error) {
	if err := ctx.Err(); err != nil {
		return Permit{}, err
	}
	if l.skip(ctx) {
		return l.acquireLocal(ctx)
	}
	if l.maxBatch > 1 {
		return l.acquireBatched(ctx)
	}
	return l.acquireLease(ctx)
}

// acquireLease takes a lease of its own in Redis for one call.
func (l *Limiter) acquireLease(ctx context.Context) (Permit, error) {
	id := l.id + ":" + strconv.FormatUint(l.seq.Add(1), 36)
	orphans := l.takeOrphans()
	rctx, cancel := context.WithTimeout(ctx, l.timeout)
	args := make([]any, 0, 3+len(orphans))
	args = append(args, id, l.capacity, micros(l.lease))
	for _, o := range orphans {
		args = append(args, o)
	}
	v, err := acquireScript.run(rctx, l.client, []string{l.key, l.blocksKey, l.sizesKey}, args...)
	cancel()
	if err == nil {
		l.done(ctx, nil)
		r, ok := v.([]any)
		if ok && len(r) == 3 {
			admitted, _ := r[0].(int64)
			depth, _ := r[1].(int64)
			if repaired, _ := r[2].(string); repaired != "" {
				l.report(ctx, l.errorf("%w: key %s: %s; repaired", ErrCorrupt, l.key, repaired))
			}
			if admitted == 1 {
				return Permit{l: l, r: l.renew(id)}, nil
			}
			return Permit{}, l.reject(ctx, &LimitError{InFlight: depth, Capacity: l.capacity})
		}
		err = l.errorf("%w: unexpected script reply %v", ErrCorrupt, v)
		l.report(ctx, err)
	} else {
		// The script may have run: its lease and the orphans it may not
		// have removed are released by the next operation that works.
		l.addOrphans(append(orphans, id))
		err = l.errorf("acquire: %w", err)
		l.done(ctx, err)
	}
	if ctx.Err() != nil {
		return Permit{}, ctx.Err() // the caller left
	}
	return l.acquireLocal(ctx)
}

func (l *Limiter) acquireLocal(ctx context.Context) (Permit, error) {
	for {
		n := l.local.Load()
		if n >= l.localCap {
			return Permit{}, l.reject(ctx, &LimitError{InFlight: n, Capacity: l.localCap, Local: true})
		}
		if l.local.CompareAndSwap(n, n+1) {
			return Permit{l: l}, nil
		}
	}
}

func (l *Limiter) reject(ctx context.Context, e *LimitError) error {
	l.rejected.Add(1)
	if l.obs != nil {
		middleware.Emit(ctx, l.obs, middleware.Event{Kind: middleware.Rejected, Concern: "redisstore", Name: l.name,
			Reason: "limit", InFlight: e.InFlight, Limit: e.Capacity, Err: e})
	}
	return e
}

// renew starts the renewal of lease id: every Lease/3 until stopped.
func (l *Limiter) renew(id string) *renewal {
	r := &renewal{id: id}
	every := l.lease / 3
	r.mu.Lock()
	r.timer = time.AfterFunc(every, func() {
		ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
		_, err := renewScript.run(ctx, l.client, []string{l.key}, id, micros(l.lease))
		cancel()
		if err != nil {
			l.done(context.Background(), l.errorf("renew: %w", err))
		}
		r.mu.Lock()
		if !r.stopped {
			r.timer.Reset(every)
		}
		r.mu.Unlock()
	})
	r.mu.Unlock()
	return r
}

func (r *renewal) stop() {
	r.mu.Lock()
	r.stopped = true
	r.timer.Stop()
	r.mu.Unlock()
}

// Done gives the slot back: one round trip for a Redis slot (bounded by
// Timeout, also when ctx has ended), none for a local one. A slot whose
// release fails is released by a later operation, or expires after Lease.
// err is the call's error; the limiter does not classify it. A second
// Done does nothing.
func (p *Permit) Done(err error) {
	l, r, b := p.l, p.r, p.b
	*p = Permit{}
	switch {
	case l == nil:
		return
	case b:
		l.doneBatched()
		return
	case r == nil:
		l.local.Add(-1)
		return
	}
	r.stop()
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	if l.health.isDown() {
		l.addOrphans([]string{r.id})
		return
	}
	start := time.Now()
	rerr := l.client.ZRem(ctx, l.key, r.id).Err()
	if rerr != nil {
		l.addOrphans([]string{r.id})
		rerr = l.errorf("release: %w", withCause(l.client, ctxErr(ctx, rerr), start))
	}
	l.done(ctx, rerr)
}

func (l *Limiter) takeOrphans() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	o := l.orphans
	l.orphans = nil
	return o
}

func (l *Limiter) addOrphans(ids []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		if len(l.orphans) < maxOrphans {
			l.orphans = append(l.orphans, id)
		}
	}
}

// LimiterMiddleware returns a middleware that admits each call through
// l: a call beyond the global capacity fails with a *[LimitError] without
// running the stage. The slot is given back when the stage returns, also
// when it panics. A call costs two round trips (acquire and release) and
// one timer; with LimiterConfig.Batch above 1, none while the process's
// block has a free slot.
func LimiterMiddleware[In, Out any](l *Limiter) middleware.Middleware[In, Out] {
	if l == nil {
		panic("redisstore: nil *Limiter (was NewLimiter's error ignored?)")
	}
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		next = middleware.Apply(next)
		return func(ctx context.Context, in In) (out Out, err error) {
			p, err := l.Acquire(ctx)
			if err != nil {
				return out, err
			}
			defer p.Done(nil)
			return next(ctx, in)
		}
	}
}

// blocksLua expires the batching limiters' blocks (KEYS[2], a sorted
// set of block IDs scored by expiry; KEYS[3], a hash of their sizes),
// repairs keys of the wrong type and sizes that are not numbers or have no
// live block, and returns the slots the live blocks hold and what it
// repaired.
const blocksLua = `
local function blocks(bk, sk, now, lease)
	local rep = ''
	local bt = redis.call('TYPE', bk).ok
	local st = redis.call('TYPE', sk).ok
	if bt == 'none' and st == 'none' then return 0, '' end
	if (bt ~= 'none' and bt ~= 'zset') or (st ~= 'none' and st ~= 'hash') then
		redis.call('DEL', bk, sk)
		return 0, 'blocks of the wrong type ' .. bt .. '/' .. st
	end
	local dead = redis.call('ZRANGEBYSCORE', bk, '-inf', string.format('%d', now))
	for _, m in ipairs(dead) do redis.call('HDEL', sk, m) end
	redis.call('ZREMRANGEBYSCORE', bk, '-inf', string.format('%d', now))
	local far = redis.call('ZRANGEBYSCORE', bk, '(' .. string.format('%d', now + 2 * lease), '+inf')
	for _, m in ipairs(far) do redis.call('HDEL', sk, m); redis.call('ZREM', bk, m); rep = 'blocks ending after twice the lease' end
	local sum = 0
	local kv = redis.call('HGETALL', sk)
	for i = 1, #kv, 2 do
		local n = nil
		if string.len(kv[i+1]) <= 20 then n = tonumber(kv[i+1]) end
		if n == nil or n ~= n or n < 0 or n > 1099511627776 or not redis.call('ZSCORE', bk, kv[i]) then
			redis.call('HDEL', sk, kv[i])
			redis.call('ZREM', bk, kv[i])
			rep = 'bad block size'
		else
			sum = sum + n
		end
	end
	return sum, rep
end
`

// acquireScript: ARGV[1] lease ID, ARGV[2] capacity, ARGV[3] lease (µs),
// ARGV[4...] orphaned lease IDs to remove first. It repairs a key of the
// wrong type (deleting it) and drops expired leases and leases that end
// further ahead than twice a lease (they were not written by a limiter
// with this Lease), then adds ARGV[1] with expiry now + lease if fewer
// than the capacity remain (leases and the slots of batching limiters'
// blocks together). Adding the same ID again is idempotent. It returns
// {admitted, depth, what was repaired}.
var acquireScript = newScript(`
redis.replicate_commands()
` + blocksLua + `
local key = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local lease = tonumber(ARGV[3])
local repaired = ''
local ty = redis.call('TYPE', key).ok
if ty ~= 'none' and ty ~= 'zset' then
	redis.call('DEL', key)
	repaired = 'wrong type ' .. ty
end
for i = 4, #ARGV do redis.call('ZREM', key, ARGV[i]) end
redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%d', now))
local far = redis.call('ZREMRANGEBYSCORE', key, '(' .. string.format('%d', now + 2 * lease), '+inf')
if far > 0 and repaired == '' then repaired = far .. ' leases ending after twice the lease' end
local held, brep = blocks(KEYS[2], KEYS[3], now, lease)
if brep ~= '' and repaired == '' then repaired = brep end
local n = redis.call('ZCARD', key) + held
if redis.call('ZSCORE', key, ARGV[1]) then return {1, n, repaired} end
if n >= tonumber(ARGV[2]) then return {0, n, repaired} end
redis.call('ZADD', key, string.format('%d', now + lease), ARGV[1])
redis.call('PEXPIRE', key, string.format('%d', math.ceil(lease / 1000) * 2))
return {1, n + 1, repaired}
`)

// blockScript sets a batching limiter's block: ARGV[1] block ID, ARGV[2]
// the size wanted, ARGV[3] capacity, ARGV[4] lease (µs). It grants the
// size wanted, or what the capacity leaves beside the leases and the other
// blocks (never less than nothing), records it with expiry now + lease
// (or removes the block when the grant is 0), and returns {granted, depth
// after, what was repaired}.
var blockScript = newScript(`
redis.replicate_commands()
` + blocksLua + `
local key, bk, sk = KEYS[1], KEYS[2], KEYS[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local lease = tonumber(ARGV[4])
local repaired = ''
local ty = redis.call('TYPE', key).ok
if ty ~= 'none' and ty ~= 'zset' then
	redis.call('DEL', key)
	repaired = 'wrong type ' .. ty
end
redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%d', now))
local held, brep = blocks(bk, sk, now, lease)
if brep ~= '' and repaired == '' then repaired = brep end
local own = tonumber(redis.call('HGET', sk, ARGV[1]) or '0') or 0
local others = redis.call('ZCARD', key) + held - own
local grant = math.min(tonumber(ARGV[2]), tonumber(ARGV[3]) - others)
if grant <= 0 then
	redis.call('HDEL', sk, ARGV[1])
	redis.call('ZREM', bk, ARGV[1])
	return {0, others, repaired}
end
redis.call('HSET', sk, ARGV[1], string.format('%d', grant))
redis.call('ZADD', bk, string.format('%d', now + lease), ARGV[1])
local ttl = string.format('%d', math.ceil(lease / 1000) * 2)
redis.call('PEXPIRE', bk, ttl)
redis.call('PEXPIRE', sk, ttl)
return {grant, others + grant, repaired}
`)

// renewScript extends lease ARGV[1] to now + ARGV[2] µs if it is still
// held (a released lease stays released).
var renewScript = newScript(`
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local lease = tonumber(ARGV[2])
if redis.call('TYPE', KEYS[1]).ok ~= 'zset' then return 0 end
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], 'XX', string.format('%d', now + lease), ARGV[1])
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.ceil(lease / 1000) * 2))
return 1
`)

// depthScript counts the live leases and the slots of the live blocks.
var depthScript = newScript(`
local n = 0
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if redis.call('TYPE', KEYS[1]).ok == 'zset' then
	n = redis.call('ZCOUNT', KEYS[1], '(' .. string.format('%d', now), '+inf')
end
if redis.call('TYPE', KEYS[2]).ok == 'zset' and redis.call('TYPE', KEYS[3]).ok == 'hash' then
	local live = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. string.format('%d', now), '+inf')
	for _, m in ipairs(live) do
		local v = redis.call('HGET', KEYS[3], m)
		local x = nil
		if v and string.len(v) <= 20 then x = tonumber(v) end
		if x and x == x and x > 0 then n = n + x end
	end
end
return n
`)
