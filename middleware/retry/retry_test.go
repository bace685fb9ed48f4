package retry_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/brace-go/brace/middleware/bracetest"
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

// recorder is bracetest.Recorder, with the views these tests read.
type recorder struct{ bracetest.Recorder }

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

func newRetrier(t testing.TB, cfg retry.Config) *retry.Retrier {
	t.Helper()
	r, err := retry.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustNew(t testing.TB, cfg retry.Config) middleware.Middleware[int, int] {
	t.Helper()
	return retry.Middleware[int, int](newRetrier(t, cfg))
}

func (r *recorder) list() []middleware.Event { return r.Events() }

// retryDelays returns the Delay of each Retry event.
func (r *recorder) retryDelays() []time.Duration {
	var ds []time.Duration
	for _, e := range r.list() {
		if e.Kind == middleware.Retry {
			ds = append(ds, e.Delay)
		}
	}
	return ds
}

// exhausted returns err as an *ExhaustedError or fails the test.
func exhausted(t *testing.T, err error) *retry.ExhaustedError {
	t.Helper()
	var e *retry.ExhaustedError
	if !errors.As(err, &e) {
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
			r, err := retry.New(tt.cfg)
			if tt.want == "" {
				if err != nil || r == nil {
					t.Fatalf("New = %v; want a Retrier", err)
				}
				return
			}
			if err == nil || err.Error() != tt.want || r != nil {
				t.Fatalf("New = %v, %v; want nil, %q", r, err, tt.want)
			}
		})
	}
}

func TestMiddlewarePanics(t *testing.T) {
	r := newRetrier(t, retry.Config{})
	check := func(int, error) bool { return false }
	tests := []struct {
		name string
		f    func()
		want string
	}{
		{"nil *Retrier", func() { retry.Middleware[int, int](nil) }, "retry: nil *Retrier (was New's error ignored?)"},
		{"nil result check", func() { retry.Middleware[int, int](r, nil) }, "retry: nil result check"},
		{"two result checks", func() { retry.Middleware[int, int](r, check, check) }, "retry: more than one result check"},
		{"nil stage", func() { retry.Middleware[int, int](r)(nil) }, "retry: nil stage"},
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
		var rec recorder
		r := newRetrier(t, retry.Config{
			Name: "db", MaxAttempts: 5, BaseDelay: time.Second, MaxDelay: 60 * time.Second, Jitter: retry.NoJitter,
			Observer: &rec,
		})
		mw := retry.Middleware[int, int](r)
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
		ev := func(k middleware.Kind, attempt int, delay time.Duration, err error, reason string) middleware.Event {
			return middleware.Event{Kind: k, Concern: "retry", Name: "db", Attempt: attempt, Delay: delay, Err: err, Reason: reason}
		}
		wantEvents := []middleware.Event{
			ev(middleware.Retry, 1, time.Second, errBoom, ""),
			ev(middleware.Retry, 2, 2*time.Second, errBoom, ""),
			ev(middleware.Retry, 3, 4*time.Second, errBoom, ""),
			ev(middleware.Retry, 4, 8*time.Second, errBoom, ""),
			ev(middleware.GaveUp, 5, 0, err, "attempts"),
		}
		if diff := cmp.Diff(wantEvents, rec.list(), cmpopts.EquateErrors()); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(retry.Stats{Retries: 4, GaveUp: 1}, r.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
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
	if pe := new(retry.PermanentError); !errors.As(wrappedMark, &pe) {
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
		r := newRetrier(t, retry.Config{MaxAttempts: 10, BaseDelay: time.Second, Jitter: retry.NoJitter})
		mw := retry.Middleware[int, int](r)
		f := newFlaky(always(errBoom, 10)...)
		start := time.Now()
		_, err := mw(f.stage)(ctx, 0)
		// Attempts at 0 s and 1 s; the next would start at 3 s > 2.5 s.
		if got := time.Since(start); got != time.Second {
			t.Errorf("returned after %v; want 1s (no sleep into the deadline)", got)
		}
		e := exhausted(t, err)
		if e.Reason != retry.ReasonDeadline || e.Attempts != 2 || e.Delay != 2*time.Second || r.Stats().Retries != 1 {
			t.Errorf("got %+v with %+v; want ReasonDeadline after 2 attempts, delay 2s, 1 retry", e, r.Stats())
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
				r := newRetrier(t, retry.Config{BaseDelay: 10 * time.Second, Jitter: retry.NoJitter})
				mw := retry.Middleware[int, int](r)
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
				// The retry was decided (counted, and a Retry event) before
				// the context ended during its delay.
				if e.Reason != retry.ReasonCanceled || e.Attempts != 1 || f.calls != 1 {
					t.Errorf("got %+v, %d calls; want ReasonCanceled after 1 attempt", e, f.calls)
				}
				if diff := cmp.Diff(retry.Stats{Retries: 1, GaveUp: 1}, r.Stats()); diff != "" {
					t.Errorf("Stats (-want +got):\n%s", diff)
				}
			})
		})
	}
}

