package timeout_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
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
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func mustNew(t testing.TB, cfg timeout.Config) middleware.Middleware[int, int] {
	t.Helper()
	mw, err := timeout.New[int, int](cfg)
	if err != nil {
		t.Fatal(err)
	}
	return mw
}

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
		_, err := timeout.New[int, int](timeout.Config{Duration: d})
		want := "timeout: Duration must be positive, got " + d.String()
		if err == nil || err.Error() != want {
			t.Errorf("Duration %v: err = %v; want %q", d, err, want)
		}
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
		got, err := mustNew(t, timeout.Config{Duration: time.Second, OnTimeout: func(time.Duration, error) {
			t.Error("OnTimeout called")
		}})(stage)(t.Context(), 21)
		if err != nil || got != 42 {
			t.Fatalf("got %d, %v; want 42, nil", got, err)
		}
		if want := time.Now().Add(time.Second); !deadline.Equal(want) {
			t.Errorf("stage deadline %v; want %v", deadline, want)
		}
	})
}

func TestCooperativeStageTimesOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var cause error
		var elapsed []time.Duration
		stage := func(ctx context.Context, in int) (int, error) {
			<-ctx.Done()
			cause = context.Cause(ctx)
			return 0, ctx.Err()
		}
		mw := mustNew(t, timeout.Config{Duration: 2 * time.Second, OnTimeout: func(e time.Duration, err error) {
			elapsed = append(elapsed, e)
		}})
		start := time.Now()
		_, err := mw(stage)(t.Context(), 1)
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
		e, ok := errors.AsType[*timeout.Error](err)
		if !ok || e.Duration != 2*time.Second || e.Err != context.DeadlineExceeded {
			t.Errorf("err = %#v; want *timeout.Error{2s, DeadlineExceeded}", err)
		}
		if got, want := err.Error(), "timeout: stage did not finish within 2s: context deadline exceeded"; got != want {
			t.Errorf("Error() = %q; want %q", got, want)
		}
		if diff := cmp.Diff([]time.Duration{2 * time.Second}, elapsed); diff != "" {
			t.Errorf("OnTimeout (-want +got):\n%s", diff)
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
		start := time.Now()
		_, err := mustNew(t, timeout.Config{Duration: 5 * time.Second})(stage)(ctx, 1)
		if got := time.Since(start); got != time.Second {
			t.Errorf("returned after %v; want 1s", got)
		}
		if err != context.DeadlineExceeded || errors.Is(err, timeout.ErrTimeout) || cause != context.DeadlineExceeded {
			t.Errorf("err = %v, cause %v; want the caller's own DeadlineExceeded, not ErrTimeout", err, cause)
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
		_, err := mustNew(t, timeout.Config{Duration: 5 * time.Second})(cooperative(time.Hour))(ctx, 1)
		if err != context.Canceled {
			t.Errorf("err = %v; want context.Canceled unchanged", err)
		}
	})
}

// TestNonCooperativeStage pins the rule for a stage that ignores its
// context: the middleware waits for it (no goroutine is left behind, the
// result is not lost), then a success is returned as a success and an error
// is reported as a timeout.
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
				var hook []error
				var elapsed time.Duration
				mw := mustNew(t, timeout.Config{Duration: time.Second, OnTimeout: func(e time.Duration, err error) {
					elapsed = e
					hook = append(hook, err)
				}})
				stage := func(_ context.Context, in int) (int, error) {
					time.Sleep(5 * time.Second) // ignores ctx
					if tt.err != nil {
						return 0, tt.err
					}
					return in, nil
				}
				start := time.Now()
				out, err := mw(stage)(t.Context(), 7)
				if got := time.Since(start); got != 5*time.Second {
					t.Errorf("returned after %v; want 5s (when the stage returned)", got)
				}
				if out != tt.wantOut {
					t.Errorf("out = %d; want %d", out, tt.wantOut)
				}
				tt.check(t, err)
				if elapsed != 5*time.Second || len(hook) != 1 || hook[0] != err {
					t.Errorf("OnTimeout(%v, %v); want (5s, the returned error)", elapsed, hook)
				}
			})
		})
	}
}

