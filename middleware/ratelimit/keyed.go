package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/brace-go/brace/middleware"
)

// DefaultMaxKeys is the number of keys a [Keyed] limiter tracks when
// KeyedConfig.MaxKeys is zero.
const DefaultMaxKeys = 10_000

// DefaultIdleTimeout is KeyedConfig.IdleTimeout's default.
const DefaultIdleTimeout = time.Minute

// KeyedConfig configures a [Keyed] limiter: every key (a tenant, a user, a
// client address) gets its own bucket with the same Rate, Burst and
// MaxWait, which mean what they mean in [Config].
type KeyedConfig[K comparable] struct {
	Rate    rate.Limit    // required, per key; see Config.Rate
	Burst   int           // per key; see Config.Burst
	MaxWait time.Duration // see Config.MaxWait

	// MaxKeys bounds the number of buckets kept. When a new key arrives
	// and the limiter is full, the least recently used key is forgotten.
	// Zero means DefaultMaxKeys.
	MaxKeys int

	// IdleTimeout is how long a key must go unused before it may be
	// forgotten, which happens only once its bucket has also refilled, so
	// forgetting never changes what a key is allowed. It keeps keys in
	// steady use from being dropped and re-created. Zero means
	// DefaultIdleTimeout.
	IdleTimeout time.Duration

	// OnLimited, if set, is called after each rejection with the key and
	// the delay the caller is told to wait. It is called outside any lock.
	OnLimited func(key K, delay time.Duration)

	// Logger, if set, receives a Warn record "ratelimit: limited" with the
	// attributes "key" and "delay" (and "name") for each rejection. Nil
	// means silent.
	Logger *slog.Logger

	// Name, if not empty, is added to log records as "name".
	Name string

	// Counter, if set, counts admitted and limited calls over all keys
	// (see [Counter]). Nil means no counting.
	Counter *Counter
}

// Keyed is a set of token buckets, one per key, bounded in number. A key
// unused for IdleTimeout whose bucket has refilled is indistinguishable
// from a new key, so it is forgotten, lazily, when a later call finds it at
// the cold end of the list; when MaxKeys keys are held, a new key evicts the
// least recently used one even if its bucket is not full. Nothing runs in
// the background. Keyed is safe for concurrent use.
type Keyed[K comparable] struct {
	s         settings
	maxKeys   int
	idle      time.Duration
	onLimited func(K, time.Duration)
	logger    *slog.Logger
	name      string
	counter   *Counter

	mu    sync.Mutex
	keys  map[K]*bucket[K]
	lru   bucket[K] // sentinel: lru.next is the most recently used
	count int
}

type bucket[K comparable] struct {
	key        K
	lim        *rate.Limiter
	used       time.Time // last Admit
	prev, next *bucket[K]
}

// NewKeyed returns a Keyed limiter for cfg, or an error naming the first
// invalid field.
func NewKeyed[K comparable](cfg KeyedConfig[K]) (*Keyed[K], error) {
	s, err := validate(cfg.Rate, cfg.Burst, cfg.MaxWait)
	if err != nil {
		return nil, err
	}
	switch {
	case cfg.MaxKeys < 0:
		return nil, fmt.Errorf("ratelimit: MaxKeys must not be negative, got %d", cfg.MaxKeys)
	case cfg.MaxKeys == 0:
		cfg.MaxKeys = DefaultMaxKeys
	}
	switch {
	case cfg.IdleTimeout < 0:
		return nil, fmt.Errorf("ratelimit: IdleTimeout must not be negative, got %v", cfg.IdleTimeout)
	case cfg.IdleTimeout == 0:
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	k := &Keyed[K]{
		s:         s,
		maxKeys:   cfg.MaxKeys,
		idle:      cfg.IdleTimeout,
		onLimited: cfg.OnLimited,
		logger:    cfg.Logger,
		name:      cfg.Name,
		counter:   cfg.Counter,
		keys:      make(map[K]*bucket[K]),
	}
	k.lru.next, k.lru.prev = &k.lru, &k.lru
	return k, nil
}

// Len returns the number of keys currently held.
func (k *Keyed[K]) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.count
}