func TestContextDoneBeforeRetry(t *testing.T) {
	// The stage fails with a retryable error while the caller's context
	// ends: no retry follows and no Retry event is emitted.
	ctx, cancel := context.WithCancel(t.Context())
	stage := func(context.Context, int) (int, error) { cancel(); return 0, errBoom }
	var rec recorder
	mw := mustNew(t, retry.Config{Observer: &rec})
	_, err := mw(stage)(ctx, 0)
	if d := rec.retryDelays(); len(d) != 0 {
		t.Errorf("Retry events %v; want none", d)
	}
	e := exhausted(t, err)
	if e.Reason != retry.ReasonCanceled || !errors.Is(err, context.Canceled) || !errors.Is(err, errBoom) {
		t.Fatalf("got %v; want ReasonCanceled wrapping Canceled and boom", err)
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
		wantReason retry.Reason  // "": the retry is made
	}{
		{"hint raises the delay", retry.Config{}, 0, 5 * time.Second, 5 * time.Second, ""},
		{"hint below the schedule", retry.Config{BaseDelay: 10 * time.Second}, 0, time.Second, 10 * time.Second, ""},
		{"hint not capped by MaxDelay", retry.Config{MaxDelay: 30 * time.Second}, 0, 2 * time.Minute, 2 * time.Minute, ""},
		{"negative hint ignored", retry.Config{BaseDelay: time.Second}, 0, -time.Hour, time.Second, ""},
		{"hint past the deadline: stop now", retry.Config{}, 10 * time.Second, 20 * time.Second, 20 * time.Second, retry.ReasonHint},
		{"hint past MaxElapsed: stop now", retry.Config{MaxElapsed: 10 * time.Second}, 0, 20 * time.Second, 20 * time.Second, retry.ReasonHint},
		{"hint within the deadline", retry.Config{}, 30 * time.Second, 20 * time.Second, 20 * time.Second, ""},
		{"schedule past the deadline, hint shorter", retry.Config{BaseDelay: 20 * time.Second}, 10 * time.Second, time.Second, 20 * time.Second, retry.ReasonDeadline},
		{"huge hint, no limit but the deadline", retry.Config{}, time.Hour, math.MaxInt64, math.MaxInt64, retry.ReasonHint},
		{"huge hint past MaxElapsed saturates", retry.Config{MaxElapsed: time.Hour}, 0, math.MaxInt64, math.MaxInt64, retry.ReasonHint},
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
				var rec recorder
				cfg.Observer = &rec
				hint := hintErr{tt.hint}
				f := newFlaky(fmt.Errorf("get: %w", hint))
				start := time.Now()
				got, err := mustNew(t, cfg)(f.stage)(ctx, 0)
				if tt.wantReason == "" {
					if err != nil || got != 2 {
						t.Fatalf("got %d, %v; want success on attempt 2", got, err)
					}
					if diff := cmp.Diff([]time.Duration{tt.wantDelay}, rec.retryDelays()); diff != "" {
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
				if e.Reason != tt.wantReason || e.Delay != tt.wantDelay || len(rec.retryDelays()) != 0 || !errors.Is(err, hint) {
					t.Errorf("got %+v, Retry events %v; want reason %v, delay %v, no retry", e, rec.retryDelays(), tt.wantReason, tt.wantDelay)
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
	if got := b.Stats().Available; got != 1 {
		t.Fatalf("Available = %d; want 1", got)
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
				cfg.Observer = middleware.ObserverFunc(func(_ context.Context, e middleware.Event) {
					if e.Kind != middleware.Retry {
						return
					}
					d, attempt := e.Delay, e.Attempt+1 // the delay before attempt
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
				})
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
	mw := retry.Middleware[int, int](newRetrier(t, retry.Config{MaxAttempts: 3, Jitter: retry.NoJitter}), retryOn)
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
		mw2 := retry.Middleware[int, int](newRetrier(t, retry.Config{}), func(int, error) bool { t.Error("check called"); return true })
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
	if e.Attempts != 1000 || e.Reason != retry.ReasonCanceled {
		t.Fatalf("got %d attempts, %v; want 1000, ReasonCanceled", e.Attempts, e.Reason)
	}
	want := []error{errs[0], errs[996], errs[997], errs[998]}
	if diff := cmp.Diff(want, e.Earlier, cmpopts.EquateErrors()); diff != "" {
		t.Errorf("Earlier (-want +got):\n%s", diff)
	}
	// Only the last error is matched (issue 14 item 10).
	for i, w := range map[int]bool{0: false, 500: false, 998: false, 999: true} {
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
		if diff := cmp.Diff([]error{e3}, e.Unwrap(), cmpopts.EquateErrors()); diff != "" {
			t.Errorf("Unwrap (-want +got):\n%s", diff)
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
		r := newRetrier(t, retry.Config{
			MaxAttempts: 4, BaseDelay: time.Millisecond, Jitter: retry.DecorrelatedJitter, Budget: b,
		})
		mw := retry.Middleware[int, int](r)
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
		st := r.Stats()
		if st.Retries > goroutines/2 {
			t.Fatalf("%d retries; budget allows %d", st.Retries, goroutines/2)
		}
		if st.GaveUp != uint64(refused.Load()) {
			t.Fatalf("Stats.GaveUp = %d; want %d refused calls", st.GaveUp, refused.Load())
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
	withResult := retry.Middleware[int, int](newRetrier(t, retry.Config{}), func(n int, err error) bool { return err != nil })
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

	// A call whose context has ended (the rejection path: no attempt).
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	s = mustNew(t, retry.Config{})(ok)
	if n := testing.AllocsPerRun(1000, func() {
		if _, err := s(ended, 1); err != context.Canceled {
			t.Fatalf("ended context: %v", err)
		}
	}); n != 0 {
		t.Errorf("ended context allocates %v times; want 0", n)
	}
	r := newRetrier(t, retry.Config{})
	if n := testing.AllocsPerRun(100, func() { r.Stats() }); n != 0 {
		t.Errorf("Stats allocates %v times; want 0", n)
	}
}

var errFlakyAlloc = errors.New("flaky")

// TestEndedContextRunsNothing: a call whose context has already ended
// returns ctx.Err() unchanged, runs no attempt, deposits nothing in the
// budget and emits nothing (issue 14 item 9).
func TestEndedContextRunsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		canceled, cancel := context.WithCancelCause(t.Context())
		cancel(errors.New("user left"))
		expired, cancel2 := context.WithTimeout(t.Context(), time.Second)
		defer cancel2()
		time.Sleep(2 * time.Second)
		for name, ctx := range map[string]context.Context{"canceled": canceled, "deadline passed": expired} {
			b, err := budget.New(budget.Config{Ratio: 1, MinPerSecond: budget.None})
			if err != nil {
				t.Fatal(err)
			}
			var rec recorder
			r := newRetrier(t, retry.Config{Budget: b, Observer: &rec})
			f := newFlaky(errBoom)
			_, err = retry.Middleware[int, int](r)(f.stage)(ctx, 0)
			if err != ctx.Err() || f.calls != 0 {
				t.Errorf("%s: got %v after %d attempts; want %v after none", name, err, f.calls, ctx.Err())
			}
			if b.Stats().Available != 0 || len(rec.list()) != 0 || r.Stats() != (retry.Stats{}) {
				t.Errorf("%s: budget %+v, events %v, stats %+v; want nothing deposited, emitted or counted",
					name, b.Stats(), rec.list(), r.Stats())
			}
		}
	})
}

// TestHintAboveMaxDelay is the regression test for issue 14 item 8: a
// RetryAfter hint above MaxDelay used to be capped to MaxDelay, so the
// retry came too early. Now the retry waits for the whole hint when the
// time budget allows, and otherwise stops at once with ReasonHint.
func TestHintAboveMaxDelay(t *testing.T) {
	cfg := retry.Config{MaxAttempts: 3, BaseDelay: 100 * time.Millisecond, MaxDelay: 200 * time.Millisecond, Jitter: retry.NoJitter}
	hint := hintErr{5 * time.Second}

	t.Run("waits for the hint", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := newFlaky(hint)
			start := time.Now()
			got, err := mustNew(t, cfg)(f.stage)(t.Context(), 0)
			if err != nil || got != 2 {
				t.Fatalf("got %d, %v; want success on attempt 2", got, err)
			}
			if diff := cmp.Diff([]time.Duration{0, 5 * time.Second}, f.at); diff != "" {
				t.Errorf("attempt times (-want +got):\n%s", diff)
			}
			if took := time.Since(start); took != 5*time.Second {
				t.Errorf("took %v; want 5s", took)
			}
		})
	})
	t.Run("deadline shorter than the hint", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			defer cancel()
			var rec recorder
			c := cfg
			c.Observer = &rec
			f := newFlaky(hint)
			start := time.Now()
			_, err := mustNew(t, c)(f.stage)(ctx, 0)
			if took := time.Since(start); took != 0 || f.calls != 1 {
				t.Errorf("took %v, %d attempts; want to stop at once after 1", took, f.calls)
			}
			e := exhausted(t, err)
			if e.Reason != retry.ReasonHint || e.Delay != 5*time.Second || !errors.Is(err, hint) {
				t.Errorf("got %+v; want ReasonHint, delay 5s, wrapping the hint error", e)
			}
			if got, want := err.Error(), "retry: giving up after 1 attempt: retry-after hint 5s exceeds the context deadline: last error: slow down"; got != want {
				t.Errorf("Error() = %q; want %q", got, want)
			}
			want := []middleware.Event{{Kind: middleware.GaveUp, Concern: "retry", Attempt: 1, Delay: 5 * time.Second, Reason: "hint", Err: err}}
			if diff := cmp.Diff(want, rec.list(), cmpopts.EquateErrors()); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	})
	t.Run("MaxElapsed shorter than the hint", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c := cfg
			c.MaxElapsed = time.Second
			_, err := mustNew(t, c)(newFlaky(hint).stage)(t.Context(), 0)
			e := exhausted(t, err)
			if got, want := err.Error(), "retry: giving up after 1 attempt: retry-after hint 5s exceeds MaxElapsed: last error: slow down"; e.Reason != retry.ReasonHint || got != want {
				t.Errorf("got %v, %q; want ReasonHint, %q", e.Reason, got, want)
			}
		})
	})
}

