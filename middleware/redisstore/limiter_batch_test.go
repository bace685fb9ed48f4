package redisstore_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/redisstore"
	"github.com/brace-go/brace/middleware/redisstore/internal/redistest"
	"github.com/brace-go/brace/middleware/redisstore/internal/toxitest"
	"github.com/redis/go-redis/v9"
)

// TestLimiterBatchBound: four limiters (four clients: four processes),
// three batching and one not, 16 goroutines each, share a capacity of 10.
// Batching changes the round trips, not the bound: the calls in flight
// across all of them never exceed the capacity (no slack).
func TestLimiterBatchBound(t *testing.T) {
	srv := redistest.Shared(t)
	const capacity = 10
	var inFlight, peak, admitted, refused atomic.Int64
	var trips counter
	nm := name(t)
	var ls []*redisstore.Limiter
	for i := range 4 {
		c := srv.Client(t)
		c.AddHook(&trips)
		batch := int64(8)
		if i == 3 {
			batch = 0
		}
		ls = append(ls, mustLimiter(t, redisstore.LimiterConfig{Client: c, Name: nm, Capacity: capacity, Batch: batch, Timeout: time.Second}))
	}
	d := 2 * time.Second
	if testing.Short() {
		d = time.Second
	}
	end := time.Now().Add(d)
	ctx := context.Background()
	var wg sync.WaitGroup
	for _, l := range ls {
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(end) {
					p, err := l.Acquire(ctx)
					if err != nil {
						var le *redisstore.LimitError
						if !errors.As(err, &le) || le.Local {
							t.Errorf("Acquire: %v", err)
							return
						}
						refused.Add(1)
						time.Sleep(time.Millisecond)
						continue
					}
					n := inFlight.Add(1)
					for {
						old := peak.Load()
						if n <= old || peak.CompareAndSwap(old, n) {
							break
						}
					}
					admitted.Add(1)
					time.Sleep(time.Millisecond)
					inFlight.Add(-1)
					p.Done(nil)
				}
			}()
		}
	}
	wg.Wait()
	n, _ := trips.take()
	t.Logf("capacity %d, 3 batching limiters (Batch 8) and 1 not: peak in flight %d, %d admitted, %d refused, %.3f round trips per admitted call",
		capacity, peak.Load(), admitted.Load(), refused.Load(), float64(n)/float64(max(admitted.Load(), 1)))
	if peak.Load() > capacity {
		t.Errorf("peak in flight %d, more than the capacity %d", peak.Load(), capacity)
	}
	if admitted.Load() == 0 {
		t.Error("nothing admitted")
	}
	// Every block is released once its calls stop (at the next renewal,
	// Lease/3 = 1s, or two).
	if _, ok := toxitest.Eventually(5*time.Second, func() bool {
		d, err := ls[0].Depth(ctx)
		return err == nil && d == 0
	}); !ok {
		d, err := ls[0].Depth(ctx)
		t.Errorf("depth %d, %v 5s after the calls ended, want 0", d, err)
	}
}

// TestLimiterBatchRoundTrips measures the batching limiter's round trips
// at steady state: 8 goroutines making 2ms calls back to back. Issue 17
// asks for at most 0.1 round trips per admitted call.
func TestLimiterBatchRoundTrips(t *testing.T) {
	c, n := client(t)
	ctx := context.Background()
	l := mustLimiter(t, redisstore.LimiterConfig{Client: c, Name: name(t), Capacity: 100, Batch: 16})
	run := func(d time.Duration) int64 {
		var got atomic.Int64
		var wg sync.WaitGroup
		end := time.Now().Add(d)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(end) {
					p, err := l.Acquire(ctx)
					if err != nil {
						t.Errorf("Acquire: %v", err)
						return
					}
					time.Sleep(2 * time.Millisecond)
					p.Done(nil)
					got.Add(1)
				}
			}()
		}
		wg.Wait()
		return got.Load()
	}
	run(200 * time.Millisecond)
	n.take()
	admitted := run(time.Second)
	trips, names := n.take()
	ratio := float64(trips) / float64(max(admitted, 1))
	t.Logf("concurrency limiter, Batch 16: %d round trips (%v) for %d admitted calls: %.3f per call", trips, names, admitted, ratio)
	if ratio > 0.1 {
		t.Errorf("%.3f round trips per admitted call, want at most 0.1", ratio)
	}
}

