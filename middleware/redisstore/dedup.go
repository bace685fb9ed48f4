package redisstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/redis/go-redis/v9"
)

// defaultMaxWait bounds how long a call waits for another process's call
// with its key, when DedupConfig.MaxWait is zero.
const defaultMaxWait = 10 * time.Second

// defaultMaxValueBytes bounds an encoded result when
// DedupConfig.MaxValueBytes is zero: 1 MiB.
const defaultMaxValueBytes = 1 << 20

// pollInterval is the longest pause between two looks of a waiting call
// at its leader's result; the first comes after firstPoll, and each pause
// doubles.
const (
	pollInterval = 20 * time.Millisecond
	firstPoll    = time.Millisecond
)

// Codec encodes shared results. encoding/json's Marshal and Unmarshal
// have its shape; encoding/json is the default.
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// jsonCodec is the default [Codec]: encoding/json.

type jsonCodec struct{}

func (jsonCodec) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (jsonCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// DedupConfig configures a [Dedup]. Client and Name are required; the
// zero value of every other field means its default.
type DedupConfig struct {
	// Client is the Redis client (see [BreakerStoreConfig.Client]).
	Client redis.UniversalClient
	// Name is the dedup's shared name (events and keys). Use one per
	// stage: calls of two stages sharing a name and a key share results.
	// It must not contain '{' or '}'. Every Redis key of one (name, key)
	// pair is
	//
	//	prefix:dedup:<len(name)>:<name>:{<len(key)>:<key>}:<suffix>
	//
	// with suffix "v" (the cached result), "lock" (the leader's lock,
	// holding its token) or "r:<token>" (a leader's published result):
	// delete the "v" key to drop a cached result. Both the name and the
	// key are length-prefixed, so no two pairs share a key whatever they
	// contain; the braces are a hash tag, so one key's data lives in one
	// Cluster slot and different keys spread.
	Name string
	// TTL is how long a successful result stays in the shared cache, to
	// serve later calls with its key. Zero: no cache, only calls in flight
	// are shared.
	TTL time.Duration
	// Lease is how long a leader's lock outlives its last renewal: the
	// leader renews it every Lease/3 while its stage runs, so a leader
	// that crashed is replaced at most Lease later. At least 3ms. Default
	// 3s.
	Lease time.Duration
	// MaxWait bounds how long a call waits for another call's result, in
	// all, from its start; then it runs the stage itself, unshared.
	// Default 10s.
	MaxWait time.Duration
	// MaxValueBytes bounds an encoded result: a larger one is neither
	// stored nor read (its size is checked in Redis, before it is sent).
	// Default 1 MiB.
	MaxValueBytes int
	// Codec encodes results. Nil means encoding/json.
	Codec Codec
	// Prefix starts every key. Default "brace".
	Prefix string
	// Timeout bounds each Redis command. Default 100ms.
	Timeout time.Duration
	// Observer receives Joined (Reason "cache" for a cache hit),
	// StoreFailed and the client's health StateChanged events.
	Observer middleware.Observer
}

// Dedup shares results across processes: from a cache of successful
// results (TTL), and between calls in flight with the same key in every
// process that builds a Dedup with the same server, prefix and name.
// Guard a stage with [DedupMiddleware]. It is safe for concurrent use.
type Dedup struct {
	*common
	ttl       time.Duration
	lease     time.Duration
	maxWait   time.Duration
	resultTTL time.Duration
	max       int
	codec     Codec
	joined    atomic.Int64

	id  string
	seq atomic.Uint64

	// orphans are locks this process may hold in Redis without a live
	// call behind them: a step whose reply was lost may have taken the
	// lock, and its publish could not reach Redis either. They are
	// released by the next call that finds Redis up again, so that a
	// short hiccup does not leave other processes waiting a Lease.
	orphanMu sync.Mutex
	orphans  []orphan
	norphans atomic.Int32
}

type orphan struct{ key, token, from string }

// maxDedupOrphans bounds the orphans remembered; older ones expire within Lease.
const maxDedupOrphans = 1024

// orphansPerCall bounds the releases one call makes before its own step.
const orphansPerCall = 16

// NewDedup returns the dedup called cfg.Name.
func NewDedup(cfg DedupConfig) (*Dedup, error) {
	switch {
	case cfg.TTL < 0:
		return nil, fmt.Errorf("redisstore: TTL must not be negative, got %v", cfg.TTL)
	case cfg.TTL > 0 && cfg.TTL < time.Millisecond:
		return nil, fmt.Errorf("redisstore: TTL must be 0 or at least 1ms, got %v", cfg.TTL)
	case cfg.Lease < 0 || (cfg.Lease > 0 && cfg.Lease < 3*time.Millisecond):
		return nil, fmt.Errorf("redisstore: Lease must be at least 3ms, got %v", cfg.Lease)
	case cfg.MaxWait < 0:
		return nil, fmt.Errorf("redisstore: MaxWait must not be negative, got %v", cfg.MaxWait)
	case cfg.MaxValueBytes < 0:
		return nil, fmt.Errorf("redisstore: MaxValueBytes must not be negative, got %d", cfg.MaxValueBytes)
	}
	c, err := newCommon("dedup", cfg.Client, cfg.Name, cfg.Prefix, cfg.Timeout, cfg.Observer)
	if err != nil {
		return nil, err
	}
	if cfg.Lease == 0 {
		cfg.Lease = defaultLease
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = defaultMaxWait
	}
	if cfg.MaxValueBytes == 0 {
		cfg.MaxValueBytes = defaultMaxValueBytes
	}
	if cfg.Codec == nil {
		cfg.Codec = jsonCodec{}
	}
	// A waiting call looks at most pollInterval + Timeout apart; a
	// published result must outlive that gap.
	resultTTL := max(time.Second, 2*(pollInterval+c.timeout))
	return &Dedup{
		common: c, ttl: cfg.TTL, lease: cfg.Lease, maxWait: cfg.MaxWait, resultTTL: resultTTL,
		max: cfg.MaxValueBytes, codec: cfg.Codec, id: randomID(),
	}, nil
}

// Stats returns the dedup's counts: Joined, StoreFailures and Down. It
// does no I/O.
func (d *Dedup) Stats() Stats {
	return Stats{Joined: d.joined.Load(), StoreFailures: d.failures.Load(), Down: d.health.isDown()}
}

// base is the start of every Redis key of one (name, key) pair; see
// [DedupConfig.Name] for the layout.
func (d *Dedup) base(key string) string {
	return d.prefix + ":dedup:" + strconv.Itoa(len(d.name)) + ":" + d.name +
		":{" + strconv.Itoa(len(key)) + ":" + key + "}"
}

func (d *Dedup) token() string { return d.id + "." + strconv.FormatUint(d.seq.Add(1), 36) }

// Result values start with a tag byte: a shared result, or a leader that
// failed (its followers run the stage themselves).
const (
	tagValue  = 'v'
	tagFailed = 'e'
)

var failedMarker = []byte{tagFailed}

// Replies of stepScript.
const (
	stepWait     = 0 // the key is leased to the token in the reply
	stepLead     = 1 // the caller holds the lease now
	stepResult   = 2 // the followed leader's published value
	stepCached   = 3 // the cached value
	stepTooLarge = 4 // the followed leader's value is too large; its size
)

// stepScript is one step of a call. KEYS: the cache entry, the lock, and
// the result of the leader followed (ARGV[3], its token, is not empty).
// ARGV[1] the caller's token, ARGV[2] the lease (ms), ARGV[4] the largest
// value read, ARGV[5] 1 to read the cache. Every value is read only after
// STRLEN says it is within the bound; a key of the wrong type is deleted
// (reported as the fourth element of the reply), a cache entry too large
// too. Taking the lock again with the token that holds it (a retry whose
// first reply was lost) leads.
var stepScript = newScript(`
local max = tonumber(ARGV[4])
local note = ''
local function read(k, own)
	local n = redis.pcall('STRLEN', k)
	if type(n) == 'table' then
		redis.call('DEL', k)
		note = note .. 'wrong type at ' .. k .. '; '
		return nil
	end
	if n == 0 then return nil end
	if n > max then
		if own then
			redis.call('DEL', k)
			note = note .. 'too large: value of ' .. n .. ' bytes at ' .. k .. '; '
			return nil
		end
		return n
	end
	return redis.call('GET', k)
end
if ARGV[5] == '1' then
	local v = read(KEYS[1], true)
	if v then return {3, v, note} end
end
if ARGV[3] ~= '' then
	local v = read(KEYS[3], false)
	if type(v) == 'number' then return {4, tostring(v), note} end
	if v then return {2, v, note} end
end
local h = redis.pcall('GET', KEYS[2])
if type(h) == 'table' and h.err then
	redis.call('DEL', KEYS[2])
	note = note .. 'wrong type at ' .. KEYS[2] .. '; '
	h = false
end
if h and h ~= ARGV[1] then return {0, h, note} end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return {1, '', note}
`)

// publishScript stores a leader's result ARGV[2] at KEYS[2] for ARGV[3]
// ms, in the cache KEYS[3] for ARGV[4] ms (when not 0 and the value is a
// result), at KEYS[4] (the result key of the leader it took over from,
// unless that one published) and releases the lock KEYS[1] if it still
// holds the token ARGV[1]. It returns 1 if it held the lock.
var publishScript = newScript(`
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
if ARGV[4] ~= '0' and string.sub(ARGV[2], 1, 1) == 'v' then
	redis.call('DEL', KEYS[3])
	redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[4])
end
if KEYS[4] ~= KEYS[2] then redis.call('SET', KEYS[4], ARGV[2], 'PX', ARGV[3], 'NX') end
local h = redis.pcall('GET', KEYS[1])
if h == ARGV[1] then
	redis.call('DEL', KEYS[1])
	return 1
end
return 0
`)

// lockRenewScript extends the lock KEYS[1] to ARGV[2] ms if it still
// holds ARGV[1].
var lockRenewScript = newScript(`
if redis.pcall('GET', KEYS[1]) == ARGV[1] then
	redis.call('PEXPIRE', KEYS[1], ARGV[2])
	return 1
end
return 0
`)

// step runs stepScript: one round trip, bounded by Timeout.
func (d *Dedup) step(ctx context.Context, key, token, leader string) (int64, string, error) {
	base := d.base(key)
	keys := []string{base + ":v", base + ":lock", base + ":r:" + leader}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	cache := "0"
	if d.ttl > 0 {
		cache = "1"
	}
	v, err := stepScript.run(ctx, d.client, keys, token, ms(d.lease), leader, d.max, cache)
	if err != nil {
		return 0, "", d.errorf("%w", err)
	}
	if r, ok := v.([]any); ok && len(r) == 3 {
		kind, ok1 := r[0].(int64)
		s, ok2 := r[1].(string)
		note, ok3 := r[2].(string)
		if ok1 && ok2 && ok3 && kind >= stepWait && kind <= stepTooLarge {
			if note != "" {
				e := ErrCorrupt
				if strings.Contains(note, "too large") {
					e = ErrTooLarge
				}
				d.report(ctx, d.errorf("%w: %srepaired", e, note))
			}
			return kind, s, nil
		}
	}
	return 0, "", d.errorf("%w: unexpected script reply %v", ErrCorrupt, v)
}

// publish stores a leader's outcome, releases its lock and stops its
// renewal: one round trip, bounded by Timeout, also when the caller has
// left (its followers still wait).
func (d *Dedup) publish(ctx context.Context, key, token, from string, val []byte) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.timeout)
	defer cancel()
	if d.health.isDown() {
		d.remember(key, token, from) // released when Redis is back, else it expires within Lease
		return
	}
	base := d.base(key)
	rk := base + ":r:" + token
	fk := rk
	if from != "" {
		fk = base + ":r:" + from
	}
	cache := "0"
	if d.ttl > 0 {
		cache = ms(d.ttl)
	}
	_, err := publishScript.run(ctx, d.client, []string{base + ":lock", rk, base + ":v", fk}, token, val, ms(d.resultTTL), cache)
	if err != nil {
		err = d.errorf("publish: %w", err)
		d.remember(key, token, from)
	}
	d.done(ctx, err)
}