// TestErrorsIsMatchesLastAttemptOnly is the regression test for issue 14
// item 10: errors.Is on an *ExhaustedError matched the errors of earlier
// attempts, so a caller counting failures by cause counted one call under
// several causes.
func TestErrorsIsMatchesLastAttemptOnly(t *testing.T) {
	errTimeout := errors.New("attempt timed out")
	errRefused := errors.New("connection refused")
	synctest.Test(t, func(t *testing.T) {
		_, err := mustNew(t, retry.Config{MaxAttempts: 3})(newFlaky(errTimeout, errTimeout, errRefused).stage)(t.Context(), 0)
		if errors.Is(err, errTimeout) {
			t.Errorf("errors.Is(err, an earlier attempt's error) = true; want false")
		}
		if !errors.Is(err, errRefused) {
			t.Errorf("errors.Is(err, the last attempt's error) = false; want true")
		}
		e := exhausted(t, err)
		if diff := cmp.Diff([]error{errTimeout, errTimeout}, e.Earlier, cmpopts.EquateErrors()); diff != "" {
			t.Errorf("Earlier (-want +got):\n%s", diff)
		}
	})
}

// TestGaveUpEvents covers each path that ends a call on a failure, and
// those that do not.
func TestGaveUpEvents(t *testing.T) {
	errFatal := errors.New("fatal")
	tests := []struct {
		name   string
		cfg    retry.Config
		errs   []error
		cancel bool // cancel the context during the first attempt's second failure
		want   []string
		stats  retry.Stats
	}{
		{"success at once", retry.Config{}, nil, false, nil, retry.Stats{}},
		{"success after a retry", retry.Config{}, []error{errBoom}, false, []string{"retry"}, retry.Stats{Retries: 1}},
		{"not retryable at once: untouched", retry.Config{}, []error{retry.Permanent(errFatal)}, false, nil, retry.Stats{}},
		{"not retryable after a retry", retry.Config{}, []error{errBoom, retry.Permanent(errFatal)}, false,
			[]string{"retry", "gave-up permanent"}, retry.Stats{Retries: 1, GaveUp: 1}},
		{"attempts", retry.Config{MaxAttempts: 2}, always(errBoom, 5), false,
			[]string{"retry", "gave-up attempts"}, retry.Stats{Retries: 1, GaveUp: 1}},
		{"elapsed", retry.Config{MaxElapsed: 50 * time.Millisecond}, always(errBoom, 5), false,
			[]string{"gave-up elapsed"}, retry.Stats{GaveUp: 1}},
		{"budget", retry.Config{Budget: mustBudget(t, budget.Config{Ratio: budget.None, MinPerSecond: budget.None})}, always(errBoom, 5), false,
			[]string{"gave-up budget"}, retry.Stats{GaveUp: 1}},
		{"stage returns ctx error after a retry", retry.Config{}, []error{errBoom, context.Canceled}, true,
			[]string{"retry", "gave-up canceled"}, retry.Stats{Retries: 1, GaveUp: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				var rec recorder
				cfg := tt.cfg
				cfg.BaseDelay, cfg.MaxDelay, cfg.Jitter, cfg.Observer = 100*time.Millisecond, time.Second, retry.NoJitter, &rec
				r := newRetrier(t, cfg)
				f := newFlaky(tt.errs...)
				stage := func(ctx context.Context, in int) (int, error) {
					if tt.cancel && f.calls == 1 {
						cancel()
					}
					return f.stage(ctx, in)
				}
				retry.Middleware[int, int](r)(stage)(ctx, 0)
				var got []string
				for _, e := range rec.list() {
					got = append(got, strings.TrimSpace(e.Kind.String()+" "+e.Reason))
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("events (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(tt.stats, r.Stats()); diff != "" {
					t.Errorf("Stats (-want +got):\n%s", diff)
				}
			})
		})
	}
}

