package backpressure_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/bracetest"
	"github.com/brace-go/brace/middleware/priority"
	"github.com/google/go-cmp/cmp"
)

// levelLoad is an open-loop load: every tick, one call of each level in
// levels arrives, and an admitted call holds its slot for service.
type levelLoad struct {
	levels   []priority.Level
	tick     time.Duration
	service  time.Duration
	duration time.Duration
}

// levelResult counts the calls of each level offered and admitted.
type levelResult struct {
	offered, ok [priority.Levels]int
}

func (r levelResult) rate(l priority.Level) float64 {
	return float64(r.ok[l.Index()]) / float64(max(1, r.offered[l.Index()]))
}

// runLevels drives l with load under synctest's fake clock and returns
// what each level got. Every error must be ErrShed.
func runLevels(t *testing.T, l *backpressure.Limiter, load levelLoad) levelResult {
	t.Helper()
	var res levelResult
	synctest.Test(t, func(t *testing.T) {
		stage := middleware.Apply(func(ctx context.Context, _ int) (int, error) {
			time.Sleep(load.service)
			return 0, nil
		}, backpressure.Middleware[int, int](l))
		var mu sync.Mutex
		var wg sync.WaitGroup
		ctxs := make([]context.Context, len(load.levels))
		for i, lv := range load.levels {
			ctxs[i] = priority.With(context.Background(), lv)
		}
		for start := time.Now(); time.Since(start) < load.duration; time.Sleep(load.tick) {
			for i, lv := range load.levels {
				wg.Go(func() {
					_, err := stage(ctxs[i], 0)
					if err != nil && !errors.Is(err, backpressure.ErrShed) {
						t.Errorf("%v call: %v, want nil or ErrShed", lv, err)
					}
					mu.Lock()
					res.offered[lv.Index()]++
					if err == nil {
						res.ok[lv.Index()]++
					}
					mu.Unlock()
				})
			}
		}
		wg.Wait()
		if st := l.Stats(); st.InFlight != 0 || st.Queued != 0 {
			t.Errorf("Stats() = %+v after every call ended", st)
		}
	})
	return res
}

// Issue 16: offered load at 2× the capacity, half critical and half
// sheddable: critical calls succeed at least 99% of the time and the
// sheddable ones take the shedding; with no overload both succeed always.
//
// The load is deterministic: one call of each level every millisecond,
// each holding its slot 19.9ms, against a capacity of 20: the critical
// calls alone offer 0.995× the capacity, all calls 1.99×. (With random
// arrivals, critical calls offering the whole capacity would be shed
// now and then even with no sheddable call at all: Erlang's loss formula
// gives 16% for 20 slots offered 20 in Shed mode. Priorities cannot give
// critical calls more than the capacity.)
//
// The default shares are used: a sheddable call is admitted only while at
// most half the capacity is in flight. No overload therefore means a
// total load within that half: one call of each level every 5ms, 8 in
// flight of 20.
func TestPriorityUnderOverload(t *testing.T) {
	const capacity = 20
	over := levelLoad{
		levels:  []priority.Level{priority.Critical, priority.Sheddable},
		tick:    time.Millisecond,
		service: 19900 * time.Microsecond,
		// Long enough that the start, while sheddable calls still hold
		// slots taken before the critical load built up, is a small part.
		duration: 2 * time.Second,
	}
	light := over
	light.tick = 5 * time.Millisecond
	if testenv.RaceEnabled {
		over.duration, light.duration = time.Second, time.Second
	}
	for _, tc := range []struct {
		name string
		cfg  backpressure.Config
	}{
		{"shed", backpressure.Config{Capacity: capacity, Priorities: true}},
		// A short queue and a short wait: sheddable waiters fill the
		// queue and are pushed out of it by critical ones.
		{"wait", backpressure.Config{Capacity: capacity, Priorities: true, Mode: backpressure.Wait, MaxQueue: capacity / 2, MaxWait: 20 * time.Millisecond}},
		{"wait/lifo", backpressure.Config{Capacity: capacity, Priorities: true, Mode: backpressure.Wait, MaxQueue: capacity / 2, MaxWait: 20 * time.Millisecond, Queue: backpressure.LIFO}},
		{"wait/codel", backpressure.Config{Capacity: capacity, Priorities: true, Mode: backpressure.Wait, MaxQueue: capacity / 2, Queue: backpressure.CoDel}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, run := range []struct {
				name           string
				load           levelLoad
				critical, shed float64 // the least success rate wanted
			}{
				{"2x", over, 0.99, 0},
				{"no overload", light, 1, 1},
			} {
				res := runLevels(t, mustNew(t, tc.cfg), run.load)
				t.Logf("%s, %s: critical %d/%d = %.2f%%, sheddable %d/%d = %.2f%%", tc.name, run.name,
					res.ok[priority.Critical.Index()], res.offered[priority.Critical.Index()], 100*res.rate(priority.Critical),
					res.ok[priority.Sheddable.Index()], res.offered[priority.Sheddable.Index()], 100*res.rate(priority.Sheddable))
				if got := res.rate(priority.Critical); got < run.critical {
					t.Errorf("%s: critical success %.4f, want at least %v", run.name, got, run.critical)
				}
				if got := res.rate(priority.Sheddable); got < run.shed {
					t.Errorf("%s: sheddable success %.4f, want at least %v", run.name, got, run.shed)
				}
				if run.shed == 0 && res.rate(priority.Sheddable) > 0.5 {
					t.Errorf("%s: sheddable success %.4f under overload: it did not take the shedding", run.name, res.rate(priority.Sheddable))
				}
			}
		})
	}
}

