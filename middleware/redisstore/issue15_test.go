package redisstore_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/redisstore"
	"github.com/brace-go/brace/middleware/redisstore/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// halfOpen returns a store, bound to p, whose shared breaker is half-open.
func halfOpen(t *testing.T, c redis.UniversalClient, p breaker.Policy) *redisstore.BreakerStore {
	t.Helper()
	s := bound(t, c, name(t), p)
	ctx := context.Background()
	if _, err := s.Update(ctx, breaker.Op{Kind: breaker.OpForce, State: breaker.Closed}); err != nil {
		t.Fatal(err)
	}
	for range p.Threshold {
		s.Update(ctx, breaker.Op{Kind: breaker.OpResult, Gen: 2, Failures: 1})
	}
	eventually(t, time.Second, "half-open", func() bool { return read(t, s).State == breaker.HalfOpen })
	return s
}

// TestProbeLeases (issue 15 item 1): half-open probe slots are leases on
// the server's clock. A probe whose result never comes (a lost reply, a
// crashed process) — one of N, or all of them — frees its slot once the
// lease has run out, and the breaker closes; rejections in between do not
// keep the key alive.
func TestProbeLeases(t *testing.T) {
	c, _ := client(t)
	ctx := context.Background()
	const lease = 50 * time.Millisecond
	for _, tt := range []struct {
		name          string
		probes, close int
	}{
		{"one probe lost", 1, 1},
		{"one of three lost", 3, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := breaker.Policy{Threshold: 1, OpenTimeout: time.Millisecond, Probes: tt.probes, SuccessThreshold: tt.close, ProbeLease: lease}
			s := halfOpen(t, c, p)
			gen := read(t, s).Gen
			// Take every slot; the first probe's holder "crashes": its
			// result never comes. The others succeed.
			for i := range tt.probes {
				snap, err := s.Update(ctx, breaker.Op{Kind: breaker.OpAcquire})
				if err != nil || !snap.Probe {
					t.Fatalf("probe %d: %+v, %v", i, snap, err)
				}
			}
			for range tt.probes - 1 {
				s.Update(ctx, breaker.Op{Kind: breaker.OpResult, Gen: gen, Probe: true, Successes: 1})
			}
			snap, _ := s.Update(ctx, breaker.Op{Kind: breaker.OpAcquire})
			if snap.Admitted {
				t.Fatalf("a call admitted while every slot is held: %+v", snap)
			}
			ttl := c.PTTL(ctx, s.StateKey()).Val()
			start := time.Now()
			eventually(t, 20*lease, "a probe slot back", func() bool {
				snap, err := s.Update(ctx, breaker.Op{Kind: breaker.OpAcquire})
				if err != nil {
					t.Fatal(err)
				}
				if !snap.Admitted && time.Since(start) < lease/2 {
					if got := c.PTTL(ctx, s.StateKey()).Val(); got > ttl {
						t.Fatalf("a rejection refreshed the key's expiry: %v, was %v", got, ttl)
					}
				}
				return snap.Probe
			})
			snap, err := s.Update(ctx, breaker.Op{Kind: breaker.OpResult, Gen: gen, Probe: true, Successes: 1})
			if err != nil || snap.State != breaker.Closed {
				t.Errorf("after the new probe succeeded: %+v, %v; want closed", snap, err)
			}
		})
	}
}

