package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/ratelimit"
)

func mustKeyed[K comparable](t *testing.T, cfg ratelimit.KeyedConfig[K]) *ratelimit.Keyed[K] {
	t.Helper()
	k, err := ratelimit.NewKeyed(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKeyedIndependentBuckets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		type refusal struct {
			Key   string
			Delay time.Duration
		}
		var refusals []refusal
		k := mustKeyed(t, ratelimit.KeyedConfig[string]{Rate: 1, Burst: 2, OnLimited: func(key string, d time.Duration) {
			refusals = append(refusals, refusal{key, d})
		}})
		ctx := context.Background()
		got := map[string][]bool{}
		for _, key := range []string{"a", "b", "a", "a", "b", "c"} {
			got[key] = append(got[key], k.Admit(ctx, key) == nil)
		}
		want := map[string][]bool{"a": {true, true, false}, "b": {true, true}, "c": {true}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("admitted per key (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]refusal{{"a", time.Second}}, refusals); diff != "" {
			t.Errorf("OnLimited (-want +got):\n%s", diff)
		}
	})
}

// Forgetting idle keys must not change what any key is allowed: a key's
// admissions equal those of its own dedicated Limiter fed the same calls,
// however other keys come and go.
func TestKeyedForgettingIsInvisible(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := ratelimit.KeyedConfig[int]{Rate: 5, Burst: 3, IdleTimeout: 100 * time.Millisecond}
		k := mustKeyed(t, cfg)
		refs := map[int]*ratelimit.Limiter{}
		rng := rand.New(rand.NewPCG(1, 2))
		ctx := context.Background()
		maxLen := 0
		for i := range 5000 {
			key := rng.IntN(20)
			if refs[key] == nil {
				refs[key] = mustNew(t, ratelimit.Config{Rate: cfg.Rate, Burst: cfg.Burst})
			}
			got, want := k.Admit(ctx, key), refs[key].Admit(ctx)
			if (got == nil) != (want == nil) {
				t.Fatalf("call %d, key %d: keyed admitted=%v, dedicated limiter admitted=%v", i, key, got == nil, want == nil)
			}
			maxLen = max(maxLen, k.Len())
			time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
		}
		// The test is only meaningful if keys were really forgotten.
		time.Sleep(time.Second) // every bucket refills
		_ = k.Admit(ctx, 100)
		_ = k.Admit(ctx, 101)
		if k.Len() > maxLen-1 || maxLen < 10 {
			t.Errorf("keys held: peak %d, now %d; want idle keys forgotten lazily", maxLen, k.Len())
		}
	})
}

func TestKeyedIdleForgottenOnlyWhenFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Rate 1 and Burst 2: an emptied bucket takes 2s to refill.
		k := mustKeyed(t, ratelimit.KeyedConfig[string]{Rate: 1, Burst: 2, IdleTimeout: time.Second})
		ctx := context.Background()
		_ = k.Admit(ctx, "old")
		_ = k.Admit(ctx, "old")
		steps := []struct {
			sleep time.Duration
			want  int
		}{
			{500 * time.Millisecond, 2},  // neither idle long enough nor full
			{1000 * time.Millisecond, 2}, // idle 1.5s, but 1.5 of 2 tokens
			{500 * time.Millisecond, 1},  // idle 2s and full: forgotten
		}
		for _, st := range steps {
			time.Sleep(st.sleep)
			_ = k.Admit(ctx, "new")
			if got := k.Len(); got != st.want {
				t.Errorf("at %v: Len() = %d, want %d", st.sleep, got, st.want)
			}
		}
		// A full bucket in steady use is kept until it has been idle.
		k2 := mustKeyed(t, ratelimit.KeyedConfig[string]{Rate: 1000, Burst: 1, IdleTimeout: time.Second})
		for range 10 {
			_ = k2.Admit(ctx, "a")
			_ = k2.Admit(ctx, "b")
			time.Sleep(100 * time.Millisecond)
		}
		if got := k2.Len(); got != 2 {
			t.Errorf("Len() = %d for two keys in steady use, want 2", got)
		}
	})
}

