package backpressure_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/backpressure"
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

func mustNew(t *testing.T, capacity int64, cfg backpressure.Config) *backpressure.Limiter {
	t.Helper()
	l, err := backpressure.New(capacity, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	tests := []struct {
		name     string
		capacity int64
		cfg      backpressure.Config
		want     string
	}{
		{"capacity zero", 0, backpressure.Config{}, "backpressure: capacity must be at least 1, got 0"},
		{"capacity negative", -3, backpressure.Config{}, "backpressure: capacity must be at least 1, got -3"},
		{"capacity too large", backpressure.MaxCapacity + 1, backpressure.Config{}, "backpressure: capacity must be at most 2147483647, got 2147483648"},
		{"unknown mode", 4, backpressure.Config{Mode: 7}, "backpressure: Mode must be Shed or Wait, got Mode(7)"},
		{"negative MaxWait", 4, backpressure.Config{Mode: backpressure.Wait, MaxWait: -time.Second}, "backpressure: MaxWait must not be negative, got -1s"},
		{"negative MaxQueue", 4, backpressure.Config{Mode: backpressure.Wait, MaxQueue: -1}, "backpressure: MaxQueue must not be negative, got -1"},
		{"MaxWait in shed mode", 4, backpressure.Config{MaxWait: time.Second}, "backpressure: MaxWait must be zero in Shed mode, got 1s"},
		{"MaxQueue in shed mode", 4, backpressure.Config{MaxQueue: 2}, "backpressure: MaxQueue must be zero in Shed mode, got 2"},
		{"negative SoftLimit", 4, backpressure.Config{SoftLimit: -1}, "backpressure: SoftLimit must not be negative, got -1"},
		{"SoftLimit at capacity", 4, backpressure.Config{SoftLimit: 4}, "backpressure: SoftLimit must be below capacity 4, got 4"},
		{"SoftLimit above capacity", 4, backpressure.Config{SoftLimit: 9}, "backpressure: SoftLimit must be below capacity 4, got 9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := backpressure.New(tt.capacity, tt.cfg)
			if err == nil {
				t.Fatalf("New(%d, %+v) = %v, nil; want error %q", tt.capacity, tt.cfg, l, tt.want)
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

func TestZeroConfigSheds(t *testing.T) {
	l := mustNew(t, 1, backpressure.Config{})
	h := newHolder(t, l)
	done := h.hold(1)
	if _, err := h.stage(context.Background(), 1); !errors.Is(err, backpressure.ErrShed) {
		t.Errorf("call at capacity with zero Config: err = %v, want ErrShed", err)
	}
	h.exit <- struct{}{}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestShedError(t *testing.T) {
	var shed []*backpressure.ShedError
	l := mustNew(t, 3, backpressure.Config{OnShed: func(e *backpressure.ShedError) { shed = append(shed, e) }})
	h := newHolder(t, l)
	a, b := h.hold(1), h.hold(1)
	if got := l.Depth(); got != 2 {
		t.Fatalf("Depth() = %d, want 2", got)
	}
	_, err := h.stage(context.Background(), 2)
	want := &backpressure.ShedError{Depth: 2, Capacity: 3, Weight: 2}
	var se *backpressure.ShedError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want a *ShedError", err)
	}
	if diff := cmp.Diff(want, se); diff != "" {
		t.Errorf("ShedError (-want +got):\n%s", diff)
	}
	if !errors.Is(err, backpressure.ErrShed) {
		t.Errorf("errors.Is(%v, ErrShed) = false", err)
	}
	if got, want := err.Error(), "backpressure: shed at depth 2 of capacity 3"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if diff := cmp.Diff([]*backpressure.ShedError{want}, shed); diff != "" {
		t.Errorf("OnShed calls (-want +got):\n%s", diff)
	}
	// A call that fits is still admitted beside the held ones.
	c := h.hold(1)
	for range 3 {
		h.exit <- struct{}{}
	}
	for _, done := range []<-chan error{a, b, c} {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if got := l.Depth(); got != 0 {
		t.Errorf("Depth() after all calls = %d, want 0", got)
	}
}

// PITFALLS: "An already-cancelled context fails even when capacity is free
// (golang/go #63615, #67723)".
func TestPitfallAlreadyCancelledContextFailsWithFreeCapacity(t *testing.T) {
	for _, mode := range []backpressure.Mode{backpressure.Shed, backpressure.Wait} {
		t.Run(mode.String(), func(t *testing.T) {
			l := mustNew(t, 4, backpressure.Config{Mode: mode})
			ran := false
			stage := middleware.Apply(func(context.Context, int) (int, error) { ran = true; return 1, nil },
				backpressure.Middleware[int, int](l))
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			_, err := stage(ctx, 0)
			if diff := cmp.Diff(context.Canceled, err, cmpopts.EquateErrors()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if ran {
				t.Error("stage ran for a cancelled context")
			}
			if got := l.Depth(); got != 0 {
				t.Errorf("Depth() = %d, want 0", got)
			}
		})
	}
}

// PITFALLS: "Release exactly once per successful acquire, also when the
// stage panics; never after a failed acquire". A double release would
// leave Depth below the true count and admit more than the capacity; a
// release after a failed acquire likewise. Filling the limiter to exactly
// its capacity afterwards proves the count is right.
func TestPitfallReleaseExactlyOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const capacity = 3
		l := mustNew(t, capacity, backpressure.Config{Mode: backpressure.Wait, MaxWait: time.Second, MaxQueue: 1})
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
		if got := l.Depth(); got != 0 {
			t.Fatalf("Depth() after panics = %d, want 0", got)
		}

		// Failed acquires: shed at a full queue, a timed-out wait, a
		// cancelled wait and a bad weight. None of them may release.
		held := []<-chan error{h.hold(capacity)}
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
		h.exit <- struct{}{}
		if err := <-held[0]; err != nil {
			t.Fatal(err)
		}

		// Exactly capacity calls fit now, and one more does not.
		held = held[:0]
		for range capacity {
			held = append(held, h.hold(1))
		}
		over := h.call(context.Background(), 1)
		synctest.Wait()
		if got, want := l.Queued(), int64(1); got != want {
			t.Errorf("Queued() with the limiter full = %d, want %d", got, want)
		}
		for range capacity {
			h.exit <- struct{}{}
		}
		<-h.entered // the queued call is admitted when a slot frees
		h.exit <- struct{}{}
		for _, done := range append(held, over) {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		if got := l.Depth(); got != 0 {
			t.Errorf("Depth() at the end = %d, want 0", got)
		}
	})
}

// PITFALLS: "A cancelled waiter at the head of the queue must wake the
// others (golang/sync PR #10)".
func TestPitfallCancelledHeadWaiterWakesOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := mustNew(t, 2, backpressure.Config{Mode: backpressure.Wait})
		h := newHolder(t, l)
		held := h.hold(1)

		ctx, cancel := context.WithCancel(context.Background())
		head := h.call(ctx, 2) // does not fit beside the held call
		synctest.Wait()
		behind := h.call(context.Background(), 1) // would fit, but queues behind head
		synctest.Wait()
		if got := l.Queued(); got != 2 {
			t.Fatalf("Queued() = %d, want 2", got)
		}

		cancel()
		if err := <-head; !errors.Is(err, context.Canceled) {
			t.Fatalf("head waiter: err = %v, want context.Canceled", err)
		}
		if got := <-h.entered; got != 1 {
			t.Fatalf("admitted weight %d, want the waiter behind the head (1)", got)
		}
		h.exit <- struct{}{}
		h.exit <- struct{}{}
		for _, done := range []<-chan error{held, behind} {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
	})
}

// PITFALLS: "TryAcquire fails while a larger waiter is queued, even with
// free capacity (FIFO head-of-line)". Brace keeps that order on purpose, so
// a heavy call is never starved by a stream of light ones: in Wait mode a
// light call queues behind a heavy one even when it would fit, and is
// admitted after it.
func TestPitfallHeadOfLineIsFIFO(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := mustNew(t, 4, backpressure.Config{Mode: backpressure.Wait})
		h := newHolder(t, l)
		held := h.hold(2)
		heavy := h.call(context.Background(), 4)
		synctest.Wait()
		light := h.call(context.Background(), 1)
		synctest.Wait()
		if got, want := l.Depth(), int64(2); got != want {
			t.Fatalf("Depth() = %d, want %d: the light call jumped the queue", got, want)
		}
		if got := l.Queued(); got != 2 {
			t.Fatalf("Queued() = %d, want 2", got)
		}

		h.exit <- struct{}{} // the held call returns; heavy fits, light waits
		var order []int64
		order = append(order, <-h.entered)
		synctest.Wait()
		if got := l.Queued(); got != 1 {
			t.Errorf("Queued() while heavy runs = %d, want 1", got)
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
					l := mustNew(t, 4, backpressure.Config{Mode: mode})
					h := newHolder(t, l)
					_, err := h.stage(context.Background(), w) // would hang the bubble if it waited
					want := &backpressure.WeightError{Weight: w, Capacity: 4}
					var we *backpressure.WeightError
					if !errors.As(err, &we) {
						t.Fatalf("err = %v, want *WeightError", err)
					}
					if diff := cmp.Diff(want, we); diff != "" {
						t.Errorf("WeightError (-want +got):\n%s", diff)
					}
					if errors.Is(err, backpressure.ErrShed) {
						t.Errorf("a bad weight is not a shed: errors.Is(%v, ErrShed) = true", err)
					}
					if got := fmt.Sprint(err); got != fmt.Sprintf("backpressure: weight must be between 1 and capacity 4, got %d", w) {
						t.Errorf("Error() = %q", got)
					}
				})
			})
		}
	}
}

