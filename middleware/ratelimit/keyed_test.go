package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/ratelimit"
)

func TestKeyedIndependentBuckets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec recorder
		l := mustNew(t, ratelimit.Config{Rate: 1, Burst: 2, Observer: &rec})
		k := keyed[string](l)
		ctx := context.Background()
		got := map[string][]bool{}
		for _, key := range []string{"a", "b", "a", "a", "b", "c"} {
			got[key] = append(got[key], k(ctx, key) == nil)
		}
		want := map[string][]bool{"a": {true, true, false}, "b": {true, true}, "c": {true}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("admitted per key (-want +got):\n%s", diff)
		}
		var delays []time.Duration
		for _, e := range rec.get() {
			delays = append(delays, e.Delay)
		}
		if diff := cmp.Diff([]time.Duration{time.Second}, delays); diff != "" {
			t.Errorf("Rejected events' Delay (-want +got):\n%s", diff)
		}
		// The shared bucket is apart from the keys' buckets.
		if err := admit(l, ctx); err != nil {
			t.Errorf("shared bucket: %v, want admitted", err)
		}
		if diff := cmp.Diff(ratelimit.Stats{Rejected: 1, Keys: 3}, l.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
}

// Forgetting idle keys must not change what any key is allowed: a key's
// admissions equal those of its own dedicated Limiter fed the same calls,
// however other keys come and go.
func TestKeyedForgettingIsInvisible(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := ratelimit.Config{Rate: 5, Burst: 3, IdleTimeout: 100 * time.Millisecond}
		l := mustNew(t, cfg)
		k := keyed[int](l)
		refs := map[int]*ratelimit.Limiter{}
		rng := rand.New(rand.NewPCG(1, 2))
		ctx := context.Background()
		var maxLen int64
		for i := range 5000 {
			key := rng.IntN(20)
			if refs[key] == nil {
				refs[key] = mustNew(t, ratelimit.Config{Rate: cfg.Rate, Burst: cfg.Burst})
			}
			got, want := k(ctx, key), admit(refs[key], ctx)
			if (got == nil) != (want == nil) {
				t.Fatalf("call %d, key %d: keyed admitted=%v, dedicated limiter admitted=%v", i, key, got == nil, want == nil)
			}
			maxLen = max(maxLen, l.Stats().Keys)
			time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
		}
		// The test is only meaningful if keys were really forgotten.
		time.Sleep(time.Second) // every bucket refills
		_ = k(ctx, 100)
		_ = k(ctx, 101)
		if n := l.Stats().Keys; n > maxLen-1 || maxLen < 10 {
			t.Errorf("keys held: peak %d, now %d; want idle keys forgotten lazily", maxLen, n)
		}
	})
}

func TestKeyedIdleForgottenOnlyWhenFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Rate 1 and Burst 2: an emptied bucket takes 2s to refill.
		l := mustNew(t, ratelimit.Config{Rate: 1, Burst: 2, IdleTimeout: time.Second})
		k := keyed[string](l)
		ctx := context.Background()
		_ = k(ctx, "old")
		_ = k(ctx, "old")
		steps := []struct {
			sleep time.Duration
			want  int64
		}{
			{500 * time.Millisecond, 2},  // neither idle long enough nor full
			{1000 * time.Millisecond, 2}, // idle 1.5s, but 1.5 of 2 tokens
			{500 * time.Millisecond, 1},  // idle 2s and full: forgotten
		}
		for _, st := range steps {
			time.Sleep(st.sleep)
			_ = k(ctx, "new")
			if got := l.Stats().Keys; got != st.want {
				t.Errorf("at %v: Keys = %d, want %d", st.sleep, got, st.want)
			}
		}
		// A full bucket in steady use is kept until it has been idle.
		l2 := mustNew(t, ratelimit.Config{Rate: 1000, Burst: 1, IdleTimeout: time.Second})
		k2 := keyed[string](l2)
		for range 10 {
			_ = k2(ctx, "a")
			_ = k2(ctx, "b")
			time.Sleep(100 * time.Millisecond)
		}
		if got := l2.Stats().Keys; got != 2 {
			t.Errorf("Keys = %d for two keys in steady use, want 2", got)
		}
	})
}

// At MaxKeys a new key evicts the least recently used one.
func TestKeyedMaxKeysEvictsLRU(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := mustNew(t, ratelimit.Config{Rate: 1, Burst: 1, MaxKeys: 2})
		k := keyed[string](l)
		ctx := context.Background()
		_ = k(ctx, "a")
		_ = k(ctx, "b")
		_ = k(ctx, "a") // refused; "a" is now the most recently used
		_ = k(ctx, "c") // evicts "b"
		if got := l.Stats().Keys; got != 2 {
			t.Errorf("Keys = %d, want 2", got)
		}
		var limited *ratelimit.LimitedError
		if err := k(ctx, "a"); !errors.As(err, &limited) {
			t.Errorf("call(a) = %v, want refused: a was kept", err)
		}
		if err := k(ctx, "b"); err != nil {
			t.Errorf("call(b) = %v, want admitted: an evicted key starts with a full bucket", err)
		}
	})
}

