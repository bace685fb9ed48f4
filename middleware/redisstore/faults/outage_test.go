package faults_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/redisstore"
	"github.com/brace-go/brace/middleware/redisstore/internal/toxitest"
)

// outageMedianSlack is how much slower than a healthy one the median call
// may be during an outage: well below one store Timeout (100ms), which is
// what each Redis-backed part waited out on every call before issue 15
// item 3 was fixed (a median of 405ms against 1ms).
const outageMedianSlack = 20 * time.Millisecond

// TestOutageSkipsStore is issue 15 item 3: during an outage — replies
// blackholed, or the server killed — every Redis-backed part (breaker
// store, limiter, dedup) skips the store once it knows it is down, so the
// median call stays near the healthy one; and once the store is back,
// every part uses it again within recoveryBound.
func TestOutageSkipsStore(t *testing.T) {
	for _, tc := range []struct {
		name        string
		fail, heal  func(t *testing.T, px *toxitest.Proxy)
		wantRefused bool
	}{
		{name: "blackhole", fail: func(t *testing.T, px *toxitest.Proxy) {
			x := px.Blackhole(t, toxitest.Downstream, 0)
			t.Cleanup(func() { x.Remove(t) })
		}, heal: func(t *testing.T, px *toxitest.Proxy) { px.RemoveAll() }},
		{name: "killed", fail: func(t *testing.T, px *toxitest.Proxy) { px.Kill() },
			heal: func(t *testing.T, px *toxitest.Proxy) { px.Restart(t) }},
		{name: "refused", fail: func(t *testing.T, px *toxitest.Proxy) { px.Disable() },
			heal: func(t *testing.T, px *toxitest.Proxy) { px.Enable(t) }, wantRefused: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const (
				n      = 150 // calls per phase
				outage = n   // calls during the outage
			)
			px := toxitest.Start(t)
			pr := newProc(t, px.Options(), name(t), procConfig{})
			ctx := context.Background()
			phase := func(what string, calls int) []time.Duration {
				ds := make([]time.Duration, 0, calls)
				for i := range calls {
					d, err := pr.call(ctx, fmt.Sprintf("%s-%d", what, i))
					if err != nil {
						t.Fatalf("%s: call %d: %v (the downstream is healthy: every part must fall back)", what, i, err)
					}
					if d > callBound {
						t.Errorf("%s: call %d took %v, above the bound %v", what, i, d, callBound)
					}
					ds = append(ds, d)
				}
				return ds
			}
			healthy := median(phase("healthy", n))
			if pr.down() || pr.storeFailures() != 0 {
				t.Fatalf("healthy phase: down %v, %d store failures", pr.down(), pr.storeFailures())
			}

			tc.fail(t, px)
			start := time.Now()
			ds := phase("outage", outage)
			during := time.Since(start)
			out := median(ds)
			worst := ds[len(ds)-1] // phase sorted them
			failed := pr.storeFailures()
			if !pr.down() {
				t.Errorf("after %d calls into an outage some part still uses Redis (breaker %v, limiter %v, dedup %v)",
					outage, pr.store.Stats().Down, pr.lim.Stats().Down, pr.dd.Stats().Down)
			}

			tc.heal(t, px)
			healed := time.Now()
			var afterCalls int
			took, ok := toxitest.Eventually(recoveryBound, func() bool {
				afterCalls++
				if _, err := pr.call(ctx, fmt.Sprintf("after-%d", afterCalls)); err != nil {
					t.Fatalf("a call after the outage: %v", err)
				}
				return !pr.down()
			})
			// Once up, calls go through Redis without failures.
			before := pr.storeFailures()
			after := median(phase("recovered", 30))
			t.Logf("%s: median call healthy %v, during the outage %v (slowest %v; %d calls in %v; %d store failures), after %v; every part back on Redis %v after the store returned (%d calls; bound %v)",
				tc.name, healthy, out, worst.Round(time.Millisecond), outage, during.Round(time.Millisecond), failed, after,
				took.Round(time.Millisecond), afterCalls, recoveryBound)
			if out > healthy+outageMedianSlack {
				t.Errorf("median call during the outage %v, healthy %v: more than %v slower, so some part waits on a store it knows is down",
					out, healthy, outageMedianSlack)
			}
			if !ok {
				t.Errorf("%v after the store returned some part still skips it (breaker %v, limiter %v, dedup %v), bound %v",
					time.Since(healed).Round(time.Millisecond), pr.store.Stats().Down, pr.lim.Stats().Down, pr.dd.Stats().Down, recoveryBound)
			}
			if f := pr.storeFailures() - before; f != 0 {
				t.Errorf("%d store failures in 30 calls after recovery", f)
			}
			// The health's events: each part reports "down", then "up". A
			// part reports "up" at its own next operation, and a call that
			// the breaker refuses reaches neither the limiter nor the dedup:
			// keep calling, within the recovery bound, until every part has.
			count := func() (downs, ups int) {
				for _, e := range pr.rec.of(middleware.StateChanged) {
					switch {
					case e.Concern != "redisstore":
					case e.From == "up" && e.To == "down":
						downs++
						if e.Err == nil {
							t.Errorf("StateChanged to down without its cause")
						}
					case e.From == "down" && e.To == "up":
						ups++
					}
				}
				return downs, ups
			}
			var more int
			toxitest.Eventually(recoveryBound, func() bool {
				if d, u := count(); d > 0 && u == d {
					return true
				}
				more++
				_, _ = pr.call(ctx, fmt.Sprintf("report-%d", more))
				return false
			})
			if downs, ups := count(); downs == 0 || ups != downs {
				t.Errorf("StateChanged events of the store's health: %d up→down, %d down→up; want each part to report both", downs, ups)
			}
			if tc.wantRefused {
				checkCause(t, pr.rec, false)
			}
		})
	}
}

