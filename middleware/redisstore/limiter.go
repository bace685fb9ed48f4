package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/redis/go-redis/v9"
)

// DefaultLease is how long a slot is held at most when LimiterConfig.Lease
// is zero.
const DefaultLease = 30 * time.Second

// LimiterConfig configures a [Limiter]. The zero value is valid.
type LimiterConfig struct {
	// Lease is the longest a call may hold its slot: a slot not released
	// within Lease (its process crashed, or the call ran longer) is
	// freed. Set it above the guarded stage's timeout. Default
	// [DefaultLease] (30s).
	Lease time.Duration
	// LocalCapacity is the capacity of the local backpressure.Limiter that
	// admits calls while Redis fails, so protection never switches off.
	// Default: the global capacity (each process then admits at most as
	// many as all of them together otherwise would).
	LocalCapacity int64
	// Prefix starts every key. Default [DefaultPrefix]. It must not
	// contain '{' or '}'.
	Prefix string
	// Timeout bounds each Redis command. Default [DefaultTimeout] (100ms).
	Timeout time.Duration
	// OnShed, when set, is called with the error of every shed call, on
	// the caller's goroutine.
	OnShed func(*backpressure.ShedError)
	// OnStoreError, when set, is called when Redis fails and a call is
	// admitted (or shed) by the local limiter instead.
	OnStoreError func(err error)
	// Logger, when set, gets store errors as warnings ("name", "err").
	// Nil is silent.
	Logger *slog.Logger
}

// Limiter bounds the calls in flight across every process that builds one
// with the same client, prefix and name: a global backpressure limit in
// Shed mode. Each admitted call holds a lease, a member of a sorted set
// scored by its expiry on the server's clock; acquiring and releasing are
// one atomic script each, and expired leases are dropped before every
// acquire, so a crashed process's slots come back after Lease.
//
// A call beyond the capacity is shed at once with a
// *[backpressure.ShedError] (matching [backpressure.ErrShed]); there is no
// waiting queue across processes. Guard stages with [Limit]. It is safe for
// concurrent use.
type Limiter struct {
	common
	name     string
	key      string
	capacity int64
	lease    time.Duration
	local    *backpressure.Limiter
	onShed   func(*backpressure.ShedError)
	onStore  func(error)
	log      *slog.Logger

	id  string // this limiter's lease prefix, unique per process
	seq atomic.Uint64
}

