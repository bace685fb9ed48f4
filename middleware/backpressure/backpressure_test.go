package backpressure_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/priority"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// holder runs calls through a limiter with a stage that blocks until the
// test lets it return, so tests can fill the limiter deliberately.
type holder struct {
	t       *testing.T
	stage   middleware.Stage[int64, int64]
	entered chan int64    // receives each call's weight as its stage starts
	exit    chan struct{} // each send lets one running stage return
}

func newHolder(t *testing.T, l *backpressure.Limiter) *holder {
	h := &holder{t: t, entered: make(chan int64, 1024), exit: make(chan struct{})}
	h.stage = middleware.Apply(func(_ context.Context, w int64) (int64, error) {
		h.entered <- w
		<-h.exit
		return w, nil
	}, backpressure.Weighted[int64, int64](l, func(w int64) int64 { return w }))
	return h
}

// call runs a call of weight w in a goroutine; its error arrives on the
// returned channel.
func (h *holder) call(ctx context.Context, w int64) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := h.stage(ctx, w)
		done <- err
	}()
	return done
}

// hold runs a call of weight w and waits until its stage is running.
func (h *holder) hold(w int64) <-chan error {
	h.t.Helper()
	done := h.call(context.Background(), w)
	select {
	case got := <-h.entered:
		if got != w {
			h.t.Fatalf("stage entered with weight %d, want %d", got, w)
		}
	case err := <-done:
		h.t.Fatalf("hold(%d): call returned %v instead of running", w, err)
	}
	return done
}

// release lets n running stages return and checks that the calls in done
// all succeed.
func (h *holder) release(n int, done ...<-chan error) {
	h.t.Helper()
	for range n {
		h.exit <- struct{}{}
	}
	for _, d := range done {
		if err := <-d; err != nil {
			h.t.Fatal(err)
		}
	}
}