// Under heavy concurrency with every level, weights, queue disciplines
// and calls that give up, the weight in flight never exceeds the
// capacity, every call returns once, and the limiter ends empty. The
// admission decision is one atomic step against the total, not a check
// of one level's count followed by an update of another's
// (Netflix/concurrency-limits#234).
func TestPriorityInFlightNeverExceedsCapacity(t *testing.T) {
	const capacity = 16
	goroutines, calls := 64, 300
	if testenv.RaceEnabled {
		calls = 100
	}
	for _, cfg := range []backpressure.Config{
		{Priorities: true},
		{Priorities: true, Shares: priority.Shares{Sheddable: 0.1, Default: 0.3}},
		{Priorities: true, Mode: backpressure.Wait},
		{Priorities: true, Mode: backpressure.Wait, MaxQueue: 4, Queue: backpressure.LIFO, Interval: time.Microsecond},
		{Priorities: true, Mode: backpressure.Wait, MaxQueue: 8, Queue: backpressure.CoDel, Target: time.Microsecond, Interval: 10 * time.Microsecond},
	} {
		t.Run(fmt.Sprintf("%v/%v", cfg.Mode, cfg.Queue), func(t *testing.T) {
			cfg.Capacity = capacity
			l := mustNew(t, cfg)
			var cur, most atomic.Int64
			stage := middleware.Apply(func(_ context.Context, w int64) (int64, error) {
				n := cur.Add(w)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				for range w {
					runtime.Gosched()
				}
				cur.Add(-w)
				return w, nil
			}, backpressure.Weighted[int64, int64](l, func(w int64) int64 { return w }))
			var wg sync.WaitGroup
			var ok atomic.Int64
			for g := range goroutines {
				wg.Go(func() {
					r := rand.New(rand.NewPCG(uint64(g), 7))
					lv := []priority.Level{priority.Sheddable, priority.Default, priority.Critical}[g%3]
					for range calls {
						ctx := priority.With(context.Background(), lv)
						cancel := func() {}
						if r.IntN(4) == 0 {
							ctx, cancel = context.WithTimeout(ctx, time.Duration(r.IntN(50))*time.Microsecond)
						}
						w := 1 + int64(r.IntN(3))
						_, err := stage(ctx, w)
						cancel()
						var we *backpressure.WeightError
						switch {
						case err == nil:
							ok.Add(1)
						case errors.Is(err, backpressure.ErrShed), errors.Is(err, context.DeadlineExceeded), errors.As(err, &we):
						default:
							t.Errorf("unexpected error %v", err)
						}
					}
				})
			}
			wg.Wait()
			if m := most.Load(); m > capacity {
				t.Errorf("weight in flight reached %d, capacity %d", m, capacity)
			}
			if st := l.Stats(); st.InFlight != 0 || st.Queued != 0 {
				t.Errorf("Stats() = %+v after every call ended", st)
			}
			t.Logf("%d of %d calls admitted, at most %d in flight", ok.Load(), goroutines*calls, most.Load())
		})
	}
}

