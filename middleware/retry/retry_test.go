package retry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/budget"
	"github.com/brace-go/brace/middleware/retry"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var errBoom = errors.New("boom")

// flaky returns a stage that fails with errs[i] on call i and then
// succeeds with the call count; it records the fake time of each call.
type flaky struct {
	errs  []error
	calls int
	at    []time.Duration
	start time.Time
}

func newFlaky(errs ...error) *flaky { return &flaky{errs: errs, start: time.Now()} }

func (f *flaky) stage(ctx context.Context, _ int) (int, error) {
	f.at = append(f.at, time.Since(f.start))
	f.calls++
	if f.calls <= len(f.errs) {
		return 0, f.errs[f.calls-1]
	}
	return f.calls, nil
}

func always(err error, n int) []error {
	errs := make([]error, n)
	for i := range errs {
		errs[i] = err
	}
	return errs
}

func mustNew(t testing.TB, cfg retry.Config) middleware.Middleware[int, int] {
	t.Helper()
	mw, err := retry.New[int, int](cfg)
	if err != nil {
		t.Fatal(err)
	}
	return mw
}

// exhausted returns err as an *ExhaustedError or fails the test.
func exhausted(t *testing.T, err error) *retry.ExhaustedError {
	t.Helper()
	e, ok := errors.AsType[*retry.ExhaustedError](err)
	if !ok {
		t.Fatalf("error %v (%T) is not an *ExhaustedError", err, err)
	}
	return e
}

func TestNewValidation(t *testing.T) {
	tests := []struct {
		name string
		cfg  retry.Config
		want string
	}{
		{"zero value", retry.Config{}, ""},
		{"unlimited", retry.Config{MaxAttempts: retry.Unlimited}, ""},
		{"one attempt", retry.Config{MaxAttempts: 1}, ""},
		{"constant", retry.Config{Multiplier: 1, BaseDelay: time.Second, MaxDelay: time.Second}, ""},
		{"negative attempts", retry.Config{MaxAttempts: -2}, "retry: MaxAttempts must be at least 1 (or retry.Unlimited), got -2"},
		{"negative base", retry.Config{BaseDelay: -time.Second}, "retry: BaseDelay must not be negative, got -1s"},
		{"small multiplier", retry.Config{Multiplier: 0.5}, "retry: Multiplier must be at least 1, got 0.5"},
		{"NaN multiplier", retry.Config{Multiplier: math.NaN()}, "retry: Multiplier must be at least 1, got NaN"},
		{"Inf multiplier", retry.Config{Multiplier: math.Inf(1)}, "retry: Multiplier must be at least 1, got +Inf"},
		{"negative max", retry.Config{MaxDelay: -1}, "retry: MaxDelay must not be negative, got -1ns"},
		{"max below base", retry.Config{BaseDelay: 2 * time.Second, MaxDelay: time.Second}, "retry: MaxDelay (1s) must not be below BaseDelay (2s)"},
		{"max below default base", retry.Config{MaxDelay: time.Millisecond}, "retry: MaxDelay (1ms) must not be below BaseDelay (100ms)"},
		{"unknown jitter", retry.Config{Jitter: 7}, "retry: unknown Jitter 7"},
		{"negative elapsed", retry.Config{MaxElapsed: -time.Second}, "retry: MaxElapsed must not be negative, got -1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mw, err := retry.New[int, int](tt.cfg)
			if tt.want == "" {
				if err != nil || mw == nil {
					t.Fatalf("New = %v; want a middleware", err)
				}
				return
			}
			if err == nil || err.Error() != tt.want {
				t.Fatalf("New error = %v; want %q", err, tt.want)
			}
		})
	}
}

func TestNewWithResultValidation(t *testing.T) {
	if _, err := retry.NewWithResult[int, int](retry.Config{}, nil); err == nil ||
		err.Error() != "retry: NewWithResult needs a non-nil result check" {
		t.Errorf("nil check: err = %v", err)
	}
	check := func(int, error) bool { return false }
	if _, err := retry.NewWithResult[int, int](retry.Config{Retryable: retry.DefaultRetryable}, check); err == nil ||
		err.Error() != "retry: Retryable must be nil with NewWithResult; the result check sees errors too" {
		t.Errorf("both set: err = %v", err)
	}
	if _, err := retry.NewWithResult[int, int](retry.Config{MaxAttempts: -5}, check); err == nil ||
		!strings.HasPrefix(err.Error(), "retry: MaxAttempts") {
		t.Errorf("bad config: err = %v", err)
	}
}

