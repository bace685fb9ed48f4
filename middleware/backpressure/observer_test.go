package backpressure_test

import (
	"context"
	"github.com/brace-go/brace/middleware/bracetest"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/priority"
	"github.com/google/go-cmp/cmp"
)

// recorder is bracetest.Recorder, with the views these tests read.
type recorder struct{ bracetest.Recorder }

func (r *recorder) events() []middleware.Event { return r.Events() }

func (r *recorder) reset() { r.Reset() }

// quietPanics keeps the panics that middleware.Emit recovers and reports
// through slog.Default out of the test output.
func quietPanics(t *testing.T) {
	old := slog.Default()
	slog.SetDefault(slog.New(slog.DiscardHandler))
	t.Cleanup(func() { slog.SetDefault(old) })
}

// Issue 14 item 2: a soft-limit hook that panicked after admission lost a
// slot forever. Now no user code runs between an admission and the code
// that guarantees its release, and Emit recovers an observer's panic: an
// observer that panics at every event — at the soft-limit crossing, at
// a shed, after a wait — leaves the limiter consistent: the calls work,
// InFlight returns to 0, the counts are right and the whole capacity can
// still be taken.
func TestPanickingObserver(t *testing.T) {
	quietPanics(t)
	synctest.Test(t, func(t *testing.T) {
		obs := middleware.ObserverFunc(func(context.Context, middleware.Event) { panic("observer") })
		l := mustNew(t, backpressure.Config{Capacity: 2, SoftLimit: 1, Mode: backpressure.Wait, MaxQueue: 1, Observer: obs})
		h := newHolder(t, l)
		a := h.hold(1)                             // crosses the soft limit: the observer panics
		b := h.call(context.Background(), 2)       // waits for a
		synctest.Wait()                            //
		_, err := h.stage(context.Background(), 1) // queue full: shed, the observer panics
		if err != backpressure.ErrShed {
			t.Fatalf("err = %v, want ErrShed", err)
		}
		h.exit <- struct{}{} // a returns (crossing down: panic); b is admitted (Waited: panic)
		if got := <-h.entered; got != 2 {
			t.Fatalf("admitted weight %d, want 2", got)
		}
		h.release(1, a, b)
		if diff := cmp.Diff(backpressure.Stats{Capacity: 2, Rejected: 1, Waited: 1}, l.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
		p1, err1 := l.Acquire(context.Background())
		p2, err2 := l.Acquire(context.Background())
		if err1 != nil || err2 != nil {
			t.Fatalf("the whole capacity can no longer be taken: %v, %v", err1, err2)
		}
		if got := l.Stats().InFlight; got != 2 {
			t.Errorf("InFlight = %d, want 2", got)
		}
		p1.Done(nil)
		p2.Done(nil)
		if got := l.Stats().InFlight; got != 0 {
			t.Errorf("InFlight = %d, want 0", got)
		}
	})
}

// An observer that never returns to the limiter (runtime.Goexit, as
// t.FailNow does) at the soft-limit crossing ends the caller's goroutine
// before the caller holds a Permit: the limiter gives the weight back
// itself, and later crossings are still reported.
func TestObserverGoexitAtSoftLimitCrossing(t *testing.T) {
	rec := &recorder{}
	exit := true
	var mu sync.Mutex
	obs := middleware.ObserverFunc(func(ctx context.Context, e middleware.Event) {
		rec.Observe(ctx, e)
		mu.Lock()
		x := exit && e.To == backpressure.StateOverSoftLimit
		mu.Unlock()
		if x {
			runtime.Goexit()
		}
	})
	l := mustNew(t, backpressure.Config{Capacity: 2, SoftLimit: 1, Observer: obs})
	ran := false
	stage := middleware.Apply(func(context.Context, int) (int, error) { ran = true; return 0, nil },
		backpressure.Middleware[int, int](l))
	done := make(chan struct{})
	go func() {
		defer close(done)
		stage(context.Background(), 0)
	}()
	<-done
	if ran {
		t.Error("the stage ran although its goroutine ended during admission")
	}
	if got := l.Stats().InFlight; got != 0 {
		t.Fatalf("InFlight = %d after the goroutine ended, want 0", got)
	}
	mu.Lock()
	exit = false
	mu.Unlock()
	if _, err := stage(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range rec.events() {
		got = append(got, e.From+">"+e.To)
	}
	want := []string{"normal>over-soft-limit", "over-soft-limit>normal", "normal>over-soft-limit", "over-soft-limit>normal"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("state changes (-want +got):\n%s", diff)
	}
}

// An observer that calls back into the limiter — Stats, Acquire, Done —
// from its events does not deadlock: no lock is held while it runs, and a
// soft-limit change it causes itself is reported by the goroutine already
// reporting, after it returns.
func TestReentrantObserver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var l *backpressure.Limiter
		var mu sync.Mutex
		var seen []string
		obs := middleware.ObserverFunc(func(ctx context.Context, e middleware.Event) {
			st := l.Stats()
			if e.Kind == middleware.Rejected {
				// An Acquire here could be shed again, and so on forever:
				// that recursion would be the observer's own.
				mu.Lock()
				seen = append(seen, e.Kind.String())
				mu.Unlock()
				return
			}
			// It may cross the soft limit itself, be shed, or wait for a
			// slot its own call holds: bound that wait.
			actx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
			defer cancel()
			p, err := l.Acquire(actx)
			if err == nil {
				p.Done(nil)
			}
			mu.Lock()
			seen = append(seen, e.Kind.String())
			mu.Unlock()
			_ = st
		})
		l = mustNew(t, backpressure.Config{Capacity: 2, SoftLimit: 1, Mode: backpressure.Wait, MaxQueue: 1, Observer: obs})
		h := newHolder(t, l)
		a := h.hold(2)
		b := h.call(context.Background(), 1) // queued
		synctest.Wait()
		if _, err := h.stage(context.Background(), 1); err != backpressure.ErrShed {
			t.Fatalf("err = %v, want ErrShed", err)
		}
		h.exit <- struct{}{}
		<-h.entered
		h.release(1, a, b)
		if got := l.Stats().InFlight; got != 0 {
			t.Errorf("InFlight = %d, want 0", got)
		}
		mu.Lock()
		defer mu.Unlock()
		t.Logf("events seen: %v", seen)
		for _, k := range []string{"state-changed", "rejected", "waited"} {
			if !slices.Contains(seen, k) {
				t.Errorf("the observer saw no %s event: %v", k, seen)
			}
		}
	})
}