func mustNew(t *testing.T, cfg backpressure.Config) *backpressure.Limiter {
	t.Helper()
	l, err := backpressure.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// inFlight is l.Stats().InFlight.
func inFlight(l *backpressure.Limiter) int64 { return l.Stats().InFlight }

func TestNewRejectsInvalidConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  backpressure.Config
		want string
	}{
		{"Capacity missing", backpressure.Config{}, "backpressure: Capacity must be at least 1, got 0"},
		{"Capacity negative", backpressure.Config{Capacity: -3}, "backpressure: Capacity must be at least 1, got -3"},
		{"Capacity too large", backpressure.Config{Capacity: backpressure.MaxCapacity + 1}, "backpressure: Capacity must be at most 2147483647, got 2147483648"},
		{"unknown mode", backpressure.Config{Capacity: 4, Mode: 7}, "backpressure: Mode must be Shed or Wait, got Mode(7)"},
		{"negative MaxWait", backpressure.Config{Capacity: 4, Mode: backpressure.Wait, MaxWait: -time.Second}, "backpressure: MaxWait must not be negative, got -1s"},
		{"negative MaxQueue", backpressure.Config{Capacity: 4, Mode: backpressure.Wait, MaxQueue: -1}, "backpressure: MaxQueue must not be negative, got -1"},
		{"MaxWait in shed mode", backpressure.Config{Capacity: 4, MaxWait: time.Second}, "backpressure: MaxWait must be zero in Shed mode, got 1s"},
		{"MaxQueue in shed mode", backpressure.Config{Capacity: 4, MaxQueue: 2}, "backpressure: MaxQueue must be zero in Shed mode, got 2"},
		{"negative SoftLimit", backpressure.Config{Capacity: 4, SoftLimit: -1}, "backpressure: SoftLimit must not be negative, got -1"},
		{"SoftLimit at capacity", backpressure.Config{Capacity: 4, SoftLimit: 4}, "backpressure: SoftLimit must be below Capacity (4), got 4"},
		{"SoftLimit above capacity", backpressure.Config{Capacity: 4, SoftLimit: 9}, "backpressure: SoftLimit must be below Capacity (4), got 9"},
		{"Shares without Priorities", backpressure.Config{Capacity: 4, Shares: priority.Shares{Sheddable: 0.2}}, "backpressure: Shares must be zero when Priorities is off, got {Sheddable:0.2 Default:0}"},
		{"Shares out of range", backpressure.Config{Capacity: 4, Priorities: true, Shares: priority.Shares{Sheddable: 1.5}}, "backpressure: Shares.Sheddable must be in (0, 1], got 1.5"},
		{"Shares out of order", backpressure.Config{Capacity: 4, Priorities: true, Shares: priority.Shares{Sheddable: 0.8, Default: 0.6}}, "backpressure: Shares.Sheddable (0.8) must not exceed Shares.Default (0.6)"},
		{"unknown Queue", backpressure.Config{Capacity: 4, Mode: backpressure.Wait, Queue: 9}, "backpressure: Queue must be FIFO, LIFO or CoDel, got Discipline(9)"},
		{"Queue in shed mode", backpressure.Config{Capacity: 4, Queue: backpressure.LIFO}, "backpressure: Queue must be FIFO in Shed mode, got lifo"},
		{"negative Target", backpressure.Config{Capacity: 4, Mode: backpressure.Wait, Queue: backpressure.CoDel, Target: -1}, "backpressure: Target must not be negative, got -1ns"},
		{"negative Interval", backpressure.Config{Capacity: 4, Mode: backpressure.Wait, Queue: backpressure.LIFO, Interval: -1}, "backpressure: Interval must not be negative, got -1ns"},
		{"Target without CoDel", backpressure.Config{Capacity: 4, Mode: backpressure.Wait, Queue: backpressure.LIFO, Target: time.Millisecond}, "backpressure: Target must be zero unless Queue is CoDel, got 1ms"},
		{"Interval with FIFO", backpressure.Config{Capacity: 4, Mode: backpressure.Wait, Interval: time.Millisecond}, "backpressure: Interval must be zero with Queue FIFO, got 1ms"},
		{"Target above Interval", backpressure.Config{Capacity: 4, Mode: backpressure.Wait, Queue: backpressure.CoDel, Target: time.Second, Interval: 10 * time.Millisecond}, "backpressure: Target (1s) must not exceed Interval (10ms)"},
		{"Target above default Interval", backpressure.Config{Capacity: 4, Mode: backpressure.Wait, Queue: backpressure.CoDel, Target: time.Second}, "backpressure: Target (1s) must not exceed Interval (100ms)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := backpressure.New(tt.cfg)
			if err == nil {
				t.Fatalf("New(%+v) = %v, nil; want error %q", tt.cfg, l, tt.want)
			}
			if l != nil {
				t.Errorf("New returned a Limiter with error %v", err)
			}
			if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
				t.Errorf("error text (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewAcceptsLimits(t *testing.T) {
	for _, c := range []int64{1, backpressure.MaxCapacity} {
		l := mustNew(t, backpressure.Config{Capacity: c})
		if got := l.Stats().Capacity; got != c {
			t.Errorf("Stats().Capacity = %d, want %d", got, c)
		}
	}
}

func TestZeroConfigSheds(t *testing.T) {
	l := mustNew(t, backpressure.Config{Capacity: 1})
	h := newHolder(t, l)
	done := h.hold(1)
	if _, err := h.stage(context.Background(), 1); !errors.Is(err, backpressure.ErrShed) {
		t.Errorf("call at capacity with only Capacity set: err = %v, want ErrShed", err)
	}
	h.release(1, done)
}

func TestShed(t *testing.T) {
	l := mustNew(t, backpressure.Config{Capacity: 3})
	h := newHolder(t, l)
	a, b := h.hold(1), h.hold(1)
	if got := inFlight(l); got != 2 {
		t.Fatalf("InFlight = %d, want 2", got)
	}
	_, err := h.stage(context.Background(), 2)
	if err != backpressure.ErrShed {
		t.Fatalf("err = %v, want ErrShed itself (a plain sentinel)", err)
	}
	if got, want := err.Error(), "backpressure: shed"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	// A call that fits is still admitted beside the held ones.
	c := h.hold(1)
	h.release(3, a, b, c)
	if got := inFlight(l); got != 0 {
		t.Errorf("InFlight after all calls = %d, want 0", got)
	}
}

// PITFALLS: "An already-cancelled context fails even when capacity is free
// (golang/go #63615, #67723)". Issue 14 item 9: an ended context gets
// ctx.Err(), runs nothing and takes nothing, in every mode and through
// every entry point.
func TestPitfallAlreadyCancelledContextFailsWithFreeCapacity(t *testing.T) {
	for _, mode := range []backpressure.Mode{backpressure.Shed, backpressure.Wait} {
		t.Run(mode.String(), func(t *testing.T) {
			rec := &recorder{}
			l := mustNew(t, backpressure.Config{Capacity: 4, Mode: mode, SoftLimit: 1, Observer: rec})
			ran := false
			stage := middleware.Apply(func(context.Context, int) (int, error) { ran = true; return 1, nil },
				backpressure.Middleware[int, int](l))
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			_, err := stage(ctx, 0)
			if diff := cmp.Diff(context.Canceled, err, cmpopts.EquateErrors()); diff != "" {
				t.Errorf("Middleware: error (-want +got):\n%s", diff)
			}
			if ran {
				t.Error("stage ran for a cancelled context")
			}
			dctx, dcancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
			defer dcancel()
			p, err := l.Acquire(dctx)
			if diff := cmp.Diff(context.DeadlineExceeded, err, cmpopts.EquateErrors()); diff != "" {
				t.Errorf("Acquire: error (-want +got):\n%s", diff)
			}
			if p != (backpressure.Permit{}) {
				t.Errorf("Acquire with an ended context returned a non-zero Permit %+v", p)
			}
			if _, err := l.AcquireN(ctx, 99); err != context.Canceled {
				t.Errorf("AcquireN(ended ctx, bad weight): err = %v, want context.Canceled (the context comes first)", err)
			}
			if diff := cmp.Diff(backpressure.Stats{Capacity: 4}, l.Stats()); diff != "" {
				t.Errorf("Stats (-want +got):\n%s", diff)
			}
			if got := rec.events(); len(got) != 0 {
				t.Errorf("events for ended contexts: %v, want none", got)
			}
		})
	}
}

// PITFALLS: "Release exactly once per successful acquire, also when the
// stage panics; never after a failed acquire". A double release would
// leave InFlight below the true count and admit more than the capacity; a
// release after a failed acquire likewise. Filling the limiter to exactly
// its capacity afterwards proves the count is right.
func TestPitfallReleaseExactlyOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const capacity = 3
		l := mustNew(t, backpressure.Config{Capacity: capacity, Mode: backpressure.Wait, MaxWait: time.Second, MaxQueue: 1})
		h := newHolder(t, l)

		// A panicking stage gives its slot back.
		boom := middleware.Apply(func(context.Context, int) (int, error) { panic("boom") },
			backpressure.Middleware[int, int](l))
		for range 2 * capacity {
			func() {
				defer func() {
					if v := recover(); v != "boom" {
						t.Fatalf("recover() = %v, want boom", v)
					}
				}()
				boom(context.Background(), 0)
				t.Fatal("stage did not panic")
			}()
		}
		if got := inFlight(l); got != 0 {
			t.Fatalf("InFlight after panics = %d, want 0", got)
		}

		// A Permit finished twice gives its weight back once.
		p, err := l.AcquireN(context.Background(), 2)
		if err != nil {
			t.Fatal(err)
		}
		p.Done(nil)
		p.Done(errors.New("again"))
		if p != (backpressure.Permit{}) {
			t.Errorf("Permit after Done = %+v, want zero", p)
		}
		if got := inFlight(l); got != 0 {
			t.Fatalf("InFlight after Done twice = %d, want 0", got)
		}
		var zero backpressure.Permit
		zero.Done(nil) // a zero Permit holds nothing

		// Failed acquires: shed at a full queue, a timed-out wait, a
		// cancelled wait and a bad weight. None of them may release.
		held := h.hold(capacity)
		timedOut := h.call(context.Background(), 1)
		synctest.Wait()
		if _, err := h.stage(context.Background(), 1); !errors.Is(err, backpressure.ErrShed) {
			t.Fatalf("call beyond MaxQueue: err = %v, want ErrShed", err)
		}
		time.Sleep(time.Second)
		if err := <-timedOut; !errors.Is(err, backpressure.ErrShed) {
			t.Fatalf("call after MaxWait: err = %v, want ErrShed", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancelled := h.call(ctx, 1)
		synctest.Wait()
		cancel()
		if err := <-cancelled; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled wait: err = %v, want context.Canceled", err)
		}
		if _, err := h.stage(context.Background(), capacity+1); err == nil {
			t.Fatal("call heavier than the capacity was admitted")
		}
		h.release(1, held)

		// Exactly capacity calls fit now, and one more does not.
		var all []<-chan error
		for range capacity {
			all = append(all, h.hold(1))
		}
		over := h.call(context.Background(), 1)
		synctest.Wait()
		if got, want := l.Stats().Queued, int64(1); got != want {
			t.Errorf("Queued with the limiter full = %d, want %d", got, want)
		}
		for range capacity {
			h.exit <- struct{}{}
		}
		<-h.entered // the queued call is admitted when a slot frees
		h.release(1, append(all, over)...)
		if got := inFlight(l); got != 0 {
			t.Errorf("InFlight at the end = %d, want 0", got)
		}
	})
}

