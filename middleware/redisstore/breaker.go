package redisstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/redis/go-redis/v9"
)

// defaultBreakerTTL is how long an unused breaker's state lives in Redis
// when BreakerStoreConfig.TTL is zero.
const defaultBreakerTTL = time.Hour

// BreakerStoreConfig configures a [BreakerStore]. Client and Name are
// required; the zero value of every other field means its default.
type BreakerStoreConfig struct {
	// Client is the Redis client: a single-node, Sentinel or Cluster
	// client. It must bound commands by their context
	// (ContextTimeoutEnabled); see the package doc, "Client options".
	Client redis.UniversalClient
	// Name is the breaker's shared name: every BreakerStore with the same
	// Client (server), Prefix and Name shares one state. It names the
	// store in events and in its key, prefix:{breaker:<Name>}:state, and
	// must not contain '{' or '}'.
	Name string
	// Prefix starts every key. Default "brace". It must not
	// contain '{' or '}'.
	Prefix string
	// Timeout bounds each Update, whatever the caller's context says.
	// Default 100ms.
	Timeout time.Duration
	// TTL is how long the state lives after its last change. Default
	// 1h. The store never lets it expire sooner than
	// twice the open timeout and the window, nor before an open breaker's
	// open time has passed.
	TTL time.Duration
	// Observer receives the store's events: StoreFailed for every failed
	// operation (with its cause), StateChanged when the client's health
	// goes "up" → "down" or back (Concern "redisstore").
	Observer middleware.Observer

	// Quorum, when positive, turns on quorum mode: the shared breaker
	// opens from closed only when at least Quorum distinct processes see
	// the downstream failing now (each by its own results, by the
	// breaker's own rule: Threshold consecutive failures, or the failure
	// or slow-call rate over the window), so one process with a bad
	// network path cannot open the breaker for the fleet. Results still
	// count toward one shared state, and half-open probes are global as
	// in the default mode. Zero means no count quorum. See
	// docs/distributed.md, "Quorum mode".
	Quorum int
	// QuorumFraction, when positive, is a quorum in proportion to the
	// live processes (those whose last store operation is less than
	// ProcessTTL old on the server's clock): the breaker opens only when
	// at least ceil(QuorumFraction × live) processes see the downstream
	// failing. With Quorum also set, both must hold. It must be in
	// [0, 1]; zero means none.
	QuorumFraction float64
	// Process identifies this process in quorum mode. Default: the host
	// name, the process id and 16 random hex digits, one value per
	// process. Stores that simulate several processes in one (tests)
	// set it. At most 1024 bytes.
	Process string
	// ProcessTTL is how long, on the server's clock, a process's verdict
	// ("failing") and its liveness last after its last store operation:
	// a process that died or stopped calling ages out after it. Default
	// 10s.
	ProcessTTL time.Duration
}

// defaultProcessTTL is BreakerStoreConfig.ProcessTTL's default.
const defaultProcessTTL = 10 * time.Second

// maxProcess bounds BreakerStoreConfig.Process.
const maxProcess = 1024

// processID is the default BreakerStoreConfig.Process: one per process.
var processID = sync.OnceValue(func() string {
	host, _ := os.Hostname()
	return host + ":" + strconv.Itoa(os.Getpid()) + ":" + randomID()
})

// BreakerStore is a [breaker.Store] in Redis: the state of one breaker,
// shared by every breaker, in any process, that uses a store with the same
// server, prefix and name. Build it with [NewBreakerStore] and set it as
// breaker.Config.Store; breaker.New binds it to the breaker's policy. It
// is safe for concurrent use.
//
// It is a [breaker.KeyedStore]: [BreakerStore.Key] returns the store of
// one key's breaker (breaker.Keyed). With BreakerStoreConfig.Quorum or
// QuorumFraction it is in quorum mode: the shared breaker opens only when
// enough distinct processes see the downstream failing.
type BreakerStore struct {
	*common
	key string
	ttl time.Duration
	q   *quorum // nil unless quorum mode

	votesK, liveK string // quorum mode's sorted sets (see votesKey)

	mu     sync.Mutex
	policy *breaker.Policy // set by Bind
	vote   voter           // this process's verdict (quorum mode)

	// now, when set (tests only), replaces the server's clock: it returns
	// microseconds.
	now func() int64
}

// quorum is the quorum mode's configuration.
type quorum struct {
	n       int
	frac    float64
	process string
	ttl     time.Duration
}

