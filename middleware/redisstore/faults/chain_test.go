package faults_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/redisstore"
	"github.com/brace-go/brace/middleware/redisstore/internal/toxitest"
)

// toxic is one network fault of the chain tests.
type toxic struct {
	name string
	add  func(t *testing.T, px *toxitest.Proxy)
}

// TestChainUnderLatency, TestChainUnderCutConnections and
// TestChainUnderBlackholes drive two processes' chains (breaker with its
// state in Redis → global limiter → cross-process dedup → a healthy
// stage) through each network fault for faultFor while callers call
// them, then remove the fault. During the fault, every call returns the
// stage's result (every part falls back to local state) within callBound;
// once it is removed, every part is back on Redis within recoveryBound
// and the shared breaker works across the processes.
func TestChainUnderLatency(t *testing.T) {
	runChain(t, []toxic{
		{"latency below the timeout, with jitter", func(t *testing.T, px *toxitest.Proxy) {
			px.Latency(t, toxitest.Downstream, 20*time.Millisecond, 10*time.Millisecond)
		}},
		{"latency above the timeout", func(t *testing.T, px *toxitest.Proxy) {
			px.Latency(t, toxitest.Downstream, 3*storeTimeout, 0)
		}},
		{"latency on commands", func(t *testing.T, px *toxitest.Proxy) {
			px.Latency(t, toxitest.Upstream, 3*storeTimeout, storeTimeout)
		}},
		{"bandwidth 1 KB/s", func(t *testing.T, px *toxitest.Proxy) {
			px.Bandwidth(t, toxitest.Downstream, 1)
		}},
	})
}

func TestChainUnderCutConnections(t *testing.T) {
	runChain(t, []toxic{
		{"replies cut after 100 bytes", func(t *testing.T, px *toxitest.Proxy) {
			px.LimitData(t, toxitest.Downstream, 100)
		}},
		{"connections reset", func(t *testing.T, px *toxitest.Proxy) {
			px.ResetPeer(t, toxitest.Upstream, 0)
		}},
		{"slow close", func(t *testing.T, px *toxitest.Proxy) {
			px.SlowClose(t, toxitest.Downstream, 200*time.Millisecond)
		}},
	})
}

func TestChainUnderBlackholes(t *testing.T) {
	runChain(t, []toxic{
		{"blackhole", func(t *testing.T, px *toxitest.Proxy) {
			px.Blackhole(t, toxitest.Downstream, 0)
		}},
		{"blackhole, closed after 50ms", func(t *testing.T, px *toxitest.Proxy) {
			px.Blackhole(t, toxitest.Upstream, 50*time.Millisecond)
		}},
	})
}