func mustBudget(t *testing.T, cfg budget.Config) *budget.Budget {
	t.Helper()
	b, err := budget.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestStats: counts per path, with and without a result check; successes
// are not counted (the old Counter's Successes and Failures are gone).
func TestStats(t *testing.T) {
	errFatal := errors.New("fatal")
	tests := []struct {
		name  string
		calls [][]error // per call: the errors of its failing attempts before a success
		want  retry.Stats
	}{
		{name: "successes", calls: [][]error{nil, nil, nil}, want: retry.Stats{}},
		{name: "success after retries", calls: [][]error{{errBoom, errBoom}, {errBoom}}, want: retry.Stats{Retries: 3}},
		{name: "exhausted", calls: [][]error{{errBoom, errBoom, errBoom}}, want: retry.Stats{Retries: 2, GaveUp: 1}},
		{name: "not retryable", calls: [][]error{{errBoom, retry.Permanent(errFatal)}}, want: retry.Stats{Retries: 1, GaveUp: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRetrier(t, retry.Config{MaxAttempts: 3})
				mw := retry.Middleware[int, int](r)
				for _, errs := range tt.calls {
					mw(newFlaky(errs...).stage)(t.Context(), 0)
				}
				if diff := cmp.Diff(tt.want, r.Stats()); diff != "" {
					t.Errorf("Stats (-want +got):\n%s", diff)
				}
			})
		})
	}
}