// Under thousands of concurrent callers over many keys, each key gets
// exactly its burst and the number of keys never exceeds MaxKeys.
func TestKeyedConcurrent(t *testing.T) {
	for _, maxKeys := range []int{64, 8} {
		t.Run(fmt.Sprint("MaxKeys=", maxKeys), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const callers, keys, burst = 4000, 50, 5
				l := mustNew(t, ratelimit.Config{Rate: 1, Burst: burst, MaxKeys: maxKeys})
				k := keyed[int](l)
				admitted := make([]atomic.Int64, keys)
				var tooMany atomic.Int64
				var wg sync.WaitGroup
				for i := range callers {
					wg.Go(func() {
						key := i % keys
						if k(context.Background(), key) == nil {
							admitted[key].Add(1)
						}
						if l.Stats().Keys > int64(maxKeys) || ratelimit.TableLen[int](l) > maxKeys {
							tooMany.Add(1)
						}
					})
				}
				wg.Wait()
				if tooMany.Load() > 0 {
					t.Errorf("the table exceeded MaxKeys %d times", tooMany.Load())
				}
				for key := range admitted {
					n := admitted[key].Load()
					if maxKeys >= keys && n != burst {
						t.Errorf("key %d: %d admitted, want exactly %d", key, n, burst)
					}
					if n < burst {
						t.Errorf("key %d: %d admitted, want at least %d", key, n, burst)
					}
				}
			})
		})
	}
}

// Keyed derives the key from inputs of any type; adapters with the same
// key type on one Limiter share the keys' buckets.
func TestKeyedAcrossTypes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		type request struct{ Tenant, Body string }
		l := mustNew(t, ratelimit.Config{Rate: 1, Burst: 1})
		handle := middleware.Apply(
			func(_ context.Context, r request) (string, error) { return r.Tenant + ":" + r.Body, nil },
			ratelimit.Keyed[request, string](l, func(r request) string { return r.Tenant }),
		)
		lookup := middleware.Apply(
			func(_ context.Context, tenant string) (int, error) { return len(tenant), nil },
			ratelimit.Keyed[string, int](l, func(tenant string) string { return tenant }),
		)
		ctx := context.Background()
		var got []string
		for _, r := range []request{{"acme", "1"}, {"acme", "2"}, {"globex", "1"}} {
			out, err := handle(ctx, r)
			got = append(got, fmt.Sprint(out, " ", err))
		}
		_, err := lookup(ctx, "globex") // shares globex's bucket with handle
		got = append(got, fmt.Sprint(err))
		want := []string{"acme:1 <nil>", " ratelimit: limited, retry after 1s", "globex:1 <nil>", "ratelimit: limited, retry after 1s"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("calls (-want +got):\n%s", diff)
		}
	})
}

func TestKeyedWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := mustNew(t, ratelimit.Config{Rate: 10, Burst: 1, MaxWait: 150 * time.Millisecond})
		k := keyed[string](l)
		ctx := context.Background()
		start := time.Now()
		_ = k(ctx, "a")
		if err := k(ctx, "a"); err != nil || time.Since(start) != 100*time.Millisecond {
			t.Errorf("second call = %v after %v, want nil after 100ms", err, time.Since(start))
		}
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error)
		go func() { done <- k(cctx, "a") }()
		synctest.Wait()
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled waiter = %v, want context.Canceled", err)
		}
		if err := k(ctx, "a"); err != nil || time.Since(start) != 200*time.Millisecond {
			t.Errorf("call after a cancelled waiter = %v at %v, want nil at 200ms", err, time.Since(start))
		}
		// One waiter holds the token due at 300ms; the next would wait 200ms.
		go func() { done <- k(ctx, "a") }()
		synctest.Wait()
		if err := k(ctx, "a"); fmt.Sprint(err) != "ratelimit: limited, retry after 200ms" {
			t.Errorf("call beyond MaxWait = %v, want a refusal with a retry-after of 200ms", err)
		}
		if err := <-done; err != nil || time.Since(start) != 300*time.Millisecond {
			t.Errorf("waiter = %v at %v, want nil at 300ms", err, time.Since(start))
		}
	})
}

// A full bucket that is being used right now must not be forgotten: the
// token just taken would be lost and the key would get a fresh burst.
func TestKeyedBucketInUseIsKept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := mustNew(t, ratelimit.Config{Rate: 1, Burst: 1, IdleTimeout: time.Second})
		k := keyed[string](l)
		ctx := context.Background()
		_ = k(ctx, "solo")
		time.Sleep(2 * time.Second) // full again, and the coldest (only) key
		if err := k(ctx, "solo"); err != nil {
			t.Fatalf("call after refill = %v, want nil", err)
		}
		if err := k(ctx, "solo"); !errors.Is(err, ratelimit.ErrLimited) {
			t.Errorf("second call = %v, want ErrLimited: the bucket was forgotten while in use", err)
		}
	})
}

