package backpressure_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/google/go-cmp/cmp"
)

func TestCounterWaitMode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var c backpressure.Counter
		l := mustNew(t, 1, backpressure.Config{Mode: backpressure.Wait, MaxWait: 50 * time.Millisecond, MaxQueue: 1, Counter: &c})
		h := newHolder(t, l)
		held := h.hold(1) // admitted

		if _, err := h.stage(context.Background(), 1); err == nil { // waits, then shed
			t.Fatal("second call admitted; want shed after MaxWait")
		}

		ctx, cancel := context.WithCancel(context.Background())
		canceled := h.call(ctx, 1) // waits, then its context ends
		synctest.Wait()
		cancel()
		if err := <-canceled; err != context.Canceled {
			t.Fatalf("canceled waiter: %v", err)
		}

		waiting := h.call(context.Background(), 1) // waits, then admitted
		synctest.Wait()
		if _, err := h.stage(context.Background(), 1); err == nil { // queue full: shed at once
			t.Fatal("call beyond MaxQueue admitted; want shed")
		}
		h.exit <- struct{}{}
		<-h.entered
		h.exit <- struct{}{}
		for _, done := range []<-chan error{held, waiting} {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		want := backpressure.Stats{Admitted: 2, Waited: 3, Shed: 2, Canceled: 1}
		if diff := cmp.Diff(want, c.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
}

func TestCounterShedMode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var c backpressure.Counter
		l := mustNew(t, 2, backpressure.Config{Counter: &c})
		h := newHolder(t, l)
		held := h.hold(2)
		for range 3 {
			if _, err := h.stage(context.Background(), 1); err == nil {
				t.Fatal("call admitted at capacity; want shed")
			}
		}
		h.exit <- struct{}{}
		if err := <-held; err != nil {
			t.Fatal(err)
		}
		want := backpressure.Stats{Admitted: 1, Shed: 3}
		if diff := cmp.Diff(want, c.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
}

func TestNilCounterStats(t *testing.T) {
	var c *backpressure.Counter
	if diff := cmp.Diff(backpressure.Stats{}, c.Stats()); diff != "" {
		t.Errorf("nil Counter Stats (-want +got):\n%s", diff)
	}
}

// TestCounterConcurrent: 2000 goroutines through a limiter of 10 in each
// mode; the counts match what the callers saw.
func TestCounterConcurrent(t *testing.T) {
	for _, mode := range []backpressure.Mode{backpressure.Shed, backpressure.Wait} {
		t.Run(mode.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var c backpressure.Counter
				cfg := backpressure.Config{Mode: mode, Counter: &c}
				if mode == backpressure.Wait {
					cfg.MaxQueue, cfg.MaxWait = 100, 5*time.Millisecond
				}
				l := mustNew(t, 10, cfg)
				s := middleware.Apply(func(context.Context, int) (int, error) {
					time.Sleep(time.Millisecond)
					return 0, nil
				}, backpressure.Middleware[int, int](l))
				const goroutines = 2000
				var ok atomic.Uint64
				var wg sync.WaitGroup
				for range goroutines {
					wg.Go(func() {
						if _, err := s(context.Background(), 0); err == nil {
							ok.Add(1)
						}
					})
				}
				wg.Wait()
				got := c.Stats()
				if got.Admitted != ok.Load() || got.Admitted+got.Shed != goroutines {
					t.Errorf("Stats %+v; want Admitted %d and Admitted + Shed = %d", got, ok.Load(), goroutines)
				}
			})
		})
	}
}

func TestCounterAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	for _, mode := range []backpressure.Mode{backpressure.Shed, backpressure.Wait} {
		l := mustNew(t, 4, backpressure.Config{Mode: mode, Counter: new(backpressure.Counter)})
		s := middleware.Apply(noop, backpressure.Middleware[int, int](l))
		ctx := context.Background()
		if n := testing.AllocsPerRun(1000, func() { s(ctx, 0) }); n != 0 {
			t.Errorf("%v: admitted path with a Counter allocates %v times; want 0", mode, n)
		}
	}
}

// BenchmarkAdmitCounter is BenchmarkAdmit's shed mode with and without a
// Counter, beside the raw semaphore.
func BenchmarkAdmitCounter(b *testing.B) {
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		c    *backpressure.Counter
	}{{"counter=off", nil}, {"counter=on", new(backpressure.Counter)}} {
		l, err := backpressure.New(64, backpressure.Config{Counter: bc.c})
		if err != nil {
			b.Fatal(err)
		}
		stage := middleware.Apply(noop, backpressure.Middleware[int, int](l))
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				sink, _ = stage(ctx, i)
			}
		})
		b.Run(bc.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					stage(ctx, 0)
				}
			})
		})
	}
}