// PITFALLS: "Under any load, in-flight work never exceeds capacity." Also:
// depth returns to zero and every call returns exactly once, admitted or
// shed.
func TestPitfallInFlightNeverExceedsCapacity(t *testing.T) {
	const (
		capacity   = 8
		goroutines = 4000
	)
	for _, tc := range []struct {
		name     string
		cfg      backpressure.Config
		weighted bool
	}{
		{"shed", backpressure.Config{}, false},
		{"wait", backpressure.Config{Mode: backpressure.Wait, MaxQueue: 64}, false},
		{"wait/weighted", backpressure.Config{Mode: backpressure.Wait, MaxQueue: 64, SoftLimit: 6}, true},
		{"wait/unbounded-queue", backpressure.Config{Mode: backpressure.Wait, MaxQueue: goroutines}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := mustNew(t, capacity, tc.cfg)
			var inflight, peak, admitted, shed, returned atomic.Int64
			weight := func(i int) int64 { return 1 }
			if tc.weighted {
				weight = func(i int) int64 { return int64(i%3 + 1) }
			}
			stage := middleware.Apply(func(_ context.Context, i int) (int, error) {
				n := inflight.Add(weight(i))
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				admitted.Add(1)
				if i%7 == 0 {
					time.Sleep(time.Microsecond) // hold the slot a little, to build a queue
				}
				inflight.Add(-weight(i))
				return i, nil
			}, backpressure.Weighted[int, int](l, func(i int) int64 { return weight(i) }))

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
			if d, q := l.Depth(), l.Queued(); d != 0 || q != 0 {
				t.Errorf("after all calls: Depth() = %d, Queued() = %d, want 0, 0", d, q)
			}
			if a, s, r := admitted.Load(), shed.Load(), returned.Load(); a+s != goroutines || r != goroutines {
				t.Errorf("admitted %d + shed or cancelled %d = %d, returned %d; want %d each", a, s, a+s, r, goroutines)
			}
			t.Logf("admitted %d, shed or cancelled %d, peak %d", admitted.Load(), shed.Load(), peak.Load())
		})
	}
}