// NewBreakerStore returns the store of the breaker called cfg.Name.
func NewBreakerStore(cfg BreakerStoreConfig) (*BreakerStore, error) {
	switch {
	case cfg.TTL < 0:
		return nil, fmt.Errorf("redisstore: TTL must not be negative, got %v", cfg.TTL)
	case cfg.Quorum < 0:
		return nil, fmt.Errorf("redisstore: Quorum must not be negative, got %d", cfg.Quorum)
	case !(cfg.QuorumFraction >= 0 && cfg.QuorumFraction <= 1):
		return nil, fmt.Errorf("redisstore: QuorumFraction must be between 0 and 1, got %v", cfg.QuorumFraction)
	case cfg.ProcessTTL < 0:
		return nil, fmt.Errorf("redisstore: ProcessTTL must not be negative, got %v", cfg.ProcessTTL)
	case cfg.ProcessTTL > 0 && cfg.ProcessTTL < time.Millisecond:
		return nil, fmt.Errorf("redisstore: ProcessTTL must be at least 1ms, got %v", cfg.ProcessTTL)
	case len(cfg.Process) > maxProcess:
		return nil, fmt.Errorf("redisstore: Process must be at most %d bytes, got %d", maxProcess, len(cfg.Process))
	}
	c, err := newCommon("breaker", cfg.Client, cfg.Name, cfg.Prefix, cfg.Timeout, cfg.Observer)
	if err != nil {
		return nil, err
	}
	if cfg.TTL == 0 {
		cfg.TTL = defaultBreakerTTL
	}
	s := &BreakerStore{common: c, key: c.key("breaker", "state"), ttl: cfg.TTL}
	if cfg.Quorum > 0 || cfg.QuorumFraction > 0 {
		q := &quorum{n: cfg.Quorum, frac: cfg.QuorumFraction, process: cfg.Process, ttl: cfg.ProcessTTL}
		if q.process == "" {
			q.process = processID()
		}
		if q.ttl == 0 {
			q.ttl = defaultProcessTTL
		}
		s.q = q
	}
	return s.withKeys(), nil
}

// Key implements [breaker.KeyedStore]: it returns the store of the
// breaker for key (one per host, per tenant, ...), a state of its own
// shared by every process whose store has the same server, prefix, name
// and key, with the quorum mode, TTL, Timeout and Observer of s. Any
// string is a key, the empty one too: the key is length-prefixed in the
// Redis key, prefix:{bkey:<len(name)>:<name>:<len(key)>:<key>}:state, so
// no two (name, key) pairs share a Redis key, no keyed state shares one
// with an unkeyed breaker's, and all the Redis keys of one key's breaker
// are in one Cluster slot. It never fails and sends nothing; the
// returned store's StoreFailures count in s's Stats.
func (s *BreakerStore) Key(key string) (breaker.Store, error) {
	base := s.prefix + ":{bkey:" + strconv.Itoa(len(s.name)) + ":" + s.name + ":" + strconv.Itoa(len(key)) + ":" + key + "}:"
	return (&BreakerStore{common: s.common, key: base + "state", ttl: s.ttl, q: s.q, now: s.now}).withKeys(), nil
}

// votesKey and liveKey are the quorum mode's sorted sets: the processes
// that see the downstream failing, and the live processes, each scored
// with its expiry on the server's clock (µs). They share the state key's
// hash tag, so one script can use all three on a Cluster.
func (s *BreakerStore) votesKey() string { return s.votesK }
func (s *BreakerStore) liveKey() string  { return s.liveK }

// withKeys sets the quorum keys from the state key (…:state).
func (s *BreakerStore) withKeys() *BreakerStore {
	base := strings.TrimSuffix(s.key, "state")
	s.votesK, s.liveK = base+"votes", base+"live"
	return s
}

// Stats returns the store's counts: StoreFailures and Down. It does no
// I/O.
func (s *BreakerStore) Stats() Stats {
	return Stats{StoreFailures: s.failures.Load(), Down: s.health.isDown()}
}

// Bind implements [breaker.Store]: breaker.New calls it once with the
// breaker's policy, before any Update. Binding again with an equal policy
// (a second breaker in the process sharing the store) is allowed; with a
// different one it is an error, since every breaker sharing a state must
// apply the same rules.
func (s *BreakerStore) Bind(p breaker.Policy) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.policy != nil {
		if *s.policy != p {
			return fmt.Errorf("redisstore: breaker store %q is already bound to another policy (%+v); every breaker sharing a store must have the same policy", s.name, *s.policy)
		}
		return nil
	}
	s.policy = &p
	return nil
}

