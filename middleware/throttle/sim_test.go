package throttle_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/priority"
	"github.com/brace-go/brace/middleware/throttle"
)

var errUnavailable = errors.New("downstream: unavailable")

// row is one second of a simulated timeline.
type row struct {
	sec                                int
	offered, sent, rejected, succeeded int
	probability                        float64 // at the end of the second
	offeredBy, rejectedBy              [priority.Levels]int
}

// scenario is a simulated downstream under a steady offered load.
type scenario struct {
	seconds int
	perSec  int // calls offered per second, evenly spaced
	// fail reports whether the n-th call that reached the downstream
	// (counting from 0 within its second) at time sec fails, given how
	// many calls reached it so far in that second.
	fail func(sec, n int) bool
	// level, if set, gives the priority of the i-th call of a second.
	level func(i int) priority.Level
	// burst is how many calls arrive together at each tick; 0 means 1.
	burst int
}

// run offers the scenario's load to a stage guarded by th and returns the
// timeline. It must run inside a synctest bubble.
func (s scenario) run(th *throttle.Throttler) []row {
	rows := make([]row, s.seconds)
	burst := max(s.burst, 1)
	step := time.Second / time.Duration(s.perSec/burst)
	var cur *row
	var n int
	down := func(ctx context.Context, _ int) (int, error) {
		n++
		if s.fail(cur.sec, n-1) {
			return 0, errUnavailable
		}
		return 1, nil
	}
	stage := middleware.Apply(down, throttle.Middleware[int, int](th))
	for sec := range s.seconds {
		cur = &rows[sec]
		cur.sec = sec
		n = 0
		for i := range s.perSec {
			if i%burst == 0 {
				time.Sleep(step)
			}
			ctx := context.Background()
			l := priority.Default
			if s.level != nil {
				l = s.level(i)
				ctx = priority.With(ctx, l)
			}
			cur.offered++
			cur.offeredBy[l.Index()]++
			_, err := stage(ctx, 0)
			switch {
			case errors.Is(err, throttle.ErrThrottled):
				cur.rejected++
				cur.rejectedBy[l.Index()]++
			case err == nil:
				cur.sent++
				cur.succeeded++
			default:
				cur.sent++
			}
		}
		cur.probability = th.Stats().Probability
	}
	return rows
}

func logTimeline(t *testing.T, rows []row, every int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%5s %8s %5s %8s %9s %11s\n", "t(s)", "offered", "sent", "rejected", "succeeded", "probability")
	for _, r := range rows {
		if r.sec%every != 0 {
			continue
		}
		fmt.Fprintf(&b, "%5d %8d %5d %8d %9d %11.2f\n", r.sec, r.offered, r.sent, r.rejected, r.succeeded, r.probability)
	}
	t.Log("\n" + b.String())
	return b.String()
}

// recoveryWindows is the documented recovery bound, in windows:
// ceil(log_K(1/(1−MaxProbability))). maxP must be below 1.
func recoveryWindows(k, maxP float64) int {
	return int(math.Ceil(math.Log(1/(1-maxP))/math.Log(k) - 1e-9))
}

// settled returns the first second at or after from from which the
// end-of-second probability is zero to the end of rows; -1 if none.
func settled(rows []row, from int) int {
	at := -1
	for _, r := range rows[from:] {
		switch {
		case r.probability == 0 && at < 0:
			at = r.sec
		case r.probability != 0:
			at = -1
		}
	}
	return at
}

func sum(rows []row, f func(row) int) int {
	n := 0
	for _, r := range rows {
		n += f(r)
	}
	return n
}