func TestWaitAdmitsWhenSlotFrees(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := mustNew(t, 1, backpressure.Config{Mode: backpressure.Wait})
		h := newHolder(t, l)
		held := h.hold(1)
		waiting := h.call(context.Background(), 1)
		synctest.Wait()
		if got := l.Queued(); got != 1 {
			t.Fatalf("Queued() = %d, want 1", got)
		}
		time.Sleep(time.Hour) // no MaxWait: it waits as long as its context allows
		h.exit <- struct{}{}
		<-h.entered
		h.exit <- struct{}{}
		for _, done := range []<-chan error{held, waiting} {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
	})
}

func TestWaitMaxWaitSheds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := mustNew(t, 1, backpressure.Config{Mode: backpressure.Wait, MaxWait: 50 * time.Millisecond})
		h := newHolder(t, l)
		held := h.hold(1)
		start := time.Now()
		_, err := h.stage(context.Background(), 1)
		want := &backpressure.ShedError{Depth: 1, Capacity: 1, Weight: 1, Waited: 50 * time.Millisecond}
		var se *backpressure.ShedError
		if !errors.As(err, &se) {
			t.Fatalf("err = %v, want *ShedError", err)
		}
		if diff := cmp.Diff(want, se); diff != "" {
			t.Errorf("ShedError (-want +got):\n%s", diff)
		}
		if got := time.Since(start); got != 50*time.Millisecond {
			t.Errorf("shed after %v, want 50ms", got)
		}
		if got, want := err.Error(), "backpressure: shed at depth 1 of capacity 1 after waiting 50ms"; got != want {
			t.Errorf("Error() = %q, want %q", got, want)
		}
		h.exit <- struct{}{}
		if err := <-held; err != nil {
			t.Fatal(err)
		}
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
				l := mustNew(t, 2, backpressure.Config{Mode: backpressure.Wait, MaxQueue: tc.maxQueue})
				h := newHolder(t, l)
				done := []<-chan error{h.hold(1), h.hold(1)}
				for range tc.wantQueue {
					done = append(done, h.call(context.Background(), 1))
				}
				synctest.Wait()
				_, err := h.stage(context.Background(), 1)
				want := &backpressure.ShedError{Depth: 2, Capacity: 2, Weight: 1, Queued: tc.wantQueue}
				var se *backpressure.ShedError
				if !errors.As(err, &se) {
					t.Fatalf("call beyond the queue: err = %v, want *ShedError", err)
				}
				if diff := cmp.Diff(want, se); diff != "" {
					t.Errorf("ShedError (-want +got):\n%s", diff)
				}
				for range done {
					h.exit <- struct{}{}
				}
				for _, d := range done {
					if err := <-d; err != nil {
						t.Fatal(err)
					}
				}
			})
		})
	}
}

func TestWaitContextEndsFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := mustNew(t, 1, backpressure.Config{Mode: backpressure.Wait, MaxWait: time.Minute})
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
		if got := l.Queued(); got != 0 {
			t.Errorf("Queued() = %d, want 0", got)
		}
		h.exit <- struct{}{}
		if err := <-held; err != nil {
			t.Fatal(err)
		}
	})
}

func TestSoftLimit(t *testing.T) {
	type event struct{ Depth, SoftLimit int64 }
	var events []event
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	l := mustNew(t, 4, backpressure.Config{
		SoftLimit:   2,
		OnSoftLimit: func(depth, soft int64) { events = append(events, event{depth, soft}) },
		Logger:      logger,
		Name:        "db",
	})
	h := newHolder(t, l)
	ratio := func(want float64) {
		t.Helper()
		if got := l.SoftLimitRatio(); got != want {
			t.Errorf("SoftLimitRatio() at depth %d = %v, want %v", l.Depth(), got, want)
		}
	}
	ratio(0)
	a := h.hold(1)
	ratio(0.5)
	b := h.hold(1) // reaches the soft limit: admitted, and one event
	ratio(1)
	c := h.hold(1) // above it: no new event
	ratio(1.5)
	if diff := cmp.Diff([]event{{2, 2}}, events); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	for range 3 {
		h.exit <- struct{}{}
	}
	for _, d := range []<-chan error{a, b, c} {
		if err := <-d; err != nil {
			t.Fatal(err)
		}
	}
	d := h.hold(3) // from 0 straight past the limit: one more event
	if diff := cmp.Diff([]event{{2, 2}, {3, 2}}, events); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if _, err := h.stage(context.Background(), 2); !errors.Is(err, backpressure.ErrShed) {
		t.Errorf("err = %v, want ErrShed", err)
	}
	h.exit <- struct{}{}
	if err := <-d; err != nil {
		t.Fatal(err)
	}
	want := `level=WARN msg="backpressure: soft limit reached" depth=2 soft_limit=2 capacity=4 name=db
level=WARN msg="backpressure: soft limit reached" depth=3 soft_limit=2 capacity=4 name=db
level=INFO msg="backpressure: shed" depth=3 capacity=4 weight=2 queued=0 waited=0s name=db
`
	if diff := cmp.Diff(want, buf.String()); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
}

func TestSoftLimitOffWithoutConfig(t *testing.T) {
	l := mustNew(t, 2, backpressure.Config{})
	h := newHolder(t, l)
	a := h.hold(2)
	if got := l.SoftLimitRatio(); got != 0 {
		t.Errorf("SoftLimitRatio() without a soft limit = %v, want 0", got)
	}
	h.exit <- struct{}{}
	if err := <-a; err != nil {
		t.Fatal(err)
	}
}

func TestSoftLimitWhenAdmittedFromQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var depths []int64
		l := mustNew(t, 3, backpressure.Config{Mode: backpressure.Wait, SoftLimit: 2,
			OnSoftLimit: func(depth, _ int64) { depths = append(depths, depth) }})
		h := newHolder(t, l)
		a := h.hold(3) // reaches the soft limit: event 3
		b := h.call(context.Background(), 2)
		synctest.Wait()
		h.exit <- struct{}{} // a leaves; b is admitted from the queue at depth 2: event 2
		<-h.entered
		h.exit <- struct{}{}
		for _, d := range []<-chan error{a, b} {
			if err := <-d; err != nil {
				t.Fatal(err)
			}
		}
		if diff := cmp.Diff([]int64{3, 2}, depths); diff != "" {
			t.Errorf("soft limit depths (-want +got):\n%s", diff)
		}
	})
}

// One limiter guards stages of different types and counts them together.
func TestOneLimiterGuardsStagesOfDifferentTypes(t *testing.T) {
	l := mustNew(t, 2, backpressure.Config{})
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

func TestNilLimiterAndStage(t *testing.T) {
	s := middleware.Apply(func(context.Context, int) (int, error) { return 1, nil }, backpressure.Middleware[int, int](nil))
	if _, err := s(context.Background(), 0); !errors.Is(err, backpressure.ErrNilLimiter) {
		t.Errorf("nil Limiter: err = %v, want ErrNilLimiter", err)
	}
	l := mustNew(t, 1, backpressure.Config{})
	s = backpressure.Middleware[int, int](l)(nil)
	if _, err := s(context.Background(), 0); !errors.Is(err, middleware.ErrNilStage) {
		t.Errorf("nil stage: err = %v, want middleware.ErrNilStage", err)
	}
	if got := l.Depth(); got != 0 {
		t.Errorf("Depth() = %d, want 0", got)
	}
}

func TestStageErrorPassesThrough(t *testing.T) {
	errBoom := errors.New("boom")
	l := mustNew(t, 1, backpressure.Config{})
	s := middleware.Apply(func(context.Context, int) (int, error) { return 7, errBoom }, backpressure.Middleware[int, int](l))
	got, err := s(context.Background(), 0)
	if got != 7 || err != errBoom {
		t.Errorf("got (%d, %v), want (7, %v)", got, err, errBoom)
	}
}

func TestModeString(t *testing.T) {
	got := []string{backpressure.Shed.String(), backpressure.Wait.String(), backpressure.Mode(9).String()}
	if diff := cmp.Diff([]string{"shed", "wait", "Mode(9)"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, tc := range []struct {
		name string
		cfg  backpressure.Config
	}{
		{"shed", backpressure.Config{}},
		{"wait", backpressure.Config{Mode: backpressure.Wait, MaxWait: time.Second}},
		{"soft limit", backpressure.Config{SoftLimit: 1, OnSoftLimit: func(int64, int64) {}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := mustNew(t, 4, tc.cfg)
			s := middleware.Apply(func(_ context.Context, in int) (int, error) { return in, nil },
				backpressure.Weighted[int, int](l, func(int) int64 { return 2 }))
			if n := testing.AllocsPerRun(1000, func() { s(ctx, 1) }); n != 0 {
				t.Errorf("admitted call allocates %v times, want 0", n)
			}
		})
	}
}

func TestShedErrorMessageHasPackagePrefix(t *testing.T) {
	for _, err := range []error{backpressure.ErrShed, backpressure.ErrNilLimiter, &backpressure.ShedError{}, &backpressure.WeightError{}} {
		if !strings.HasPrefix(err.Error(), "backpressure: ") {
			t.Errorf("%q does not start with the package name", err)
		}
	}
}

// The retry package's contract: an error with a Retryable() bool method
// classifies itself. Sheds and bad weights are not worth retrying.
func TestErrorsAreNotRetryable(t *testing.T) {
	type retryable interface {
		error
		Retryable() bool
	}
	for _, err := range []error{
		&backpressure.ShedError{Depth: 1, Capacity: 1, Weight: 1},
		fmt.Errorf("query: %w", &backpressure.ShedError{}),
		&backpressure.WeightError{Weight: 9, Capacity: 1},
	} {
		r, ok := errors.AsType[retryable](err)
		if !ok {
			t.Errorf("%v has no Retryable method in its chain", err)
			continue
		}
		if r.Retryable() {
			t.Errorf("%v reports Retryable() = true, want false", err)
		}
	}
}