// Waiters are served by level, highest first, whatever the order they
// came in; within a level, first in first out.
func TestPriorityWaitOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := mustNew(t, backpressure.Config{Capacity: 1, Priorities: true, Mode: backpressure.Wait, MaxQueue: 10})
		p, err := l.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var order []string
		var wg sync.WaitGroup
		for i, lv := range []priority.Level{priority.Sheddable, priority.Default, priority.Sheddable, priority.Critical, priority.Default, priority.Critical} {
			name := fmt.Sprintf("%v%d", lv, i)
			wg.Go(func() {
				q, err := l.Acquire(priority.With(context.Background(), lv))
				if err != nil {
					t.Errorf("%s: %v", name, err)
					return
				}
				mu.Lock()
				order = append(order, name)
				mu.Unlock()
				time.Sleep(time.Millisecond)
				q.Done(nil)
			})
			synctest.Wait() // queued in this order
		}
		p.Done(nil)
		wg.Wait()
		want := []string{"critical3", "critical5", "default1", "default4", "sheddable0", "sheddable2"}
		if diff := cmp.Diff(want, order); diff != "" {
			t.Errorf("admission order (-want +got):\n%s", diff)
		}
	})
}

// A call is admitted only within its level's share, counted on the total
// in flight; a critical call may use what the others leave, and arrives
// ahead of lower levels that wait.
func TestPriorityShares(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &bracetest.Recorder{}
		l := mustNew(t, backpressure.Config{Capacity: 10, Priorities: true, Observer: rec})
		ctxOf := func(lv priority.Level) context.Context { return priority.With(context.Background(), lv) }
		var held []backpressure.Permit
		take := func(lv priority.Level, n int64) error {
			p, err := l.AcquireN(ctxOf(lv), n)
			if err == nil {
				held = append(held, p)
			}
			return err
		}
		// Sheddable: up to 5 in flight; default: up to 9; critical: 10.
		for i := range 5 {
			if err := take(priority.Sheddable, 1); err != nil {
				t.Fatalf("sheddable call %d: %v", i, err)
			}
		}
		if err := take(priority.Sheddable, 1); !errors.Is(err, backpressure.ErrShed) {
			t.Fatalf("6th sheddable call: %v, want ErrShed", err)
		}
		if err := take(priority.Default, 4); err != nil {
			t.Fatalf("default call of 4 at 5: %v", err)
		}
		if err := take(priority.Default, 1); !errors.Is(err, backpressure.ErrShed) {
			t.Fatalf("default call at 9: %v, want ErrShed", err)
		}
		if err := take(priority.Critical, 1); err != nil {
			t.Fatalf("critical call at 9: %v", err)
		}
		if err := take(priority.Critical, 1); !errors.Is(err, backpressure.ErrShed) {
			t.Fatalf("critical call at 10: %v, want ErrShed", err)
		}
		// A weight above the level's share can never be admitted.
		var we *backpressure.WeightError
		if err := take(priority.Sheddable, 6); !errors.As(err, &we) || we.Capacity != 5 {
			t.Fatalf("sheddable call of 6: %v, want a *WeightError with Capacity 5", err)
		}
		for i := range held {
			held[i].Done(nil)
		}
		var got []middleware.Event
		for _, e := range rec.Events() {
			got = append(got, middleware.Event{Reason: e.Reason, Priority: e.Priority, Limit: e.Limit, InFlight: e.InFlight})
		}
		want := []middleware.Event{
			{Reason: "shed", Priority: priority.Sheddable, Limit: 5, InFlight: 5},
			{Reason: "shed", Priority: priority.Default, Limit: 9, InFlight: 9},
			{Reason: "shed", Priority: priority.Critical, Limit: 10, InFlight: 10},
			{Reason: "weight", Priority: priority.Sheddable, Limit: 5, InFlight: 10},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
	})
}