// PITFALLS: "A cancelled waiter at the head of the queue must wake the
// others (golang/sync PR #10)".
func TestPitfallCancelledHeadWaiterWakesOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := mustNew(t, backpressure.Config{Capacity: 2, Mode: backpressure.Wait})
		h := newHolder(t, l)
		held := h.hold(1)

		ctx, cancel := context.WithCancel(context.Background())
		head := h.call(ctx, 2) // does not fit beside the held call
		synctest.Wait()
		behind := h.call(context.Background(), 1) // would fit, but queues behind head
		synctest.Wait()
		if got := l.Stats().Queued; got != 2 {
			t.Fatalf("Queued = %d, want 2", got)
		}

		cancel()
		if err := <-head; !errors.Is(err, context.Canceled) {
			t.Fatalf("head waiter: err = %v, want context.Canceled", err)
		}
		if got := <-h.entered; got != 1 {
			t.Fatalf("admitted weight %d, want the waiter behind the head (1)", got)
		}
		h.release(2, held, behind)
	})
}

// PITFALLS: "TryAcquire fails while a larger waiter is queued, even with
// free capacity (FIFO head-of-line)". Brace keeps that order on purpose, so
// a heavy call is never starved by a stream of light ones: in Wait mode a
// light call queues behind a heavy one even when it would fit, and is
// admitted after it; in Shed mode it is shed.
func TestPitfallHeadOfLineIsFIFO(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := mustNew(t, backpressure.Config{Capacity: 4, Mode: backpressure.Wait})
		h := newHolder(t, l)
		held := h.hold(2)
		heavy := h.call(context.Background(), 4)
		synctest.Wait()
		light := h.call(context.Background(), 1)
		synctest.Wait()
		if got, want := inFlight(l), int64(2); got != want {
			t.Fatalf("InFlight = %d, want %d: the light call jumped the queue", got, want)
		}
		if got := l.Stats().Queued; got != 2 {
			t.Fatalf("Queued = %d, want 2", got)
		}

		h.exit <- struct{}{} // the held call returns; heavy fits, light waits
		var order []int64
		order = append(order, <-h.entered)
		synctest.Wait()
		if got := l.Stats().Queued; got != 1 {
			t.Errorf("Queued while heavy runs = %d, want 1", got)
		}
		h.exit <- struct{}{}
		order = append(order, <-h.entered)
		h.exit <- struct{}{}
		if diff := cmp.Diff([]int64{4, 1}, order); diff != "" {
			t.Errorf("admission order (-want +got):\n%s", diff)
		}
		for _, done := range []<-chan error{held, heavy, light} {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
	})
}