// Admit takes a token from key's bucket. It returns nil when the call may
// go ahead, a *[LimitedError] when it is refused, and ctx.Err() when the
// context has ended, before or while waiting.
func (k *Keyed[K]) Admit(ctx context.Context, key K) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if k.s.limit == rate.Inf {
		k.counter.admit(nil)
		return nil
	}
	now := time.Now()
	// Tokens are taken under k.mu so that forgetting a full bucket can
	// never race with a call draining it: a forgotten key comes back with
	// exactly the tokens it had.
	k.mu.Lock()
	b := k.get(key, now)
	if b.lim.AllowN(now, 1) {
		k.mu.Unlock()
		k.counter.admit(nil)
		return nil
	}
	if k.s.maxWait == 0 {
		delay := delayFor(b.lim, now)
		k.mu.Unlock()
		return k.refuse(ctx, key, delay)
	}
	r := b.lim.ReserveN(now, 1)
	k.mu.Unlock()
	delay, ok := waitable(ctx, r, now, k.s.maxWait)
	if !ok {
		return k.refuse(ctx, key, delay)
	}
	err := sleep(ctx, r, delay)
	k.counter.admit(err)
	return err
}

// get returns key's bucket, creating it if needed, and marks it most
// recently used. It forgets at most one idle bucket per call, so the cost
// stays constant. k.mu is held.
func (k *Keyed[K]) get(key K, now time.Time) *bucket[K] {
	if b, ok := k.keys[key]; ok {
		b.used = now
		k.unlink(b)
		k.pushFront(b)
		k.forgetIdle(now, b)
		return b
	}
	k.forgetIdle(now, nil)
	if k.count >= k.maxKeys {
		k.remove(k.lru.prev)
	}
	b := &bucket[K]{key: key, lim: rate.NewLimiter(k.s.limit, k.s.burst), used: now}
	k.keys[key] = b
	k.count++
	k.pushFront(b)
	return b
}

// forgetIdle drops the least recently used bucket, unless it is keep, if
// it has been idle for k.idle and has refilled: a full bucket behaves
// exactly like a new one.
func (k *Keyed[K]) forgetIdle(now time.Time, keep *bucket[K]) {
	old := k.lru.prev
	if old == &k.lru || old == keep || now.Sub(old.used) < k.idle {
		return
	}
	if old.lim.TokensAt(now) >= float64(k.s.burst) {
		k.remove(old)
	}
}

func (k *Keyed[K]) remove(b *bucket[K]) {
	k.unlink(b)
	delete(k.keys, b.key)
	k.count--
}

func (k *Keyed[K]) unlink(b *bucket[K]) {
	b.prev.next, b.next.prev = b.next, b.prev
	b.prev, b.next = nil, nil
}

func (k *Keyed[K]) pushFront(b *bucket[K]) {
	b.prev, b.next = &k.lru, k.lru.next
	k.lru.next.prev = b
	k.lru.next = b
}

func (k *Keyed[K]) refuse(ctx context.Context, key K, delay time.Duration) error {
	k.counter.limit()
	if k.onLimited != nil {
		k.onLimited(key, delay)
	}
	if k.logger != nil {
		logLimited(ctx, k.logger, k.name, slog.Any("key", key), slog.Duration("delay", delay))
	}
	return &LimitedError{Delay: delay}
}

var errNilKeyFunc = errors.New("ratelimit: nil key func")

// PerKey returns a middleware that admits each call through the bucket of
// key(in). One Keyed limiter may guard stages of different input and
// output types as long as they map to the same key type. A nil k or key
// makes every call fail with an error rather than go unlimited.
func PerKey[In, Out any, K comparable](k *Keyed[K], key func(In) K) middleware.Middleware[In, Out] {
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		next = middleware.Apply(next)
		return func(ctx context.Context, in In) (Out, error) {
			var err error
			switch {
			case k == nil:
				err = errNilLimiter
			case key == nil:
				err = errNilKeyFunc
			default:
				err = k.Admit(ctx, key(in))
			}
			if err != nil {
				var zero Out
				return zero, err
			}
			return next(ctx, in)
		}
	}
}