// TestOutageTimeline: a downstream fails 90% of calls for a minute, under
// a steady 100 calls/s. During the outage the downstream sees about the
// larger of K·accepts and the probing floor (1 − MaxProbability) of the
// offered calls, instead of all of them; after it recovers, the success
// rate is back to the downstream's within the documented bound.
func TestOutageTimeline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			k, maxP    = 2, 0.9
			window     = 10 // seconds
			start, end = 20, 80
		)
		th := mustNew(t, throttle.Config{Seed: 7})
		s := scenario{seconds: 150, perSec: 100, fail: func(sec, n int) bool {
			return sec >= start && sec < end && n%10 != 0
		}}
		rows := s.run(th)
		logTimeline(t, rows, 1)

		outage := rows[start:end]
		offered := sum(outage, func(r row) int { return r.offered })
		sent := sum(outage, func(r row) int { return r.sent })
		t.Logf("outage: %d offered, %d sent to the downstream (%.1f%%)", offered, sent, 100*float64(sent)/float64(offered))
		if sent > offered/4 {
			t.Errorf("the downstream saw %d of %d calls during the outage, want at most a quarter", sent, offered)
		}
		// Once the window holds only the outage: per window, the
		// downstream sees at most (1+ε)·max(K·accepts, floor).
		for w := start + window; w+window <= end; w += window {
			ws := rows[w : w+window]
			sent := sum(ws, func(r row) int { return r.sent })
			acc := sum(ws, func(r row) int { return r.succeeded })
			off := sum(ws, func(r row) int { return r.offered })
			limit := 1.2 * max(k*float64(acc), (1-maxP)*float64(off))
			t.Logf("window [%d s, %d s): sent %d, accepted %d, K·accepts %d, floor %.0f", w, w+window, sent, acc, k*acc, (1-maxP)*float64(off))
			if float64(sent) > limit {
				t.Errorf("window [%d s, %d s): sent %d > 1.2·max(K·accepts %d, floor %.0f)", w, w+window, sent, k*acc, (1-maxP)*float64(off))
			}
		}
		bound := recoveryWindows(k, maxP) * window
		z := settled(rows, end)
		t.Logf("recovered at %d s: probability 0 from %d s after the downstream (bound %d s)", end, z-end, bound)
		if z < 0 || z-end > bound {
			t.Errorf("probability still positive %d s after recovery (bound %d s)", z-end, bound)
		}
		for _, r := range rows[end+bound:] {
			if float64(r.succeeded) < 0.99*float64(r.offered) {
				t.Errorf("second %d: %d of %d succeeded after the recovery bound", r.sec, r.succeeded, r.offered)
			}
		}
	})
}

// TestOverloadCapacity: a downstream that can take only 20 calls/s (it
// refuses the rest as overloaded) under 100 calls/s. The SRE book's steady
// state: the client sends about K·accepts and rejects the rest locally.
func TestOverloadCapacity(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const k, window, capacity = 2, 10, 20
		th := mustNew(t, throttle.Config{Seed: 11})
		s := scenario{seconds: 90, perSec: 100, fail: func(sec, n int) bool { return n >= capacity }}
		rows := s.run(th)
		logTimeline(t, rows, 5)
		for w := 2 * window; w+window <= len(rows); w += window {
			ws := rows[w : w+window]
			sent := sum(ws, func(r row) int { return r.sent })
			acc := sum(ws, func(r row) int { return r.succeeded })
			t.Logf("window [%d s, %d s): sent %d, accepted %d (K·accepts %d)", w, w+window, sent, acc, k*acc)
			if float64(sent) > 1.1*k*float64(acc)+float64(window) {
				t.Errorf("window [%d s, %d s): sent %d, more than (1+ε)·K·accepts = 1.1·%d", w, w+window, sent, k*acc)
			}
			if acc < capacity*window*9/10 {
				t.Errorf("window [%d s, %d s): only %d accepted: the throttle starves a downstream that has capacity for %d", w, w+window, acc, capacity*window)
			}
		}
	})
}

// TestGoZero4101 is the regression test for zeromicro/go-zero#4101:
// rejection went on for about 15 minutes after the dependency recovered.
// There, local rejections count as requests with no cap on the
// probability, so after a long outage the pass rate starts from about
// 1/requests and grows by a factor of about K per window. Here the cap
// MaxProbability keeps a pass rate of at least 1 − MaxProbability, so the
// probability is zero within ceil(log_K(1/(1−MaxProbability))) windows of
// the recovery (4 with the defaults). The same scenario without the cap
// (MaxProbability 1, go-zero's K of 1.5) misses that bound, which shows the
// test would catch go-zero's behaviour.
func TestGoZero4101(t *testing.T) {
	const (
		window     = 10 // seconds
		start, end = 10, 310
		perSec     = 1000
	)
	s := scenario{seconds: end + 200, perSec: perSec, burst: 10, fail: func(sec, n int) bool { return sec >= start && sec < end }}
	bound := recoveryWindows(2, 0.9) * window
	synctest.Test(t, func(t *testing.T) {
		th := mustNew(t, throttle.Config{Seed: 5}) // the defaults: K 2, MaxProbability 0.9
		rows := s.run(th)
		z := settled(rows, end)
		t.Logf("defaults: probability 0 %d s after recovery (bound %d s)", z-end, bound)
		if z < 0 || z-end > bound {
			logTimeline(t, rows[end-5:], 1)
			t.Errorf("probability still positive %d s after recovery, want at most %d s", z-end, bound)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		th := mustNew(t, throttle.Config{Seed: 5, K: 1.5, MaxProbability: 1}) // go-zero's rule
		rows := s.run(th)
		z := settled(rows, end)
		t.Logf("uncapped, K 1.5 (go-zero): probability 0 %d s after recovery", z-end)
		if z >= 0 && z-end <= bound {
			t.Errorf("go-zero's rule recovered within %d s: the test does not tell the behaviours apart", z-end)
		}
	})
}

// TestRecoveryBound checks the documented bound for several K and
// MaxProbability after a long total outage.
func TestRecoveryBound(t *testing.T) {
	for _, c := range []struct{ k, maxP float64 }{
		{2, 0.9}, {2, 0.99}, {1.5, 0.9}, {3, 0.9}, {2, 0.5}, {1.2, 0.8},
	} {
		t.Run(fmt.Sprintf("K=%v,MaxProbability=%v", c.k, c.maxP), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const window, start, end = 10, 10, 200
				th := mustNew(t, throttle.Config{K: c.k, MaxProbability: c.maxP, Seed: 1})
				s := scenario{seconds: 400, perSec: 100, fail: func(sec, n int) bool { return sec >= start && sec < end }}
				if testenv.RaceEnabled {
					s.perSec = 40
				}
				rows := s.run(th)
				bound := recoveryWindows(c.k, c.maxP) * window
				z := settled(rows, end)
				t.Logf("probability 0 %d s after recovery; bound %d s (%d windows)", z-end, bound, bound/window)
				if z < 0 || z-end > bound {
					t.Errorf("probability still positive %d s after recovery, bound %d s", z-end, bound)
				}
			})
		})
	}
}

