package redisstore_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brace-go/brace/internal/redistest"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/redisstore"
	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
)

type user struct {
	ID   int
	Name string
	Tags []string
}

// reports collects what a cache reports.
type reports struct {
	mu   sync.Mutex
	errs []error
}

func (r *reports) add(_ string, err error) {
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.mu.Unlock()
}

func (r *reports) take() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.errs
	r.errs = nil
	return e
}

func mustCache[Out any](t *testing.T, c redis.UniversalClient, cfg redisstore.CacheConfig) *redisstore.Cache[Out] {
	t.Helper()
	cc, err := redisstore.NewCache[Out](c, name(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cc
}

func TestCacheConfigErrors(t *testing.T) {
	c := redistest.Shared(t).Client(t)
	for _, tt := range []struct {
		name string
		cfg  redisstore.CacheConfig
		want string
	}{
		{"no TTL", redisstore.CacheConfig{}, "redisstore: TTL must be positive, got 0s"},
		{"negative size", redisstore.CacheConfig{TTL: time.Second, MaxEntrySize: -1}, "redisstore: MaxEntrySize must not be negative, got -1"},
		{"bad prefix", redisstore.CacheConfig{TTL: time.Second, Prefix: "{"}, `redisstore: Prefix must not contain '{' or '}' (they delimit the hash tag), got "{"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := redisstore.NewCache[int](c, "x", tt.cfg)
			if err == nil || err.Error() != tt.want {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
}

// TestCacheShared stores a result through one cache (one process) and
// reads it through another on a separate client.
func TestCacheShared(t *testing.T) {
	srv := redistest.Shared(t)
	var rep reports
	cfg := redisstore.CacheConfig{TTL: time.Minute, OnError: rep.add}
	a := mustCache[user](t, srv.Client(t), cfg)
	b := mustCache[user](t, srv.Client(t), cfg)
	ctx := context.Background()
	if _, ok := b.Get(ctx, "42"); ok {
		t.Fatal("hit before anything was stored")
	}
	want := user{ID: 42, Name: "ada", Tags: []string{"x", "y"}}
	a.Set(ctx, "42", want)
	got, ok := b.Get(ctx, "42")
	if !ok {
		t.Fatal("miss after Set")
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if d := srv.Client(t).PTTL(ctx, a.Key("42")).Val(); d <= 50*time.Second || d > time.Minute {
		t.Errorf("PTTL %v, want about TTL (1m)", d)
	}
	if errs := rep.take(); len(errs) != 0 {
		t.Errorf("errors reported: %v", errs)
	}
}

// panicky is a codec that panics on decode.
type panicky struct{}

func (panicky) Marshal(v any) ([]byte, error)      { return redisstore.JSON.Marshal(v) }
func (panicky) Unmarshal(data []byte, v any) error { panic("codec bug") }

// TestCacheBadEntries: a corrupt, undecodable, oversized or unencodable
// entry is a miss (or not stored) and is reported, never a panic.
func TestCacheBadEntries(t *testing.T) {
	c := redistest.Shared(t).Client(t)
	ctx := context.Background()
	var rep reports
	var logs bytes.Buffer
	cache := mustCache[user](t, c, redisstore.CacheConfig{TTL: time.Minute, MaxEntrySize: 64, OnError: rep.add,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	tests := []struct {
		name   string
		stored string // written to Redis directly; "" = nothing
		set    any    // or stored through Set
		want   error
	}{
		{"not JSON", "\x00garbage", nil, redisstore.ErrCorruptEntry},
		{"wrong shape", `{"ID":"not a number"}`, nil, redisstore.ErrCorruptEntry},
		{"truncated", `{"ID":4`, nil, redisstore.ErrCorruptEntry},
		{"larger than MaxEntrySize in Redis", `{"Name":"` + strings.Repeat("a", 100) + `"}`, nil, redisstore.ErrEntryTooLarge},
		{"larger than MaxEntrySize to Set", "", user{Name: strings.Repeat("b", 100)}, redisstore.ErrEntryTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := tt.name
			if tt.stored != "" {
				c.Set(ctx, cache.Key(key), tt.stored, time.Minute)
			} else {
				cache.Set(ctx, key, tt.set.(user))
			}
			if got, ok := cache.Get(ctx, key); ok || !cmp.Equal(got, user{}) {
				t.Errorf("Get = %+v, %v; want a miss", got, ok)
			}
			errs := rep.take()
			if len(errs) != 1 || !errors.Is(errs[0], tt.want) {
				t.Errorf("reported %v, want one error matching %v", errs, tt.want)
			}
		})
	}
	t.Run("codec panics", func(t *testing.T) {
		pc := mustCache[user](t, c, redisstore.CacheConfig{TTL: time.Minute, Codec: panicky{}, OnError: rep.add, Prefix: "panicky"})
		pc.Set(ctx, "k", user{ID: 1})
		if _, ok := pc.Get(ctx, "k"); ok {
			t.Error("hit through a panicking codec")
		}
		if errs := rep.take(); len(errs) != 1 || !errors.Is(errs[0], redisstore.ErrCorruptEntry) || !strings.Contains(errs[0].Error(), "codec bug") {
			t.Errorf("reported %v, want the codec's panic as a corrupt entry", errs)
		}
	})
	for _, want := range []string{"level=WARN", "name=" + name(t), "key=", "err="} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log does not contain %q:\n%s", want, logs.String())
		}
	}
}

// TestCached counts the stage's runs behind two Cached middlewares on
// separate clients (two processes): the second process is served from the
// first one's result; errors are not cached.
func TestCached(t *testing.T) {
	srv := redistest.Shared(t)
	runs := 0
	fail := false
	stage := func(_ context.Context, id int) (user, error) {
		runs++
		if fail {
			return user{}, errBoom
		}
		return user{ID: id, Name: "u"}, nil
	}
	key := func(id int) string { return "user:" + string(rune('0'+id)) }
	cfg := redisstore.CacheConfig{TTL: time.Minute, OnError: func(k string, err error) { t.Errorf("%s: %v", k, err) }}
	p1 := middleware.Apply(stage, redisstore.Cached(mustCache[user](t, srv.Client(t), cfg), key))
	p2 := middleware.Apply(stage, redisstore.Cached(mustCache[user](t, srv.Client(t), cfg), key))
	ctx := context.Background()
	if got, err := p1(ctx, 1); err != nil || got.ID != 1 {
		t.Fatalf("p1(1) = %+v, %v", got, err)
	}
	if got, err := p2(ctx, 1); err != nil || got.ID != 1 {
		t.Fatalf("p2(1) = %+v, %v", got, err)
	}
	if runs != 1 {
		t.Errorf("stage ran %d times for one key in two processes, want 1", runs)
	}
	fail = true
	p1(ctx, 2)
	p2(ctx, 2)
	if runs != 3 {
		t.Errorf("stage ran %d times, want 3: errors are not cached", runs)
	}
	var nilStage middleware.Stage[int, int] = middleware.Apply(nil, redisstore.Cached[int, int](nil, nil))
	if _, err := nilStage(ctx, 1); err == nil {
		t.Error("Cached(nil, nil): no error")
	}
}

// TestCacheRedisDown: with Redis stopped the cache is a miss and the
// stage runs; the error is reported. When Redis is back, caching resumes.
func TestCacheRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	var rep reports
	cache := mustCache[user](t, srv.Client(t), redisstore.CacheConfig{TTL: time.Minute, OnError: rep.add})
	runs := 0
	s := middleware.Apply(func(_ context.Context, id int) (user, error) { runs++; return user{ID: id}, nil },
		redisstore.Cached(cache, func(int) string { return "k" }))
	ctx := context.Background()
	srv.Stop()
	if got, err := s(ctx, 7); err != nil || got.ID != 7 {
		t.Fatalf("Redis down: %+v, %v; want the stage's result", got, err)
	}
	if errs := rep.take(); len(errs) != 2 { // Get and Set
		t.Errorf("reported %v, want the Get and the Set failing", errs)
	}
	srv.Restart(t)
	s(ctx, 7)
	s(ctx, 7)
	if runs != 2 {
		t.Errorf("stage ran %d times, want 2: cached again once Redis is back", runs)
	}
}
