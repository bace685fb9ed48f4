package faults_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware/redisstore"
	"github.com/brace-go/brace/middleware/redisstore/internal/toxitest"
)

// rateFaults are the faults of issue 17: Redis stopped (SIGSTOP), killed
// and restarted empty, and slowed by 200ms.
var rateFaults = []struct {
	name       string
	fail, heal func(t *testing.T, px *toxitest.Proxy)
}{
	{"frozen", func(t *testing.T, px *toxitest.Proxy) { px.Server.Freeze(t) },
		func(t *testing.T, px *toxitest.Proxy) { px.Server.Thaw(t) }},
	{"killed and restarted empty", func(t *testing.T, px *toxitest.Proxy) { px.Kill() },
		func(t *testing.T, px *toxitest.Proxy) { px.Restart(t) }},
	{"slowed by 200ms", func(t *testing.T, px *toxitest.Proxy) { px.Latency(t, toxitest.Downstream, 200*time.Millisecond, 0) },
		func(t *testing.T, px *toxitest.Proxy) { px.RemoveAll() }},
}

// maxCallWait is the documented bound of one rate limiter call under any
// fault: it waits for at most two other callers' batch fills and makes at
// most one round trip of its own, each bounded by Timeout.
const maxCallWait = 3 * storeTimeout

// hammerRate calls l from 8 goroutines for d, each pausing 1ms between
// calls, and returns the calls admitted globally and locally and the
// longest call.
func hammerRate(t *testing.T, l *redisstore.RateLimiter, d time.Duration) (global, local int64, longest time.Duration) {
	var g, lo, worst atomic.Int64
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				start := time.Now()
				p, err := l.Acquire(context.Background())
				took := time.Since(start)
				for {
					w := worst.Load()
					if int64(took) <= w || worst.CompareAndSwap(w, int64(took)) {
						break
					}
				}
				switch {
				case err == nil && p.Local:
					lo.Add(1)
				case err == nil:
					g.Add(1)
				case !errors.Is(err, redisstore.ErrRateLimited):
					t.Errorf("Acquire: %v", err)
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	wg.Wait()
	return g.Load(), lo.Load(), time.Duration(worst.Load())
}

// TestRateLimiterFaults is issue 17's fault measurement for the global
// rate limiter (200/s, Burst 20, Replicas 4, MaxBatch 10): under each
// fault no call waits longer than maxCallWait (plus scheduling slack), the
// local fallback admits at most its share (50/s, burst 5) plus the one
// batch reserved before the fault, and once Redis is back the global limit
// is used again within recoveryBound.
func TestRateLimiterFaults(t *testing.T) {
	for _, tc := range rateFaults {
		t.Run(tc.name, func(t *testing.T) {
			px := toxitest.Start(t)
			l, err := redisstore.NewRateLimiter(redisstore.RateLimiterConfig{Client: px.Client(t), Name: name(t),
				Rate: 200, Burst: 20, Replicas: 4, MaxBatch: 10, Timeout: storeTimeout})
			if err != nil {
				t.Fatal(err)
			}
			g, lo, _ := hammerRate(t, l, 300*time.Millisecond)
			if g == 0 || lo != 0 {
				t.Fatalf("healthy: %d admitted globally, %d locally", g, lo)
			}
			tc.fail(t, px)
			const during = 1500 * time.Millisecond
			g, lo, longest := hammerRate(t, l, during)
			share := 50*during.Seconds() + 5 + 10 // the local share, its burst, one batch reserved before
			t.Logf("%s: during %v: %d admitted globally, %d locally (share bound %.0f); longest call %v (bound %v + slack)",
				tc.name, during, g, lo, share, longest, maxCallWait)
			if longest > maxCallWait+slack {
				t.Errorf("a call waited %v, more than %v + %v", longest, maxCallWait, slack)
			}
			if float64(g+lo) > share {
				t.Errorf("admitted %d during the fault, more than the local share's %.0f", g+lo, share)
			}
			if lo == 0 {
				t.Error("the local fallback admitted nothing")
			}
			tc.heal(t, px)
			took, ok := toxitest.Eventually(recoveryBound+time.Second, func() bool {
				p, err := l.Acquire(context.Background())
				return err == nil && !p.Local
			})
			if !ok {
				t.Fatalf("not back on the global limit within %v", recoveryBound+time.Second)
			}
			t.Logf("%s: global limit used again %v after the fault ended", tc.name, took)
			if n, err := admin(t, px).Exists(context.Background(), "brace:{rate:"+name(t)+"}:tat").Result(); err != nil || n != 1 {
				t.Errorf("the global key after recovery: exists %d, %v", n, err)
			}
		})
	}
}

// TestLimiterBatchFaults: a batching concurrency limiter under the same
// faults: no call waits longer than maxCallWait (plus slack), calls in
// flight never exceed the local capacity plus the block held before the
// fault, and once Redis is back the limiter uses its block again.
func TestLimiterBatchFaults(t *testing.T) {
	for _, tc := range rateFaults {
		t.Run(tc.name, func(t *testing.T) {
			px := toxitest.Start(t)
			const capacity, local, batch = 40, 4, 8
			l, err := redisstore.NewLimiter(redisstore.LimiterConfig{Client: px.Client(t), Name: name(t),
				Capacity: capacity, LocalCapacity: local, Batch: batch, Lease: 600 * time.Millisecond, Timeout: storeTimeout})
			if err != nil {
				t.Fatal(err)
			}
			var inFlight, peak atomic.Int64
			run := func(d time.Duration) (longest time.Duration) {
				var worst atomic.Int64
				var wg sync.WaitGroup
				end := time.Now().Add(d)
				for range 8 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for time.Now().Before(end) {
							start := time.Now()
							p, err := l.Acquire(context.Background())
							if took := int64(time.Since(start)); took > worst.Load() {
								worst.Store(took) // racy max: good enough for a bound
							}
							if err != nil {
								time.Sleep(time.Millisecond)
								continue
							}
							n := inFlight.Add(1)
							if n > peak.Load() {
								peak.Store(n)
							}
							time.Sleep(2 * time.Millisecond)
							inFlight.Add(-1)
							p.Done(nil)
						}
					}()
				}
				wg.Wait()
				return time.Duration(worst.Load())
			}
			run(300 * time.Millisecond)
			tc.fail(t, px)
			peak.Store(0)
			longest := run(time.Second)
			t.Logf("%s: longest call %v (bound %v + slack), peak in flight %d", tc.name, longest, maxCallWait, peak.Load())
			if longest > maxCallWait+slack {
				t.Errorf("a call waited %v, more than %v + %v", longest, maxCallWait, slack)
			}
			tc.heal(t, px)
			ctx := context.Background()
			took, ok := toxitest.Eventually(recoveryBound+time.Second, func() bool {
				p, err := l.Acquire(ctx)
				if err != nil {
					return false
				}
				defer p.Done(nil)
				d, err := l.Depth(ctx)
				return err == nil && d > 0
			})
			if !ok {
				t.Fatalf("not back on Redis within %v", recoveryBound+time.Second)
			}
			t.Logf("%s: block in Redis again %v after the fault ended", tc.name, took)
		})
	}
}