func TestDelay(t *testing.T) {
	sec := retry.Config{BaseDelay: time.Second, MaxDelay: 60 * time.Second}
	tests := []struct {
		name    string
		cfg     retry.Config
		attempt int
		want    time.Duration
	}{
		{"first attempt has no delay", sec, 1, 0},
		{"attempt 0", sec, 0, 0},
		{"negative attempt", sec, -5, 0},
		{"MinInt attempt", sec, math.MinInt, 0},
		{"first retry is base", sec, 2, time.Second},
		{"second retry", sec, 3, 2 * time.Second},
		{"third retry", sec, 4, 4 * time.Second},
		{"32s", sec, 7, 32 * time.Second},
		{"capped", sec, 8, 60 * time.Second},
		{"attempt 34", sec, 34, 60 * time.Second},
		{"attempt 64", sec, 64, 60 * time.Second},
		{"attempt 65", sec, 65, 60 * time.Second},
		{"attempt 1<<31", sec, 1 << 31, 60 * time.Second},
		{"attempt MaxInt", sec, math.MaxInt, 60 * time.Second},
		{"defaults", retry.Config{}, 2, 100 * time.Millisecond},
		{"defaults, 4th retry", retry.Config{}, 5, 800 * time.Millisecond},
		{"defaults cap", retry.Config{}, 1000, 60 * time.Second},
		{"constant", retry.Config{BaseDelay: time.Second, Multiplier: 1}, 1 << 40, time.Second},
		{"factor 1.5", retry.Config{BaseDelay: time.Second, Multiplier: 1.5}, 4, 2250 * time.Millisecond},
		{"factor 10", retry.Config{BaseDelay: time.Millisecond, Multiplier: 10}, 5, time.Second},
		{"huge cap", retry.Config{BaseDelay: time.Second, MaxDelay: math.MaxInt64}, math.MaxInt, math.MaxInt64},
		{"huge cap, below it", retry.Config{BaseDelay: time.Second, MaxDelay: math.MaxInt64}, 32, time.Second << 30},
		{"jitter does not change Delay", retry.Config{BaseDelay: time.Second, Jitter: retry.EqualJitter}, 3, 2 * time.Second},
		{"invalid fields use defaults", retry.Config{BaseDelay: -1, Multiplier: -1, MaxDelay: -1}, 3, 200 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.cfg.Delay(tt.attempt); got != tt.want {
				t.Errorf("Delay(%d) = %v; want %v", tt.attempt, got, tt.want)
			}
		})
	}
}

func TestJitteredDelay(t *testing.T) {
	cfg := func(j retry.Jitter) retry.Config {
		return retry.Config{BaseDelay: time.Second, MaxDelay: 60 * time.Second, Jitter: j}
	}
	tests := []struct {
		name    string
		cfg     retry.Config
		attempt int
		prev    time.Duration
		u       float64
		want    time.Duration
	}{
		{"none", cfg(retry.NoJitter), 3, 0, 0.7, 2 * time.Second},
		{"none, first attempt", cfg(retry.NoJitter), 1, 0, 0.7, 0},
		{"none, huge", cfg(retry.NoJitter), math.MaxInt, 0, 0.7, 60 * time.Second},

		{"full, u=0", cfg(retry.FullJitter), 3, 0, 0, 0},
		{"full, u=0.5", cfg(retry.FullJitter), 3, 0, 0.5, time.Second},
		{"full, u=0.25 first retry", cfg(retry.FullJitter), 2, 0, 0.25, 250 * time.Millisecond},
		{"full, u→1 stays below d", cfg(retry.FullJitter), 3, 0, 1, 2*time.Second - 1},
		{"full, u>1 clamped", cfg(retry.FullJitter), 3, 0, 7, 2*time.Second - 1},
		{"full, u<0 clamped", cfg(retry.FullJitter), 3, 0, -3, 0},
		{"full, NaN is 0", cfg(retry.FullJitter), 3, 0, math.NaN(), 0},
		{"full, huge attempt", cfg(retry.FullJitter), 1 << 31, 0, 0.5, 30 * time.Second},
		{"full, first attempt", cfg(retry.FullJitter), 1, 0, 0.5, 0},

		{"equal, u=0", cfg(retry.EqualJitter), 3, 0, 0, time.Second},
		{"equal, u=0.5", cfg(retry.EqualJitter), 3, 0, 0.5, 1500 * time.Millisecond},
		{"equal, huge attempt", cfg(retry.EqualJitter), math.MaxInt, 0, 0.5, 45 * time.Second},
		{"equal, u→1 rounds to d", cfg(retry.EqualJitter), 3, 0, 1, 2 * time.Second},
		{"equal, u→1 at the cap", cfg(retry.EqualJitter), 64, 0, 1, 60 * time.Second},

		{"decorrelated, no prev: [base, 3base)", cfg(retry.DecorrelatedJitter), 2, 0, 0.5, 2 * time.Second},
		{"decorrelated, u=0 is base", cfg(retry.DecorrelatedJitter), 5, 10 * time.Second, 0, time.Second},
		{"decorrelated, prev 10s", cfg(retry.DecorrelatedJitter), 5, 10 * time.Second, 0.5, 15500 * time.Millisecond},
		{"decorrelated, capped", cfg(retry.DecorrelatedJitter), 5, 50 * time.Second, 0.9, 60 * time.Second},
		{"decorrelated, huge prev", cfg(retry.DecorrelatedJitter), 5, math.MaxInt64, 0.9, 60 * time.Second},
		{"decorrelated, first attempt", cfg(retry.DecorrelatedJitter), 1, time.Second, 0.9, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.cfg.JitteredDelay(tt.attempt, tt.prev, tt.u)
			if got != tt.want {
				t.Errorf("JitteredDelay(%d, %v, %v) = %v; want %v", tt.attempt, tt.prev, tt.u, got, tt.want)
			}
		})
	}
}

