package timeout_test

import (
	"bytes"
	"context"
	"errors"
	"github.com/brace-go/brace/middleware/bracetest"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/retry"
	"github.com/brace-go/brace/middleware/timeout"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.uber.org/goleak"
)

// recorder is bracetest.Recorder, with the views these tests read.
type recorder struct{ bracetest.Recorder }

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func mustNew(t testing.TB, cfg timeout.Config) *timeout.Timeout {
	t.Helper()
	to, err := timeout.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return to
}

// mw is the Timeout's middleware for int stages.
func mw(to *timeout.Timeout) middleware.Middleware[int, int] { return timeout.Middleware[int, int](to) }

func (r *recorder) list() []middleware.Event { return r.Events() }

// cooperative waits for its context or for work to finish.
func cooperative(work time.Duration) middleware.Stage[int, int] {
	return func(ctx context.Context, in int) (int, error) {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(work):
			return in, nil
		}
	}
}

func TestNewValidation(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Second} {
		to, err := timeout.New(timeout.Config{Duration: d})
		want := "timeout: Duration must be positive, got " + d.String()
		if err == nil || err.Error() != want || to != nil {
			t.Errorf("Duration %v: New = %v, %v; want nil, %q", d, to, err, want)
		}
	}
}

func TestNilPanics(t *testing.T) {
	tests := []struct {
		name string
		f    func()
		want string
	}{
		{"nil *Timeout", func() { timeout.Middleware[int, int](nil) }, "timeout: nil *Timeout (was New's error ignored?)"},
		{"nil stage", func() { mw(mustNew(t, timeout.Config{Duration: time.Second}))(nil) }, "timeout: nil stage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if got := recover(); got != tt.want {
					t.Errorf("panic = %v; want %q", got, tt.want)
				}
			}()
			tt.f()
		})
	}
}

func TestErrTimeoutIsDeadlineExceeded(t *testing.T) {
	if !errors.Is(timeout.ErrTimeout, context.DeadlineExceeded) {
		t.Error("ErrTimeout does not match context.DeadlineExceeded")
	}
	if errors.Is(context.DeadlineExceeded, timeout.ErrTimeout) {
		t.Error("a plain DeadlineExceeded must not look like our timeout")
	}
}

func TestFastStage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var deadline time.Time
		stage := func(ctx context.Context, in int) (int, error) {
			deadline, _ = ctx.Deadline()
			return in * 2, nil
		}
		var rec recorder
		to := mustNew(t, timeout.Config{Duration: time.Second, Observer: &rec})
		got, err := mw(to)(stage)(t.Context(), 21)
		if err != nil || got != 42 {
			t.Fatalf("got %d, %v; want 42, nil", got, err)
		}
		if want := time.Now().Add(time.Second); !deadline.Equal(want) {
			t.Errorf("stage deadline %v; want %v", deadline, want)
		}
		if len(rec.list()) != 0 || to.Stats() != (timeout.Stats{}) {
			t.Errorf("events %v, stats %+v; want none", rec.list(), to.Stats())
		}
	})
}

func TestCooperativeStageTimesOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var cause error
		stage := func(ctx context.Context, in int) (int, error) {
			<-ctx.Done()
			cause = context.Cause(ctx)
			return 0, ctx.Err()
		}
		var rec recorder
		to := mustNew(t, timeout.Config{Name: "db", Duration: 2 * time.Second, Observer: &rec})
		start := time.Now()
		_, err := mw(to)(stage)(t.Context(), 1)
		if got := time.Since(start); got != 2*time.Second {
			t.Errorf("returned after %v; want 2s", got)
		}
		if cause != timeout.ErrTimeout {
			t.Errorf("context.Cause in the stage = %v; want ErrTimeout", cause)
		}
		for _, target := range []error{context.DeadlineExceeded, timeout.ErrTimeout} {
			if !errors.Is(err, target) {
				t.Errorf("errors.Is(%v, %v) = false", err, target)
			}
		}
		var e *timeout.Error
		if !errors.As(err, &e) || e.Duration != 2*time.Second || e.Err != context.DeadlineExceeded {
			t.Errorf("err = %#v; want *timeout.Error{2s, DeadlineExceeded}", err)
		}
		if got, want := err.Error(), "timeout: stage did not finish within 2s: context deadline exceeded"; got != want {
			t.Errorf("Error() = %q; want %q", got, want)
		}
		want := []middleware.Event{{Kind: middleware.TimedOut, Concern: "timeout", Name: "db", Delay: 2 * time.Second, Err: err}}
		if diff := cmp.Diff(want, rec.list(), cmpopts.EquateErrors()); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(timeout.Stats{TimedOut: 1}, to.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
}

func TestParentDeadlineFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		var cause error
		stage := func(ctx context.Context, in int) (int, error) {
			<-ctx.Done()
			cause = context.Cause(ctx)
			return 0, ctx.Err()
		}
		to := mustNew(t, timeout.Config{Duration: 5 * time.Second})
		start := time.Now()
		_, err := mw(to)(stage)(ctx, 1)
		if got := time.Since(start); got != time.Second {
			t.Errorf("returned after %v; want 1s", got)
		}
		if err != context.DeadlineExceeded || errors.Is(err, timeout.ErrTimeout) || cause != context.DeadlineExceeded {
			t.Errorf("err = %v, cause %v; want the caller's own DeadlineExceeded, not ErrTimeout", err, cause)
		}
		if to.Stats().TimedOut != 0 {
			t.Errorf("the caller's deadline was counted as a timeout: %+v", to.Stats())
		}
	})
}

func TestParentCanceled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		go func() {
			time.Sleep(time.Second)
			cancel()
		}()
		_, err := mw(mustNew(t, timeout.Config{Duration: 5 * time.Second}))(cooperative(time.Hour))(ctx, 1)
		if err != context.Canceled {
			t.Errorf("err = %v; want context.Canceled unchanged", err)
		}
	})
}

// TestEndedContext: a call whose context has already ended returns
// ctx.Err() and does not run the stage (issue 14 item 9).
func TestEndedContext(t *testing.T) {
	expired, cancel := context.WithDeadline(t.Context(), time.Unix(0, 0))
	defer cancel()
	canceled, cancel2 := context.WithCancel(t.Context())
	cancel2()
	for name, ctx := range map[string]context.Context{"canceled": canceled, "deadline passed": expired} {
		t.Run(name, func(t *testing.T) {
			var rec recorder
			to := mustNew(t, timeout.Config{Duration: time.Second, Observer: &rec})
			ran := false
			_, err := mw(to)(func(context.Context, int) (int, error) { ran = true; return 1, nil })(ctx, 1)
			if err != ctx.Err() || ran {
				t.Errorf("got %v, stage ran: %v; want %v and no run", err, ran, ctx.Err())
			}
			if len(rec.list()) != 0 || to.Stats().TimedOut != 0 {
				t.Errorf("events %v, stats %+v; want none", rec.list(), to.Stats())
			}
		})
	}
}

// TestNonCooperativeStage pins the rule for a stage that ignores its
// context: the middleware waits for it (no goroutine is left behind, the
// result is not lost), then a success is returned as a success and an error
// is reported as a timeout. Both are TimedOut events.
func TestNonCooperativeStage(t *testing.T) {
	errLate := errors.New("late failure")
	tests := []struct {
		name    string
		err     error
		wantOut int
		check   func(t *testing.T, err error)
	}{
		{"late success is kept", nil, 7, func(t *testing.T, err error) {
			if err != nil {
				t.Errorf("err = %v; want nil", err)
			}
		}},
		{"late error is a timeout", errLate, 0, func(t *testing.T, err error) {
			for _, target := range []error{context.DeadlineExceeded, timeout.ErrTimeout, errLate} {
				if !errors.Is(err, target) {
					t.Errorf("errors.Is(%v, %v) = false", err, target)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var rec recorder
				to := mustNew(t, timeout.Config{Duration: time.Second, Observer: &rec})
				stage := func(_ context.Context, in int) (int, error) {
					time.Sleep(5 * time.Second) // ignores ctx
					if tt.err != nil {
						return 0, tt.err
					}
					return in, nil
				}
				start := time.Now()
				out, err := mw(to)(stage)(t.Context(), 7)
				if got := time.Since(start); got != 5*time.Second {
					t.Errorf("returned after %v; want 5s (when the stage returned)", got)
				}
				if out != tt.wantOut {
					t.Errorf("out = %d; want %d", out, tt.wantOut)
				}
				tt.check(t, err)
				want := []middleware.Event{{Kind: middleware.TimedOut, Concern: "timeout", Delay: time.Second, Err: err}}
				if diff := cmp.Diff(want, rec.list(), cmpopts.EquateErrors()); diff != "" {
					t.Errorf("events (-want +got):\n%s", diff)
				}
			})
		})
	}
}

