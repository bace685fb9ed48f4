package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/budget"
	"github.com/redis/go-redis/v9"
)

// minBudgetWindow is the shortest budget.Config.Window a BudgetStore
// accepts: its buckets (Window/10) are on the server's clock, which a
// round trip and clock resolution make meaningless much below a
// millisecond.
const minBudgetWindow = 10 * time.Millisecond

// maxBudgetFields bounds the fields the script reads from a budget's hash:
// it holds at most two per bucket of the window (deposits and tokens)
// plus the buckets of one more window waiting to be deleted, so a hash
// with more is not one the package wrote.
const maxBudgetFields = 64

// BudgetStoreConfig configures a [BudgetStore]. Client and Name are
// required; the zero value of every other field means its default.
type BudgetStoreConfig struct {
	// Client is the Redis client: a single-node, Sentinel or Cluster
	// client. It must bound commands by their context
	// (ContextTimeoutEnabled); see the package doc, "Client options".
	Client redis.UniversalClient
	// Name is the budget's shared name: every BudgetStore with the same
	// Client (server), Prefix and Name shares one window of calls and
	// extra attempts. It names the store in events and in its key,
	// prefix:{budget:<Name>}:window, and must not contain '{' or '}'.
	Name string
	// Prefix starts every key. Default "brace". It must not contain '{'
	// or '}'.
	Prefix string
	// Timeout bounds each operation, whatever the caller's context says.
	// Default 100ms.
	Timeout time.Duration
	// Observer receives the store's events (Concern "redisstore"):
	// StoreFailed for every failed operation, StateChanged when the
	// client's health changes. The budget emits its own StoreFailed
	// (Concern "budget") for the same failure.
	Observer middleware.Observer
}

// BudgetStore is a [budget.Store] in Redis: the retry budget of a fleet.
// Every budget, in any process, whose store has the same server, prefix
// and name draws from one window of the fleet's calls (deposits) and extra
// attempts (tokens), on the server's clock. Build it with
// [NewBudgetStore] and set it as budget.Config.Store; budget.New binds it
// to the budget's policy. It is safe for concurrent use.
//
// Each Take is one Lua script, one round trip (two when the server lost
// the script), bounded by Timeout and never retried by go-redis. A budget
// calls Take only from Acquire (an extra attempt is about to be made) and
// from its background flush (at most one per budget.Config.FlushAfter),
// never from a call that makes no extra attempt.
type BudgetStore struct {
	*common
	key string

	mu     sync.Mutex
	policy *budget.Policy
}

// NewBudgetStore returns the store of the retry budget called cfg.Name.
func NewBudgetStore(cfg BudgetStoreConfig) (*BudgetStore, error) {
	c, err := newCommon("budget", cfg.Client, cfg.Name, cfg.Prefix, cfg.Timeout, cfg.Observer)
	if err != nil {
		return nil, err
	}
	return &BudgetStore{common: c, key: c.key("budget", "window")}, nil
}

// Stats returns the store's counts: StoreFailures and Down. It does no
// I/O.
func (s *BudgetStore) Stats() Stats {
	return Stats{StoreFailures: s.failures.Load(), Down: s.health.isDown()}
}

// Bind implements [budget.Store]: budget.New calls it with the budget's
// policy. Binding again with an equal policy (a second budget in the
// process sharing the store) is allowed; another policy is an error, and
// so is a Window shorter than 10ms.
func (s *BudgetStore) Bind(p budget.Policy) error {
	if p.Window < minBudgetWindow {
		return s.errorf("Window must be at least %v for a shared budget, got %v", minBudgetWindow, p.Window)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.policy != nil {
		if *s.policy != p {
			return s.errorf("already bound to another policy (%+v); every budget sharing a store must have the same policy", *s.policy)
		}
		return nil
	}
	s.policy = &p
	return nil
}

func (s *BudgetStore) bound() *budget.Policy {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.policy
}

var _ budget.Store = (*BudgetStore)(nil)

var errBudgetUnbound = fmt.Errorf("redisstore: budget store used before Bind (give it to budget.New as Config.Store)")

// Take implements [budget.Store]: it adds the batch of deposits, counted
// from the server's time minus age, to the fleet's window and, when token
// is true, takes one token if the fleet's tokens in the window stay within
// Ratio × deposits + MinPerSecond × Window. While the client is down (see
// [ErrStoreDown]) it returns at once without sending anything.
func (s *BudgetStore) Take(ctx context.Context, deposits int64, age time.Duration, token bool) (bool, error) {
	p := s.bound()
	if p == nil {
		return false, errBudgetUnbound
	}
	if deposits < 0 || age < 0 {
		return false, s.errorf("Take: deposits and age must not be negative, got %d, %v", deposits, age)
	}
	if s.skip(ctx) {
		return false, s.downErr()
	}
	ok, err := s.take(ctx, p, deposits, age, token)
	s.done(ctx, err)
	return ok, err
}

func (s *BudgetStore) take(ctx context.Context, p *budget.Policy, deposits int64, age time.Duration, token bool) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	reserve := p.MinPerSecond * p.Window.Seconds()
	ttl := p.Window + time.Second
	v, err := budgetScript.run(ctx, s.client, []string{s.key},
		deposits, micros(age), b2i(token),
		strconv.FormatFloat(p.Ratio, 'g', -1, 64), strconv.FormatFloat(reserve, 'g', -1, 64),
		micros(p.Window/10), ms(ttl), maxBudgetFields)
	if err != nil {
		if redis.HasErrorPrefix(err, "BRACECORRUPT") {
			return false, s.errorf("%w: key %s: %s", ErrCorrupt, s.key, err.Error()[len("BRACECORRUPT "):])
		}
		return false, s.errorf("%w", err)
	}
	r, ok := v.([]any)
	if !ok || len(r) != 3 {
		return false, s.errorf("%w: unexpected script reply %v", ErrCorrupt, v)
	}
	granted, ok := r[0].(int64)
	if !ok || granted < 0 || granted > 1 {
		return false, s.errorf("%w: unexpected script reply %v", ErrCorrupt, v)
	}
	return granted == 1, nil
}

