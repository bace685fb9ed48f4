package dedup_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/dedup"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// mapCache is a dedup.Cache in a map that records what it is asked.
type mapCache struct {
	mu   sync.Mutex
	m    map[string]string
	gets []string
	sets []string          // "key=value"
	ctxs []context.Context // of every Get and Set
	get  func(key string)  // when set, called by Get (a test's hook)
	set  func(key string)  // when set, called by Set
}

func newMapCache() *mapCache { return &mapCache{m: map[string]string{}} }

func (c *mapCache) Get(ctx context.Context, key string) (string, bool) {
	if c.get != nil {
		c.get(key)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gets = append(c.gets, key)
	c.ctxs = append(c.ctxs, ctx)
	v, ok := c.m[key]
	return v, ok
}

func (c *mapCache) Set(ctx context.Context, key, out string) {
	if c.set != nil {
		c.set(key)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[key] = out
	c.sets = append(c.sets, key+"="+out)
	c.ctxs = append(c.ctxs, ctx)
}

func (c *mapCache) calls() (gets, sets []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.gets...), append([]string(nil), c.sets...)
}

func buildExt(t *testing.T, c dedup.Cache[string, string], cfg dedup.Config, s middleware.Stage[string, string]) middleware.Stage[string, string] {
	t.Helper()
	mw, err := dedup.NewWithCache[string](func(k string) string { return k }, c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return middleware.Apply(s, mw)
}

func TestNewWithCacheRejectsInvalidConfig(t *testing.T) {
	key := func(s string) string { return s }
	tests := []struct {
		name  string
		key   func(string) string
		cache dedup.Cache[string, string]
		cfg   dedup.Config
		want  string
	}{
		{"nil key", nil, newMapCache(), dedup.Config{}, "dedup: key func must not be nil"},
		{"nil cache", key, nil, dedup.Config{}, "dedup: cache must not be nil"},
		{"TTL", key, newMapCache(), dedup.Config{TTL: time.Second}, "dedup: TTL must be zero with NewWithCache (the cache decides how long it keeps results), got 1s"},
		{"negative TTL", key, newMapCache(), dedup.Config{TTL: -time.Second}, "dedup: TTL must be zero with NewWithCache (the cache decides how long it keeps results), got -1s"},
		{"MaxEntries", key, newMapCache(), dedup.Config{MaxEntries: 10}, "dedup: MaxEntries must be zero with NewWithCache (the cache bounds itself), got 10"},
		{"CacheErrors", key, newMapCache(), dedup.Config{CacheErrors: true}, "dedup: CacheErrors must be false with NewWithCache (errors are never stored in an external cache)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mw, err := dedup.NewWithCache[string](tt.key, tt.cache, tt.cfg)
			if err == nil {
				t.Fatalf("NewWithCache succeeded, want error %q", tt.want)
			}
			if mw != nil {
				t.Error("NewWithCache returned a middleware with its error")
			}
			if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
				t.Errorf("error text (-want +got):\n%s", diff)
			}
		})
	}
}