func TestTimedOutErrorIsRetryable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, err := mw(mustNew(t, timeout.Config{Duration: time.Second}))(cooperative(time.Hour))(t.Context(), 1)
		if !retry.DefaultRetryable(err) {
			t.Errorf("retry.DefaultRetryable(%v) = false; a per-attempt timeout must be retryable", err)
		}
	})
}

func newRetry(t *testing.T, cfg retry.Config) middleware.Middleware[int, int] {
	t.Helper()
	r, err := retry.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return retry.Middleware[int, int](r)
}

// TestPerAttemptInsideRetry: Retry outside, Timeout inside: each attempt
// gets its own second.
func TestPerAttemptInsideRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		to := mw(mustNew(t, timeout.Config{Duration: time.Second}))
		re := newRetry(t, retry.Config{MaxAttempts: 3, BaseDelay: 100 * time.Millisecond, Jitter: retry.NoJitter})
		calls := 0
		stage := func(ctx context.Context, in int) (int, error) {
			calls++
			if calls < 3 {
				return cooperative(time.Hour)(ctx, in) // hangs until its timeout
			}
			return cooperative(500*time.Millisecond)(ctx, in)
		}
		start := time.Now()
		got, err := middleware.Apply(stage, re, to)(t.Context(), 9)
		if err != nil || got != 9 {
			t.Fatalf("got %d, %v; want 9, nil", got, err)
		}
		// 1 s + 0.1 s + 1 s + 0.2 s + 0.5 s
		if took := time.Since(start); took != 2800*time.Millisecond {
			t.Errorf("took %v; want 2.8s", took)
		}
	})
}

// TestOverallOutsideRetry: Timeout outside, Retry inside: one deadline for
// all attempts and delays; Retry does not sleep into it.
func TestOverallOutsideRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		to := mw(mustNew(t, timeout.Config{Duration: 3 * time.Second}))
		re := newRetry(t, retry.Config{MaxAttempts: 10, BaseDelay: time.Second, Jitter: retry.NoJitter})
		errDown := errors.New("down")
		calls := 0
		stage := func(context.Context, int) (int, error) { calls++; return 0, errDown }
		start := time.Now()
		_, err := middleware.Apply(stage, to, re)(t.Context(), 1)
		// Attempts at 0 s and 1 s; the next delay (2 s) would end at the
		// 3 s deadline, so Retry stops at 1 s.
		if took := time.Since(start); took != time.Second || calls != 2 {
			t.Errorf("took %v with %d calls; want 1s, 2 calls", took, calls)
		}
		var e *retry.ExhaustedError
		if !errors.As(err, &e) || e.Reason != retry.ReasonDeadline || !errors.Is(err, errDown) {
			t.Errorf("err = %v; want ExhaustedError(ReasonDeadline) wrapping down", err)
		}
	})
}

// TestLog: with middleware.Log as the Observer, a timeout is one record
// at debug level (it replaces Config.Logger's warn record).
func TestLog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
			Level: slog.LevelDebug,
			ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
				if a.Key == slog.TimeKey {
					return slog.Attr{}
				}
				return a
			},
		}))
		s := mw(mustNew(t, timeout.Config{Duration: time.Second, Name: "db", Observer: middleware.Log(logger)}))
		s(cooperative(time.Hour))(t.Context(), 1)
		s(cooperative(time.Millisecond))(t.Context(), 1)
		got := buf.String()
		if strings.Count(got, "\n") != 1 || !strings.Contains(got, "level=DEBUG") || !strings.Contains(got, "name=db") ||
			!strings.Contains(got, "delay=1s") || !strings.Contains(got, "timeout: stage did not finish within 1s") {
			t.Errorf("log = %q; want one debug record naming db, the 1s limit and the error", got)
		}
	})
}