func TestStatsWithResultCheck(t *testing.T) {
	r := newRetrier(t, retry.Config{MaxAttempts: 2, BaseDelay: time.Nanosecond})
	s := retry.Middleware[int, int](r, func(n int, err error) bool { return err != nil || n < 2 })(newFlaky().stage) // returns 1, then 2
	if _, err := s(t.Context(), 0); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(retry.Stats{Retries: 1}, r.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

// TestStatsShared shares one Retrier between two middlewares of different
// types and 2000 goroutines: no count is lost.
func TestStatsShared(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRetrier(t, retry.Config{BaseDelay: time.Millisecond})
		ints := retry.Middleware[int, int](r)
		strs := retry.Middleware[string, string](r)
		const goroutines = 2000
		var wg sync.WaitGroup
		for i := range goroutines {
			f := newFlaky(always(errBoom, i%4)...)
			if i%2 == 0 {
				wg.Go(func() { ints(f.stage)(t.Context(), 0) })
				continue
			}
			wg.Go(func() {
				strs(func(ctx context.Context, s string) (string, error) {
					_, err := f.stage(ctx, 0)
					return s, err
				})(t.Context(), "x")
			})
		}
		wg.Wait()
		// i%4 failures: 0, 1 and 2 succeed (0, 1, 2 retries), 3 gives up
		// after 2 retries.
		want := retry.Stats{Retries: 500 * (0 + 1 + 2 + 2), GaveUp: 500}
		if diff := cmp.Diff(want, r.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
}

// TestPanickingObserver: an observer's panic is recovered by Emit; the
// call goes on, retries and returns as without an observer, and the counts
// are right.
func TestPanickingObserver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		old := slog.Default()
		slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
		defer slog.SetDefault(old)
		obs := middleware.ObserverFunc(func(context.Context, middleware.Event) { panic("observer") })
		b := mustBudget(t, budget.Config{Ratio: 5, MinPerSecond: budget.None, Observer: obs})
		r := newRetrier(t, retry.Config{MaxAttempts: 3, BaseDelay: time.Second, Jitter: retry.NoJitter, Budget: b, Observer: obs})
		f := newFlaky(errBoom)
		if got, err := retry.Middleware[int, int](r)(f.stage)(t.Context(), 0); err != nil || got != 2 {
			t.Fatalf("got %d, %v; want 2, nil", got, err)
		}
		_, err := retry.Middleware[int, int](r)(newFlaky(always(errBoom, 5)...).stage)(t.Context(), 0)
		if e := exhausted(t, err); e.Reason != retry.ReasonAttempts || e.Attempts != 3 {
			t.Fatalf("got %+v; want 3 attempts", e)
		}
		if diff := cmp.Diff(retry.Stats{Retries: 3, GaveUp: 1}, r.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
}

// TestReentrantObserver: an observer that calls back into the Retrier
// (Stats, another call through it) and its budget does not deadlock.
func TestReentrantObserver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := mustBudget(t, budget.Config{Ratio: 1, MinPerSecond: budget.None})
		var r *retry.Retrier
		var seen []retry.Stats
		obs := middleware.ObserverFunc(func(ctx context.Context, e middleware.Event) {
			seen = append(seen, r.Stats())
			b.Stats()
			if e.Kind == middleware.Retry {
				if got, err := retry.Middleware[int, int](r)(newFlaky().stage)(ctx, 0); got != 1 || err != nil {
					t.Errorf("re-entrant call: %d, %v", got, err)
				}
			}
		})
		r = newRetrier(t, retry.Config{MaxAttempts: 2, BaseDelay: time.Second, Budget: b, Observer: obs})
		retry.Middleware[int, int](r)(newFlaky(errBoom, errBoom).stage)(t.Context(), 0)
		want := []retry.Stats{{Retries: 1}, {Retries: 1, GaveUp: 1}}
		if diff := cmp.Diff(want, seen); diff != "" {
			t.Errorf("Stats seen by the observer (-want +got):\n%s", diff)
		}
	})
}