func TestTimedOutErrorIsRetryable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, err := mustNew(t, timeout.Config{Duration: time.Second})(cooperative(time.Hour))(t.Context(), 1)
		if !retry.DefaultRetryable(err) {
			t.Errorf("retry.DefaultRetryable(%v) = false; a per-attempt timeout must be retryable", err)
		}
	})
}

// TestPerAttemptInsideRetry: Retry outside, Timeout inside: each attempt
// gets its own second.
func TestPerAttemptInsideRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		to := mustNew(t, timeout.Config{Duration: time.Second})
		re, err := retry.New[int, int](retry.Config{MaxAttempts: 3, BaseDelay: 100 * time.Millisecond, Jitter: retry.NoJitter})
		if err != nil {
			t.Fatal(err)
		}
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
		to := mustNew(t, timeout.Config{Duration: 3 * time.Second})
		re, err := retry.New[int, int](retry.Config{MaxAttempts: 10, BaseDelay: time.Second, Jitter: retry.NoJitter})
		if err != nil {
			t.Fatal(err)
		}
		errDown := errors.New("down")
		calls := 0
		stage := func(context.Context, int) (int, error) { calls++; return 0, errDown }
		start := time.Now()
		_, err = middleware.Apply(stage, to, re)(t.Context(), 1)
		// Attempts at 0 s and 1 s; the next delay (2 s) would end at the
		// 3 s deadline, so Retry stops at 1 s.
		if took := time.Since(start); took != time.Second || calls != 2 {
			t.Errorf("took %v with %d calls; want 1s, 2 calls", took, calls)
		}
		e, ok := errors.AsType[*retry.ExhaustedError](err)
		if !ok || e.Reason != retry.ReasonDeadline || !errors.Is(err, errDown) {
			t.Errorf("err = %v; want ExhaustedError(ReasonDeadline) wrapping down", err)
		}
	})
}

func TestLogger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
			ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
				if a.Key == slog.TimeKey {
					return slog.Attr{}
				}
				return a
			},
		}))
		mw := mustNew(t, timeout.Config{Duration: time.Second, Name: "db", Logger: logger})
		mw(cooperative(time.Hour))(t.Context(), 1)
		mw(cooperative(time.Millisecond))(t.Context(), 1)
		want := `level=WARN msg="timeout: timed out" name=db timeout=1s elapsed=1s err="timeout: stage did not finish within 1s: context deadline exceeded"` + "\n"
		if diff := cmp.Diff(want, buf.String()); diff != "" {
			t.Errorf("log (-want +got):\n%s", diff)
		}
	})
}

func TestNilStage(t *testing.T) {
	_, err := mustNew(t, timeout.Config{Duration: time.Second})(nil)(t.Context(), 1)
	if !errors.Is(err, middleware.ErrNilStage) {
		t.Fatalf("err = %v; want ErrNilStage", err)
	}
}

func TestConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var timeouts atomic.Int64
		mw := mustNew(t, timeout.Config{Duration: time.Second, OnTimeout: func(time.Duration, error) { timeouts.Add(1) }})
		const goroutines = 1000
		var wg sync.WaitGroup
		var ok, timedOut atomic.Int64
		for i := range goroutines {
			wg.Go(func() {
				work := time.Duration(i%2) * 2 * time.Second // even: instant, odd: 2 s
				got, err := mw(cooperative(work))(t.Context(), i)
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
		if ok.Load() != goroutines/2 || timedOut.Load() != goroutines/2 || timeouts.Load() != goroutines/2 {
			t.Fatalf("ok %d, timed out %d, hook %d; want %d each", ok.Load(), timedOut.Load(), timeouts.Load(), goroutines/2)
		}
	})
}

// TestAllocs backs the package doc: when the caller's deadline comes first
// no context is derived, so the call allocates nothing, with or without a
// Counter.
func TestAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ok := func(_ context.Context, in int) (int, error) { return in, nil }
	for name, cfg := range map[string]timeout.Config{
		"parent first":              {Duration: time.Hour},
		"parent first with Counter": {Duration: time.Hour, Counter: new(timeout.Counter)},
	} {
		s := mustNew(t, cfg)(ok)
		if n := testing.AllocsPerRun(1000, func() { _, _ = s(ctx, 1) }); n != 0 {
			t.Errorf("%s: %v allocs per call; want 0", name, n)
		}
	}
}
