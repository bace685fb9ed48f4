package backpressure_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/google/go-cmp/cmp"
)

func TestStatsWaitMode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := mustNew(t, backpressure.Config{Capacity: 1, Mode: backpressure.Wait, MaxWait: 50 * time.Millisecond, MaxQueue: 1})
		h := newHolder(t, l)
		held := h.hold(1) // admitted at once: not counted

		if _, err := h.stage(context.Background(), 1); err != backpressure.ErrShed { // waits, then shed
			t.Fatalf("second call: %v; want ErrShed after MaxWait", err)
		}

		ctx, cancel := context.WithCancel(context.Background())
		canceled := h.call(ctx, 1) // waits, then its context ends: neither rejected nor waited
		synctest.Wait()
		cancel()
		if err := <-canceled; err != context.Canceled {
			t.Fatalf("canceled waiter: %v", err)
		}

		waiting := h.call(context.Background(), 1) // waits, then admitted
		synctest.Wait()
		if _, err := h.stage(context.Background(), 1); err != backpressure.ErrShed { // queue full: shed at once
			t.Fatalf("call beyond MaxQueue: %v; want ErrShed", err)
		}
		if diff := cmp.Diff(backpressure.Stats{InFlight: 1, Queued: 1, Capacity: 1, Rejected: 2}, l.Stats()); diff != "" {
			t.Errorf("Stats while one call waits (-want +got):\n%s", diff)
		}
		h.exit <- struct{}{}
		<-h.entered
		h.release(1, held, waiting)
		if diff := cmp.Diff(backpressure.Stats{Capacity: 1, Rejected: 2, Waited: 1}, l.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
}

func TestStatsShedMode(t *testing.T) {
	l := mustNew(t, backpressure.Config{Capacity: 2})
	h := newHolder(t, l)
	held := h.hold(2)
	for range 3 {
		if _, err := h.stage(context.Background(), 1); err != backpressure.ErrShed {
			t.Fatalf("call at capacity: %v; want ErrShed", err)
		}
	}
	if diff := cmp.Diff(backpressure.Stats{InFlight: 2, Capacity: 2, Rejected: 3}, l.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
	h.release(1, held)
	if diff := cmp.Diff(backpressure.Stats{Capacity: 2, Rejected: 3}, l.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

// 2000 goroutines through a limiter of 10 in each mode: the counts match
// what the callers saw.
func TestStatsConcurrent(t *testing.T) {
	for _, mode := range []backpressure.Mode{backpressure.Shed, backpressure.Wait} {
		t.Run(mode.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := backpressure.Config{Capacity: 10, Mode: mode}
				if mode == backpressure.Wait {
					cfg.MaxQueue, cfg.MaxWait = 100, 5*time.Millisecond
				}
				var waitedEvents atomic.Uint64
				cfg.Observer = middleware.ObserverFunc(func(_ context.Context, e middleware.Event) {
					if e.Kind == middleware.Waited {
						waitedEvents.Add(1)
					}
				})
				l := mustNew(t, cfg)
				s := middleware.Apply(func(context.Context, int) (int, error) {
					time.Sleep(time.Millisecond)
					return 0, nil
				}, backpressure.Middleware[int, int](l))
				const goroutines = 2000
				var ok, shed atomic.Uint64
				var wg sync.WaitGroup
				for range goroutines {
					wg.Go(func() {
						switch _, err := s(context.Background(), 0); err {
						case nil:
							ok.Add(1)
						case backpressure.ErrShed:
							shed.Add(1)
						default:
							t.Errorf("call: %v", err)
						}
					})
				}
				wg.Wait()
				got := l.Stats()
				if got.Rejected != shed.Load() || got.Waited != waitedEvents.Load() || ok.Load()+shed.Load() != goroutines {
					t.Errorf("Stats %+v; want Rejected %d and Waited %d (the Waited events); admitted %d + shed %d = %d",
						got, shed.Load(), waitedEvents.Load(), ok.Load(), shed.Load(), goroutines)
				}
				if mode == backpressure.Wait && (got.Waited == 0 || got.Waited > ok.Load()) {
					t.Errorf("Waited = %d, want between 1 and the %d admitted calls", got.Waited, ok.Load())
				}
				if got.InFlight != 0 || got.Queued != 0 {
					t.Errorf("InFlight %d, Queued %d after all calls; want 0, 0", got.InFlight, got.Queued)
				}
			})
		})
	}
}