// TestLimiterBatchLeaseExpires: a process holding a block with calls in
// flight loses Redis (its proxy is cut): another process sees the block's
// slots come back within Lease, on the server's clock.
func TestLimiterBatchLeaseExpires(t *testing.T) {
	px := toxitest.Start(t)
	const lease = 600 * time.Millisecond
	cfg := redisstore.LimiterConfig{Client: px.Client(t), Name: name(t), Capacity: 20, Batch: 8, Lease: lease, Timeout: storeTimeout}
	a, err := redisstore.NewLimiter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Client = admin(t, px)
	b, err := redisstore.NewLimiter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var ps []redisstore.Permit
	for range 5 {
		p, err := a.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	if d, err := b.Depth(ctx); err != nil || d < 5 {
		t.Fatalf("depth %d, %v with a's 5 calls in flight", d, err)
	}
	px.Disable()
	defer px.Enable(t)
	took, ok := toxitest.Eventually(lease+slack, func() bool { d, err := b.Depth(ctx); return err == nil && d == 0 })
	if !ok {
		t.Fatalf("a's block not expired within Lease (%v) + %v", lease, slack)
	}
	t.Logf("a's block of 5+ slots expired %v after a lost Redis (Lease %v)", took, lease)
	for i := range ps {
		ps[i].Done(nil)
	}
}
