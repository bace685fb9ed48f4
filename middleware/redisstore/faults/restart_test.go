package faults_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/redisstore/internal/toxitest"
)

// TestRestartEmpty empties Redis under two processes whose shared breaker
// is open, with a limiter lease held and a result cached: by FLUSHALL, or
// by killing the server and restarting it empty (persistence is off).
// No process wedges: both adopt the fresh, closed breaker and admit calls
// again within recoveryBound; the lease held across the restart is given
// back without harm; the shared state is re-created (failures through one
// process open the breaker for the other again); and the cache is simply
// cold.
func TestRestartEmpty(t *testing.T) {
	for _, tc := range []struct {
		name  string
		empty func(t *testing.T, px *toxitest.Proxy)
	}{
		{"FLUSHALL", func(t *testing.T, px *toxitest.Proxy) { px.FlushAll(t) }},
		{"killed and restarted", func(t *testing.T, px *toxitest.Proxy) {
			px.Kill()
			time.Sleep(300 * time.Millisecond) // down for a while; schedules the fault in real time
			px.Restart(t)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			px := toxitest.Start(t)
			nm := name(t)
			cfg := procConfig{ttl: time.Minute}
			p1, p2 := newProc(t, px.Options(), nm, cfg), newProc(t, px.Options(), nm, cfg)
			ctx := context.Background()
			for _, pr := range []*proc{p1, p2} {
				if _, err := pr.call(ctx, "k"); err != nil {
					t.Fatal(err)
				}
			}
			if p1.calls+p2.calls != 1 {
				t.Fatalf("two calls for k ran the stage %d times, want 1 (cached)", p1.calls+p2.calls)
			}
			held, err := p1.lim.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			checkShared(t, p1, p2) // the shared breaker is open now

			tc.empty(t, px)
			emptied := time.Now()
			var rejected, failed int
			took, ok := toxitest.Eventually(recoveryBound, func() bool {
				n := 0
				for _, pr := range []*proc{p1, p2} {
					_, err := pr.call(ctx, "k")
					switch {
					case err == nil:
						n++
					case errors.Is(err, breaker.ErrOpen):
						rejected++
					default:
						failed++
						t.Errorf("call after emptying Redis: %v", err)
					}
				}
				return n == 2
			})
			held.Done(nil) // its lease is gone with the data
			t.Logf("%s: both processes admit calls again %v after Redis was emptied (bound %v); meanwhile %d calls rejected by the old open state, %d failed",
				tc.name, took.Round(time.Millisecond), recoveryBound, rejected, failed)
			if !ok {
				t.Fatalf("%v after Redis was emptied, the processes still reject calls (breakers %v and %v): a process wedged",
					time.Since(emptied).Round(time.Millisecond), p1.b.State(), p2.b.State())
			}
			if _, ok := toxitest.Eventually(recoveryBound, func() bool { return !p1.down() && !p2.down() }); !ok {
				t.Errorf("a part still skips Redis %v after it was emptied", recoveryBound)
			}
			// The cache was emptied: k ran again, once more at most per
			// process (each process may have run it while the store was
			// skipped).
			if n := p1.calls + p2.calls; n < 2 || n > 3 {
				t.Errorf("after emptying Redis the stage ran %d times in all for k, want 2 or 3", n)
			}
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			if d, err := p1.lim.Depth(cctx); err != nil || d != 0 {
				t.Errorf("limiter depth after the lease held across the restart was given back: %d, %v; want 0", d, err)
			}
			// The shared state is re-created.
			checkShared(t, p1, p2)
			if st := hget(admin(t, px), breakerKey(nm), "st"); st != "1" {
				t.Errorf("the re-created shared state is %q, want 1 (open)", st)
			}
		})
	}
}