// NewLimiter returns the global limiter called name with the given
// capacity (between 1 and backpressure.MaxCapacity).
func NewLimiter(client redis.UniversalClient, name string, capacity int64, cfg LimiterConfig) (*Limiter, error) {
	switch {
	case capacity < 1 || capacity > backpressure.MaxCapacity:
		return nil, fmt.Errorf("redisstore: capacity must be between 1 and %d, got %d", int64(backpressure.MaxCapacity), capacity)
	case cfg.Lease < 0:
		return nil, fmt.Errorf("redisstore: Lease must be positive, got %v", cfg.Lease)
	case cfg.Lease > 0 && cfg.Lease < time.Millisecond:
		return nil, fmt.Errorf("redisstore: Lease must be at least 1ms, got %v", cfg.Lease)
	case cfg.LocalCapacity < 0:
		return nil, fmt.Errorf("redisstore: LocalCapacity must not be negative, got %d", cfg.LocalCapacity)
	}
	c, err := newCommon(client, name, cfg.Prefix, cfg.Timeout)
	if err != nil {
		return nil, err
	}
	if cfg.Lease == 0 {
		cfg.Lease = DefaultLease
	}
	if cfg.LocalCapacity == 0 {
		cfg.LocalCapacity = capacity
	}
	local, err := backpressure.New(cfg.LocalCapacity, backpressure.Config{OnShed: cfg.OnShed, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("redisstore: LocalCapacity: %w", err)
	}
	var b [8]byte
	rand.Read(b[:])
	return &Limiter{
		common: c, name: name, key: c.key("limiter", name, "leases"), capacity: capacity, lease: cfg.Lease,
		local: local, onShed: cfg.OnShed, onStore: cfg.OnStoreError, log: cfg.Logger,
		id: hex.EncodeToString(b[:]),
	}, nil
}

// Key returns the Redis key of the limiter's leases.
func (l *Limiter) Key() string { return l.key }

// Capacity returns the global capacity.
func (l *Limiter) Capacity() int64 { return l.capacity }

// Depth returns the number of live leases across all processes, or an
// error when Redis cannot be asked. It is one round trip.
func (l *Limiter) Depth(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	v, err := depthScript.run(ctx, l.client, []string{l.key})
	if err != nil {
		return 0, fmt.Errorf("redisstore: limiter %s: %w", l.name, err)
	}
	n, _ := v.(int64)
	return n, nil
}

// lease is one admitted call's slot in Redis.
type lease struct{ id string }

// acquire admits one call in Redis, or sheds it with a
// *backpressure.ShedError when the capacity is taken. A caller whose
// context has ended gets ctx.Err(). When Redis fails it reports the error
// and returns local true: the local limiter must decide.
func (l *Limiter) acquire(ctx context.Context) (ls lease, local bool, err error) {
	if err := ctx.Err(); err != nil {
		return lease{}, false, err
	}
	id := l.id + ":" + strconv.FormatUint(l.seq.Add(1), 10)
	rctx, cancel := context.WithTimeout(ctx, l.timeout)
	v, err := acquireScript.run(rctx, l.client, []string{l.key}, id, l.capacity, l.lease.Microseconds())
	cancel()
	if err == nil {
		r, ok := v.([]any)
		if ok && len(r) == 2 {
			admitted, _ := r[0].(int64)
			depth, _ := r[1].(int64)
			if admitted == 1 {
				return lease{id: id}, false, nil
			}
			e := &backpressure.ShedError{Depth: depth, Capacity: l.capacity, Weight: 1}
			if l.onShed != nil {
				l.onShed(e)
			}
			return lease{}, false, e
		}
		err = fmt.Errorf("unexpected script reply %v", v)
	}
	if ctx.Err() != nil {
		return lease{}, false, ctx.Err() // the caller left
	}
	// Whether or not the script ran, the call goes to the local limiter;
	// a lease it may have taken in Redis expires after Lease. (run has
	// matched err to rctx's error already; rctx is cancelled by now.)
	l.storeError(ctx, fmt.Errorf("redisstore: limiter %s: acquire: %w", l.name, err))
	return lease{}, true, nil
}

// release gives a lease back: one round trip. When it fails the lease
// expires by itself after Lease, and the error is reported.
func (l *Limiter) release(ctx context.Context, ls lease) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.timeout)
	defer cancel()
	if err := l.client.ZRem(ctx, l.key, ls.id).Err(); err != nil {
		l.storeError(ctx, fmt.Errorf("redisstore: limiter %s: release: %w", l.name, ctxErr(ctx, err)))
	}
}

func (l *Limiter) storeError(ctx context.Context, err error) {
	if l.log != nil {
		l.log.LogAttrs(ctx, slog.LevelWarn, "redisstore: limiter store failed; using the local limit",
			slog.String("name", l.name), slog.Any("err", err))
	}
	if l.onStore != nil {
		l.onStore(err)
	}
}

// Limit returns a middleware that admits each call through l: a call
// beyond the global capacity fails with a *backpressure.ShedError without
// running the stage. While Redis fails, calls go through the local
// limiter (LocalCapacity) instead. The lease is released when the stage returns, also
// when it panics. A call costs two round trips (acquire and release).
func Limit[In, Out any](l *Limiter) middleware.Middleware[In, Out] {
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		next = middleware.Apply(next) // a nil next fails with middleware.ErrNilStage
		if l == nil {
			return func(context.Context, In) (Out, error) {
				var zero Out
				return zero, backpressure.ErrNilLimiter
			}
		}
		local := backpressure.Middleware[In, Out](l.local)(next)
		return func(ctx context.Context, in In) (Out, error) {
			ls, fallback, err := l.acquire(ctx)
			switch {
			case fallback:
				return local(ctx, in)
			case err != nil:
				var zero Out
				return zero, err
			}
			defer l.release(ctx, ls)
			return next(ctx, in)
		}
	}
}

// acquireScript drops expired leases, then adds ARGV[1] with expiry now +
// ARGV[3] µs if fewer than ARGV[2] remain. It returns {admitted, depth}.
var acquireScript = newScript(`
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(ARGV[2]) then return {0, n} end
redis.call('ZADD', KEYS[1], string.format('%d', now + lease), ARGV[1])
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.ceil(lease / 1000) * 2))
return {1, n + 1}
`)

// depthScript counts the live leases.
var depthScript = newScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
return redis.call('ZCOUNT', KEYS[1], '(' .. string.format('%d', now), '+inf')
`)
