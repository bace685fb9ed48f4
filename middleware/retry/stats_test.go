package retry_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware/retry"
	"github.com/google/go-cmp/cmp"
)

func TestCounter(t *testing.T) {
	errFatal := errors.New("fatal")
	tests := []struct {
		name  string
		calls [][]error // per call: the errors of its failing attempts before a success
		last  error     // if set, every call's stage fails with it after calls' errors
		want  retry.Stats
	}{
		{name: "successes", calls: [][]error{nil, nil, nil}, want: retry.Stats{Successes: 3}},
		{
			name:  "success after retries",
			calls: [][]error{{errBoom, errBoom}, {errBoom}},
			want:  retry.Stats{Successes: 2, Retries: 3},
		},
		{
			name:  "exhausted",
			calls: [][]error{{errBoom, errBoom, errBoom}},
			want:  retry.Stats{Failures: 1, Retries: 2, Exhausted: 1},
		},
		{
			name:  "not retryable",
			calls: [][]error{{errBoom, retry.Permanent(errFatal)}},
			want:  retry.Stats{Failures: 1, Retries: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var c retry.Counter
				mw := mustNew(t, retry.Config{MaxAttempts: 3, Counter: &c})
				for _, errs := range tt.calls {
					mw(newFlaky(errs...).stage)(t.Context(), 0)
				}
				got := c.Stats()
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("Stats (-want +got):\n%s", diff)
				}
				if got.Calls() != uint64(len(tt.calls)) {
					t.Errorf("Calls() = %d; want %d", got.Calls(), len(tt.calls))
				}
			})
		})
	}
}

func TestCounterWithResultCheck(t *testing.T) {
	var c retry.Counter
	mw, err := retry.NewWithResult[int, int](retry.Config{MaxAttempts: 2, BaseDelay: time.Nanosecond, Counter: &c},
		func(n int, err error) bool { return err != nil || n < 2 })
	if err != nil {
		t.Fatal(err)
	}
	s := mw(newFlaky().stage) // returns 1, then 2
	if _, err := s(t.Context(), 0); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(retry.Stats{Successes: 1, Retries: 1}, c.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

// TestCounterContextEndsDuringDelay: OnRetry fired, but no attempt started,
// so no retry is counted.
func TestCounterContextEndsDuringDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var c retry.Counter
		mw := mustNew(t, retry.Config{BaseDelay: time.Second, Jitter: retry.NoJitter, Counter: &c})
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		ctx, cancelNow := context.WithCancel(ctx)
		go func() {
			time.Sleep(500 * time.Millisecond)
			cancelNow()
		}()
		mw(newFlaky(errBoom, errBoom).stage)(ctx, 0)
		want := retry.Stats{Failures: 1, Exhausted: 1}
		if diff := cmp.Diff(want, c.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
}

func TestNilCounterStats(t *testing.T) {
	var c *retry.Counter
	if diff := cmp.Diff(retry.Stats{}, c.Stats()); diff != "" {
		t.Errorf("nil Counter Stats (-want +got):\n%s", diff)
	}
}

// TestCounterConcurrent shares one Counter between two middlewares and
// 2000 goroutines: no count is lost.
func TestCounterConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var c retry.Counter
		a := mustNew(t, retry.Config{BaseDelay: time.Millisecond, Counter: &c})
		b := mustNew(t, retry.Config{BaseDelay: time.Millisecond, Counter: &c})
		const goroutines = 2000
		var wg sync.WaitGroup
		for i := range goroutines {
			mw := a
			if i%2 == 1 {
				mw = b
			}
			wg.Go(func() { mw(newFlaky(always(errBoom, i%4)...).stage)(t.Context(), 0) })
		}
		wg.Wait()
		// i%4 failures: 0 and 1 and 2 succeed (0, 1, 2 retries), 3 is
		// exhausted after 2 retries.
		want := retry.Stats{Successes: 1500, Failures: 500, Retries: 500 * (0 + 1 + 2 + 2), Exhausted: 500}
		if diff := cmp.Diff(want, c.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
}

func TestCounterAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	var c retry.Counter
	s := mustNew(t, retry.Config{Counter: &c})(func(context.Context, int) (int, error) { return 1, nil })
	ctx := t.Context()
	if n := testing.AllocsPerRun(1000, func() { s(ctx, 1) }); n != 0 {
		t.Errorf("success path with a Counter allocates %v times; want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { c.Stats() }); n != 0 {
		t.Errorf("Stats allocates %v times; want 0", n)
	}
}

func BenchmarkRetrySuccessCounter(b *testing.B) {
	benchSuccess(b, retry.Config{Counter: new(retry.Counter)})
}

// BenchmarkRetrySuccessCounterParallel shows the cost of one Counter
// shared by both cores: its cache line moves between them on every call.
func BenchmarkRetrySuccessCounterParallel(b *testing.B) {
	for _, tc := range []struct {
		name string
		c    *retry.Counter
	}{{"off", nil}, {"on", new(retry.Counter)}} {
		b.Run(tc.name, func(b *testing.B) {
			mw, err := retry.New[int, int](retry.Config{Counter: tc.c})
			if err != nil {
				b.Fatal(err)
			}
			s := mw(okStage)
			ctx := context.Background()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					s(ctx, 1)
				}
			})
		})
	}
}