// TestFiveAttemptsTakeFifteenSeconds is the seed's schedule end to end: 5
// attempts, base 1 s, cap 60 s, no jitter: 1+2+4+8 = 15 s of fake time.
func TestFiveAttemptsTakeFifteenSeconds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		type event struct {
			Attempt int
			Delay   time.Duration
		}
		var events []event
		mw := mustNew(t, retry.Config{
			MaxAttempts: 5, BaseDelay: time.Second, MaxDelay: 60 * time.Second, Jitter: retry.NoJitter,
			OnRetry: func(attempt int, err error, delay time.Duration) {
				if !errors.Is(err, errBoom) {
					t.Errorf("OnRetry err = %v; want boom", err)
				}
				events = append(events, event{attempt, delay})
			},
		})
		f := newFlaky(always(errBoom, 100)...)
		start := time.Now()
		_, err := mw(f.stage)(t.Context(), 0)
		if got := time.Since(start); got != 15*time.Second {
			t.Errorf("took %v; want 15s", got)
		}
		want := []time.Duration{0, time.Second, 3 * time.Second, 7 * time.Second, 15 * time.Second}
		if diff := cmp.Diff(want, f.at); diff != "" {
			t.Errorf("attempt times (-want +got):\n%s", diff)
		}
		wantEvents := []event{{2, time.Second}, {3, 2 * time.Second}, {4, 4 * time.Second}, {5, 8 * time.Second}}
		if diff := cmp.Diff(wantEvents, events); diff != "" {
			t.Errorf("OnRetry events (-want +got):\n%s", diff)
		}
		e := exhausted(t, err)
		if e.Attempts != 5 || e.Reason != retry.ReasonAttempts || !errors.Is(err, errBoom) {
			t.Errorf("got %+v; want 5 attempts, ReasonAttempts, wrapping boom", e)
		}
		if got, want := err.Error(), "retry: giving up after 5 attempts: max attempts reached: last error: boom"; got != want {
			t.Errorf("Error() = %q; want %q", got, want)
		}
	})
}

func TestSuccessAfterFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFlaky(errBoom, errBoom)
		got, err := mustNew(t, retry.Config{})(f.stage)(t.Context(), 0)
		if err != nil || got != 3 {
			t.Fatalf("got %d, %v; want 3, nil", got, err)
		}
	})
}

func TestOneAttempt(t *testing.T) {
	f := newFlaky(errBoom)
	_, err := mustNew(t, retry.Config{MaxAttempts: 1})(f.stage)(t.Context(), 0)
	e := exhausted(t, err)
	if e.Attempts != 1 || e.Reason != retry.ReasonAttempts || f.calls != 1 || e.Err != errBoom || len(e.Earlier) != 0 {
		t.Fatalf("got %+v after %d calls; want 1 attempt", e, f.calls)
	}
	if got, want := err.Error(), "retry: giving up after 1 attempt: max attempts reached: last error: boom"; got != want {
		t.Errorf("Error() = %q; want %q", got, want)
	}
}

func TestNilStage(t *testing.T) {
	_, err := mustNew(t, retry.Config{})(nil)(t.Context(), 0)
	if !errors.Is(err, middleware.ErrNilStage) {
		t.Fatalf("err = %v; want ErrNilStage", err)
	}
}

type retryableErr struct{ ok bool }

func (e retryableErr) Error() string   { return fmt.Sprintf("retryable=%v", e.ok) }
func (e retryableErr) Retryable() bool { return e.ok }

type hintErr struct{ after time.Duration }

func (e hintErr) Error() string             { return "slow down" }
func (e hintErr) RetryAfter() time.Duration { return e.after }