// TestProbeReplyLost (issue 15 item 1, end to end): the reply to a
// process's half-open probe admission is lost (the script ran, the slot
// is taken in Redis; that process decides locally). Another process still
// gets a probe once ProbeTimeout has passed, and closes the breaker.
func TestProbeReplyLost(t *testing.T) {
	srv := redistest.Shared(t)
	px := startProxy(t, srv.Addr)
	opts := srv.Options()
	opts.Addr = px.Addr
	lossy := redisNewClient(t, opts)
	cfg := breaker.Config{Threshold: 1, OpenTimeout: 20 * time.Millisecond, ProbeTimeout: 100 * time.Millisecond, StoreSync: time.Millisecond}
	sa, err := redisstore.NewBreakerStore(redisstore.BreakerStoreConfig{Client: lossy, Name: name(t), Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store = sa
	a := mustBreaker(t, cfg)
	cfg.Store = mustStore(t, srv.Client(t), name(t))
	b := mustBreaker(t, cfg)
	call(a, errBoom) // opens the shared breaker
	eventually(t, time.Second, "half-open in Redis", func() bool { return read(t, cfg.Store).State == breaker.HalfOpen })
	px.Drop(true)
	pa, err := a.Acquire(context.Background()) // the probe slot is taken; the reply is lost
	px.Drop(false)
	if snap := read(t, cfg.Store); snap.Counts.Probes != 1 {
		t.Fatalf("shared state %+v, want the lost admission's probe slot taken", snap)
	}
	if err == nil {
		defer pa.Done(nil)
	}
	d := eventually(t, 2*time.Second, "b admitted", func() bool { return call(b, nil) == nil })
	t.Logf("another process admitted %v after the lost reply (ProbeTimeout 100ms)", d)
	if snap := read(t, cfg.Store); snap.State != breaker.Closed {
		t.Errorf("shared state %v, want closed", snap.State)
	}
}

// TestCorruptBreakerState (issue 15 item 8): a state that is not one of
// the five (7, −1, text: a newer version's, or garbage) is not adopted:
// Update fails with ErrCorrupt, the breaker reports StoreFailed and
// decides on its local state, which admits calls.
func TestCorruptBreakerState(t *testing.T) {
	c, _ := client(t)
	ctx := context.Background()
	for _, v := range []string{"7", "-1", "open", "1.5"} {
		t.Run(v, func(t *testing.T) {
			var rec recorder
			s, err := redisstore.NewBreakerStore(redisstore.BreakerStoreConfig{Client: c, Name: name(t), Observer: &rec})
			if err != nil {
				t.Fatal(err)
			}
			var brec recorder
			b := mustBreaker(t, breaker.Config{Threshold: 5, Store: s, StoreSync: time.Millisecond, Observer: &brec})
			c.HSet(ctx, s.StateKey(), "st", v, "g", "3")
			_, err = s.Update(ctx, breaker.Op{Kind: breaker.OpSync})
			if !errors.Is(err, redisstore.ErrCorrupt) || !strings.Contains(err.Error(), "st="+v) {
				t.Errorf("Update: %v, want ErrCorrupt naming the field", err)
			}
			for range 3 {
				if err := call(b, nil); err != nil {
					t.Errorf("call with a corrupt shared state: %v, want admitted by the local state", err)
				}
			}
			if len(rec.of(middleware.StoreFailed)) == 0 || len(brec.of(middleware.StoreFailed)) == 0 {
				t.Error("no StoreFailed reported")
			}
			if s.Stats().Down {
				t.Error("a corrupt value marked the store down: it answers")
			}
		})
	}
}

// TestOutageSkipsStore (issue 15 item 3): with Redis hung (every command
// waits out its Timeout), after DownAfter failures every part using the
// client — breaker store, limiter, dedup — skips Redis: the median call
// costs about what it costs without Redis, not a Timeout. One probe runs
// in the background after DownFor; when Redis is back, they use it again.
func TestOutageSkipsStore(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	var rec recorder
	const timeout = 100 * time.Millisecond
	st, _ := redisstore.NewBreakerStore(redisstore.BreakerStoreConfig{Client: c, Name: name(t), Timeout: timeout, Observer: &rec})
	b := mustBreaker(t, breaker.Config{Threshold: 1000, Store: st, StoreSync: time.Nanosecond})
	l := mustLimiter(t, redisstore.LimiterConfig{Client: c, Capacity: 100, Timeout: timeout, Observer: &rec})
	d := mustDedup(t, redisstore.DedupConfig{Client: c, Timeout: timeout, Observer: &rec})
	stage := func(context.Context, int) (int, error) { return 1, nil }
	get := middleware.Apply(stage,
		breaker.Middleware[int, int](b),
		redisstore.LimiterMiddleware[int, int](l),
		redisstore.DedupMiddleware[int, int](d, func(int) string { return "k" }))
	ctx := context.Background()
	measure := func(n int) time.Duration {
		var ds []time.Duration
		for i := range n {
			s := time.Now()
			if _, err := get(ctx, i); err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
			ds = append(ds, time.Since(s))
		}
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	healthy := measure(20)
	srv.Freeze(t)
	outage := measure(60)
	t.Logf("median call: %v healthy, %v during the outage (Timeout %v)", healthy, outage, timeout)
	if outage > healthy+timeout/4 {
		t.Errorf("median call during the outage %v, want near the healthy %v (not a Timeout: %v)", outage, healthy, timeout)
	}
	if !l.Stats().Down || !d.Stats().Down || !st.Stats().Down {
		t.Error("the parts disagree on whether the store is down")
	}
	downs := 0
	for _, e := range rec.of(middleware.StateChanged) {
		if e.Concern == "redisstore" && e.From == "up" && e.To == "down" {
			downs++
		}
	}
	if downs != 3 {
		t.Errorf("%d up→down events, want one per part (3)", downs)
	}
	srv.Thaw(t)
	back := eventually(t, redisstore.DownFor+2*time.Second, "Redis used again", func() bool {
		get(ctx, 0)
		return !l.Stats().Down
	})
	t.Logf("back on Redis %v after it answered again (DownFor %v)", back, redisstore.DownFor)
	ups := 0
	for _, e := range rec.of(middleware.StateChanged) {
		if e.From == "down" && e.To == "up" {
			ups++
		}
	}
	if ups == 0 {
		t.Error("no down→up event")
	}
}

// TestRefusedFailsFast (issue 15 item 4): a Redis that refuses
// connections costs a client with the recommended options (DialerRetries
// 1) no Timeout, and the cause reaches the error and the event; with
// go-redis's default dial retries, the cause still reaches them.
func TestRefusedFailsFast(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connections are refused
	for _, tt := range []struct {
		name    string
		retries int
		fast    bool
	}{
		{"recommended options", 1, true},
		{"default dial retries", 0, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := redisNewClient(t, &redis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1, DialerRetries: tt.retries, DisableIdentity: true})
			var rec recorder
			s, err := redisstore.NewBreakerStore(redisstore.BreakerStoreConfig{Client: c, Name: name(t), Observer: &rec})
			if err != nil {
				t.Fatal(err)
			}
			s.Bind(*consecutive(3, time.Second))
			start := time.Now()
			_, err = s.Update(context.Background(), breaker.Op{Kind: breaker.OpSync})
			el := time.Since(start)
			if err == nil || !strings.Contains(err.Error(), "connection refused") {
				t.Errorf("Update: %v, want the cause (connection refused)", err)
			}
			if tt.fast && el > 50*time.Millisecond {
				t.Errorf("Update took %v, want a refused connection to fail fast", el)
			}
			if f := rec.of(middleware.StoreFailed); len(f) != 1 || !strings.Contains(f[0].Err.Error(), "connection refused") {
				t.Errorf("StoreFailed %+v, want one with the cause", f)
			}
			t.Logf("%v: %v", el, err)
		})
	}
}

// TestStoreObservers: a panicking observer leaves the store working, and
// one that calls back into it does not deadlock.
func TestStoreObservers(t *testing.T) {
	c, _ := client(t)
	var s *redisstore.BreakerStore
	var depth atomic.Int64
	obs := middleware.ObserverFunc(func(ctx context.Context, e middleware.Event) {
		s.Stats()
		if depth.Add(1) == 1 {
			s.Update(ctx, breaker.Op{Kind: breaker.OpSync}) // fails again: a nested event
		}
		panic("observer")
	})
	s, _ = redisstore.NewBreakerStore(redisstore.BreakerStoreConfig{Client: c, Name: name(t), Observer: obs})
	s.Bind(*consecutive(3, time.Second))
	ctx := context.Background()
	c.HSet(ctx, s.StateKey(), "st", "9")
	if _, err := s.Update(ctx, breaker.Op{Kind: breaker.OpSync}); !errors.Is(err, redisstore.ErrCorrupt) {
		t.Fatalf("%v", err)
	}
	c.Del(ctx, s.StateKey())
	if snap, err := s.Update(ctx, breaker.Op{Kind: breaker.OpResult, Gen: 1, Failures: 1}); err != nil || snap.Counts.ConsecutiveFailures != 1 {
		t.Errorf("after the panicking observer: %+v, %v", snap, err)
	}
	if got := s.Stats().StoreFailures; got < 1 {
		t.Errorf("StoreFailures = %d", got)
	}
}
