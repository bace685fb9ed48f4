package throttle_test

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/middleware/priority"
	"github.com/brace-go/brace/middleware/throttle"
)

// FuzzThrottle: any Config is either refused with an error naming the
// package, or gives a throttler whose counts and probabilities stay
// consistent under any sequence of results, levels and idle spells.
func FuzzThrottle(f *testing.F) {
	f.Add(2.0, int64(10*time.Second), 10, 10, 0.9, true, []byte{0, 1, 2, 3, 4, 5, 6, 7})
	f.Add(0.0, int64(0), 0, 0, 0.0, false, []byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 200})
	f.Add(1.0, int64(time.Second), 1, 1, 1.0, true, []byte{9, 9, 9, 9, 255, 0})
	f.Fuzz(func(t *testing.T, k float64, window int64, buckets, minReq int, maxP float64, prio bool, ops []byte) {
		cfg := throttle.Config{K: k, Window: time.Duration(window), Buckets: buckets, MinRequests: minReq,
			MaxProbability: maxP, Priorities: prio, Seed: 1}
		synctest.Test(t, func(t *testing.T) {
			th, err := throttle.New(cfg)
			if err != nil {
				if !strings.HasPrefix(err.Error(), "throttle: ") {
					t.Fatalf("error %q does not name the package", err)
				}
				return
			}
			ceiling := maxP
			if ceiling == 0 {
				ceiling = 0.9
			}
			levels := []priority.Level{priority.Sheddable, priority.Default, priority.Critical}
			var rejected uint64
			for _, op := range ops {
				switch op % 8 {
				case 7:
					time.Sleep(time.Duration(op) * time.Millisecond * 10)
					continue
				}
				ctx := priority.With(context.Background(), levels[int(op)%3])
				p, err := th.Acquire(ctx)
				if err != nil {
					rejected++
					continue
				}
				if op%2 == 0 {
					p.Done(nil)
				} else {
					p.Done(errUnavailable)
				}
			}
			s := th.Stats()
			if s.Rejected != rejected || s.Accepts > s.Requests || s.Requests < 0 ||
				s.Probability < 0 || s.Probability > ceiling {
				t.Fatalf("Stats %+v (rejected %d, ceiling %v)", s, rejected, ceiling)
			}
			for _, l := range levels {
				if p := th.Probability(l); p < 0 || p > 1 || (!prio && p != s.Probability) {
					t.Fatalf("Probability(%v) = %v, Stats %+v", l, p, s)
				}
			}
		})
	})
}
