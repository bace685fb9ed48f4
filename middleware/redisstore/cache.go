package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/redis/go-redis/v9"
)

// DefaultMaxEntrySize bounds an encoded cache entry when
// CacheConfig.MaxEntrySize is zero: 1 MiB.
const DefaultMaxEntrySize = 1 << 20

// ErrEntryTooLarge is matched by the error reported for a result whose
// encoding exceeds MaxEntrySize (it is not stored) or an entry found in
// Redis that does (it is treated as a miss).
var ErrEntryTooLarge = errors.New("redisstore: cache entry too large")

// ErrCorruptEntry is matched by the error reported for an entry that does
// not decode; it is treated as a miss and overwritten by the next result.
var ErrCorruptEntry = errors.New("redisstore: corrupt cache entry")

var errNilCache = errors.New("redisstore: Cached needs a non-nil *Cache and key func")

// Codec encodes cached results. encoding/json's Marshal and Unmarshal have
// its shape; [JSON] is the default.
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// JSON is the default [Codec]: encoding/json.
var JSON Codec = jsonCodec{}

type jsonCodec struct{}

func (jsonCodec) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (jsonCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// CacheConfig configures a [Cache]. Only TTL has no default.
type CacheConfig struct {
	// TTL is how long a result stays cached. Required: it must be
	// positive (Redis must not keep results forever).
	TTL time.Duration
	// MaxEntrySize bounds an encoded result, in bytes. Default
	// [DefaultMaxEntrySize] (1 MiB).
	MaxEntrySize int
	// Codec encodes results. Default [JSON].
	Codec Codec
	// Prefix starts every key. Default [DefaultPrefix]. It must not
	// contain '{' or '}'.
	Prefix string
	// Timeout bounds each Redis command. Default [DefaultTimeout] (100ms).
	Timeout time.Duration
	// OnError, when set, is called for every error the cache turns into a
	// miss or a result not stored: Redis failing or timing out, an entry
	// that does not decode ([ErrCorruptEntry]), a result too large
	// ([ErrEntryTooLarge]) or that does not encode. It runs on the
	// caller's goroutine.
	OnError func(key string, err error)
	// Logger, when set, gets the same errors as warnings with the
	// attributes "name", "key" and "err". Nil is silent.
	Logger *slog.Logger
}

// Cache is a TTL cache of results of type Out in Redis, shared by every
// process that builds one with the same client, prefix and name. Entries
// are plain keys, prefix:cache:<name>:<key>, that Redis expires after TTL;
// on a Cluster they spread over the slots.
//
// A Cache never fails a call: anything that goes wrong — Redis down, slow
// or answering garbage, an entry written by an incompatible version, a
// codec that panics — is a miss (or a result not stored), reported through
// OnError and Logger. It is a dedup.Cache[string, Out]: give it to
// dedup.NewWithCache to collapse concurrent calls within a process and
// share results between processes, or serve a stage from it with
// [Cached]. It is safe for concurrent use.
type Cache[Out any] struct {
	common
	name    string
	ttl     time.Duration
	max     int
	codec   Codec
	onError func(string, error)
	log     *slog.Logger
}

// NewCache returns the cache called name.
func NewCache[Out any](client redis.UniversalClient, name string, cfg CacheConfig) (*Cache[Out], error) {
	switch {
	case cfg.TTL <= 0:
		return nil, fmt.Errorf("redisstore: TTL must be positive, got %v", cfg.TTL)
	case cfg.MaxEntrySize < 0:
		return nil, fmt.Errorf("redisstore: MaxEntrySize must not be negative, got %d", cfg.MaxEntrySize)
	}
	c, err := newCommon(client, name, cfg.Prefix, cfg.Timeout)
	if err != nil {
		return nil, err
	}
	if cfg.MaxEntrySize == 0 {
		cfg.MaxEntrySize = DefaultMaxEntrySize
	}
	if cfg.Codec == nil {
		cfg.Codec = JSON
	}
	return &Cache[Out]{common: c, name: name, ttl: cfg.TTL, max: cfg.MaxEntrySize, codec: cfg.Codec, onError: cfg.OnError, log: cfg.Logger}, nil
}

// Key returns the Redis key of the entry for key.
func (c *Cache[Out]) Key(key string) string { return c.prefix + ":cache:" + c.name + ":" + key }

// Get returns the cached result for key and true, or the zero Out and
// false on a miss. Errors are misses, reported through OnError and
// Logger. One round trip, bounded by Timeout.
func (c *Cache[Out]) Get(ctx context.Context, key string) (Out, bool) {
	var out Out
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	// GETRANGE reads at most one byte past the bound: enough to tell an
	// entry too large without transferring it.
	data, err := c.client.GetRange(ctx, c.Key(key), 0, int64(c.max)).Bytes()
	switch {
	case err != nil:
		c.report(ctx, key, fmt.Errorf("redisstore: cache %s: get: %w", c.name, ctxErr(ctx, err)))
		return out, false
	case len(data) == 0: // GETRANGE of a missing key
		return out, false
	case len(data) > c.max:
		c.report(ctx, key, fmt.Errorf("redisstore: cache %s: entry larger than MaxEntrySize %d: %w", c.name, c.max, ErrEntryTooLarge))
		return out, false
	}
	if err := safeUnmarshal(c.codec, data, &out); err != nil {
		var zero Out
		c.report(ctx, key, fmt.Errorf("redisstore: cache %s: %w: %w", c.name, ErrCorruptEntry, err))
		return zero, false
	}
	return out, true
}

// Set caches out for key for the cache's TTL. A result that does not
// encode or is larger than MaxEntrySize is not stored; that and Redis
// errors are reported through OnError and Logger. One round trip, bounded
// by Timeout.
func (c *Cache[Out]) Set(ctx context.Context, key string, out Out) {
	data, err := safeMarshal(c.codec, out)
	switch {
	case err != nil:
		c.report(ctx, key, fmt.Errorf("redisstore: cache %s: encode: %w", c.name, err))
		return
	case len(data) > c.max:
		c.report(ctx, key, fmt.Errorf("redisstore: cache %s: entry of %d bytes exceeds MaxEntrySize %d: %w", c.name, len(data), c.max, ErrEntryTooLarge))
		return
	case len(data) == 0:
		// An empty entry would read as a miss: such a codec cannot be
		// cached.
		c.report(ctx, key, fmt.Errorf("redisstore: cache %s: encode: codec produced no bytes", c.name))
		return
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if err := c.client.Set(ctx, c.Key(key), data, c.ttl).Err(); err != nil {
		c.report(ctx, key, fmt.Errorf("redisstore: cache %s: set: %w", c.name, ctxErr(ctx, err)))
	}
}

func (c *Cache[Out]) report(ctx context.Context, key string, err error) {
	if c.log != nil {
		c.log.LogAttrs(ctx, slog.LevelWarn, "redisstore: cache error; treated as a miss",
			slog.String("name", c.name), slog.String("key", key), slog.Any("err", err))
	}
	if c.onError != nil {
		c.onError(key, err)
	}
}

// Cached returns a middleware that serves calls from c: a call whose
// key(in) has a cached result returns it without running the stage; a
// successful result is stored for the cache's TTL (errors are not
// cached). A hit costs one round trip, a miss two (Get, then Set).
//
// Results are shared: each hit decodes its own copy. To also collapse
// concurrent calls within a process, use the cache with
// dedup.NewWithCache instead: concurrent calls with one key then share one
// Get, one run and one Set.
func Cached[In, Out any](c *Cache[Out], key func(In) string) middleware.Middleware[In, Out] {
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		next = middleware.Apply(next) // a nil next fails with middleware.ErrNilStage
		if c == nil || key == nil {
			return func(context.Context, In) (Out, error) {
				var zero Out
				return zero, errNilCache
			}
		}
		return func(ctx context.Context, in In) (Out, error) {
			k := key(in)
			if out, ok := c.Get(ctx, k); ok {
				return out, nil
			}
			out, err := next(ctx, in)
			if err == nil {
				c.Set(context.WithoutCancel(ctx), k, out)
			}
			return out, err
		}
	}
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