func TestDefaultRetryable(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"plain", errBoom, true},
		{"io.EOF", io.EOF, true},
		{"canceled", context.Canceled, false},
		{"deadline", context.DeadlineExceeded, false},
		{"wrapped canceled", fmt.Errorf("get: %w", context.Canceled), false},
		{"permanent", retry.Permanent(errBoom), false},
		{"wrapped permanent", fmt.Errorf("get: %w", retry.Permanent(errBoom)), false},
		{"Retryable() false", retryableErr{false}, false},
		{"wrapped Retryable() false", fmt.Errorf("x: %w", retryableErr{false}), false},
		{"Retryable() true beats deadline", fmt.Errorf("%w: %w", retryableErr{true}, context.DeadlineExceeded), true},
		{"hint", hintErr{time.Second}, true},
		{"joined with canceled", errors.Join(errBoom, context.Canceled), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := retry.DefaultRetryable(tt.err); got != tt.want {
				t.Errorf("DefaultRetryable(%v) = %v; want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestNonRetryableComesBackUnchanged(t *testing.T) {
	wrapped := fmt.Errorf("get: %w", context.Canceled)
	for _, err := range []error{context.Canceled, wrapped, retryableErr{false}} {
		t.Run(err.Error(), func(t *testing.T) {
			f := newFlaky(errBoom, err)
			synctest.Test(t, func(t *testing.T) {
				_, got := mustNew(t, retry.Config{})(f.stage)(t.Context(), 0)
				if got != err || f.calls != 2 {
					t.Fatalf("got %v after %d calls; want %v unchanged after 2", got, f.calls, err)
				}
			})
		})
	}
}

func TestPermanent(t *testing.T) {
	if retry.Permanent(nil) != nil {
		t.Error("Permanent(nil) != nil")
	}
	base := fmt.Errorf("decode: %w", io.ErrUnexpectedEOF)
	wrappedMark := fmt.Errorf("fetch: %w", retry.Permanent(base))
	retryAll := func(error) bool { return true }
	tests := []struct {
		name     string
		stageErr error
		want     error // compared with ==
	}{
		{"mark is stripped", retry.Permanent(base), base},
		{"wrapped mark, chain unchanged", wrappedMark, wrappedMark},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFlaky(tt.stageErr)
			// A Retryable that retries everything must not override the mark.
			_, err := mustNew(t, retry.Config{Retryable: retryAll})(f.stage)(t.Context(), 0)
			if err != tt.want {
				t.Errorf("err = %v (%T); want %v", err, err, tt.want)
			}
			if f.calls != 1 {
				t.Errorf("calls = %d; want 1", f.calls)
			}
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("original chain lost: %v", err)
			}
		})
	}
	if got, want := wrappedMark.Error(), "fetch: decode: unexpected EOF"; got != want {
		t.Errorf("the mark changed the text: %q; want %q", got, want)
	}
	if _, ok := errors.AsType[*retry.PermanentError](wrappedMark); !ok {
		t.Error("errors.As does not find the mark through wrapping")
	}
}

func TestCustomRetryable(t *testing.T) {
	errOther := errors.New("other")
	only := func(err error) bool { return errors.Is(err, errBoom) }
	synctest.Test(t, func(t *testing.T) {
		f := newFlaky(errBoom, errOther)
		_, err := mustNew(t, retry.Config{Retryable: only})(f.stage)(t.Context(), 0)
		if err != errOther || f.calls != 2 {
			t.Fatalf("got %v after %d calls; want other after 2", err, f.calls)
		}
	})
}

func TestDeadlineStopsBeforeSleeping(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 2500*time.Millisecond)
		defer cancel()
		var retries int
		mw := mustNew(t, retry.Config{
			MaxAttempts: 10, BaseDelay: time.Second, Jitter: retry.NoJitter,
			OnRetry: func(int, error, time.Duration) { retries++ },
		})
		f := newFlaky(always(errBoom, 10)...)
		start := time.Now()
		_, err := mw(f.stage)(ctx, 0)
		// Attempts at 0 s and 1 s; the next would start at 3 s > 2.5 s.
		if got := time.Since(start); got != time.Second {
			t.Errorf("returned after %v; want 1s (no sleep into the deadline)", got)
		}
		e := exhausted(t, err)
		if e.Reason != retry.ReasonDeadline || e.Attempts != 2 || e.Delay != 2*time.Second || retries != 1 {
			t.Errorf("got %+v with %d retries; want ReasonDeadline after 2 attempts, delay 2s, 1 retry", e, retries)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			t.Error("the deadline has not passed, yet the error says it has")
		}
		if got, want := err.Error(), "retry: giving up after 2 attempts: next delay passes the context deadline (next delay 2s): last error: boom"; got != want {
			t.Errorf("Error() = %q; want %q", got, want)
		}
	})
}