// Reset deletes the shared window: every budget sharing it starts again
// from no calls and no tokens taken. It is meant for tests and operators.
func (s *BudgetStore) Reset(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	start := time.Now()
	if err := s.client.Del(ctx, s.key).Err(); err != nil {
		return s.errorf("reset: %w", withCause(s.client, ctxErr(ctx, err), start))
	}
	return nil
}

// budgetScript is one Take, on the server's clock in microseconds.
//
// KEYS[1] is the budget's hash: field d<n> holds the deposits counted in
// bucket n (n = floor(µs / width), width = Window/10), t<n> the tokens
// taken in it. The window is the 10 buckets n-9 .. n. A run deletes the
// buckets that have left the window (and any more than a window in the
// future: a clock that jumped), so the hash holds at most about 20 fields;
// one with more than ARGV[8] fields, a field name or value the script did
// not write, or a key of another type is an error reply (BRACECORRUPT, or
// Redis's WRONGTYPE) and nothing is changed: the budget then decides
// locally, and the store reports it.
//
// ARGV: deposits, age (µs), token (0/1), ratio, reserve (tokens per
// window), width (µs), ttl (ms), field bound. The batch of deposits is
// counted in the bucket of (now - age), never later, and not at all when
// that bucket has left the window. The token is granted iff
// taken + 1 <= ratio × deposits + reserve (+1e-9 against float rounding,
// as in the local budget). The key's expiry (Window + 1s) is refreshed
// by every run that writes.
//
// The reply: granted (0/1), deposits and tokens in the window.
var budgetScript = newScript(`
redis.replicate_commands()
local key = KEYS[1]
local d, age, token = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local ratio, reserve, width = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local ttl, maxf = ARGV[7], tonumber(ARGV[8])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = math.floor(now / width)
local ty = redis.call('TYPE', key).ok
if ty ~= 'hash' and ty ~= 'none' then
	return redis.error_reply('BRACECORRUPT key of type ' .. ty)
end
local hl = redis.call('HLEN', key)
if hl > maxf then
	return redis.error_reply('BRACECORRUPT ' .. hl .. ' fields')
end
local h = redis.call('HGETALL', key)
local D, T = 0, 0
local del = {}
for i = 1, #h, 2 do
	local f, v = h[i], h[i + 1]
	local kind, num = string.match(f, '^([dt])(-?%d+)$')
	local c = tonumber(v)
	if not kind or not c or c ~= math.floor(c) or c < 0 or string.len(num) > 20 then
		return redis.error_reply('BRACECORRUPT field ' .. string.sub(f .. '=' .. v, 1, 64))
	end
	num = tonumber(num)
	if num <= n - 10 or num > n + 10 then
		del[#del + 1] = f
	elseif kind == 'd' then
		D = D + c
	else
		T = T + c
	end
end
local wrote = false
if d > 0 then
	local b = math.floor((now - age) / width)
	if b > n - 10 then
		redis.call('HINCRBY', key, 'd' .. string.format('%d', b), d)
		D = D + d
		wrote = true
	end
end
local granted = 0
if token == 1 and T + 1 <= ratio * D + reserve + 1e-9 then
	redis.call('HINCRBY', key, 't' .. string.format('%d', n), 1)
	T = T + 1
	granted = 1
	wrote = true
end
if #del > 0 then
	redis.call('HDEL', key, unpack(del))
end
if wrote then
	redis.call('PEXPIRE', key, ttl)
end
return {granted, D, T}
`)