// remember records a lock that may be held without a live call behind it.
func (d *Dedup) remember(key, token, from string) {
	d.orphanMu.Lock()
	if len(d.orphans) >= maxDedupOrphans {
		d.orphans = d.orphans[1:] // the oldest expires within Lease
	}
	d.orphans = append(d.orphans, orphan{key, token, from})
	d.norphans.Store(int32(len(d.orphans)))
	d.orphanMu.Unlock()
}

// releaseOrphans publishes failedMarker for up to orphansPerCall
// remembered locks, which releases each lock if its token still holds it
// and tells the callers waiting on it to run the stage themselves. A
// release that fails is remembered again by publish.
func (d *Dedup) releaseOrphans(ctx context.Context) {
	d.orphanMu.Lock()
	n := min(len(d.orphans), orphansPerCall)
	batch := append([]orphan(nil), d.orphans[:n]...)
	d.orphans = d.orphans[n:]
	d.norphans.Store(int32(len(d.orphans)))
	d.orphanMu.Unlock()
	for _, o := range batch {
		d.publish(ctx, o.key, o.token, o.from, failedMarker)
	}
}

// renewLock renews the lock of token every Lease/3 until the returned
// func is called.
func (d *Dedup) renewLock(key, token string) func() {
	lock := d.base(key) + ":lock"
	every := d.lease / 3
	var mu sync.Mutex
	stopped := false
	var t *time.Timer
	mu.Lock()
	t = time.AfterFunc(every, func() {
		ctx, cancel := context.WithTimeout(context.Background(), d.timeout)
		_, err := lockRenewScript.run(ctx, d.client, []string{lock}, token, ms(d.lease))
		cancel()
		if err != nil {
			d.done(context.Background(), d.errorf("renew: %w", err))
		}
		mu.Lock()
		if !stopped {
			t.Reset(every)
		}
		mu.Unlock()
	})
	mu.Unlock()
	return func() {
		mu.Lock()
		stopped = true
		t.Stop()
		mu.Unlock()
	}
}