// PITFALLS: "A weight larger than the capacity would block forever: reject
// it up front."
func TestPitfallWeightAboveCapacityRejected(t *testing.T) {
	for _, mode := range []backpressure.Mode{backpressure.Shed, backpressure.Wait} {
		for _, w := range []int64{5, 1 << 40, 0, -1} {
			t.Run(fmt.Sprintf("%v/weight=%d", mode, w), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					rec := &recorder{}
					l := mustNew(t, backpressure.Config{Capacity: 4, Mode: mode, Observer: rec})
					h := newHolder(t, l)
					want := &backpressure.WeightError{Weight: w, Capacity: 4}
					_, err := h.stage(context.Background(), w) // would hang the bubble if it waited
					var we *backpressure.WeightError
					if !errors.As(err, &we) {
						t.Fatalf("err = %v, want *WeightError", err)
					}
					if diff := cmp.Diff(want, we); diff != "" {
						t.Errorf("WeightError (-want +got):\n%s", diff)
					}
					if _, err := l.AcquireN(context.Background(), w); !errors.As(err, &we) || *we != *want {
						t.Errorf("AcquireN(%d) = %v, want %v", w, err, want)
					}
					if errors.Is(err, backpressure.ErrShed) {
						t.Errorf("a bad weight is not a shed: errors.Is(%v, ErrShed) = true", err)
					}
					if got := fmt.Sprint(err); got != fmt.Sprintf("backpressure: weight must be between 1 and capacity 4, got %d", w) {
						t.Errorf("Error() = %q", got)
					}
					wantEv := middleware.Event{Kind: middleware.Rejected, Concern: "backpressure", Reason: "weight", Limit: 4, Err: want}
					sameText := cmp.Comparer(func(a, b error) bool { return a.Error() == b.Error() })
					if diff := cmp.Diff([]middleware.Event{wantEv, wantEv}, rec.events(), sameText); diff != "" {
						t.Errorf("events (-want +got):\n%s", diff)
					}
					if diff := cmp.Diff(backpressure.Stats{Capacity: 4, Rejected: 2}, l.Stats()); diff != "" {
						t.Errorf("Stats (-want +got):\n%s", diff)
					}
				})
			})
		}
	}
}

// PITFALLS: "Under any load, in-flight work never exceeds capacity." Also:
// InFlight returns to zero and every call returns exactly once, admitted or
// shed, and the Stats counts agree with what the callers saw.
func TestPitfallInFlightNeverExceedsCapacity(t *testing.T) {
	const (
		capacity   = 8
		goroutines = 4000
	)
	for _, tc := range []struct {
		name     string
		cfg      backpressure.Config
		weighted bool
		acquire  bool // use Acquire and Done instead of the middleware
	}{
		{"shed", backpressure.Config{}, false, false},
		{"wait", backpressure.Config{Mode: backpressure.Wait, MaxQueue: 64}, false, false},
		{"wait/weighted", backpressure.Config{Mode: backpressure.Wait, MaxQueue: 64, SoftLimit: 6}, true, false},
		{"wait/unbounded-queue", backpressure.Config{Mode: backpressure.Wait, MaxQueue: goroutines}, true, false},
		// Weight 1 and no soft limit: the admission by one atomic add
		// (issue 20), racing with waiters that a unit taken back must
		// not leave stranded.
		{"wait/unbounded-queue/unit", backpressure.Config{Mode: backpressure.Wait, MaxQueue: goroutines}, false, false},
		{"wait/unit/acquire", backpressure.Config{Mode: backpressure.Wait, MaxQueue: goroutines}, false, true},
		{"wait/acquire", backpressure.Config{Mode: backpressure.Wait, MaxQueue: 64, SoftLimit: 4, Observer: &recorder{}}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Capacity = capacity
			l := mustNew(t, tc.cfg)
			var inflight, peak, admitted, shed, returned atomic.Int64
			weight := func(i int) int64 { return 1 }
			if tc.weighted {
				weight = func(i int) int64 { return int64(i%3 + 1) }
			}
			work := func(_ context.Context, i int) (int, error) {
				n := inflight.Add(weight(i))
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				admitted.Add(1)
				if i%7 == 0 {
					time.Sleep(time.Microsecond) // hold the slot a little, to build a queue
				}
				inflight.Add(-weight(i))
				return i, nil
			}
			stage := middleware.Apply(work, backpressure.Weighted[int, int](l, func(i int) int64 { return weight(i) }))
			if tc.acquire {
				stage = func(ctx context.Context, i int) (int, error) {
					p, err := l.AcquireN(ctx, weight(i))
					if err != nil {
						return 0, err
					}
					defer p.Done(nil)
					return work(ctx, i)
				}
			}

			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range goroutines {
				wg.Go(func() {
					<-start
					ctx := context.Background()
					if i%50 == 0 {
						var cancel context.CancelFunc
						ctx, cancel = context.WithCancel(ctx)
						defer cancel()
						go cancel() // some callers give up while queued
					}
					_, err := stage(ctx, i)
					returned.Add(1)
					switch {
					case err == nil:
					case errors.Is(err, backpressure.ErrShed), errors.Is(err, context.Canceled):
						shed.Add(1)
					default:
						t.Errorf("call %d: unexpected error %v", i, err)
					}
				})
			}
			close(start)
			wg.Wait()
			if p := peak.Load(); p > capacity {
				t.Errorf("peak in-flight weight %d exceeds capacity %d", p, capacity)
			}
			st := l.Stats()
			if st.InFlight != 0 || st.Queued != 0 {
				t.Errorf("after all calls: InFlight = %d, Queued = %d, want 0, 0", st.InFlight, st.Queued)
			}
			if a, s, r := admitted.Load(), shed.Load(), returned.Load(); a+s != goroutines || r != goroutines {
				t.Errorf("admitted %d + shed or cancelled %d = %d, returned %d; want %d each", a, s, a+s, r, goroutines)
			}
			if st.Rejected > uint64(shed.Load()) || st.Waited > uint64(admitted.Load()) {
				t.Errorf("Stats %+v: more rejections than sheds (%d) or more waits than admissions (%d)", st, shed.Load(), admitted.Load())
			}
			t.Logf("admitted %d, shed or cancelled %d, peak %d, %+v", admitted.Load(), shed.Load(), peak.Load(), st)
		})
	}
}