// checkCause checks that the store failures and the "down" events of a
// refused connection carry the cause. With strict false, connections that
// were open when the port started refusing may also fail with their own
// cause (EOF, a reset: the proxy closed them), but never with a context
// error alone, and at least one failure is the refused dial.
func checkCause(t *testing.T, rec *recorder, strict bool) {
	t.Helper()
	ok := func(err error) bool {
		return isRefused(err) || (!strict && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)))
	}
	fails := rec.of(middleware.StoreFailed)
	refused := 0
	for _, e := range fails {
		if isRefused(e.Err) {
			refused++
		}
		if !ok(e.Err) {
			t.Errorf("StoreFailed (%s %q): %v, want the cause: connection refused", e.Concern, e.Name, e.Err)
		}
	}
	if refused == 0 {
		t.Errorf("no StoreFailed event of %d says connection refused", len(fails))
	}
	var down int
	for _, e := range rec.of(middleware.StateChanged) {
		if e.Concern != "redisstore" || e.To != "down" {
			continue
		}
		down++
		if !ok(e.Err) {
			t.Errorf("StateChanged to down: %v, want the cause: connection refused", e.Err)
		}
	}
	if down == 0 {
		t.Error("no StateChanged event to \"down\" with Concern \"redisstore\"")
	}
}

func isRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) && strings.Contains(err.Error(), "connection refused")
}

// TestRefusedFailsFast is issue 15 item 4: a Redis that refuses
// connections surfaces its real cause (connection refused), not
// "context deadline exceeded", in the error of every API that returns
// one and in the events. With the client options docs/distributed.md
// recommends (DialerRetries 1) a refused connection fails fast, not
// after the store's Timeout; with go-redis's default (5 dials, 100ms
// apart) it still costs the Timeout, but keeps its cause.
func TestRefusedFailsFast(t *testing.T) {
	// refusedBound: a refused connection is known within a millisecond on
	// loopback; this leaves room for a loaded machine, and is well below
	// the store Timeout that a retried dial waits out.
	const refusedBound = storeTimeout / 2
	for _, tc := range []struct {
		name    string
		retries int // redis.Options.DialerRetries
		fast    bool
	}{
		{"recommended options (DialerRetries 1)", 1, true},
		{"go-redis default dial retries", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			px := toxitest.Start(t)
			opts := px.Options()
			opts.DialerRetries = tc.retries
			pr := newProc(t, opts, name(t), procConfig{})
			px.Disable()
			ctx := context.Background()
			check := func(what string, took time.Duration, err error) {
				t.Helper()
				t.Logf("%s on a refused port: %v after %v", what, err, took.Round(time.Microsecond))
				if !isRefused(err) {
					t.Errorf("%s on a refused port: %v, want the cause: connection refused", what, err)
				}
				if tc.fast && took > refusedBound {
					t.Errorf("%s on a refused port took %v, want under %v", what, took, refusedBound)
				}
			}
			start := time.Now()
			_, err := pr.store.Update(ctx, breaker.Op{Kind: breaker.OpSync})
			check("BreakerStore.Update", time.Since(start), err)
			start = time.Now()
			_, err = pr.lim.Depth(ctx)
			check("Limiter.Depth", time.Since(start), err)

			// A call through every part: each falls back; the first call
			// pays for at most callStoreOps refused operations.
			d, err := pr.call(ctx, "k")
			t.Logf("the first call through breaker, limiter and dedup on a refused port: %v, %v", d, err)
			if err != nil {
				t.Errorf("call: %v, want the stage's result (every part falls back)", err)
			}
			if tc.fast && d > callStoreOps*refusedBound {
				t.Errorf("the first call on a refused port took %v, want under %v", d, callStoreOps*refusedBound)
			}
			// The store is down now: its errors say so, and keep the cause.
			_, err = pr.store.Update(ctx, breaker.Op{Kind: breaker.OpSync})
			if pr.down() && (!errors.Is(err, redisstore.ErrStoreDown) || !isRefused(err)) {
				t.Errorf("BreakerStore.Update while down: %v, want ErrStoreDown and the cause: connection refused", err)
			}
			checkCause(t, pr.rec, true)
		})
	}
}