func TestCancelDuringSleep(t *testing.T) {
	cause := errors.New("user left")
	tests := []struct {
		name   string
		cancel func(context.CancelCauseFunc)
		want   []error
	}{
		{"cancel", func(c context.CancelCauseFunc) { c(nil) }, []error{context.Canceled, errBoom}},
		{"cancel with cause", func(c context.CancelCauseFunc) { c(cause) }, []error{context.Canceled, cause, errBoom}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancelCause(t.Context())
				defer cancel(nil)
				var retries int
				mw := mustNew(t, retry.Config{
					BaseDelay: 10 * time.Second, Jitter: retry.NoJitter,
					OnRetry: func(int, error, time.Duration) { retries++ },
				})
				f := newFlaky(always(errBoom, 10)...)
				start := time.Now()
				go func() {
					time.Sleep(time.Second)
					tt.cancel(cancel)
				}()
				_, err := mw(f.stage)(ctx, 0)
				if got := time.Since(start); got != time.Second {
					t.Errorf("returned after %v; want 1s (at the cancellation)", got)
				}
				for _, w := range tt.want {
					if !errors.Is(err, w) {
						t.Errorf("errors.Is(%v, %v) = false", err, w)
					}
				}
				e := exhausted(t, err)
				if e.Reason != retry.ReasonContext || e.Attempts != 1 || retries != 1 || f.calls != 1 {
					t.Errorf("got %+v, %d retries, %d calls; want ReasonContext after 1 attempt", e, retries, f.calls)
				}
			})
		})
	}
}

func TestContextDoneBeforeRetry(t *testing.T) {
	// The stage fails with a retryable error while the caller's context
	// ends: no retry follows and OnRetry is not called.
	ctx, cancel := context.WithCancel(t.Context())
	stage := func(context.Context, int) (int, error) { cancel(); return 0, errBoom }
	mw := mustNew(t, retry.Config{OnRetry: func(int, error, time.Duration) { t.Error("OnRetry called") }})
	_, err := mw(stage)(ctx, 0)
	e := exhausted(t, err)
	if e.Reason != retry.ReasonContext || !errors.Is(err, context.Canceled) || !errors.Is(err, errBoom) {
		t.Fatalf("got %v; want ReasonContext wrapping Canceled and boom", err)
	}
	if got, want := err.Error(), "retry: giving up after 1 attempt: context canceled: last error: boom"; got != want {
		t.Errorf("Error() = %q; want %q", got, want)
	}
}

func TestMaxElapsed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mw := mustNew(t, retry.Config{
			MaxAttempts: retry.Unlimited, BaseDelay: time.Second, Jitter: retry.NoJitter, MaxElapsed: 5 * time.Second,
		})
		// Each attempt takes 500 ms, counted in the elapsed time.
		f := newFlaky(always(errBoom, 100)...)
		stage := func(ctx context.Context, in int) (int, error) {
			time.Sleep(500 * time.Millisecond)
			return f.stage(ctx, in)
		}
		start := time.Now()
		_, err := mw(stage)(t.Context(), 0)
		// Attempts start at 0, 1.5 s, 4 s; the next would start at 8.5 s.
		if diff := cmp.Diff([]time.Duration{500 * time.Millisecond, 2 * time.Second, 4500 * time.Millisecond}, f.at); diff != "" {
			t.Errorf("attempt ends (-want +got):\n%s", diff)
		}
		if got := time.Since(start); got != 4500*time.Millisecond {
			t.Errorf("took %v; want 4.5s", got)
		}
		e := exhausted(t, err)
		if e.Reason != retry.ReasonElapsed || e.Attempts != 3 || e.Delay != 4*time.Second {
			t.Errorf("got %+v; want ReasonElapsed after 3 attempts, delay 4s", e)
		}
	})
}