// TestLimiterBatchShrinks: a block grown by a burst of 40 calls shrinks
// when the calls stop, and is released: Depth goes back to 0 within a few
// Lease/3 renewals.
func TestLimiterBatchShrinks(t *testing.T) {
	c, _ := client(t)
	ctx := context.Background()
	l := mustLimiter(t, redisstore.LimiterConfig{Client: c, Name: name(t), Capacity: 100, Batch: 8, Lease: 300 * time.Millisecond})
	var ps []redisstore.Permit
	for range 40 {
		p, err := l.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	d, err := l.Depth(ctx)
	if err != nil || d < 40 || d > 48 {
		t.Fatalf("depth %d, %v with 40 calls in flight, want 40 to 48 (at most one batch held unused)", d, err)
	}
	for i := range ps {
		ps[i].Done(nil)
		ps[i].Done(nil) // a second Done does nothing
	}
	d, _ = l.Depth(ctx)
	t.Logf("depth with 40 calls in flight: ≤48; after they ended: %d", d)
	if d > 16 {
		t.Errorf("depth %d after the calls ended, want at most two batches (16): unused slots are given back", d)
	}
	took, ok := toxitest.Eventually(3*time.Second, func() bool { d, err := l.Depth(ctx); return err == nil && d == 0 })
	if !ok {
		t.Fatal("block not released within 3s (10 renewals)")
	}
	t.Logf("block released %v after the calls ended", took)
}

// TestLimiterBatchCorrupt: the blocks' keys of the wrong type or holding
// sizes that are not numbers are repaired and reported, never a panic.
func TestLimiterBatchCorrupt(t *testing.T) {
	c, _ := client(t)
	ctx := context.Background()
	var rec recorder
	cfg := redisstore.LimiterConfig{Client: c, Name: name(t), Capacity: 5, Batch: 2, Observer: &rec}
	l := mustLimiter(t, cfg)
	blocks, sizes := l.Key()[:len(l.Key())-len("leases")]+"blocks", l.Key()[:len(l.Key())-len("leases")]+"sizes"
	for _, set := range []func() error{
		func() error { return c.Set(ctx, blocks, "x", 0).Err() },
		func() error {
			c.Del(ctx, blocks)
			c.ZAdd(ctx, blocks, redis.Z{Score: 1e15 * 3, Member: "p"})
			return c.HSet(ctx, sizes, "p", "lots", "q", string(make([]byte, 10<<10))).Err()
		},
		func() error { c.Del(ctx, blocks, sizes); return c.HSet(ctx, sizes, "p", "1e300").Err() },
	} {
		if err := set(); err != nil {
			t.Fatal(err)
		}
		l := mustLimiter(t, cfg) // a process without a block: a round trip
		p, err := l.Acquire(ctx)
		if err != nil {
			t.Fatalf("Acquire after corruption: %v", err)
		}
		p.Done(nil)
	}
	fails := rec.of(middleware.StoreFailed)
	if len(fails) < 3 || !errors.Is(fails[0].Err, redisstore.ErrCorrupt) {
		t.Errorf("StoreFailed events %v, want three ErrCorrupt", fails)
	}
}

// TestLimiterBatchAllocs: a slot taken from the block and given back
// allocates nothing.
func TestLimiterBatchAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocations differ under the race detector")
	}
	c, _ := client(t)
	ctx := context.Background()
	l := mustLimiter(t, redisstore.LimiterConfig{Client: c, Name: name(t), Capacity: 100, Batch: 8, Lease: time.Minute})
	p, err := l.Acquire(ctx) // the block
	if err != nil {
		t.Fatal(err)
	}
	defer p.Done(nil)
	if n := testing.AllocsPerRun(1000, func() {
		q, err := l.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		q.Done(nil)
	}); n != 0 {
		t.Errorf("%v allocations per call from the block", n)
	}
}