// TestDelayAnyAttempt: with unlimited attempts the delays stay correct
// far past attempt 64 (no overflow into zero or negative delays).
func TestDelayAnyAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec recorder
		r := newRetrier(t, retry.Config{MaxAttempts: 200, BaseDelay: time.Millisecond, MaxDelay: time.Second, Jitter: retry.NoJitter, Observer: &rec})
		retry.Middleware[int, int](r)(newFlaky(always(errBoom, 1000)...).stage)(t.Context(), 0)
		ds := rec.retryDelays()
		if len(ds) != 199 {
			t.Fatalf("%d retries; want 199", len(ds))
		}
		for i, d := range ds[10:] {
			if d != time.Second {
				t.Fatalf("retry after attempt %d: delay %v; want the 1s cap", i+11, d)
			}
		}
	})
}

// TestStagePanics: a stage's panic propagates to the caller unchanged; the
// Retrier holds no per-call state, so the next call works and the counts
// stay right.
func TestStagePanics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRetrier(t, retry.Config{BaseDelay: time.Second})
		calls := 0
		s := retry.Middleware[int, int](r)(func(context.Context, int) (int, error) {
			if calls++; calls == 1 {
				return 0, errBoom
			}
			panic("stage")
		})
		func() {
			defer func() {
				if v := recover(); v != "stage" {
					t.Errorf("recovered %v; want the stage's panic", v)
				}
			}()
			s(t.Context(), 0)
			t.Error("the call returned; want a panic")
		}()
		if got, err := retry.Middleware[int, int](r)(newFlaky(errBoom).stage)(t.Context(), 0); got != 2 || err != nil {
			t.Errorf("next call: %d, %v; want 2, nil", got, err)
		}
		if diff := cmp.Diff(retry.Stats{Retries: 2}, r.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
}