func TestRetryAfterHint(t *testing.T) {
	tests := []struct {
		name       string
		cfg        retry.Config
		timeout    time.Duration // 0: no deadline
		hint       time.Duration
		wantDelay  time.Duration // the delay before attempt 2
		wantReason retry.Reason  // 0: the retry is made
	}{
		{"hint raises the delay", retry.Config{}, 0, 5 * time.Second, 5 * time.Second, 0},
		{"hint below the schedule", retry.Config{BaseDelay: 10 * time.Second}, 0, time.Second, 10 * time.Second, 0},
		{"hint capped by MaxDelay", retry.Config{MaxDelay: 30 * time.Second}, 0, 2 * time.Minute, 30 * time.Second, 0},
		{"negative hint ignored", retry.Config{BaseDelay: time.Second}, 0, -time.Hour, time.Second, 0},
		{"hint past the deadline: stop now", retry.Config{}, 10 * time.Second, 20 * time.Second, 20 * time.Second, retry.ReasonDeadline},
		{"hint past MaxElapsed: stop now", retry.Config{MaxElapsed: 10 * time.Second}, 0, 20 * time.Second, 20 * time.Second, retry.ReasonElapsed},
		{"hint within the deadline", retry.Config{}, 30 * time.Second, 20 * time.Second, 20 * time.Second, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx := t.Context()
				if tt.timeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tt.timeout)
					defer cancel()
				}
				cfg := tt.cfg
				cfg.Jitter = retry.NoJitter
				var delays []time.Duration
				cfg.OnRetry = func(_ int, _ error, d time.Duration) { delays = append(delays, d) }
				hint := hintErr{tt.hint}
				f := newFlaky(fmt.Errorf("get: %w", hint))
				start := time.Now()
				got, err := mustNew(t, cfg)(f.stage)(ctx, 0)
				if tt.wantReason == 0 {
					if err != nil || got != 2 {
						t.Fatalf("got %d, %v; want success on attempt 2", got, err)
					}
					if diff := cmp.Diff([]time.Duration{tt.wantDelay}, delays); diff != "" {
						t.Errorf("delays (-want +got):\n%s", diff)
					}
					if took := time.Since(start); took != tt.wantDelay {
						t.Errorf("took %v; want %v", took, tt.wantDelay)
					}
					return
				}
				if took := time.Since(start); took != 0 {
					t.Errorf("slept %v before giving up; want 0", took)
				}
				e := exhausted(t, err)
				if e.Reason != tt.wantReason || e.Delay != tt.wantDelay || len(delays) != 0 || !errors.Is(err, hint) {
					t.Errorf("got %+v, OnRetry %v; want reason %v, delay %v, no retry", e, delays, tt.wantReason, tt.wantDelay)
				}
			})
		})
	}
}

func TestBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Retries worth one per call, no reserve.
		b, err := budget.New(budget.Config{Ratio: 1, MinPerSecond: budget.None})
		if err != nil {
			t.Fatal(err)
		}
		mw := mustNew(t, retry.Config{MaxAttempts: 5, Budget: b, DelayFunc: func(int, error) time.Duration { return 0 }})
		f := newFlaky(always(errBoom, 100)...)
		_, err = mw(f.stage)(t.Context(), 0)
		e := exhausted(t, err)
		if e.Reason != retry.ReasonBudget || e.Attempts != 2 || f.calls != 2 {
			t.Fatalf("got %+v after %d calls; want ReasonBudget after 2 attempts", e, f.calls)
		}
		if got, want := err.Error(), "retry: giving up after 2 attempts: retry budget empty: last error: boom"; got != want {
			t.Errorf("Error() = %q; want %q", got, want)
		}
		// A second middleware sharing the budget: its call deposits one,
		// which allows exactly one retry.
		other := mustNew(t, retry.Config{MaxAttempts: 5, Budget: b, DelayFunc: func(int, error) time.Duration { return 0 }})
		g := newFlaky(always(errBoom, 100)...)
		_, err = other(g.stage)(t.Context(), 0)
		if e := exhausted(t, err); e.Reason != retry.ReasonBudget || g.calls != 2 {
			t.Fatalf("shared budget: got %+v after %d calls", e, g.calls)
		}
	})
}

func TestBudgetNotSpentOnRefusedRetry(t *testing.T) {
	b, err := budget.New(budget.Config{Ratio: budget.None, MinPerSecond: 1, Window: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// MaxAttempts 1: no retry is ever attempted, so no token is taken.
	mw := mustNew(t, retry.Config{MaxAttempts: 1, Budget: b})
	for range 5 {
		mw(newFlaky(errBoom).stage)(t.Context(), 0)
	}
	if got := b.Available(); got != 1 {
		t.Fatalf("Available() = %d; want 1", got)
	}
}

func TestDelayFunc(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		type call struct {
			Attempt int
			Err     error
		}
		var calls []call
		errA, errB := errors.New("a"), errors.New("b")
		mw := mustNew(t, retry.Config{
			MaxAttempts: 4, MaxDelay: 10 * time.Second,
			DelayFunc: func(attempt int, err error) time.Duration {
				calls = append(calls, call{attempt, err})
				return []time.Duration{-time.Second, time.Minute, 3 * time.Second}[attempt-2]
			},
		})
		f := newFlaky(errA, errB, errA)
		got, err := mw(f.stage)(t.Context(), 0)
		if err != nil || got != 4 {
			t.Fatalf("got %d, %v; want 4, nil", got, err)
		}
		if diff := cmp.Diff([]call{{2, errA}, {3, errB}, {4, errA}}, calls, cmpopts.EquateErrors()); diff != "" {
			t.Errorf("DelayFunc calls (-want +got):\n%s", diff)
		}
		// -1s counts as 0; 1 min is capped at 10 s.
		if diff := cmp.Diff([]time.Duration{0, 0, 10 * time.Second, 13 * time.Second}, f.at); diff != "" {
			t.Errorf("attempt times (-want +got):\n%s", diff)
		}
	})
}