func TestWaitAdmitsWhenSlotFrees(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		l := mustNew(t, backpressure.Config{Capacity: 1, Mode: backpressure.Wait, Name: "db", Observer: rec})
		h := newHolder(t, l)
		held := h.hold(1)
		waiting := h.call(context.Background(), 1)
		synctest.Wait()
		if got := l.Stats().Queued; got != 1 {
			t.Fatalf("Queued = %d, want 1", got)
		}
		time.Sleep(time.Hour) // no MaxWait: it waits as long as its context allows
		h.exit <- struct{}{}
		<-h.entered
		h.release(1, held, waiting)
		want := []middleware.Event{{Kind: middleware.Waited, Concern: "backpressure", Name: "db", Wait: time.Hour, InFlight: 1}}
		if diff := cmp.Diff(want, rec.events(), cmpopts.EquateErrors()); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(backpressure.Stats{Capacity: 1, Waited: 1}, l.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
}

func TestWaitMaxWaitSheds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		l := mustNew(t, backpressure.Config{Capacity: 1, Mode: backpressure.Wait, MaxWait: 50 * time.Millisecond, Observer: rec})
		h := newHolder(t, l)
		held := h.hold(1)
		start := time.Now()
		_, err := h.stage(context.Background(), 1)
		if err != backpressure.ErrShed {
			t.Fatalf("err = %v, want ErrShed", err)
		}
		if got := time.Since(start); got != 50*time.Millisecond {
			t.Errorf("shed after %v, want 50ms", got)
		}
		want := []middleware.Event{{Kind: middleware.Rejected, Concern: "backpressure", Reason: "shed",
			InFlight: 1, Limit: 1, Wait: 50 * time.Millisecond, Err: backpressure.ErrShed}}
		if diff := cmp.Diff(want, rec.events(), cmpopts.EquateErrors()); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
		if got := l.Stats().Queued; got != 0 {
			t.Errorf("Queued after the shed = %d, want 0", got)
		}
		h.release(1, held)
	})
}

func TestWaitMaxQueue(t *testing.T) {
	for _, tc := range []struct {
		name      string
		maxQueue  int
		wantQueue int64
	}{
		{"default is the capacity", 0, 2},
		{"explicit", 3, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rec := &recorder{}
				l := mustNew(t, backpressure.Config{Capacity: 2, Mode: backpressure.Wait, MaxQueue: tc.maxQueue, Observer: rec})
				h := newHolder(t, l)
				done := []<-chan error{h.hold(1), h.hold(1)}
				for range tc.wantQueue {
					done = append(done, h.call(context.Background(), 1))
				}
				synctest.Wait()
				if got := l.Stats().Queued; got != tc.wantQueue {
					t.Fatalf("Queued = %d, want %d", got, tc.wantQueue)
				}
				if _, err := h.stage(context.Background(), 1); err != backpressure.ErrShed {
					t.Fatalf("call beyond the queue: err = %v, want ErrShed", err)
				}
				want := []middleware.Event{{Kind: middleware.Rejected, Concern: "backpressure", Reason: "shed",
					InFlight: 2, Limit: 2, Err: backpressure.ErrShed}}
				if diff := cmp.Diff(want, rec.events(), cmpopts.EquateErrors()); diff != "" {
					t.Errorf("events (-want +got):\n%s", diff)
				}
				h.release(len(done), done...)
			})
		})
	}
}

func TestWaitContextEndsFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		l := mustNew(t, backpressure.Config{Capacity: 1, Mode: backpressure.Wait, MaxWait: time.Minute, Observer: rec})
		h := newHolder(t, l)
		held := h.hold(1)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		_, err := h.stage(ctx, 1)
		if diff := cmp.Diff(context.DeadlineExceeded, err, cmpopts.EquateErrors()); diff != "" {
			t.Errorf("error (-want +got):\n%s", diff)
		}
		if got := time.Since(start); got != time.Second {
			t.Errorf("returned after %v, want 1s (the deadline)", got)
		}
		h.release(1, held)
		// The caller left; it was not refused: no event, no count.
		if diff := cmp.Diff(backpressure.Stats{Capacity: 1}, l.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
		if got := rec.events(); len(got) != 0 {
			t.Errorf("events = %v, want none", got)
		}
	})
}

// Acquire honours the Mode as the middleware does: in Shed mode it fails at
// once, in Wait mode it waits in the same FIFO queue as the stages.
func TestAcquire(t *testing.T) {
	t.Run("shed", func(t *testing.T) {
		l := mustNew(t, backpressure.Config{Capacity: 2})
		p, err := l.AcquireN(context.Background(), 2)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Acquire(context.Background()); err != backpressure.ErrShed {
			t.Errorf("Acquire at capacity: err = %v, want ErrShed", err)
		}
		p.Done(nil)
		q, err := l.Acquire(context.Background())
		if err != nil {
			t.Fatalf("Acquire after Done: %v", err)
		}
		if got := inFlight(l); got != 1 {
			t.Errorf("InFlight = %d, want 1", got)
		}
		q.Done(errors.New("the work failed")) // the outcome does not matter to a limiter
		if got := inFlight(l); got != 0 {
			t.Errorf("InFlight = %d, want 0", got)
		}
	})
	t.Run("wait", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			l := mustNew(t, backpressure.Config{Capacity: 2, Mode: backpressure.Wait})
			h := newHolder(t, l)
			held := h.hold(2)
			got := make(chan backpressure.Permit)
			go func() {
				p, err := l.Acquire(context.Background())
				if err != nil {
					t.Error(err)
				}
				got <- p
			}()
			synctest.Wait()
			queued := h.call(context.Background(), 1) // behind the Acquire
			synctest.Wait()
			if q := l.Stats().Queued; q != 2 {
				t.Fatalf("Queued = %d, want 2", q)
			}
			h.exit <- struct{}{}
			p := <-got
			<-h.entered // the call behind it fits too
			if got := inFlight(l); got != 2 {
				t.Errorf("InFlight = %d, want 2", got)
			}
			p.Done(nil)
			h.release(1, held, queued)
		})
	})
}

// SoftLimit is a state: one StateChanged event when the weight in flight
// rises to the soft limit, none while it stays above, one when it falls
// below again.
func TestSoftLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		l := mustNew(t, backpressure.Config{Capacity: 4, SoftLimit: 2, Name: "db", Observer: rec})
		h := newHolder(t, l)
		up := func(inflight int64) middleware.Event {
			return middleware.Event{Kind: middleware.StateChanged, Concern: "backpressure", Name: "db",
				From: backpressure.StateNormal, To: backpressure.StateOverSoftLimit, InFlight: inflight, Limit: 2}
		}
		down := func(inflight int64) middleware.Event {
			return middleware.Event{Kind: middleware.StateChanged, Concern: "backpressure", Name: "db",
				From: backpressure.StateOverSoftLimit, To: backpressure.StateNormal, InFlight: inflight, Limit: 2}
		}
		a := h.hold(1)
		b := h.hold(1) // reaches the soft limit: admitted, and one event
		c := h.hold(1) // above it: no new event
		if diff := cmp.Diff([]middleware.Event{up(2)}, rec.events(), cmpopts.EquateErrors()); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
		h.exit <- struct{}{} // 3 -> 2: still at the soft limit
		synctest.Wait()
		if diff := cmp.Diff([]middleware.Event{up(2)}, rec.events(), cmpopts.EquateErrors()); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
		h.exit <- struct{}{} // 2 -> 1: below it
		synctest.Wait()
		if diff := cmp.Diff([]middleware.Event{up(2), down(1)}, rec.events(), cmpopts.EquateErrors()); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
		h.release(1, a, b, c)
		rec.reset()
		d := h.hold(3) // from 0 straight past the limit: one event
		if _, err := h.stage(context.Background(), 2); err != backpressure.ErrShed {
			t.Errorf("err = %v, want ErrShed", err)
		}
		h.release(1, d)
		want := []middleware.Event{
			up(3),
			{Kind: middleware.Rejected, Concern: "backpressure", Name: "db", Reason: "shed", InFlight: 3, Limit: 4, Err: backpressure.ErrShed},
			down(0),
		}
		if diff := cmp.Diff(want, rec.events(), cmpopts.EquateErrors()); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
	})
}

func TestSoftLimitOffWithoutConfig(t *testing.T) {
	rec := &recorder{}
	l := mustNew(t, backpressure.Config{Capacity: 2, Observer: rec})
	h := newHolder(t, l)
	a := h.hold(2)
	h.release(1, a)
	if got := rec.events(); len(got) != 0 {
		t.Errorf("events without a soft limit: %v, want none", got)
	}
}

func TestSoftLimitWhenAdmittedFromQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		l := mustNew(t, backpressure.Config{Capacity: 3, Mode: backpressure.Wait, SoftLimit: 2, Observer: rec})
		h := newHolder(t, l)
		a := h.hold(1)
		b := h.call(context.Background(), 3) // waits for a
		synctest.Wait()
		h.exit <- struct{}{} // a leaves; b is admitted from the queue, over the soft limit
		<-h.entered
		h.release(1, a, b)
		want := []middleware.Event{
			{Kind: middleware.Waited, Concern: "backpressure", InFlight: 3},
			{Kind: middleware.StateChanged, Concern: "backpressure", From: "normal", To: "over-soft-limit", InFlight: 3, Limit: 2},
			{Kind: middleware.StateChanged, Concern: "backpressure", From: "over-soft-limit", To: "normal", InFlight: 0, Limit: 2},
		}
		if diff := cmp.Diff(want, rec.events(), cmpopts.EquateErrors()); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
	})
}

// Under concurrent crossings the soft-limit events still form one
// alternating sequence (each From is the previous To), none repeats a
// state, and the last one is the state in force: normal, once every call
// has returned.
func TestSoftLimitEventsInOrderUnderConcurrency(t *testing.T) {
	var mu sync.Mutex
	var states []string
	obs := middleware.ObserverFunc(func(_ context.Context, e middleware.Event) {
		if e.Kind != middleware.StateChanged {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		prev := backpressure.StateNormal
		if len(states) > 0 {
			prev = states[len(states)-1]
		}
		if e.From != prev || e.To == e.From {
			t.Errorf("event %s -> %s after state %s", e.From, e.To, prev)
		}
		states = append(states, e.To)
	})
	l := mustNew(t, backpressure.Config{Capacity: 8, SoftLimit: 2, Mode: backpressure.Wait, MaxQueue: 100, Observer: obs})
	stage := middleware.Apply(func(context.Context, int) (int, error) { return 0, nil }, backpressure.Middleware[int, int](l))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 2000 {
				if _, err := stage(context.Background(), 0); err != nil && err != backpressure.ErrShed {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(states) > 0 && states[len(states)-1] != backpressure.StateNormal {
		t.Errorf("last state reported %q with nothing in flight, want normal (%d events)", states[len(states)-1], len(states))
	}
	t.Logf("%d state changes reported for 16000 calls", len(states))
}

// One limiter guards stages of different types and counts them together.
func TestOneLimiterGuardsStagesOfDifferentTypes(t *testing.T) {
	l := mustNew(t, backpressure.Config{Capacity: 2})
	release := make(chan struct{})
	entered := make(chan struct{})
	parse := middleware.Apply(func(_ context.Context, s string) (int, error) {
		entered <- struct{}{}
		<-release
		return len(s), nil
	}, backpressure.Middleware[string, int](l))
	format := middleware.Apply(func(_ context.Context, n int) (string, error) {
		return fmt.Sprint(n), nil
	}, backpressure.Weighted[int, string](l, func(n int) int64 { return int64(n) }))

	done := make(chan error)
	go func() { _, err := parse(context.Background(), "abc"); done <- err }()
	<-entered
	if got, err := format(context.Background(), 1); err != nil || got != "1" {
		t.Errorf("format(1) beside a running parse = %q, %v; want \"1\", nil", got, err)
	}
	if _, err := format(context.Background(), 2); !errors.Is(err, backpressure.ErrShed) {
		t.Errorf("format(2) beside a running parse: err = %v, want ErrShed", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A nil *Limiter or weight func is a programmer error: the adapters panic
// when the chain is built, naming the mistake.
func TestAdaptersPanicOnNil(t *testing.T) {
	l := mustNew(t, backpressure.Config{Capacity: 1})
	for _, tc := range []struct {
		name string
		f    func()
		want string
	}{
		{"Middleware(nil)", func() { backpressure.Middleware[int, int](nil) }, "backpressure: nil *Limiter (was New's error ignored?)"},
		{"Weighted(nil, f)", func() { backpressure.Weighted[int, int](nil, func(int) int64 { return 1 }) }, "backpressure: nil *Limiter (was New's error ignored?)"},
		{"Weighted(l, nil)", func() { backpressure.Weighted[int, int](l, nil) }, "backpressure: nil weight func"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if diff := cmp.Diff(tc.want, recover()); diff != "" {
					t.Errorf("panic value (-want +got):\n%s", diff)
				}
			}()
			tc.f()
		})
	}
}

// A weight func that panics is the caller's panic; nothing is held.
func TestWeightFuncPanics(t *testing.T) {
	l := mustNew(t, backpressure.Config{Capacity: 1})
	s := middleware.Apply(func(context.Context, int) (int, error) { return 0, nil },
		backpressure.Weighted[int, int](l, func(int) int64 { panic("weight") }))
	func() {
		defer func() {
			if v := recover(); v != "weight" {
				t.Errorf("recover() = %v, want weight", v)
			}
		}()
		s(context.Background(), 0)
	}()
	if got := inFlight(l); got != 0 {
		t.Errorf("InFlight = %d, want 0", got)
	}
}

func TestStageErrorPassesThrough(t *testing.T) {
	errBoom := errors.New("boom")
	l := mustNew(t, backpressure.Config{Capacity: 1})
	s := middleware.Apply(func(context.Context, int) (int, error) { return 7, errBoom }, backpressure.Middleware[int, int](l))
	got, err := s(context.Background(), 0)
	if got != 7 || err != errBoom {
		t.Errorf("got (%d, %v), want (7, %v)", got, err, errBoom)
	}
	if got := inFlight(l); got != 0 {
		t.Errorf("InFlight = %d, want 0", got)
	}
}

func TestModeString(t *testing.T) {
	got := []string{backpressure.Shed.String(), backpressure.Wait.String(), backpressure.Mode(9).String()}
	if diff := cmp.Diff([]string{"shed", "wait", "Mode(9)"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestDisciplineString(t *testing.T) {
	got := []string{backpressure.FIFO.String(), backpressure.LIFO.String(), backpressure.CoDel.String(), backpressure.Discipline(9).String()}
	if diff := cmp.Diff([]string{"fifo", "lifo", "codel", "Discipline(9)"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// The success paths allocate nothing, with or without an observer and a
// soft limit that is not crossed; a shed allocates nothing with no
// observer (issue 20: it used to allocate a 48-byte *ShedError).
func TestAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	obs := middleware.ObserverFunc(func(context.Context, middleware.Event) {})
	noop := func(_ context.Context, in int) (int, error) { return in, nil }
	for _, tc := range []struct {
		name string
		cfg  backpressure.Config
	}{
		{"shed", backpressure.Config{}},
		{"wait", backpressure.Config{Mode: backpressure.Wait, MaxWait: time.Second}},
		{"soft limit", backpressure.Config{SoftLimit: 3, Observer: obs}},
		{"priorities", backpressure.Config{Priorities: true}},
		{"priorities wait", backpressure.Config{Priorities: true, Mode: backpressure.Wait, Queue: backpressure.CoDel}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Capacity = 4
			l := mustNew(t, tc.cfg)
			m := middleware.Apply(noop, backpressure.Middleware[int, int](l))
			w := middleware.Apply(noop, backpressure.Weighted[int, int](l, func(int) int64 { return 2 }))
			for name, f := range map[string]func(){
				"Middleware": func() { m(ctx, 1) },
				"Weighted":   func() { w(ctx, 1) },
				"Acquire": func() {
					p, _ := l.Acquire(ctx)
					p.Done(nil)
				},
			} {
				if n := testing.AllocsPerRun(1000, f); n != 0 {
					t.Errorf("%s: admitted call allocates %v times, want 0", name, n)
				}
			}
		})
	}
	t.Run("rejected", func(t *testing.T) {
		for _, mode := range []backpressure.Mode{backpressure.Shed, backpressure.Wait} {
			synctest.Test(t, func(t *testing.T) {
				ctx := context.Background()
				l := mustNew(t, backpressure.Config{Capacity: 1, Mode: mode})
				p, err := l.Acquire(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer p.Done(nil)
				if mode == backpressure.Wait {
					// Fill the queue (MaxQueue defaults to the capacity, 1)
					// so that the next call is shed at once.
					wctx, wcancel := context.WithCancel(ctx)
					done := make(chan struct{})
					go func() { l.Acquire(wctx); close(done) }()
					synctest.Wait()
					defer func() { wcancel(); <-done }()
				}
				m := middleware.Apply(noop, backpressure.Middleware[int, int](l))
				if n := testing.AllocsPerRun(1000, func() { m(ctx, 1) }); n != 0 {
					t.Errorf("%v: shed call allocates %v times, want 0", mode, n)
				}
				if n := testing.AllocsPerRun(1000, func() { l.Acquire(ctx) }); n != 0 {
					t.Errorf("%v: shed Acquire allocates %v times, want 0", mode, n)
				}
				if got := l.Stats().Rejected; got != 2002 {
					t.Errorf("%v: Stats().Rejected = %d, want 2002", mode, got)
				}
			})
		}
	})
}

func TestErrorsHavePackagePrefix(t *testing.T) {
	for _, err := range []error{backpressure.ErrShed, &backpressure.WeightError{}} {
		if !strings.HasPrefix(err.Error(), "backpressure: ") {
			t.Errorf("%q does not start with the package name", err)
		}
	}
}

// The method contracts: an error with a Retryable() bool method classifies
// itself for retry; one with Rejected() bool tells a breaker the call never
// reached the downstream. Sheds and bad weights are not worth retrying and
// are local rejections, also when wrapped.
func TestErrorContracts(t *testing.T) {
	type contract interface {
		error
		Retryable() bool
		Rejected() bool
	}
	for _, err := range []error{
		backpressure.ErrShed,
		fmt.Errorf("query: %w", backpressure.ErrShed),
		&backpressure.WeightError{Weight: 9, Capacity: 1},
	} {
		var c contract
		if !errors.As(err, &c) {
			t.Errorf("%v has no Retryable and Rejected methods in its chain", err)
			continue
		}
		if c.Retryable() || !c.Rejected() {
			t.Errorf("%v: Retryable() = %v, Rejected() = %v; want false, true", err, c.Retryable(), c.Rejected())
		}
	}
}