// TestPrioritiesOutage: with priorities on, under the outage sheddable
// calls are rejected first and most, critical calls last and least.
func TestPrioritiesOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const start, end = 20, 80
		th := mustNew(t, throttle.Config{Seed: 9, Priorities: true})
		levels := [...]priority.Level{priority.Sheddable, priority.Default, priority.Critical}
		// 60% of the downstream's calls fail: K 2 still lets every
		// critical call through, while the lower levels are throttled.
		s := scenario{seconds: 120, perSec: 90, level: func(i int) priority.Level { return levels[i%3] },
			fail: func(sec, n int) bool { return sec >= start && sec < end && n%5 < 3 }}
		rows := s.run(th)
		var first [priority.Levels]int
		for i := range first {
			first[i] = -1
		}
		var off, rej [priority.Levels]int
		for _, r := range rows[start:end] {
			for i := range priority.Levels {
				off[i] += r.offeredBy[i]
				rej[i] += r.rejectedBy[i]
				if r.rejectedBy[i] > 0 && first[i] < 0 {
					first[i] = r.sec
				}
			}
		}
		var b strings.Builder
		for _, l := range levels {
			i := l.Index()
			fmt.Fprintf(&b, "%-9s offered %4d rejected %4d (%5.1f%%) first rejection at %d s\n", l, off[i], rej[i], 100*float64(rej[i])/float64(off[i]), first[i])
		}
		t.Log("\n" + b.String())
		shed, def, crit := priority.Sheddable.Index(), priority.Default.Index(), priority.Critical.Index()
		if !(rej[shed] > rej[def] && rej[def] > rej[crit]) {
			t.Errorf("rejections by level: sheddable %d, default %d, critical %d: want sheddable > default > critical", rej[shed], rej[def], rej[crit])
		}
		if first[shed] < 0 || (first[def] >= 0 && first[def] < first[shed]) || (first[crit] >= 0 && first[crit] < first[def]) {
			t.Errorf("first rejections: sheddable %d s, default %d s, critical %d s: want that order", first[shed], first[def], first[crit])
		}
	})
}

// TestPrioritiesOverload: a downstream that takes only 20 calls/s under
// 90 calls/s, a third of each level. The throttle sends about K·accepts
// = 40 calls/s: all 30 critical ones, about 10 default ones, and
// (nearly) no sheddable one.
func TestPrioritiesOverload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		th := mustNew(t, throttle.Config{Seed: 13, Priorities: true})
		levels := [...]priority.Level{priority.Sheddable, priority.Default, priority.Critical}
		s := scenario{seconds: 90, perSec: 90, level: func(i int) priority.Level { return levels[i%3] },
			fail: func(sec, n int) bool { return n >= 20 }}
		rows := s.run(th)
		var off, rej [priority.Levels]int
		for _, r := range rows[30:] {
			for i := range priority.Levels {
				off[i] += r.offeredBy[i]
				rej[i] += r.rejectedBy[i]
			}
		}
		rate := func(l priority.Level) float64 { return float64(rej[l.Index()]) / float64(off[l.Index()]) }
		t.Logf("rejected after 30 s: sheddable %.1f%%, default %.1f%%, critical %.1f%%",
			100*rate(priority.Sheddable), 100*rate(priority.Default), 100*rate(priority.Critical))
		if rate(priority.Critical) > 0.05 || rate(priority.Sheddable) < 0.9 || rate(priority.Default) < 0.4 || rate(priority.Default) > 0.9 {
			t.Errorf("rejection rates by level not in the expected order and ranges")
		}
	})
}