func TestJitterStaysInBounds(t *testing.T) {
	for _, j := range []retry.Jitter{retry.FullJitter, retry.EqualJitter, retry.DecorrelatedJitter, retry.NoJitter} {
		t.Run(j.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := retry.Config{MaxAttempts: 40, BaseDelay: time.Second, MaxDelay: 20 * time.Second, Jitter: j, Seed: 42}
				var delays []time.Duration
				cfg.OnRetry = func(attempt int, _ error, d time.Duration) {
					delays = append(delays, d)
					lo := time.Duration(0)
					switch j {
					case retry.EqualJitter:
						lo = cfg.Delay(attempt) / 2
					case retry.DecorrelatedJitter:
						lo = time.Second
					case retry.NoJitter:
						lo = cfg.Delay(attempt)
					}
					if d < lo || d > 20*time.Second {
						t.Errorf("attempt %d: delay %v outside [%v, 20s]", attempt, d, lo)
					}
				}
				mustNew(t, cfg)(newFlaky(always(errBoom, 100)...).stage)(t.Context(), 0)
				if len(delays) != 39 {
					t.Fatalf("%d retries; want 39", len(delays))
				}
				// The same seed gives the same delays.
				first := delays
				delays = nil
				mustNew(t, cfg)(newFlaky(always(errBoom, 100)...).stage)(t.Context(), 0)
				if diff := cmp.Diff(first, delays); diff != "" {
					t.Errorf("same seed, different delays (-first +second):\n%s", diff)
				}
				if j != retry.NoJitter && first[5] == first[6] && first[6] == first[7] {
					t.Errorf("jitter %v produced identical delays %v", j, first[5:8])
				}
			})
		})
	}
}

func TestResultCheck(t *testing.T) {
	// A stage returning HTTP-like status codes.
	statuses := func(codes ...int) func(context.Context, int) (int, error) {
		i := 0
		return func(context.Context, int) (int, error) {
			c := codes[min(i, len(codes)-1)]
			i++
			return c, nil
		}
	}
	retryOn := func(status int, err error) bool {
		return status == 503 || retry.DefaultRetryable(err)
	}
	mw, err := retry.NewWithResult[int, int](retry.Config{MaxAttempts: 3, Jitter: retry.NoJitter}, retryOn)
	if err != nil {
		t.Fatal(err)
	}
	synctest.Test(t, func(t *testing.T) {
		got, err := mw(statuses(503, 503, 200))(t.Context(), 0)
		if err != nil || got != 200 {
			t.Errorf("got %d, %v; want 200, nil", got, err)
		}
		got, err = mw(statuses(503))(t.Context(), 0)
		if got != 503 {
			t.Errorf("got %d; want the last result, 503", got)
		}
		e := exhausted(t, err)
		if e.Attempts != 3 || e.Err != retry.ErrRejected || len(e.Earlier) != 2 {
			t.Errorf("got %+v; want 3 attempts, ErrRejected", e)
		}
		if got, want := err.Error(), "retry: giving up after 3 attempts: max attempts reached: last error: retry: result rejected"; got != want {
			t.Errorf("Error() = %q; want %q", got, want)
		}
		// Errors go to the check too.
		f := newFlaky(errBoom)
		if got, err := mw(f.stage)(t.Context(), 0); err != nil || got != 2 {
			t.Errorf("got %d, %v; want 2, nil", got, err)
		}
		// A permanent error never reaches the check.
		mw2, _ := retry.NewWithResult[int, int](retry.Config{}, func(int, error) bool { t.Error("check called"); return true })
		if _, err := mw2(newFlaky(retry.Permanent(errBoom)).stage)(t.Context(), 0); err != errBoom {
			t.Errorf("err = %v; want boom", err)
		}
	})
}

func TestUnlimitedKeepsBoundedErrors(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	errs := make([]error, 0, 1000)
	stage := func(context.Context, int) (int, error) {
		err := fmt.Errorf("failure %d", len(errs)+1)
		errs = append(errs, err)
		if len(errs) == 1000 {
			cancel()
		}
		return 0, err
	}
	mw := mustNew(t, retry.Config{MaxAttempts: retry.Unlimited, DelayFunc: func(int, error) time.Duration { return 0 }})
	_, err := mw(stage)(ctx, 0)
	e := exhausted(t, err)
	if e.Attempts != 1000 || e.Reason != retry.ReasonContext {
		t.Fatalf("got %d attempts, %v; want 1000, ReasonContext", e.Attempts, e.Reason)
	}
	want := []error{errs[0], errs[996], errs[997], errs[998]}
	if diff := cmp.Diff(want, e.Earlier, cmpopts.EquateErrors()); diff != "" {
		t.Errorf("Earlier (-want +got):\n%s", diff)
	}
	for i, w := range map[int]bool{0: true, 500: false, 998: true, 999: true} {
		if got := errors.Is(err, errs[i]); got != w {
			t.Errorf("errors.Is(err, failure %d) = %v; want %v", i+1, got, w)
		}
	}
}

