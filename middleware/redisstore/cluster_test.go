package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/redisstore"
	"github.com/brace-go/brace/middleware/redisstore/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestCluster runs the breaker store, the limiter and the dedup on a
// Redis Cluster of three masters, through two cluster clients (two
// processes). It shows the hash-tag layout at work: every key a script
// touches is in one slot, which Cluster requires of a script (one whose
// keys are in two slots fails with CROSSSLOT), while the keys of
// different dedup keys spread over the masters.
func TestCluster(t *testing.T) {
	cl := redistest.StartCluster(t)
	ctx := context.Background()
	a, b := cl.Client(t), cl.Client(t)
	for _, c := range []*redis.ClusterClient{a, b} {
		// Load the slot map and connect to every master, so that the
		// operations below are bounded by their round trips only.
		if err := c.ForEachShard(ctx, func(ctx context.Context, n *redis.Client) error { return n.Ping(ctx).Err() }); err != nil {
			t.Fatal(err)
		}
	}
	const timeout = 5 * time.Second // generous: the race detector on a busy machine
	slot := func(key string) int64 {
		t.Helper()
		s, err := a.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	master := func(key string) string {
		t.Helper()
		n, err := a.MasterForKey(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return n.Options().Addr
	}

	t.Run("hash tags", func(t *testing.T) {
		s, err := redisstore.NewBreakerStore(redisstore.BreakerStoreConfig{Client: a, Name: "payments"})
		if err != nil {
			t.Fatal(err)
		}
		l, err := redisstore.NewLimiter(redisstore.LimiterConfig{Client: a, Name: "payments", Capacity: 1})
		if err != nil {
			t.Fatal(err)
		}
		// Every key of one breaker (or limiter) hashes to the slot of its
		// tag, whatever follows it.
		for _, k := range []struct{ key, tag string }{
			{s.StateKey(), "{breaker:payments}"},
			{"brace:{breaker:payments}:anything-else", "{breaker:payments}"},
			{l.Key(), "{limiter:payments}"},
		} {
			if got, want := slot(k.key), slot(k.tag); got != want {
				t.Errorf("CLUSTER KEYSLOT %s = %d, want %d (the slot of %s)", k.key, got, want, k.tag)
			}
		}
		// A script may use keys of one tag together ...
		const script = "return #KEYS"
		if n, err := a.Eval(ctx, script, []string{s.StateKey(), "brace:{breaker:payments}:anything-else"}).Int(); err != nil || n != 2 {
			t.Errorf("script on two keys of one tag: %d, %v; want 2, nil", n, err)
		}
		// ... but not keys of two breakers, which are in different slots.
		other := "brace:{breaker:refunds}:state"
		if slot(other) == slot(s.StateKey()) {
			t.Fatalf("%s and %s share a slot; pick another name", other, s.StateKey())
		}
		if err := a.Eval(ctx, script, []string{s.StateKey(), other}).Err(); err == nil || !strings.HasPrefix(err.Error(), "CROSSSLOT") {
			t.Errorf("script on keys of two slots: %v, want a CROSSSLOT error", err)
		}
	})

	t.Run("breaker", func(t *testing.T) {
		// One breaker per master: the store works wherever its key lives.
		names := map[string]string{} // master -> breaker name
		for i := 0; len(names) < redistest.ClusterNodes; i++ {
			if i == 1000 {
				t.Fatalf("1000 breaker names reached only masters %v", names)
			}
			n := fmt.Sprint("downstream-", i)
			if m := master(mustStore(t, a, n).StateKey()); names[m] == "" {
				names[m] = n
			}
		}
		for m, n := range names {
			newBreaker := func(c redis.UniversalClient) *breaker.Breaker {
				s, err := redisstore.NewBreakerStore(redisstore.BreakerStoreConfig{Client: c, Name: n, Timeout: timeout,
					Observer: failOnStoreError(t)})
				if err != nil {
					t.Fatal(err)
				}
				return mustBreaker(t, breaker.Config{Threshold: 3, OpenTimeout: time.Minute, StoreSync: time.Hour, Store: s})
			}
			b1, b2 := newBreaker(a), newBreaker(b)
			call(b1, errBoom)
			call(b1, errBoom)
			call(b2, errBoom) // the third failure, from the other process
			if err := call(b2, nil); !errors.Is(err, breaker.ErrOpen) {
				t.Errorf("%s on %s: after 3 shared failures: %v, want ErrOpen", n, m, err)
			}
			if err := call(newBreaker(a), nil); !errors.Is(err, breaker.ErrOpen) {
				t.Errorf("%s on %s: a newcomer: %v, want ErrOpen", n, m, err)
			}
			if got := read(t, bound(t, b, n, *consecutive(3, time.Minute))); got.State != breaker.Open || got.Gen != 2 {
				t.Errorf("%s on %s: shared state %+v, want open at generation 2", n, m, got)
			}
		}
	})

	t.Run("limiter", func(t *testing.T) {
		const capacity = 2
		var stages []middleware.Stage[int, int]
		entered, hold := make(chan struct{}, capacity+1), make(chan struct{})
		for _, c := range []redis.UniversalClient{a, b} {
			l, err := redisstore.NewLimiter(redisstore.LimiterConfig{Client: c, Name: "limited", Capacity: capacity, Timeout: timeout,
				Observer: failOnStoreError(t)})
			if err != nil {
				t.Fatal(err)
			}
			stages = append(stages, middleware.Apply(func(ctx context.Context, in int) (int, error) {
				entered <- struct{}{}
				<-hold
				return in, nil
			}, redisstore.LimiterMiddleware[int, int](l)))
		}
		var wg sync.WaitGroup
		for i := range capacity {
			wg.Go(func() {
				if _, err := stages[i%2](ctx, i); err != nil {
					t.Errorf("call %d: %v", i, err)
				}
			})
			<-entered
		}
		for i, s := range stages {
			if _, err := s(ctx, 9); !errors.Is(err, redisstore.ErrLimited) {
				t.Errorf("limiter %d, capacity taken: %v, want ErrLimited", i, err)
			}
		}
		close(hold)
		wg.Wait()
		if _, err := stages[1](ctx, 1); err != nil {
			t.Errorf("after the calls returned: %v, want a free slot", err)
		}
	})

	t.Run("dedup", func(t *testing.T) {
		cfg := redisstore.DedupConfig{Name: "users", TTL: time.Minute, Timeout: timeout, Observer: failOnStoreError(t)}
		cfg.Client = a
		da := mustDedup(t, cfg)
		cfg.Client = b
		db := mustDedup(t, cfg)
		var runs atomic.Int64
		fetch := func(_ context.Context, id int) (user, error) {
			runs.Add(1)
			return user{ID: id, Name: "ada"}, nil
		}
		key := func(id int) string { return fmt.Sprint("user-", id) }
		masters := map[string]bool{}
		for i := range 30 {
			for _, d := range []*redisstore.Dedup{da, db} {
				if got, err := middleware.Apply(fetch, redisstore.DedupMiddleware[int, user](d, key))(ctx, i); err != nil || got.ID != i {
					t.Errorf("user %d: %+v, %v", i, got, err)
				}
			}
			masters[master(da.Key(key(i)))] = true
		}
		if got := runs.Load(); got != 30 {
			t.Errorf("stage ran %d times for 30 keys through two clients, want 30", got)
		}
		if len(masters) < 2 {
			t.Errorf("30 keys all on %v: keys of different user keys should spread", masters)
		}
		// Keys that cut the hash tag short still keep one key's values in
		// one slot (no CROSSSLOT).
		for _, k := range []string{"", "}", "a}b", "{", "x}:lock"} {
			get := middleware.Apply(func(_ context.Context, k string) (string, error) { return "v" + k, nil },
				redisstore.DedupMiddleware[string, string](da, func(k string) string { return k }))
			for range 2 {
				if got, err := get(ctx, k); err != nil || got != "v"+k {
					t.Errorf("key %q: %q, %v", k, got, err)
				}
			}
		}
	})
}

// failOnStoreError is an Observer that fails the test on StoreFailed.
func failOnStoreError(t *testing.T) middleware.Observer {
	return middleware.ObserverFunc(func(_ context.Context, e middleware.Event) {
		if e.Kind == middleware.StoreFailed {
			t.Errorf("%s %s: store error: %v", e.Concern, e.Name, e.Err)
		}
	})
}