// TestExternalCache: a miss runs the stage and stores its result before
// the caller gets it; the next call is served by the cache; an error is
// never stored; each call is reported once, the one that found the result
// in the cache as Cached.
func TestExternalCache(t *testing.T) {
	c := newMapCache()
	var counter dedup.Counter
	fail := errors.New("down")
	runs := 0
	s := buildExt(t, c, dedup.Config{Counter: &counter}, func(_ context.Context, k string) (string, error) {
		runs++
		if k == "bad" {
			return "", fail
		}
		return "v:" + k, nil
	})
	type step struct {
		Key, Out string
		Err      error
		Served   dedup.Served
	}
	var got []step
	for _, k := range []string{"a", "a", "bad", "bad", "b", "a"} {
		ctx, tr := dedup.Track(context.Background())
		out, err := s(ctx, k)
		got = append(got, step{k, out, err, tr.Served()})
	}
	want := []step{
		{"a", "v:a", nil, dedup.Executed},
		{"a", "v:a", nil, dedup.Cached},
		{"bad", "", fail, dedup.Executed},
		{"bad", "", fail, dedup.Executed},
		{"b", "v:b", nil, dedup.Executed},
		{"a", "v:a", nil, dedup.Cached},
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateErrors()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	gets, sets := c.calls()
	if diff := cmp.Diff([]string{"a", "a", "bad", "bad", "b", "a"}, gets); diff != "" {
		t.Errorf("Gets (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"a=v:a", "b=v:b"}, sets); diff != "" {
		t.Errorf("Sets (-want +got):\n%s", diff)
	}
	if runs != 4 {
		t.Errorf("stage ran %d times, want 4", runs)
	}
	if diff := cmp.Diff(dedup.Stats{Executions: 4, CacheHits: 2}, counter.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

// TestExternalCacheOncePerSharedCall: concurrent callers of one key share
// one Get, one run and one Set; they are reported as one Executed and the
// rest Joined, or, when the cache has the result, one Cached.
func TestExternalCacheOncePerSharedCall(t *testing.T) {
	for _, cached := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			const callers = 50
			c := newMapCache()
			if cached {
				c.m["k"] = "from cache"
			}
			gate := make(chan struct{})
			c.get = func(string) { <-gate } // the shared call waits here until every caller joined
			var counter dedup.Counter
			runs := 0
			s := buildExt(t, c, dedup.Config{Counter: &counter}, func(context.Context, string) (string, error) {
				runs++
				return "from stage", nil
			})
			var calls []<-chan outcome
			for range callers {
				calls = append(calls, goCall(context.Background(), s, "k"))
			}
			synctest.Wait()
			close(gate)
			want := "from stage"
			if cached {
				want = "from cache"
			}
			for i, ch := range calls {
				if o := <-ch; o.Out != want || o.Err != nil {
					t.Errorf("caller %d: %+v, want %q", i, o, want)
				}
			}
			gets, sets := c.calls()
			wantStats := dedup.Stats{Executions: 1, Joins: callers - 1}
			wantSets := []string{"k=from stage"}
			wantRuns := 1
			if cached {
				wantStats = dedup.Stats{Joins: callers - 1, CacheHits: 1}
				wantSets, wantRuns = nil, 0
			}
			if len(gets) != 1 || runs != wantRuns {
				t.Errorf("cached=%v: %d Gets and %d runs, want 1 and %d", cached, len(gets), runs, wantRuns)
			}
			if diff := cmp.Diff(wantSets, sets); diff != "" {
				t.Errorf("cached=%v: Sets (-want +got):\n%s", cached, diff)
			}
			if diff := cmp.Diff(wantStats, counter.Stats()); diff != "" {
				t.Errorf("cached=%v: Stats (-want +got):\n%s", cached, diff)
			}
		})
	}
}

// TestExternalCacheContext: Get and Set get the shared call's context: the
// first caller's values, without its cancellation. A call abandoned by all
// its callers stores nothing, and a caller that left early is reported as
// Executed.
func TestExternalCacheContext(t *testing.T) {
	type ctxKey struct{}
	t.Run("values", func(t *testing.T) {
		c := newMapCache()
		s := buildExt(t, c, dedup.Config{}, func(_ context.Context, k string) (string, error) { return k, nil })
		ctx, cancel := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "trace-1"))
		defer cancel()
		if _, err := s(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if len(c.ctxs) != 2 {
			t.Fatalf("%d cache calls, want a Get and a Set", len(c.ctxs))
		}
		for i, cctx := range c.ctxs {
			if v := cctx.Value(ctxKey{}); v != "trace-1" {
				t.Errorf("cache call %d: value %v, want the caller's", i, v)
			}
			if cctx.Done() == ctx.Done() {
				t.Errorf("cache call %d runs on the caller's own context", i)
			}
		}
	})
	t.Run("abandoned", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c := newMapCache()
			stageDone := make(chan struct{})
			s := buildExt(t, c, dedup.Config{}, func(ctx context.Context, k string) (string, error) {
				defer close(stageDone)
				<-ctx.Done()
				return "late but successful", nil
			})
			ctx, cancel := context.WithCancel(context.Background())
			ctx, tr := dedup.Track(ctx)
			ch := goCall(ctx, s, "k")
			synctest.Wait()
			cancel()
			if o := <-ch; !errors.Is(o.Err, context.Canceled) {
				t.Fatalf("cancelled caller got %+v, want context.Canceled", o)
			}
			<-stageDone
			synctest.Wait()
			if _, sets := c.calls(); len(sets) != 0 {
				t.Errorf("an abandoned call stored %v", sets)
			}
			if got := tr.Served(); got != dedup.Executed {
				t.Errorf("caller that left: %v, want %v", got, dedup.Executed)
			}
		})
	})
}

// TestExternalCachePanics: a Cache that panics reaches the callers as a
// panic of the shared call (a *dedup.PanicError), and the next call starts
// fresh.
func TestExternalCachePanics(t *testing.T) {
	c := newMapCache()
	c.set = func(k string) {
		if k == "boom" {
			panic("cache bug")
		}
	}
	s := buildExt(t, c, dedup.Config{}, func(_ context.Context, k string) (string, error) { return k, nil })
	func() {
		defer func() {
			pe, ok := recover().(*dedup.PanicError)
			if !ok || pe.Value != "cache bug" {
				t.Errorf("recovered %v, want a *dedup.PanicError with the cache's panic", pe)
			}
		}()
		s(context.Background(), "boom")
		t.Error("a panicking Set did not reach the caller")
	}()
	if out, err := s(context.Background(), "ok"); out != "ok" || err != nil {
		t.Errorf("next call: %q, %v", out, err)
	}
}

// BenchmarkExternalCacheHit measures a call served by an external cache
// (an in-memory map here, so that only dedup's share shows): the shared
// call's goroutine and the Get. The baseline is the Get alone.
func BenchmarkExternalCacheHit(b *testing.B) {
	ctx := context.Background()
	c := newMapCache()
	c.m["k"] = "v"
	b.Run("baseline=Get", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.Get(ctx, "k")
			c.mu.Lock()
			c.gets, c.ctxs = c.gets[:0], c.ctxs[:0]
			c.mu.Unlock()
		}
	})
	b.Run("dedup", func(b *testing.B) {
		mw, err := dedup.NewWithCache[string](func(k string) string { return k }, dedup.Cache[string, string](c), dedup.Config{})
		if err != nil {
			b.Fatal(err)
		}
		s := middleware.Apply(func(_ context.Context, k string) (string, error) { return k, nil }, mw)
		b.ReportAllocs()
		for b.Loop() {
			if out, _ := s(ctx, "k"); out != "v" {
				b.Fatal(out)
			}
			c.mu.Lock()
			c.gets, c.ctxs = c.gets[:0], c.ctxs[:0]
			c.mu.Unlock()
		}
	})
}