func (d *Dedup) encode(ctx context.Context, out any, err error) []byte {
	if err != nil {
		return failedMarker
	}
	data, err := safeMarshal(d.codec, out)
	switch {
	case err != nil:
		d.report(ctx, d.errorf("encode: %w", err))
		return failedMarker
	case len(data) > d.max:
		d.report(ctx, d.errorf("result of %d bytes exceeds MaxValueBytes %d: %w", len(data), d.max, ErrTooLarge))
		return failedMarker
	}
	val := make([]byte, 1+len(data))
	val[0] = tagValue
	copy(val[1:], data)
	return val
}

// decode reads a published or cached value into out: failed when the
// leader failed; an error when the value is corrupt or too large.
func (d *Dedup) decode(val string, out any) (failed bool, err error) {
	switch {
	case len(val) == 0:
		return false, d.errorf("%w: empty value", ErrCorrupt)
	case len(val) > 1+d.max:
		return false, d.errorf("value larger than MaxValueBytes %d: %w", d.max, ErrTooLarge)
	case val == string(failedMarker):
		return true, nil
	case val[0] != tagValue:
		return false, d.errorf("%w: unknown tag %q", ErrCorrupt, val[0])
	}
	if err := safeUnmarshal(d.codec, []byte(val[1:]), out); err != nil {
		return false, d.errorf("%w: %w", ErrCorrupt, err)
	}
	return false, nil
}