func (s *BreakerStore) bound() *breaker.Policy {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.policy
}

var errUnbound = errors.New("redisstore: breaker store used before Bind (give it to breaker.New as Config.Store)")

// Update implements [breaker.Store]: one atomic script, one round trip
// (two when the server lost the script), bounded by the configured
// Timeout. It is never retried by go-redis, so a result is counted at most
// once; an error means the operation may not have been applied. While the
// client is down (see [ErrStoreDown]) it returns at once without sending
// anything.
func (s *BreakerStore) Update(ctx context.Context, op breaker.Op) (breaker.Snapshot, error) {
	p := s.bound()
	if p == nil {
		return breaker.Snapshot{}, errUnbound
	}
	if s.skip(ctx) {
		return breaker.Snapshot{}, s.downErr()
	}
	snap, err := s.update(ctx, p, op)
	s.done(ctx, err)
	return snap, err
}

func (s *BreakerStore) update(ctx context.Context, p *breaker.Policy, op breaker.Op) (breaker.Snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	ttl := max(s.ttl, 2*p.OpenTimeout, 2*time.Duration(p.Buckets)*p.BucketWidth)
	now := ""
	if s.now != nil {
		now = strconv.FormatInt(s.now(), 10)
	}
	keys := []string{s.key}
	args := []any{int(op.Kind), op.Gen, b2i(op.Probe), op.Successes, op.Failures, op.Ignored, op.Slow,
		micros(op.OpenFor), int(op.State),
		p.Threshold, strconv.FormatFloat(p.FailureRate, 'g', -1, 64), strconv.FormatFloat(p.SlowCallRate, 'g', -1, 64),
		p.MinCalls, p.Buckets, micros(p.BucketWidth), micros(p.OpenTimeout), p.Probes, p.SuccessThreshold,
		ttl.Milliseconds(), now, micros(p.ProbeLease)}
	if s.q != nil {
		s.mu.Lock()
		vote := s.vote.apply(p, &op, s.clock())
		s.mu.Unlock()
		keys = append(keys, s.votesKey(), s.liveKey())
		args = append(args, s.q.n, strconv.FormatFloat(s.q.frac, 'g', -1, 64), s.q.process, micros(s.q.ttl), vote)
	}
	v, err := breakerScript.run(ctx, s.client, keys, args...)
	if err != nil {
		if redis.HasErrorPrefix(err, "BRACECORRUPT") {
			return breaker.Snapshot{}, s.errorf("%w: key %s: %s", ErrCorrupt, s.key, err.Error()[len("BRACECORRUPT "):])
		}
		return breaker.Snapshot{}, s.errorf("%w", err)
	}
	return parseSnapshot(v, p, s)
}

// parseSnapshot validates and converts the script's reply.
func parseSnapshot(v any, p *breaker.Policy, s *BreakerStore) (breaker.Snapshot, error) {
	bad := func() (breaker.Snapshot, error) {
		return breaker.Snapshot{}, s.errorf("%w: unexpected script reply %v", ErrCorrupt, v)
	}
	r, ok := v.([]any)
	if !ok || len(r) != 12 {
		return bad()
	}
	n := make([]int64, len(r))
	for i, x := range r {
		if n[i], ok = x.(int64); !ok {
			return bad()
		}
	}
	if n[0] < 0 || n[0] > int64(breaker.ForcedClosed) || n[1] < 1 || n[8] < 0 || n[11] < 0 {
		return bad()
	}
	for _, c := range n[2:8] {
		if c < 0 {
			return bad()
		}
	}
	snap := breaker.Snapshot{
		State: breaker.State(n[0]),
		Gen:   uint64(n[1]),
		Counts: breaker.Counts{
			Successes: int(n[2]), Failures: int(n[3]), Slow: int(n[4]),
			ConsecutiveFailures: int(n[5]), Probes: int(n[6]), ProbeSuccesses: int(n[7]),
		},
		RetryAfter: time.Duration(n[8]) * time.Microsecond,
		Admitted:   n[9] == 1,
		Probe:      n[10] == 1,
		Seq:        uint64(n[11]),
	}
	return snap, nil
}