// Priorities and queue disciplines: an observer that panics at an
// eviction, a CoDel drop and a prioritised wait, or that calls back into
// the limiter from them, loses no slot, leaves no waiter counted and
// deadlocks nothing.
func TestObserverPrioritiesAndCoDel(t *testing.T) {
	quietPanics(t)
	for _, name := range []string{"panicking", "reentrant"} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var l *backpressure.Limiter
				var mu sync.Mutex
				var reasons []string
				obs := middleware.ObserverFunc(func(ctx context.Context, e middleware.Event) {
					mu.Lock()
					reasons = append(reasons, e.Kind.String()+" "+e.Reason)
					mu.Unlock()
					if name == "panicking" {
						panic("observer")
					}
					_ = l.Stats()
					if ctx.Value(inObserver{}) != nil {
						return // its own call was refused: do not recurse
					}
					// A call of its own, which is shed or queued behind
					// the one being reported: bound its wait.
					actx, cancel := context.WithTimeout(context.WithValue(priority.With(ctx, priority.Sheddable), inObserver{}, true), time.Millisecond)
					defer cancel()
					if p, err := l.Acquire(actx); err == nil {
						p.Done(nil)
					}
				})
				l = mustNew(t, backpressure.Config{Capacity: 1, Mode: backpressure.Wait, MaxQueue: 1, Priorities: true,
					Queue: backpressure.CoDel, Target: time.Millisecond, Interval: 10 * time.Millisecond, Observer: obs})
				p, err := l.Acquire(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				shed := make(chan error, 1)
				go func() {
					_, err := l.Acquire(priority.With(context.Background(), priority.Sheddable))
					shed <- err
				}()
				synctest.Wait()
				crit := make(chan error, 1)
				go func() { // evicts the sheddable waiter, then is dropped by CoDel after 10ms
					_, err := l.Acquire(priority.With(context.Background(), priority.Critical))
					crit <- err
				}()
				if err := <-shed; err != backpressure.ErrShed {
					t.Fatalf("evicted waiter: %v, want ErrShed", err)
				}
				if err := <-crit; err != backpressure.ErrShed {
					t.Fatalf("dropped waiter: %v, want ErrShed", err)
				}
				p.Done(nil)
				q, err := l.Acquire(priority.With(context.Background(), priority.Critical))
				if err != nil {
					t.Fatalf("the capacity can no longer be taken: %v", err)
				}
				q.Done(nil)
				if st := l.Stats(); st.InFlight != 0 || st.Queued != 0 {
					t.Errorf("Stats() = %+v, want nothing in flight or queued", st)
				}
				mu.Lock()
				defer mu.Unlock()
				want := []string{"rejected shed", "rejected codel"}
				if name == "reentrant" { // and the observer's own calls, shed at the full queue
					want = []string{"rejected shed", "rejected shed", "rejected codel"}
				}
				if diff := cmp.Diff(want, reasons); diff != "" {
					t.Errorf("events (-want +got):\n%s", diff)
				}
			})
		})
	}
}

type inObserver struct{}