func (d *Dedup) join(ctx context.Context, reason string) {
	d.joined.Add(1)
	if d.obs != nil {
		middleware.Emit(ctx, d.obs, middleware.Event{Kind: middleware.Joined, Concern: "redisstore", Name: d.name, Reason: reason})
	}
}

// DedupMiddleware returns a middleware that shares results through d: a
// call whose key(in) has a cached result (DedupConfig.TTL) returns it;
// else, if a call with the key is in flight in any process, it waits for
// that call's result; else it runs the stage as the leader and publishes
// its result. Put it inside dedup.Middleware, which collapses the calls
// within a process first, so that one call per process reaches Redis:
//
//	g, _ := dedup.New(dedup.Config{Name: "users"})
//	d, _ := redisstore.NewDedup(redisstore.DedupConfig{Client: rdb, Name: "users", TTL: time.Minute})
//	get := middleware.Apply(fetchUser,
//		dedup.Middleware[int, User](g, func(id int) int { return id }),
//		redisstore.DedupMiddleware[int, User](d, strconv.Itoa))
//
// Results are shared: each caller gets its own decoded copy. Errors are
// not: a follower of a leader that failed runs the stage itself and gets
// its own error; errors are never cached. The stage never fails because
// of Redis: when Redis is skipped, fails, or holds a value that is
// corrupt or too large, the call runs the stage unshared (StoreFailed
// says why). A call runs the stage itself at most MaxWait plus one Timeout
// after it started, and stops waiting when its context ends.
//
// A cache hit costs one round trip; a leader two (the lock, the
// publication) plus one renewal per Lease/3 while its stage runs; a
// follower one per look at the result (after 1ms, then doubling up to
// 20ms). Nothing runs in the background but the leader's renewal timer.
//
// It panics if d or key is nil.
func DedupMiddleware[In, Out any](d *Dedup, key func(In) string) middleware.Middleware[In, Out] {
	if d == nil {
		panic("redisstore: nil *Dedup (was NewDedup's error ignored?)")
	}
	if key == nil {
		panic("redisstore: DedupMiddleware needs a non-nil key func")
	}
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		next = middleware.Apply(next)
		return func(ctx context.Context, in In) (Out, error) {
			if err := ctx.Err(); err != nil {
				var zero Out
				return zero, err
			}
			return fly(ctx, d, key(in), in, next)
		}
	}
}