// Reset deletes the shared state (in quorum mode also the votes and the
// live processes): every breaker using it reads it as closed at
// generation 1 on its next store operation. It is meant for
// tests and operators; breakers never call it.
func (s *BreakerStore) Reset(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	start := time.Now()
	keys := []string{s.key}
	if s.q != nil {
		keys = append(keys, s.votesKey(), s.liveKey())
	}
	if err := s.client.Del(ctx, keys...).Err(); err != nil {
		return s.errorf("reset: %w", withCause(s.client, ctxErr(ctx, err), start))
	}
	return nil
}

var _ breaker.KeyedStore = (*BreakerStore)(nil)

// clock returns the local time for the process's own verdict: the test
// clock in µs when set, else the monotonic clock.
func (s *BreakerStore) clock() time.Duration {
	if s.now != nil {
		return time.Duration(s.now()) * time.Microsecond
	}
	return time.Since(epoch)
}

var epoch = time.Now()

// voter is this process's own verdict in quorum mode: does the
// downstream fail by the breaker's rule, counting only this process's
// results of the current generation? Its counts start again when the
// generation of the results changes (the shared breaker changed state).
// The window of rate mode is on the local clock: only this process's
// results are in it, and only the verdict leaves the process.
type voter struct {
	gen     uint64
	consec  int
	buckets []vbucket
}

type vbucket struct {
	n          int64
	s, f, slow int
}