// At MaxKeys a new key evicts the least recently used one.
func TestKeyedMaxKeysEvictsLRU(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := mustKeyed(t, ratelimit.KeyedConfig[string]{Rate: 1, Burst: 1, MaxKeys: 2})
		ctx := context.Background()
		_ = k.Admit(ctx, "a")
		_ = k.Admit(ctx, "b")
		_ = k.Admit(ctx, "a") // refused; "a" is now the most recently used
		_ = k.Admit(ctx, "c") // evicts "b"
		if got := k.Len(); got != 2 {
			t.Errorf("Len() = %d, want 2", got)
		}
		var limited *ratelimit.LimitedError
		if err := k.Admit(ctx, "a"); !errors.As(err, &limited) {
			t.Errorf("Admit(a) = %v, want refused: a was kept", err)
		}
		if err := k.Admit(ctx, "b"); err != nil {
			t.Errorf("Admit(b) = %v, want admitted: an evicted key starts with a full bucket", err)
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
				k := mustKeyed(t, ratelimit.KeyedConfig[int]{Rate: 1, Burst: burst, MaxKeys: maxKeys})
				admitted := make([]atomic.Int64, keys)
				var tooMany atomic.Int64
				var wg sync.WaitGroup
				for i := range callers {
					wg.Go(func() {
						key := i % keys
						if k.Admit(context.Background(), key) == nil {
							admitted[key].Add(1)
						}
						if k.Len() > maxKeys {
							tooMany.Add(1)
						}
					})
				}
				wg.Wait()
				if tooMany.Load() > 0 {
					t.Errorf("Len() exceeded MaxKeys %d times", tooMany.Load())
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

// PerKey derives the key from inputs of any type.
func TestPerKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		type request struct{ Tenant, Body string }
		k := mustKeyed(t, ratelimit.KeyedConfig[string]{Rate: 1, Burst: 1})
		handle := middleware.Apply(
			func(_ context.Context, r request) (string, error) { return r.Tenant + ":" + r.Body, nil },
			ratelimit.PerKey[request, string](k, func(r request) string { return r.Tenant }),
		)
		lookup := middleware.Apply(
			func(_ context.Context, tenant string) (int, error) { return len(tenant), nil },
			ratelimit.PerKey[string, int](k, func(tenant string) string { return tenant }),
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
		k := mustKeyed(t, ratelimit.KeyedConfig[string]{Rate: 10, Burst: 1, MaxWait: 150 * time.Millisecond})
		ctx := context.Background()
		start := time.Now()
		_ = k.Admit(ctx, "a")
		if err := k.Admit(ctx, "a"); err != nil || time.Since(start) != 100*time.Millisecond {
			t.Errorf("second Admit = %v after %v, want nil after 100ms", err, time.Since(start))
		}
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error)
		go func() { done <- k.Admit(cctx, "a") }()
		synctest.Wait()
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled waiter = %v, want context.Canceled", err)
		}
		if err := k.Admit(ctx, "a"); err != nil || time.Since(start) != 200*time.Millisecond {
			t.Errorf("Admit after a cancelled waiter = %v at %v, want nil at 200ms", err, time.Since(start))
		}
		// One waiter holds the token due at 300ms; the next would wait 200ms.
		go func() { done <- k.Admit(ctx, "a") }()
		synctest.Wait()
		if diff := cmp.Diff(&ratelimit.LimitedError{Delay: 200 * time.Millisecond}, k.Admit(ctx, "a")); diff != "" {
			t.Errorf("Admit beyond MaxWait (-want +got):\n%s", diff)
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
		k := mustKeyed(t, ratelimit.KeyedConfig[string]{Rate: 1, Burst: 1, IdleTimeout: time.Second})
		ctx := context.Background()
		_ = k.Admit(ctx, "solo")
		time.Sleep(2 * time.Second) // full again, and the coldest (only) key
		if err := k.Admit(ctx, "solo"); err != nil {
			t.Fatalf("Admit after refill = %v, want nil", err)
		}
		if err := k.Admit(ctx, "solo"); !errors.Is(err, ratelimit.ErrLimited) {
			t.Errorf("second Admit = %v, want ErrLimited: the bucket was forgotten while in use", err)
		}
	})
}