// fly serves one call: from the cache, a leader's result, or by leading
// or running the stage alone.
func fly[In, Out any](ctx context.Context, d *Dedup, key string, in In, next middleware.Stage[In, Out]) (Out, error) {
	var zero Out
	if d.skip(ctx) {
		return next(ctx, in)
	}
	deadline := time.Now().Add(d.maxWait)
	token := d.token()
	leader := "" // the token of the leader followed
	pause := firstPoll
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		kind, val, err := d.step(ctx, key, token, leader)
		if err != nil {
			if err := ended(ctx); err != nil {
				return zero, err
			}
			d.done(ctx, err)
			// The step may have taken the lock: run as a leader that
			// publishes (and so releases it) if Redis is back by then.
			return lead(ctx, d, key, token, leader, in, next, false)
		}
		d.done(ctx, nil)
		if d.norphans.Load() > 0 {
			d.releaseOrphans(ctx) // Redis answers again: free what a hiccup left held
		}
		switch kind {
		case stepLead:
			return lead(ctx, d, key, token, leader, in, next, true)
		case stepCached, stepResult:
			var out Out
			failed, err := d.decode(val, &out)
			switch {
			case err != nil && kind == stepCached:
				// Run and overwrite the entry (the lock is not ours: it
				// stays as it is).
				d.report(ctx, err)
				return lead(ctx, d, key, token, "", in, next, false)
			case err != nil:
				d.report(ctx, err)
				return next(ctx, in)
			case failed:
				return next(ctx, in)
			}
			reason := ""
			if kind == stepCached {
				reason = "cache"
			}
			d.join(ctx, reason)
			return out, nil
		case stepTooLarge:
			d.report(ctx, d.errorf("leader's result of %s bytes exceeds MaxValueBytes %d: %w", val, d.max, ErrTooLarge))
			return next(ctx, in)
		}
		// stepWait: val holds the lock. It may be a new leader, which
		// took over from the one followed so far; MaxWait counts from the
		// call's start, whoever leads.
		leader = val
		left := time.Until(deadline)
		if left <= 0 {
			if err := ended(ctx); err != nil {
				return zero, err // the caller left while it waited
			}
			return next(ctx, in)
		}
		p := min(pause, left)
		pause = min(2*pause, pollInterval)
		if timer == nil {
			timer = time.NewTimer(p)
		} else {
			timer.Reset(p)
		}
		select {
		case <-timer.C:
		case <-ctx.Done():
			return zero, ctx.Err()
		}
	}
}

// lead runs the stage as the leader (renewing its lock while it runs, if
// renew) and publishes its outcome: the encoded result, or failedMarker
// for an error, a result that cannot be shared, a panic or
// runtime.Goexit, so that followers never wait on a leader that is gone
// while its process lives. from is the token of the leader it took over
// from, if any: its followers get the result too.
func lead[In, Out any](ctx context.Context, d *Dedup, key, token, from string, in In, next middleware.Stage[In, Out], renew bool) (out Out, err error) {
	stop := func() {}
	if renew {
		stop = d.renewLock(key, token)
	}
	returned := false
	defer func() {
		stop()
		if !returned { // a panic or runtime.Goexit; not recovered
			d.publish(ctx, key, token, from, failedMarker)
		}
	}()
	out, err = next(ctx, in)
	returned = true
	stop()
	d.publish(ctx, key, token, from, d.encode(ctx, out, err))
	return out, err
}

// safeMarshal and safeUnmarshal run a codec, turning a panic into an error.
func safeMarshal(c Codec, v any) (data []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("codec panicked: %v", r)
		}
	}()
	return c.Marshal(v)
}

func safeUnmarshal(c Codec, data []byte, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("codec panicked: %v", r)
		}
	}()
	return c.Unmarshal(data, v)
}

// ended is ctx.Err(), or context.DeadlineExceeded once ctx's deadline has
// passed even if its timer has not fired yet: go-redis puts the deadline
// on the socket and can report its i/o timeout first, and a caller whose
// deadline has passed must not have the stage run for it.
func ended(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}