// Issue 14 item 3: a NaN key is refused without running the stage or
// storing anything. The old keyed limiter stored every NaN call (its map
// grew past MaxKeys, 32 MB for 200,000 calls with MaxKeys 1000, while
// Len() stayed at MaxKeys) and never limited them.
func TestKeyedNaNKeyRefused(t *testing.T) {
	type key struct {
		tenant string
		score  float64
	}
	var events atomic.Int64
	var first atomic.Pointer[middleware.Event]
	obs := middleware.ObserverFunc(func(_ context.Context, e middleware.Event) {
		events.Add(1)
		first.CompareAndSwap(nil, &e)
	})
	l := mustNew(t, ratelimit.Config{Rate: 1, Burst: 1, MaxKeys: 1000, Observer: obs})
	var runs atomic.Int64
	byFloat := middleware.Apply(func(_ context.Context, f float64) (float64, error) { runs.Add(1); return f, nil },
		ratelimit.Keyed[float64, float64](l, func(f float64) float64 { return f }))
	byStruct := middleware.Apply(func(_ context.Context, f float64) (float64, error) { runs.Add(1); return f, nil },
		ratelimit.Keyed[float64, float64](l, func(f float64) key { return key{"acme", f} }))
	byAny := middleware.Apply(func(_ context.Context, f float64) (float64, error) { runs.Add(1); return f, nil },
		ratelimit.Keyed[float64, float64](l, func(f float64) any { return f }))

	const calls = 200_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range calls {
		if _, err := byFloat(context.Background(), math.NaN()); err != ratelimit.ErrNaNKey {
			t.Fatalf("err = %v, want ErrNaNKey", err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 4<<20 {
		t.Errorf("heap grew by %d bytes over %d NaN calls, want (almost) nothing", grown, calls)
	}
	for _, s := range []middleware.Stage[float64, float64]{byStruct, byAny} {
		if _, err := s(context.Background(), math.NaN()); err != ratelimit.ErrNaNKey {
			t.Errorf("err = %v, want ErrNaNKey", err)
		}
	}
	if n := runs.Load(); n != 0 {
		t.Errorf("stage ran %d times for NaN keys, want 0", n)
	}
	for name, n := range map[string]int{
		"float64": ratelimit.TableLen[float64](l),
		"struct":  ratelimit.TableLen[key](l),
		"any":     ratelimit.TableLen[any](l),
	} {
		if n != 0 {
			t.Errorf("%s table holds %d entries after NaN calls, want 0", name, n)
		}
	}
	if diff := cmp.Diff(ratelimit.Stats{Rejected: calls + 2}, l.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
	if n := events.Load(); n != calls+2 {
		t.Errorf("%d events, want one per NaN call, %d", n, calls+2)
	}
	if e := first.Load(); e.Kind != middleware.Rejected || e.Reason != "key" || e.Err != ratelimit.ErrNaNKey {
		t.Errorf("event = %+v, want Rejected, Reason key, Err ErrNaNKey", e)
	}
	// Ordinary keys are limited as before, and the table stays bounded.
	for i := range 5000 {
		_, _ = byFloat(context.Background(), float64(i))
	}
	if n := ratelimit.TableLen[float64](l); n != 1000 {
		t.Errorf("table holds %d entries, want MaxKeys, 1000", n)
	}
	if _, err := byFloat(context.Background(), 4999); !errors.Is(err, ratelimit.ErrLimited) {
		t.Errorf("second call with key 4999 = %v, want limited", err)
	}
}

func TestNaNKeyError(t *testing.T) {
	err := ratelimit.ErrNaNKey
	type rejecter interface{ Rejected() bool }
	type retryable interface{ Retryable() bool }
	r, ok1 := err.(rejecter)
	q, ok2 := err.(retryable)
	if !ok1 || !ok2 || !r.Rejected() || q.Retryable() {
		t.Errorf("ErrNaNKey: want Rejected() true and Retryable() false")
	}
	if got, want := err.Error(), "ratelimit: key is not equal to itself (NaN)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// A panicking key func is the caller's panic; nothing is taken or stored.
func TestKeyFuncPanics(t *testing.T) {
	l := mustNew(t, ratelimit.Config{Rate: 1, Burst: 1})
	s := middleware.Apply(func(_ context.Context, k string) (string, error) { return k, nil },
		ratelimit.Keyed[string, string](l, func(k string) string {
			if k == "bad" {
				panic("bad key")
			}
			return k
		}))
	func() {
		defer func() {
			if v := recover(); v != "bad key" {
				t.Errorf("recovered %v, want the key func's panic", v)
			}
		}()
		s(context.Background(), "bad")
	}()
	if out, err := s(context.Background(), "good"); out != "good" || err != nil {
		t.Errorf("next call = %q, %v; want good, nil", out, err)
	}
	if n := ratelimit.TableLen[string](l); n != 1 {
		t.Errorf("table holds %d entries, want only the good key's", n)
	}
}