// With priorities off the level in the context is not read: a
// sheddable call may fill the whole capacity.
func TestPrioritiesOff(t *testing.T) {
	l := mustNew(t, backpressure.Config{Capacity: 2})
	ctx := priority.With(context.Background(), priority.Sheddable)
	p, err := l.AcquireN(ctx, 2)
	if err != nil {
		t.Fatalf("sheddable call of the whole capacity with priorities off: %v", err)
	}
	p.Done(nil)
}

// A full queue makes room for a call by shedding the oldest waiter of a
// lower level; a call finding only its own level or higher is shed.
func TestPriorityEvictsLowerWaiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &bracetest.Recorder{}
		l := mustNew(t, backpressure.Config{Capacity: 1, Priorities: true, Mode: backpressure.Wait, MaxQueue: 2, Observer: rec})
		p, err := l.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		errs := make(map[string]chan error)
		call := func(name string, lv priority.Level) {
			errs[name] = make(chan error, 1)
			go func() {
				q, err := l.Acquire(priority.With(context.Background(), lv))
				if err == nil {
					time.Sleep(time.Millisecond)
					q.Done(nil)
				}
				errs[name] <- err
			}()
			synctest.Wait()
		}
		call("shed-a", priority.Sheddable)
		call("shed-b", priority.Sheddable)
		call("default", priority.Default) // pushes out shed-a
		if err := <-errs["shed-a"]; !errors.Is(err, backpressure.ErrShed) {
			t.Fatalf("oldest sheddable waiter: %v, want ErrShed", err)
		}
		call("shed-c", priority.Sheddable) // queue full of its level or higher: shed
		if err := <-errs["shed-c"]; !errors.Is(err, backpressure.ErrShed) {
			t.Fatalf("sheddable call at a full queue: %v, want ErrShed", err)
		}
		call("critical", priority.Critical) // pushes out shed-b
		if err := <-errs["shed-b"]; !errors.Is(err, backpressure.ErrShed) {
			t.Fatalf("sheddable waiter: %v, want ErrShed", err)
		}
		p.Done(nil)
		for _, name := range []string{"critical", "default"} {
			if err := <-errs[name]; err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		var got []string
		for _, e := range rec.Events() {
			got = append(got, fmt.Sprintf("%v %s %v", e.Kind, e.Reason, e.Priority))
		}
		want := []string{
			"rejected shed sheddable", "rejected shed sheddable", "rejected shed sheddable",
			"waited  critical", "waited  default",
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
	})
}