// TestPanickingObserver: an observer's panic is recovered; the caller gets
// its result and the count is right.
func TestPanickingObserver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		old := slog.Default()
		slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
		defer slog.SetDefault(old)
		obs := middleware.ObserverFunc(func(context.Context, middleware.Event) { panic("observer") })
		to := mustNew(t, timeout.Config{Duration: time.Second, Observer: obs})
		for range 3 {
			_, err := mw(to)(cooperative(time.Hour))(t.Context(), 1)
			if !errors.Is(err, timeout.ErrTimeout) {
				t.Fatalf("err = %v; want ErrTimeout", err)
			}
		}
		if got, err := mw(to)(cooperative(0))(t.Context(), 5); got != 5 || err != nil {
			t.Fatalf("got %d, %v; want 5, nil", got, err)
		}
		if diff := cmp.Diff(timeout.Stats{TimedOut: 3}, to.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
}

// TestReentrantObserver: an observer that calls back into the Timeout
// (Stats, another call) does not deadlock.
func TestReentrantObserver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var to *timeout.Timeout
		var seen []timeout.Stats
		obs := middleware.ObserverFunc(func(ctx context.Context, e middleware.Event) {
			seen = append(seen, to.Stats())
			if got, err := mw(to)(cooperative(0))(ctx, 2); got != 2 || err != nil {
				t.Errorf("re-entrant call: %d, %v", got, err)
			}
		})
		to = mustNew(t, timeout.Config{Duration: time.Second, Observer: obs})
		mw(to)(cooperative(time.Hour))(t.Context(), 1)
		if diff := cmp.Diff([]timeout.Stats{{TimedOut: 1}}, seen); diff != "" {
			t.Errorf("Stats seen by the observer (-want +got):\n%s", diff)
		}
	})
}

func TestConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec recorder
		to := mustNew(t, timeout.Config{Duration: time.Second, Observer: &rec})
		s := mw(to)
		goroutines := manyGoroutines()
		var wg sync.WaitGroup
		var ok, timedOut atomic.Int64
		for i := range goroutines {
			wg.Go(func() {
				work := time.Duration(i%2) * 2 * time.Second // even: instant, odd: 2 s
				got, err := s(cooperative(work))(t.Context(), i)
				switch {
				case err == nil && got == i && i%2 == 0:
					ok.Add(1)
				case errors.Is(err, timeout.ErrTimeout) && i%2 == 1:
					timedOut.Add(1)
				default:
					t.Errorf("goroutine %d: got %d, %v", i, got, err)
				}
			})
		}
		wg.Wait()
		if half := int64(goroutines / 2); ok.Load() != half || timedOut.Load() != half || int64(len(rec.list())) != half {
			t.Fatalf("ok %d, timed out %d, events %d; want %d each", ok.Load(), timedOut.Load(), len(rec.list()), goroutines/2)
		}
	})
}

// TestStats: three calls in four time out; Stats counts exactly those,
// and the calls that finish in time are not counted.
func TestStats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		to := mustNew(t, timeout.Config{Duration: time.Second})
		s := mw(to)
		goroutines := manyGoroutines()
		var wg sync.WaitGroup
		for i := range goroutines {
			wg.Go(func() {
				work := time.Duration(i%4) * 1500 * time.Millisecond // 0s, 1.5s, 3s, 4.5s: three in four time out
				s(cooperative(work))(t.Context(), i)
			})
		}
		wg.Wait()
		if diff := cmp.Diff(timeout.Stats{TimedOut: uint64(goroutines * 3 / 4)}, to.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
}

// TestAllocs backs the package doc: when the caller's deadline comes first
// no context is derived, so the call allocates nothing; nor does a call
// whose context has already ended.
func TestAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ended, cancel2 := context.WithCancel(context.Background())
	cancel2()
	ok := func(_ context.Context, in int) (int, error) { return in, nil }
	s := mw(mustNew(t, timeout.Config{Duration: time.Hour}))(ok)
	for name, ctx := range map[string]context.Context{"parent first": ctx, "context ended": ended} {
		if n := testing.AllocsPerRun(1000, func() { _, _ = s(ctx, 1) }); n != 0 {
			t.Errorf("%s: %v allocs per call; want 0", name, n)
		}
	}
}

// manyGoroutines is how many concurrent calls the concurrency tests make:
// fewer under the race detector, where a thousand goroutines with timers in
// one synctest bubble can crash the race runtime itself (golang/go#78156,
// "ThreadSanitizer: CHECK failed: tsan_rtl.cpp:346"; see
// docs/reliability.md), a toolchain bug that would fail CI at random.
func manyGoroutines() int {
	if testenv.RaceEnabled {
		return 100
	}
	return 1000
}