func TestEarlierErrorsShortRuns(t *testing.T) {
	e1, e2, e3 := errors.New("1"), errors.New("2"), errors.New("3")
	synctest.Test(t, func(t *testing.T) {
		_, err := mustNew(t, retry.Config{})(newFlaky(e1, e2, e3, e3).stage)(t.Context(), 0)
		e := exhausted(t, err)
		if diff := cmp.Diff([]error{e1, e2}, e.Earlier, cmpopts.EquateErrors()); diff != "" {
			t.Errorf("Earlier (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]error{e3, e2, e1}, e.Unwrap(), cmpopts.EquateErrors()); diff != "" {
			t.Errorf("Unwrap (-want +got):\n%s", diff)
		}
	})
}

func TestLogger(t *testing.T) {
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
		mw := mustNew(t, retry.Config{Name: "db", BaseDelay: time.Second, Jitter: retry.NoJitter, Logger: logger})
		mw(newFlaky(always(errBoom, 5)...).stage)(t.Context(), 0)
		want := `level=DEBUG msg="retry: retrying" name=db attempt=2 delay=1s err=boom
level=DEBUG msg="retry: retrying" name=db attempt=3 delay=2s err=boom
level=WARN msg="retry: exhausted" name=db attempts=3 reason="max attempts reached" err=boom
`
		if diff := cmp.Diff(want, buf.String()); diff != "" {
			t.Errorf("log (-want +got):\n%s", diff)
		}
	})
}

// TestConcurrent shares one middleware, one budget and one random source
// between 1000 goroutines; every call must see its own attempts only.
func TestConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, err := budget.New(budget.Config{Ratio: 0.5, MinPerSecond: budget.None})
		if err != nil {
			t.Fatal(err)
		}
		var retries atomic.Int64
		mw := mustNew(t, retry.Config{
			MaxAttempts: 4, BaseDelay: time.Millisecond, Jitter: retry.DecorrelatedJitter, Budget: b,
			OnRetry: func(int, error, time.Duration) { retries.Add(1) },
		})
		const goroutines = 1000
		var ok, refused atomic.Int64
		var wg sync.WaitGroup
		for i := range goroutines {
			wg.Go(func() {
				f := newFlaky(always(errBoom, i%3)...) // 0, 1 or 2 failures
				got, err := mw(f.stage)(t.Context(), i)
				switch {
				case err == nil && got == i%3+1:
					ok.Add(1)
				case err != nil:
					if e := exhausted(t, err); e.Reason != retry.ReasonBudget {
						t.Errorf("goroutine %d: %v", i, err)
					}
					refused.Add(1)
				default:
					t.Errorf("goroutine %d: got %d; want %d", i, got, i%3+1)
				}
			})
		}
		wg.Wait()
		if ok.Load()+refused.Load() != goroutines {
			t.Fatalf("ok %d + refused %d != %d", ok.Load(), refused.Load(), goroutines)
		}
		// The budget holds: retries never exceed half the calls.
		if r := retries.Load(); r > goroutines/2 {
			t.Fatalf("%d retries; budget allows %d", r, goroutines/2)
		}
	})
}

func TestAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	b, err := budget.New(budget.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ok := func(context.Context, int) (int, error) { return 1, nil }
	withResult, err := retry.NewWithResult[int, int](retry.Config{}, func(n int, err error) bool { return err != nil })
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for name, mw := range map[string]middleware.Middleware[int, int]{
		"default":     mustNew(t, retry.Config{}),
		"budget":      mustNew(t, retry.Config{Budget: b}),
		"max elapsed": mustNew(t, retry.Config{MaxElapsed: time.Second}),
		"with result": withResult,
	} {
		s := mw(ok)
		if n := testing.AllocsPerRun(1000, func() { s(ctx, 1) }); n != 0 {
			t.Errorf("%s: success path allocates %v times; want 0", name, n)
		}
	}

	// The doc's other claim: a failure followed by a successful retry
	// (zero delay) allocates nothing either; only an ExhaustedError does.
	fail := false
	flaky := func(context.Context, int) (int, error) {
		if fail = !fail; fail {
			return 0, errFlakyAlloc
		}
		return 1, nil
	}
	s := mustNew(t, retry.Config{DelayFunc: func(int, error) time.Duration { return 0 }})(flaky)
	if n := testing.AllocsPerRun(1000, func() {
		if _, err := s(ctx, 1); err != nil {
			t.Fatalf("retry after one failure: %v", err)
		}
	}); n != 0 {
		t.Errorf("one failure then success allocates %v times; want 0", n)
	}
}

var errFlakyAlloc = errors.New("flaky")