// apply records op's results and returns the verdict to send: 1 failing,
// 0 not, -1 unchanged (an op without results of a closed breaker).
func (v *voter) apply(p *breaker.Policy, op *breaker.Op, now time.Duration) int {
	if op.Kind != breaker.OpResult || op.Probe {
		return -1
	}
	if op.Gen != v.gen {
		v.gen, v.consec = op.Gen, 0
		clear(v.buckets)
	}
	if p.Threshold > 0 {
		if op.Successes > 0 {
			v.consec = 0
		}
		v.consec += op.Failures
		return b2i(v.consec >= p.Threshold)
	}
	if len(v.buckets) != p.Buckets {
		v.buckets = make([]vbucket, p.Buckets)
	}
	n := int64(now / max(p.BucketWidth, 1))
	b := &v.buckets[n%int64(len(v.buckets))]
	if b.n != n {
		*b = vbucket{n: n}
	}
	b.s, b.f, b.slow = b.s+op.Successes, b.f+op.Failures, b.slow+op.Slow
	var cs, cf, cw int
	for _, b := range v.buckets {
		if b.n > n-int64(len(v.buckets)) && b.n <= n {
			cs, cf, cw = cs+b.s, cf+b.f, cw+b.slow
		}
	}
	calls := cs + cf
	if calls == 0 || calls < p.MinCalls {
		return 0
	}
	return b2i(float64(cf) >= p.FailureRate*float64(calls) || (p.SlowCallRate > 0 && float64(cw) >= p.SlowCallRate*float64(calls)))
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// breakerScript is breaker's machine.step (middleware/breaker/state.go) in
// Lua, on the server's clock in microseconds. It must stay in step with
// the Go code: TestConformance runs both on the same operations.
//
// KEYS[1] is the breaker's hash: st state, g generation, u open deadline,
// p probes taken, k probe successes, l the probe lease's end, c
// consecutive failures, s and f successes and failures of the generation
// (consecutive mode and non-closed states), q the sequence number of the
// last change, sh the window's shape, and b<i> the window's bucket i as
// "number,successes,failures,slow". A field that does not parse, or a
// state that is not one of the five, is an error reply (BRACECORRUPT):
// the breaker then uses its local state, and the store reports it.
//
// Probe slots are leases on the server's clock (the probe lease rule): an
// OpAcquire in half-open state that finds every slot taken and the lease
// over (now >= l) takes back the slots of probes that have not reported
// (p = k); an admitted probe sets l = now + ProbeLease. So no lost reply,
// crashed holder or lost slot keeps the breaker half-open for longer than
// ProbeLease.
//
// The key's expiry is refreshed only by a run that changes the state, so
// rejections alone never keep a state alive.
//
// Snapshot.Seq: every run that changes the hash stores q = max(q + 1,
// now), so it grows with each change and, being at least the server's time
// in µs, also across the key expiring or being deleted. A run that changes
// nothing returns q unchanged, or now - 1 when there is no key. In µs
// since 1970, q stays exactly representable as a Lua double (2^53) until
// the year 2255.
//
// The reply: state, gen, successes, failures, slow, consecutive, probes,
// probe successes, retry-after (µs), admitted, probe, seq.
var breakerScript = newScript(`
redis.replicate_commands()
local key = KEYS[1]
local kind, opgen, probe = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local S, F, I, W = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local openfor, force = tonumber(ARGV[8]), tonumber(ARGV[9])
local threshold, failrate, slowrate = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])
local mincalls, nb, width = tonumber(ARGV[13]), tonumber(ARGV[14]), tonumber(ARGV[15])
local opentimeout, P, sthr, ttl = tonumber(ARGV[16]), tonumber(ARGV[17]), tonumber(ARGV[18]), tonumber(ARGV[19])
local plen = tonumber(ARGV[21])
local MAX = 9007199254740992
local now
if ARGV[20] ~= '' then
	now = tonumber(ARGV[20])
else
	local t = redis.call('TIME')
	now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local h = redis.call('HGETALL', key)
local m = {}
for i = 1, #h, 2 do m[h[i]] = h[i + 1] end
local bad
local function num(f, def, lo, hi)
	local v = m[f]
	if v == nil then return def end
	local n = tonumber(v)
	if n == nil or n ~= math.floor(n) or n < lo or n > hi then
		bad = bad or (f .. '=' .. v)
		return def
	end
	return n
end
local state, gen, untl = num('st', 0, 0, 4), num('g', 1, 1, MAX), num('u', 0, -MAX, MAX)
local probes, pok, consec = num('p', 0, 0, MAX), num('k', 0, 0, MAX), num('c', 0, 0, MAX)
local lease = num('l', 0, -MAX, MAX)
local succ, fail = num('s', 0, 0, MAX), num('f', 0, 0, MAX)
local seq = num('q', 0, 0, MAX)
local rate = threshold == 0
local shape = 'c'
if rate then shape = 'r:' .. nb .. ':' .. width end

-- The window: win[i] = {number, successes, failures, slow}; dirty[i]
-- marks buckets to write back (or delete, when win[i] is nil).
local win, dirty = {}, {}
if m.sh ~= shape then
	for f in pairs(m) do
		if string.sub(f, 1, 1) == 'b' then redis.call('HDEL', key, f) end
	end
elseif rate then
	for i = 0, nb - 1 do
		local v = m['b' .. i]
		if v then
			local a, b, c, d = string.match(v, '^(-?%d+),(%d+),(%d+),(%d+)$')
			if not a then
				bad = bad or ('b' .. i .. '=' .. v)
			else
				win[i] = {tonumber(a), tonumber(b), tonumber(c), tonumber(d)}
			end
		end
	end
end
if bad then return redis.error_reply('BRACECORRUPT field ' .. string.sub(bad, 1, 64)) end

-- Quorum mode (KEYS[2], KEYS[3] and ARGV[22..26] given): record this
-- process as live and its verdict, drop those whose time is over.
local qn, qfrac = tonumber(ARGV[22] or '0'), tonumber(ARGV[23] or '0')
local quorum = #KEYS == 3 and (qn > 0 or qfrac > 0)
local votes, live = 0, 0
if quorum then
	local vk, lk, pid, pttl, vote = KEYS[2], KEYS[3], ARGV[24], tonumber(ARGV[25]), tonumber(ARGV[26])
	for _, k in ipairs({vk, lk}) do
		local ty = redis.call('TYPE', k).ok
		if ty ~= 'zset' and ty ~= 'none' then
			return redis.error_reply('BRACECORRUPT key ' .. k .. ' of type ' .. ty)
		end
	end
	local cut = string.format('%d', now)
	local exp = string.format('%d', math.min(now + pttl, MAX))
	local pms = string.format('%d', math.ceil(pttl / 1000))
	redis.call('ZREMRANGEBYSCORE', vk, '-inf', cut)
	redis.call('ZREMRANGEBYSCORE', lk, '-inf', cut)
	redis.call('ZADD', lk, exp, pid)
	redis.call('PEXPIRE', lk, pms)
	if vote == 1 then
		redis.call('ZADD', vk, exp, pid)
		redis.call('PEXPIRE', vk, pms)
	elseif vote == 0 then
		redis.call('ZREM', vk, pid)
	end
	votes, live = redis.call('ZCARD', vk), redis.call('ZCARD', lk)
end
local function quorate()
	local need = math.max(qn, math.ceil(qfrac * live - 1e-9), 1)
	return votes >= need
end

local function counts()
	if rate and state == 0 then
		local cs, cf, cw = 0, 0, 0
		local n = math.floor(now / width)
		for i = 0, nb - 1 do
			local b = win[i]
			if b and b[1] > n - nb and b[1] <= n then
				cs, cf, cw = cs + b[2], cf + b[3], cw + b[4]
			end
		end
		return cs, cf, cw
	end
	return succ, fail, 0
end

local function setState(to)
	state, gen = to, gen + 1
	probes, pok, consec, succ, fail, lease = 0, 0, 0, 0, 0, 0
	if quorum then
		redis.call('DEL', KEYS[2])
		votes = 0
	end
	for i = 0, nb - 1 do
		if win[i] then win[i], dirty[i] = nil, true end
	end
end

local function open()
	local d = opentimeout
	if openfor > 0 then d = openfor end
	setState(1)
	untl = math.min(now + d, MAX)
end

local function bucketAt()
	local n = math.floor(now / width)
	local i = n % nb
	local b = win[i]
	if not b or b[1] ~= n then
		b = {n, 0, 0, 0}
		win[i] = b
	end
	dirty[i] = true
	return b
end

local function record()
	if state == 2 then
		if probe ~= 1 then return end
		if F > 0 then
			fail = fail + F
			open()
		elseif S > 0 then
			pok = pok + 1
			if pok >= sthr then setState(0) end
		elseif I > 0 and probes > pok then
			probes = probes - 1
		end
	elseif state == 4 then
		succ, fail = succ + S, fail + F
	elseif state == 0 then
		if not rate then
			succ, fail = succ + S, fail + F
			if S > 0 then consec = 0 end
			consec = consec + F
			if quorum then
				if F > 0 and quorate() then open() end
			elseif consec >= threshold then
				open()
			end
			return
		end
		local b = bucketAt()
		b[2], b[3], b[4] = b[2] + S, b[3] + F, b[4] + W
		if F == 0 and W == 0 then return end
		if quorum then
			if quorate() then open() end
			return
		end
		local cs, cf, cw = counts()
		local calls = cs + cf
		if calls < mincalls or calls == 0 then return end
		if cf >= failrate * calls or (slowrate > 0 and cw >= slowrate * calls) then open() end
	end
end

if state == 1 and now >= untl then setState(2) end
local admitted, isprobe = 0, 0
if kind == 1 then
	if state == 0 or state == 4 then
		admitted = 1
	elseif state == 2 then
		if probes >= P and now >= lease then probes = pok end
		if probes < P then
			probes = probes + 1
			lease = math.min(now + plen, MAX)
			admitted, isprobe = 1, 1
		end
	end
elseif kind == 2 then
	if opgen == gen then record() end
elseif kind == 3 then
	if force == 0 or force == 3 or force == 4 then setState(force) end
end

-- Write back what changed; a breaker that was never used and did not
-- change leaves no key.
local vals = {st = state, g = gen, u = untl, p = probes, k = pok, c = consec, s = succ, f = fail, l = lease}
local set = {}
for f, v in pairs(vals) do
	if tonumber(m[f] or (f == 'g' and 1 or 0)) ~= v then
		set[#set + 1] = f
		set[#set + 1] = string.format('%d', v)
	end
end
if m.sh ~= shape and (#set > 0 or next(dirty) ~= nil or #h > 0) then
	set[#set + 1] = 'sh'
	set[#set + 1] = shape
end
for i in pairs(dirty) do
	local b = win[i]
	if b then
		set[#set + 1] = 'b' .. i
		set[#set + 1] = string.format('%d,%d,%d,%d', b[1], b[2], b[3], b[4])
	else
		redis.call('HDEL', key, 'b' .. i)
	end
end
if #set > 0 then
	seq = math.max(seq + 1, now)
	set[#set + 1] = 'q'
	set[#set + 1] = string.format('%d', seq)
	redis.call('HSET', key, unpack(set))
	if state == 1 and untl > now then ttl = ttl + math.ceil((untl - now) / 1000) end
	redis.call('PEXPIRE', key, string.format('%d', math.min(ttl, MAX)))
elseif #h == 0 then
	seq = math.max(now - 1, 0)
end

local cs, cf, cw = counts()
local retry = 0
if state == 1 then retry = untl - now end
return {state, gen, cs, cf, cw, consec, probes, pok, retry, admitted, isprobe, seq}
`)