// Adaptive LIFO: first in first out while the queue comes and goes; once
// it has stood for longer than Interval, the newest waiter first.
func TestLIFOWhenStanding(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := mustNew(t, backpressure.Config{Capacity: 1, Mode: backpressure.Wait, MaxQueue: 10, Queue: backpressure.LIFO, Interval: 10 * time.Millisecond})
		p, err := l.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var order []int
		var wg sync.WaitGroup
		queue := func(i int) {
			wg.Go(func() {
				q, err := l.Acquire(context.Background())
				if err != nil {
					t.Errorf("call %d: %v", i, err)
					return
				}
				mu.Lock()
				order = append(order, i)
				mu.Unlock()
				q.Done(nil)
			})
			synctest.Wait()
		}
		queue(0)
		queue(1)
		// Not standing yet (5ms < 10ms): the oldest goes first, and
		// gives its slot to the next, still in order... until the
		// queue has stood long enough.
		time.Sleep(5 * time.Millisecond)
		p.Done(nil)
		wg.Wait()
		if diff := cmp.Diff([]int{0, 1}, order); diff != "" {
			t.Errorf("order with a young queue (-want +got):\n%s", diff)
		}
		order = nil
		p, err = l.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for i := range 4 {
			queue(i)
		}
		time.Sleep(20 * time.Millisecond) // the queue stands
		p.Done(nil)
		wg.Wait()
		if diff := cmp.Diff([]int{3, 2, 1, 0}, order); diff != "" {
			t.Errorf("order with a standing queue (-want +got):\n%s", diff)
		}
	})
}

// CoDel: a call queued while the queue is young may wait Interval; one
// queued while it has stood for longer than Interval may wait Target.
// Past that it is dropped: a rejection with Reason "codel".
func TestCoDelDrops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &bracetest.Recorder{}
		l := mustNew(t, backpressure.Config{Capacity: 1, Mode: backpressure.Wait, MaxQueue: 10, Queue: backpressure.CoDel,
			Target: 5 * time.Millisecond, Interval: 20 * time.Millisecond, Observer: rec})
		p, err := l.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer p.Done(nil)
		start := time.Now()
		var mu sync.Mutex
		dropped := map[string]time.Duration{}
		var wg sync.WaitGroup
		queue := func(name string) {
			wg.Go(func() {
				_, err := l.Acquire(context.Background())
				if !errors.Is(err, backpressure.ErrShed) {
					t.Errorf("%s: %v, want ErrShed", name, err)
				}
				if r, ok := err.(interface{ Rejected() bool }); !ok || !r.Rejected() {
					t.Errorf("%s: %v does not report Rejected", name, err)
				}
				mu.Lock()
				dropped[name] = time.Since(start)
				mu.Unlock()
			})
			synctest.Wait()
		}
		queue("a") // queue empty: may wait 20ms
		time.Sleep(15 * time.Millisecond)
		queue("b") // queue young (15ms): may wait 20ms, until 35ms
		time.Sleep(10 * time.Millisecond)
		queue("c") // queue standing since 0 (25ms > 20ms): may wait 5ms, until 30ms
		wg.Wait()
		want := map[string]time.Duration{"a": 20 * time.Millisecond, "b": 35 * time.Millisecond, "c": 30 * time.Millisecond}
		if diff := cmp.Diff(want, dropped); diff != "" {
			t.Errorf("drop times (-want +got):\n%s", diff)
		}
		var got []string
		for _, e := range rec.Events() {
			got = append(got, fmt.Sprintf("%v %s %v", e.Kind, e.Reason, e.Wait))
		}
		wantEvents := []string{"rejected codel 20ms", "rejected codel 5ms", "rejected codel 20ms"}
		if diff := cmp.Diff(wantEvents, got); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
	})
}

// MaxWait below CoDel's wait bounds the wait, and its expiry is a plain
// shed.
func TestCoDelWithShorterMaxWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &bracetest.Recorder{}
		l := mustNew(t, backpressure.Config{Capacity: 1, Mode: backpressure.Wait, Queue: backpressure.CoDel, MaxWait: 2 * time.Millisecond, Observer: rec})
		p, err := l.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer p.Done(nil)
		if _, err := l.Acquire(context.Background()); !errors.Is(err, backpressure.ErrShed) {
			t.Fatalf("got %v, want ErrShed", err)
		}
		if ev := rec.Events(); len(ev) != 1 || ev[0].Reason != "shed" || ev[0].Wait != 2*time.Millisecond {
			t.Errorf("events %+v, want one shed after 2ms", ev)
		}
	})
}