func runChain(t *testing.T, toxics []toxic) {
	const (
		faultFor = 600 * time.Millisecond
		callers  = 3 // per process
	)
	for _, tc := range toxics {
		t.Run(tc.name, func(t *testing.T) {
			px := toxitest.Start(t)
			nm := name(t)
			cfg := procConfig{work: time.Millisecond, capacity: 2 * callers, ttl: time.Second}
			procs := []*proc{newProc(t, px.Options(), nm, cfg), newProc(t, px.Options(), nm, cfg)}
			var (
				stop        atomic.Bool
				wg          sync.WaitGroup
				calls       atomic.Int64
				slowest     atomic.Int64
				mu          sync.Mutex
				errs        []error
				slow        []string     // calls above callBound
				limited     int          // calls rejected by the global limit
				lastLimited time.Time    // when the last one was
				faultCall   atomic.Int64 // calls during the fault
			)
			var faulty atomic.Bool
			for i := range 2 * callers {
				pr := procs[i%2]
				wg.Go(func() {
					for j := 0; !stop.Load(); j++ {
						// Keys repeat across callers and processes, so
						// calls share flights and cached results.
						d, err := pr.call(context.Background(), fmt.Sprintf("k%d", j%8))
						calls.Add(1)
						if faulty.Load() {
							faultCall.Add(1)
						}
						for s := slowest.Load(); int64(d) > s && !slowest.CompareAndSwap(s, int64(d)); s = slowest.Load() {
						}
						switch {
						case errors.Is(err, redisstore.ErrLimited):
							// A lost acquire reply leaves a lease with no
							// holder until the process's next acquire
							// that reaches Redis releases it.
							mu.Lock()
							limited++
							lastLimited = time.Now()
							mu.Unlock()
						case err != nil:
							mu.Lock()
							errs = append(errs, fmt.Errorf("call for k%d failed after %v: %w", j%8, d, err))
							mu.Unlock()
						case d > callBound:
							mu.Lock()
							slow = append(slow, fmt.Sprintf("k%d: %v", j%8, d.Round(time.Millisecond)))
							mu.Unlock()
						}
					}
				})
			}
			// The sleeps schedule the fault in real time; nothing waits
			// for a goroutine by sleeping.
			time.Sleep(100 * time.Millisecond)
			faulty.Store(true)
			tc.add(t, px)
			time.Sleep(faultFor)
			px.RemoveAll()
			faulty.Store(false)
			removed := time.Now()
			failedDuring := procs[0].storeFailures() + procs[1].storeFailures()
			took, ok := toxitest.Eventually(recoveryBound, func() bool { return !procs[0].down() && !procs[1].down() })
			// Calls keep running a little after recovery: then no
			// store operation fails.
			time.Sleep(50 * time.Millisecond)
			before := procs[0].storeFailures() + procs[1].storeFailures()
			time.Sleep(100 * time.Millisecond)
			after := procs[0].storeFailures() + procs[1].storeFailures()
			stop.Store(true)
			wg.Wait()

			t.Logf("%s: %d calls (%d during the fault), slowest %v (bound %v); %d store failures during it; back on Redis %v after it was removed (bound %v); %d store failures after that; %d calls limited by leases whose replies were lost",
				tc.name, calls.Load(), faultCall.Load(), time.Duration(slowest.Load()).Round(time.Millisecond), callBound,
				failedDuring, took.Round(time.Millisecond), recoveryBound, after-before, limited)
			if lastLimited.After(removed.Add(recoveryBound)) {
				t.Errorf("a call was limited %v after the fault was removed (bound %v): leases whose replies were lost still count",
					lastLimited.Sub(removed).Round(time.Millisecond), recoveryBound)
			}
			for i, err := range errs {
				if i == 5 {
					t.Errorf("... and %d more", len(errs)-5)
					break
				}
				t.Error(err)
			}
			if !ok {
				t.Errorf("some part still skips Redis %v after the fault was removed (bound %v)", time.Since(removed).Round(time.Millisecond), recoveryBound)
			}
			if after != before {
				t.Errorf("%d store failures after recovery", after-before)
			}
			// The shared breaker still works: failures through one
			// process open it for the other.
			checkShared(t, procs[0], procs[1])
			if len(slow) > 0 {
				// Seen only with keys shared across the processes: a
				// dedup follower waiting, after the fault, for a lock
				// whose leader's publish was lost (see
				// TestDedupLockAfterLatencySpike).
				t.Errorf("%d calls took longer than the bound %v: %v", len(slow), callBound, tail(slow, 5))
			}
		})
	}
}

// checkShared opens a's breaker with failures (a's Threshold) and checks
// that b, which shares the state, rejects calls within its StoreSync
// (polled). An attempt can be spoilt by a store operation that overruns
// its Timeout on a loaded machine: a breaker then records results locally
// for its StoreSync, so each attempt first lets that pause pass, and
// checkShared tries again within recoveryBound.
func checkShared(t *testing.T, a, b *proc) {
	t.Helper()
	ctx := context.Background()
	boom := errors.New("downstream failed")
	attempts := 0
	took, ok := toxitest.Eventually(recoveryBound, func() bool {
		attempts++
		time.Sleep(40 * time.Millisecond) // twice the procs' StoreSync: lets real time pass
		for range 5 {                     // the procs' default Threshold
			if p, err := a.b.Acquire(ctx); err == nil {
				p.Done(boom)
			}
		}
		_, ok := toxitest.Eventually(200*time.Millisecond, func() bool {
			p, err := b.b.Acquire(ctx)
			if err == nil {
				p.Done(nil)
			}
			return errors.Is(err, breaker.ErrOpen)
		})
		return ok
	})
	if !ok {
		t.Errorf("another process's breaker still admits calls %v after failures opened the shared breaker (%d attempts); a: %+v %+v; b: %+v %+v; a's last events %v",
			took.Round(time.Millisecond), attempts, a.b.Stats(), a.store.Stats(), b.b.Stats(), b.store.Stats(), tail(a.rec.events(), 5))
	} else if attempts > 1 {
		t.Logf("the shared breaker opened for the other process at attempt %d", attempts)
	}
}

// tail returns the last n of evs.
func tail[T any](evs []T, n int) []T { return evs[max(0, len(evs)-n):] }