// goodputLoad offers calls at 1.5× the capacity, each from a caller that
// gives up after deadline, to a limiter in Wait mode with a long queue,
// and reports the calls served before their caller's deadline.
type goodput struct {
	offered, served int
	latencies       []time.Duration // of the calls served, arrival to return
}

func (g goodput) rate() float64 { return float64(g.served) / float64(max(1, g.offered)) }

func (g goodput) pct(p float64) time.Duration {
	if len(g.latencies) == 0 {
		return 0
	}
	s := slices.Clone(g.latencies)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func runGoodput(t *testing.T, cfg backpressure.Config, capacity int, service, deadline, duration time.Duration) goodput {
	var g goodput
	synctest.Test(t, func(t *testing.T) {
		cfg.Capacity = int64(capacity)
		cfg.Mode = backpressure.Wait
		cfg.MaxQueue = 1000
		l := mustNew(t, cfg)
		// The stage takes service, or returns when its caller gives up.
		stage := middleware.Apply(func(ctx context.Context, _ int) (int, error) {
			timer := time.NewTimer(service)
			defer timer.Stop()
			select {
			case <-timer.C:
				return 0, nil
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}, backpressure.Middleware[int, int](l))
		tick := time.Duration(float64(service) / (1.5 * float64(capacity)))
		var mu sync.Mutex
		var wg sync.WaitGroup
		for start := time.Now(); time.Since(start) < duration; time.Sleep(tick) {
			wg.Go(func() {
				arrived := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), deadline)
				defer cancel()
				_, err := stage(ctx, 0)
				took := time.Since(arrived)
				mu.Lock()
				defer mu.Unlock()
				g.offered++
				if err == nil && took <= deadline {
					g.served++
					g.latencies = append(g.latencies, took)
				}
			})
		}
		wg.Wait()
		if st := l.Stats(); st.InFlight != 0 || st.Queued != 0 {
			t.Errorf("Stats() = %+v after every call ended", st)
		}
	})
	return g
}

// Issue 16: under standing overload (1.5× the capacity) with callers that
// give up after a deadline, FIFO serves mostly calls whose callers are
// about to leave, which then miss their deadline in the stage: its
// goodput collapses. Adaptive LIFO serves the newest waiters and CoDel
// drops the ones that waited past Target, so both serve about the
// capacity's worth of calls in time.
func TestDisciplineGoodput(t *testing.T) {
	const capacity = 10
	service, deadline, duration := 10*time.Millisecond, 50*time.Millisecond, 2*time.Second
	if testenv.RaceEnabled {
		duration = time.Second
	}
	var table strings.Builder
	fmt.Fprintf(&table, "\n| queue | offered | served in time | goodput | p50 latency | p99 latency |\n|---|---|---|---|---|---|\n")
	rates := map[backpressure.Discipline]float64{}
	for _, q := range []backpressure.Discipline{backpressure.FIFO, backpressure.LIFO, backpressure.CoDel} {
		g := runGoodput(t, backpressure.Config{Queue: q}, capacity, service, deadline, duration)
		rates[q] = g.rate()
		fmt.Fprintf(&table, "| %v | %d | %d | %.1f%% | %v | %v |\n", q, g.offered, g.served, 100*g.rate(), g.pct(0.5), g.pct(0.99))
	}
	t.Logf("capacity %d, service %v, offered 1.5× the capacity, callers give up after %v, %v:%s",
		capacity, service, deadline, duration, table.String())
	// The capacity serves 1/1.5 = 67% of the offered calls at most.
	for _, q := range []backpressure.Discipline{backpressure.LIFO, backpressure.CoDel} {
		if rates[q] < rates[backpressure.FIFO]+0.3 {
			t.Errorf("%v goodput %.3f, FIFO's %.3f: want at least 0.3 more", q, rates[q], rates[backpressure.FIFO])
		}
	}
}
