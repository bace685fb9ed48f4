package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/brace-go/brace/middleware/bracetest"
	"math"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.uber.org/goleak"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/breaker"
)

// recorder is bracetest.Recorder, with the views these tests read.
type recorder struct{ bracetest.Recorder }

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var errBoom = errors.New("boom")

// change is a StateChanged event, as the tests compare them.
type change struct {
	From, To string
	Failures int64
	Reason   string
	Err      error
}

func (r *recorder) events(k middleware.Kind) []middleware.Event {
	var out []middleware.Event
	for _, e := range r.Events() {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

func (r *recorder) changes() []change {
	var out []change
	for _, e := range r.events(middleware.StateChanged) {
		if e.Concern != "breaker" {
			panic("event from " + e.Concern)
		}
		out = append(out, change{From: e.From, To: e.To, Failures: e.Failures, Reason: e.Reason, Err: e.Err})
	}
	return out
}

var equateErrors = cmpopts.EquateErrors()

func mustNew(t testing.TB, cfg breaker.Config) *breaker.Breaker {
	t.Helper()
	b, err := breaker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// call runs one call through b with the given result.
func call(b *breaker.Breaker, err error) error {
	p, aerr := b.Acquire(context.Background())
	if aerr != nil {
		return aerr
	}
	p.Done(err)
	return err
}

func counts(b *breaker.Breaker) breaker.Counts { return b.Stats().Counts }

// asOpen returns the *OpenError in err's chain, or nil.
func asOpen(err error) *breaker.OpenError {
	var oe *breaker.OpenError
	errors.As(err, &oe)
	return oe
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  breaker.Config
		want string
	}{
		{"negative threshold", breaker.Config{Threshold: -1}, "breaker: Threshold must be at least 1, got -1"},
		{"rate above one", breaker.Config{FailureRate: 1.5}, "breaker: FailureRate must be in (0, 1], got 1.5"},
		{"both modes", breaker.Config{Threshold: 3, FailureRate: 0.5}, "breaker: Threshold and FailureRate select different modes; set one, got 3 and 0.5"},
		{"slow rate without duration", breaker.Config{FailureRate: 0.5, SlowCallRate: 0.5}, "breaker: SlowCallRate needs SlowCallDuration, got 0"},
		{"slow in consecutive mode", breaker.Config{SlowCallDuration: time.Second}, "breaker: SlowCallDuration and SlowCallRate need rate mode (FailureRate), got FailureRate 0"},
		{"tiny buckets", breaker.Config{FailureRate: 0.5, Window: time.Millisecond, Buckets: 10}, "breaker: Window / Buckets must be at least 1ms, got 1ms / 10"},
		{"too many buckets", breaker.Config{FailureRate: 0.5, Buckets: 1001}, "breaker: Buckets must be between 1 and 1000, got 1001"},
		{"negative open timeout", breaker.Config{OpenTimeout: -time.Second}, "breaker: OpenTimeout must be positive, got -1s"},
		{"negative probes", breaker.Config{HalfOpenProbes: -1}, "breaker: HalfOpenProbes must be at least 1, got -1"},
		{"success threshold above probes", breaker.Config{HalfOpenProbes: 2, SuccessThreshold: 3}, "breaker: SuccessThreshold must be between 1 and HalfOpenProbes (2), got 3"},
		{"negative min calls", breaker.Config{FailureRate: 0.5, MinCalls: -1}, "breaker: MinCalls must be at least 1, got -1"},
		{"negative store sync", breaker.Config{StoreSync: -1}, "breaker: StoreSync must be positive, got -1ns"},
		{"negative probe timeout", breaker.Config{ProbeTimeout: -time.Second}, "breaker: ProbeTimeout must be positive, got -1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := breaker.New(tt.cfg)
			if b != nil || err == nil {
				t.Fatalf("New(%+v) = %v, %v; want an error", tt.cfg, b, err)
			}
			if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
				t.Errorf("error text (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConsecutiveTransitions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec recorder
		b := mustNew(t, breaker.Config{Name: "payments", Threshold: 3, OpenTimeout: 10 * time.Second, Observer: &rec})

		// A success resets the consecutive count.
		call(b, errBoom)
		call(b, errBoom)
		call(b, nil)
		if got := counts(b).ConsecutiveFailures; got != 0 {
			t.Fatalf("ConsecutiveFailures after a success = %d, want 0", got)
		}
		for range 3 {
			call(b, errBoom)
		}
		if got := b.State(); got != breaker.Open {
			t.Fatalf("State after 3 failures = %v, want open", got)
		}
		calls := 0
		guarded := middleware.Apply(func(context.Context, int) (int, error) { calls++; return 1, nil },
			breaker.Middleware[int, int](b))
		_, err := guarded(context.Background(), 0)
		if !errors.Is(err, breaker.ErrOpen) || calls != 0 {
			t.Fatalf("open breaker: err %v, stage called %d times; want ErrOpen and no call", err, calls)
		}
		if diff := cmp.Diff(`breaker: "payments" is open`, err.Error()); diff != "" {
			t.Errorf("error text (-want +got):\n%s", diff)
		}
		var oe *breaker.OpenError
		if !errors.As(err, &oe) || oe.RetryAfter() != 10*time.Second {
			t.Fatalf("OpenError %#v, RetryAfter want 10s", oe)
		}
		rejections := rec.events(middleware.Rejected)
		if len(rejections) != 1 || rejections[0].Reason != "open" || rejections[0].Delay != 10*time.Second || rejections[0].Err != err || rejections[0].Name != "payments" {
			t.Fatalf("Rejected events %+v, want one with Reason open, Delay 10s, Err the OpenError", rejections)
		}

		time.Sleep(10 * time.Second)
		if got := b.State(); got != breaker.HalfOpen {
			t.Fatalf("State after the open timeout = %v, want half-open", got)
		}
		// The probe fails: open again for another window.
		if err := call(b, errBoom); err != errBoom {
			t.Fatalf("probe: %v", err)
		}
		if err := call(b, nil); !errors.Is(err, breaker.ErrOpen) {
			t.Fatalf("after failed probe: %v, want ErrOpen", err)
		}
		time.Sleep(10 * time.Second)
		// The probe succeeds: closed.
		if _, err := guarded(context.Background(), 0); err != nil || calls != 1 {
			t.Fatalf("probe via middleware: %v, calls %d", err, calls)
		}
		if got := b.State(); got != breaker.Closed {
			t.Fatalf("State after a good probe = %v, want closed", got)
		}
		// The half-open → open change carries the probe failure that
		// reopened the breaker (issue 14 item 11).
		want := []change{
			{From: "closed", To: "open", Failures: 5, Err: errBoom},
			{From: "open", To: "half-open"},
			{From: "half-open", To: "open", Failures: 1, Err: errBoom},
			{From: "open", To: "half-open"},
			{From: "half-open", To: "closed"},
		}
		if diff := cmp.Diff(want, rec.changes(), equateErrors); diff != "" {
			t.Errorf("state changes (-want +got):\n%s", diff)
		}
	})
}

func TestDefaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := mustNew(t, breaker.Config{})
		for i := range 5 {
			if got := b.State(); got != breaker.Closed {
				t.Fatalf("after %d failures: %v, want closed", i, got)
			}
			call(b, errBoom)
		}
		err := call(b, nil)
		if diff := cmp.Diff("breaker: open", err.Error()); diff != "" {
			t.Errorf("unnamed error text (-want +got):\n%s", diff)
		}
		time.Sleep(30*time.Second - time.Nanosecond)
		if got := b.State(); got != breaker.Open {
			t.Fatalf("just before 30s: %v, want open", got)
		}
		time.Sleep(time.Nanosecond)
		if got := b.State(); got != breaker.HalfOpen {
			t.Fatalf("at 30s: %v, want half-open", got)
		}
	})
}

func TestClassify(t *testing.T) {
	tests := []struct {
		err  error
		want breaker.Outcome
	}{
		{nil, breaker.Success},
		{errBoom, breaker.Failure},
		{context.Canceled, breaker.Ignore},
		{fmt.Errorf("wrapped: %w", context.Canceled), breaker.Ignore},
		{context.DeadlineExceeded, breaker.Failure},
		{rejection(true), breaker.Ignore},
		{fmt.Errorf("wrapped: %w", rejection(true)), breaker.Ignore},
		{rejection(false), breaker.Failure},
		{&breaker.OpenError{Name: "inner"}, breaker.Ignore},
		{errors.Join(errBoom, fmt.Errorf("w: %w", rejection(true))), breaker.Ignore},
		{errors.Join(errBoom, rejection(false)), breaker.Failure},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.err), func(t *testing.T) {
			if got := breaker.DefaultClassify(tt.err); got != tt.want {
				t.Errorf("DefaultClassify(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
	t.Run("cancellations do not trip", func(t *testing.T) {
		b := mustNew(t, breaker.Config{Threshold: 1})
		for range 10 {
			call(b, context.Canceled)
		}
		if diff := cmp.Diff(breaker.Counts{}, counts(b)); diff != "" {
			t.Errorf("counts after cancellations (-want +got):\n%s", diff)
		}
	})
	t.Run("custom", func(t *testing.T) {
		b := mustNew(t, breaker.Config{Threshold: 1, Classify: func(err error) breaker.Outcome {
			if errors.Is(err, errBoom) {
				return breaker.Ignore
			}
			return breaker.DefaultClassify(err)
		}})
		call(b, errBoom)
		if got := b.State(); got != breaker.Closed {
			t.Fatalf("ignored error opened the breaker: %v", got)
		}
		call(b, errors.New("other"))
		if got := b.State(); got != breaker.Open {
			t.Fatalf("failure did not open: %v", got)
		}
	})
}

func TestRateMode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec recorder
		b := mustNew(t, breaker.Config{FailureRate: 0.5, Window: 10 * time.Second, Buckets: 10, MinCalls: 4, Observer: &rec})
		// Three failures: 100% but fewer than MinCalls.
		for range 3 {
			call(b, errBoom)
		}
		if got := b.State(); got != breaker.Closed {
			t.Fatalf("below MinCalls: %v", got)
		}
		// The failures roll out of the window one bucket at a time.
		time.Sleep(10 * time.Second)
		if diff := cmp.Diff(breaker.Counts{ConsecutiveFailures: 0}, counts(b)); diff != "" {
			t.Errorf("counts after the window (-want +got):\n%s", diff)
		}
		for range 3 {
			call(b, nil)
		}
		time.Sleep(5 * time.Second)
		call(b, nil)
		call(b, errBoom) // 1 of 5
		call(b, errBoom) // 2 of 6
		if got := b.State(); got != breaker.Closed {
			t.Fatalf("at 2/6 failures: %v", got)
		}
		time.Sleep(5 * time.Second) // the first three successes leave the window
		call(b, errBoom)            // 3 of 4: open
		if got := b.State(); got != breaker.Open {
			t.Fatalf("at 3/4 failures: %v, counts %+v", got, counts(b))
		}
		want := []change{{From: "closed", To: "open", Failures: 3, Err: errBoom}}
		if diff := cmp.Diff(want, rec.changes(), equateErrors); diff != "" {
			t.Errorf("state changes (-want +got):\n%s", diff)
		}
	})
}

func TestSlowCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := mustNew(t, breaker.Config{FailureRate: 1, MinCalls: 2, SlowCallDuration: time.Second, SlowCallRate: 0.5})
		slow := middleware.Apply(func(ctx context.Context, d time.Duration) (int, error) {
			time.Sleep(d)
			return 0, nil
		}, breaker.Middleware[time.Duration, int](b))
		slow(context.Background(), 10*time.Millisecond)
		slow(context.Background(), 2*time.Second)
		if got := b.State(); got != breaker.Open {
			t.Fatalf("after 1 slow of 2 calls: %v, counts %+v", got, counts(b))
		}
	})
}

func TestHalfOpenProbes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := mustNew(t, breaker.Config{Threshold: 1, OpenTimeout: time.Second, HalfOpenProbes: 3, SuccessThreshold: 2})
		ctx := context.Background()
		call(b, errBoom)
		time.Sleep(time.Second)
		var tk [3]breaker.Permit
		for i := range tk {
			var err error
			if tk[i], err = b.Acquire(ctx); err != nil {
				t.Fatalf("probe %d: %v", i, err)
			}
		}
		_, err := b.Acquire(ctx)
		var oe *breaker.OpenError
		if !errors.As(err, &oe) || oe.State != breaker.HalfOpen || oe.RetryAfter() != 0 {
			t.Fatalf("fourth call: %v, want a half-open OpenError", err)
		}
		// A cancelled probe gives its slot back.
		tk[0].Done(context.Canceled)
		if tk[0], err = b.Acquire(ctx); err != nil {
			t.Fatalf("slot not given back: %v", err)
		}
		tk[0].Done(nil)
		if got := b.State(); got != breaker.HalfOpen {
			t.Fatalf("after 1 of 2 successes: %v", got)
		}
		tk[1].Done(nil)
		if got := b.State(); got != breaker.Closed {
			t.Fatalf("after 2 successes: %v", got)
		}
		// The third probe's failure belongs to the half-open generation.
		tk[2].Done(errBoom)
		if got := b.State(); got != breaker.Closed {
			t.Fatalf("a late probe failure changed a closed breaker: %v", got)
		}
	})
}

func TestLateResults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		for _, mode := range []breaker.Config{{Threshold: 2}, {FailureRate: 0.5, MinCalls: 2}} {
			mode.OpenTimeout = time.Second
			b := mustNew(t, mode)
			early, _ := b.Acquire(ctx) // admitted while closed, generation 1
			early2, _ := b.Acquire(ctx)
			call(b, errBoom)
			call(b, errBoom)
			if got := b.State(); got != breaker.Open {
				t.Fatalf("%+v: %v, want open", mode, got)
			}
			// A failure from before the opening does not extend it.
			early.Done(errBoom)
			if got := b.State(); got != breaker.Open {
				t.Fatalf("%v", got)
			}
			time.Sleep(time.Second)
			call(b, nil) // probe: closed again
			// A success from the first closed period does not count in the new one.
			early2.Done(nil)
			if diff := cmp.Diff(breaker.Counts{}, counts(b)); diff != "" {
				t.Errorf("%+v: late result counted (-want +got):\n%s", mode, diff)
			}
		}
	})
}

func TestOpenDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		type hintErr struct{ error }
		b := mustNew(t, breaker.Config{Threshold: 1, OpenDelay: func(err error) time.Duration {
			if errors.As(err, new(hintErr)) {
				return time.Minute
			}
			return 0
		}})
		call(b, hintErr{errBoom})
		err := call(b, nil)
		oe := asOpen(err)
		if oe == nil || oe.RetryAfter() != time.Minute {
			t.Fatalf("got %v; want RetryAfter 1m", err)
		}
		time.Sleep(time.Minute)
		call(b, errBoom) // probe fails without a hint: the default 30s
		oe = asOpen(call(b, nil))
		if oe == nil || oe.RetryAfter() != 30*time.Second {
			t.Fatalf("got %v; want RetryAfter 30s", oe)
		}
	})
}

func TestManualControl(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec recorder
		b := mustNew(t, breaker.Config{Threshold: 1, Observer: &rec})
		ctx := context.Background()
		if err := b.ForceOpen(ctx); err != nil {
			t.Fatal(err)
		}
		err := call(b, nil)
		if !errors.Is(err, breaker.ErrOpen) || err.Error() != "breaker: forced open" {
			t.Fatalf("forced open: %v", err)
		}
		time.Sleep(time.Hour)
		if got := b.State(); got != breaker.ForcedOpen {
			t.Fatalf("time moved a forced-open breaker: %v", got)
		}
		if err := b.ForceClosed(ctx); err != nil {
			t.Fatal(err)
		}
		for range 10 {
			if err := call(b, errBoom); err != errBoom {
				t.Fatalf("forced closed rejected: %v", err)
			}
		}
		if got := b.State(); got != breaker.ForcedClosed {
			t.Fatalf("failures moved a forced-closed breaker: %v", got)
		}
		if err := b.Reset(ctx); err != nil {
			t.Fatal(err)
		}
		call(b, errBoom)
		want := []change{
			{From: "closed", To: "forced-open"},
			{From: "forced-open", To: "forced-closed"},
			{From: "forced-closed", To: "closed", Failures: 10},
			{From: "closed", To: "open", Failures: 1, Err: errBoom},
		}
		if diff := cmp.Diff(want, rec.changes(), equateErrors); diff != "" {
			t.Errorf("state changes (-want +got):\n%s", diff)
		}
		// An ended context changes nothing.
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		for name, op := range map[string]func(context.Context) error{"ForceOpen": b.ForceOpen, "ForceClosed": b.ForceClosed, "Reset": b.Reset} {
			if err := op(cctx); err != context.Canceled {
				t.Errorf("%s with an ended context: %v, want context.Canceled", name, err)
			}
		}
		if got := b.State(); got != breaker.Open {
			t.Errorf("after operations with an ended context: %v, want open", got)
		}
	})
}

func TestMiddlewarePanicIsAFailure(t *testing.T) {
	t.Run("recovered", func(t *testing.T) {
		b := mustNew(t, breaker.Config{Threshold: 1})
		s := middleware.Apply(func(context.Context, int) (int, error) { panic("bad") },
			middleware.Recover[int, int](), breaker.Middleware[int, int](b))
		_, err := s(context.Background(), 0)
		var pe *middleware.PanicError
		if !errors.As(err, &pe) {
			t.Fatalf("err = %v, want a PanicError", err)
		}
		if got := b.State(); got != breaker.Open {
			t.Fatalf("State after a panic = %v, want open", got)
		}
	})
	t.Run("probe", func(t *testing.T) {
		// The panic goes on, and the probe's slot is not lost: the
		// breaker reopens.
		synctest.Test(t, func(t *testing.T) {
			var rec recorder
			b := mustNew(t, breaker.Config{Threshold: 1, OpenTimeout: time.Second, Observer: &rec})
			call(b, errBoom)
			time.Sleep(time.Second)
			s := middleware.Apply(func(context.Context, int) (int, error) { panic("bad") }, breaker.Middleware[int, int](b))
			func() {
				defer func() {
					if v := recover(); v != "bad" {
						t.Errorf("recovered %v, want the stage's panic", v)
					}
				}()
				s(context.Background(), 0)
			}()
			if got := b.State(); got != breaker.Open {
				t.Fatalf("State after a panicking probe = %v, want open", got)
			}
			ch := rec.changes()
			if last := ch[len(ch)-1]; last.From != "half-open" || last.To != "open" || last.Err == nil || last.Failures != 1 {
				t.Errorf("last change %+v, want half-open → open with an error and 1 failure", last)
			}
		})
	})
}

func TestNilBreakerPanics(t *testing.T) {
	defer func() {
		if diff := cmp.Diff("breaker: nil *Breaker (was New's error ignored?)", recover()); diff != "" {
			t.Errorf("panic (-want +got):\n%s", diff)
		}
	}()
	breaker.Middleware[int, int](nil)
	t.Fatal("Middleware(nil) did not panic")
}

func TestZeroAndFinishedPermits(t *testing.T) {
	b := mustNew(t, breaker.Config{Threshold: 1})
	var zero breaker.Permit
	zero.Done(errBoom)
	if got := b.State(); got != breaker.Closed {
		t.Fatalf("zero permit changed the state: %v", got)
	}
	b = mustNew(t, breaker.Config{Threshold: 2})
	p, err := b.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p.Done(errBoom)
	p.Done(errBoom) // finished: nothing
	if got := counts(b).ConsecutiveFailures; got != 1 {
		t.Fatalf("a Permit finished twice counted %d failures, want 1", got)
	}
}

// TestEndedContext: a call whose context has ended gets ctx.Err(), runs
// nothing and takes nothing, not even a probe slot (issue 14 item 9).
func TestEndedContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := mustNew(t, breaker.Config{Threshold: 1, OpenTimeout: time.Second})
		call(b, errBoom)
		time.Sleep(time.Second) // half-open: one probe slot
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := b.Acquire(ctx); err != context.Canceled {
			t.Fatalf("Acquire with an ended context: %v, want context.Canceled", err)
		}
		called := false
		s := middleware.Apply(func(context.Context, int) (int, error) { called = true; return 0, nil }, breaker.Middleware[int, int](b))
		if _, err := s(ctx, 0); err != context.Canceled || called {
			t.Fatalf("stage with an ended context: %v, called %v", err, called)
		}
		if _, err := b.Acquire(context.Background()); err != nil {
			t.Fatalf("the probe slot was taken by an ended context: %v", err)
		}
		if got := b.Stats().Rejected; got != 0 {
			t.Errorf("Rejected = %d, want 0: an ended context is not a rejection", got)
		}
	})
}

// TestStateIsPure: State and Stats move nothing and tell no observer. An
// open breaker whose time is up reports half-open; the change itself is
// made, and observed, by the next call.
func TestStateIsPure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec recorder
		b := mustNew(t, breaker.Config{Threshold: 1, OpenTimeout: time.Second, Observer: &rec})
		call(b, errBoom)
		time.Sleep(time.Second)
		for range 3 {
			if got := b.State(); got != breaker.HalfOpen {
				t.Fatalf("State = %v, want half-open", got)
			}
			if got := b.Stats(); got.State != breaker.HalfOpen || got.Transitions != 1 {
				t.Fatalf("Stats = %+v, want half-open after 1 transition", got)
			}
		}
		if n := len(rec.changes()); n != 1 {
			t.Fatalf("%d changes observed, want 1 (State must not fire events)", n)
		}
		call(b, nil)
		want := []change{{From: "closed", To: "open", Failures: 1, Err: errBoom}, {From: "open", To: "half-open"}, {From: "half-open", To: "closed"}}
		if diff := cmp.Diff(want, rec.changes(), equateErrors); diff != "" {
			t.Errorf("state changes (-want +got):\n%s", diff)
		}
	})
}

// TestHugeOpenDelay: an OpenDelay of the largest Duration keeps the
// breaker open (it used to wrap into the past and admit at once), and the
// rejection's retry-after is huge (issue 14 item 5).
func TestHugeOpenDelay(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("shared=%v", shared), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var rec recorder
				cfg := breaker.Config{Threshold: 1, Observer: &rec, OpenDelay: func(error) time.Duration { return math.MaxInt64 }}
				if shared {
					cfg.Store = breaker.NewMemoryStore()
				}
				b := mustNew(t, cfg)
				time.Sleep(time.Second) // now > 0 on the breaker's clock: now + MaxInt64 wraps
				call(b, errBoom)
				time.Sleep(24 * time.Hour)
				err := call(b, nil)
				oe := asOpen(err)
				if oe == nil || oe.State != breaker.Open {
					t.Fatalf("a day later: %v, want open", err)
				}
				if ra := oe.RetryAfter(); ra < 100*365*24*time.Hour {
					t.Errorf("RetryAfter = %v, want more than 100 years", ra)
				}
				if got := b.State(); got != breaker.Open {
					t.Errorf("State = %v, want open", got)
				}
				rej := rec.events(middleware.Rejected)
				if len(rej) == 0 || rej[len(rej)-1].Delay < 100*365*24*time.Hour {
					t.Errorf("Rejected events %+v, want a Delay of more than 100 years", rej)
				}
			})
		})
	}
}

// TestPanickingCallbacks: a classifier or OpenDelay that panics runs
// outside the lock; its panic reaches the caller of Done (or of the
// stage), the result is recorded as a failure, no probe slot is lost, and
// the breaker goes on working (issue 14 item 1).
func TestPanickingCallbacks(t *testing.T) {
	type panicky struct{ error }
	for _, tc := range []struct {
		name string
		cfg  breaker.Config
	}{
		{"Classify", breaker.Config{Classify: func(err error) breaker.Outcome {
			if errors.As(err, new(panicky)) {
				panic("classify")
			}
			return breaker.DefaultClassify(err)
		}}},
		{"OpenDelay", breaker.Config{OpenDelay: func(err error) time.Duration {
			if errors.As(err, new(panicky)) {
				panic("open delay")
			}
			return 0
		}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := tc.cfg
				cfg.Threshold, cfg.OpenTimeout = 2, time.Second
				b := mustNew(t, cfg)
				s := middleware.Apply(func(_ context.Context, err error) (int, error) { return 0, err }, breaker.Middleware[error, int](b))
				mustPanic := func(f func()) {
					t.Helper()
					defer func() {
						if recover() == nil {
							t.Fatal("the callback's panic did not reach the caller")
						}
					}()
					f()
				}
				ctx := context.Background()
				mustPanic(func() { s(ctx, panicky{errBoom}) })
				if got := counts(b).ConsecutiveFailures; got != 1 {
					t.Fatalf("after a panicking callback: %d consecutive failures, want 1", got)
				}
				mustPanic(func() {
					p, err := b.Acquire(ctx)
					if err != nil {
						t.Fatal(err)
					}
					p.Done(panicky{errBoom})
				})
				if got := b.State(); got != breaker.Open {
					t.Fatalf("after two failures: %v, want open", got)
				}
				// The probe's callback panics: its slot is not lost, the
				// failure reopens the breaker, which then recovers.
				time.Sleep(time.Second)
				mustPanic(func() { s(ctx, panicky{errBoom}) })
				if got := b.State(); got != breaker.Open {
					t.Fatalf("after a probe whose callback panicked: %v, want open", got)
				}
				time.Sleep(time.Second)
				if _, err := s(ctx, nil); err != nil {
					t.Fatalf("probe: %v", err)
				}
				if got := b.State(); got != breaker.Closed {
					t.Fatalf("after a good probe: %v, want closed", got)
				}
				if got := b.Stats().Transitions; got != 5 {
					t.Errorf("Transitions = %d, want 5", got)
				}
			})
		})
	}
}

// TestPanickingObserver: an observer that panics on every event loses the
// events, never the breaker's state or counts.
func TestPanickingObserver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		obs := middleware.ObserverFunc(func(context.Context, middleware.Event) { panic("observer") })
		b := mustNew(t, breaker.Config{Threshold: 2, OpenTimeout: time.Second, Observer: obs})
		call(b, errBoom)
		call(b, errBoom)
		if err := call(b, nil); !errors.Is(err, breaker.ErrOpen) {
			t.Fatalf("after two failures: %v, want ErrOpen", err)
		}
		time.Sleep(time.Second)
		if err := call(b, nil); err != nil {
			t.Fatalf("probe: %v", err)
		}
		want := breaker.Stats{State: breaker.Closed, Transitions: 3, Rejected: 1}
		if diff := cmp.Diff(want, b.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
}

func TestStateStrings(t *testing.T) {
	var got []string
	for s := breaker.Closed; s <= breaker.ForcedClosed+1; s++ {
		got = append(got, s.String())
	}
	for o := breaker.Success; o <= breaker.Ignore+1; o++ {
		got = append(got, o.String())
	}
	want := strings.Fields("closed open half-open forced-open forced-closed invalid success failure ignore invalid")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestOpenErrorIsNotRetryable(t *testing.T) {
	b := mustNew(t, breaker.Config{Threshold: 1})
	call(b, errBoom)
	err := fmt.Errorf("wrapped: %w", call(b, nil))
	var r interface {
		error
		Retryable() bool
		Rejected() bool
	}
	if !errors.As(err, &r) || r.Retryable() || !r.Rejected() {
		t.Fatalf("rejection %v: want Retryable false and Rejected true", err)
	}
}

// rejection is an error that says through Rejected whether the downstream
// was never called.
type rejection bool

func (r rejection) Error() string  { return fmt.Sprintf("rejection(%t)", bool(r)) }
func (r rejection) Rejected() bool { return bool(r) }

// The open rejection reads no clock until a timer armed at the move to
// open fires ahead of the open time (issue 20); the move to half-open must
// stay exact at the open time, through Middleware and through Acquire,
// for open times shorter and longer than the timer's lead, and also after
// the breaker reopens before an earlier timer has fired.
func TestOpenToHalfOpenExact(t *testing.T) {
	for _, openFor := range []time.Duration{1, 2, 3, time.Millisecond, 3 * time.Millisecond, 2 * time.Second, time.Minute, 24 * time.Hour} {
		for _, via := range []string{"Middleware", "Acquire"} {
			t.Run(fmt.Sprint(openFor, "/", via), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					b := mustNew(t, breaker.Config{Threshold: 1, OpenTimeout: openFor})
					calls := 0
					guarded := middleware.Apply(func(_ context.Context, fail bool) (int, error) {
						calls++
						if fail {
							return 0, errBoom
						}
						return 1, nil
					}, breaker.Middleware[bool, int](b))
					try := func(fail bool) error {
						if via == "Middleware" {
							_, err := guarded(context.Background(), fail)
							return err
						}
						var res error
						if fail {
							res = errBoom
						}
						return call(b, res)
					}
					for round := range 3 {
						if err := try(true); err != errBoom {
							t.Fatalf("round %d: tripping call: %v", round, err)
						}
						for _, wait := range []time.Duration{0, openFor / 2, openFor - openFor/2 - time.Nanosecond} {
							time.Sleep(wait)
							if err := try(false); !errors.Is(err, breaker.ErrOpen) {
								t.Fatalf("round %d: %v before the open time: %v, want ErrOpen", round, wait, err)
							}
						}
						time.Sleep(time.Nanosecond)
						if round == 1 {
							// Reopen through a failed probe: the first
							// timer of this round has fired, the next
							// one must be armed afresh.
							if err := try(true); err != errBoom {
								t.Fatalf("round %d: failing probe: %v", round, err)
							}
							time.Sleep(openFor - time.Nanosecond)
							if err := try(false); !errors.Is(err, breaker.ErrOpen) {
								t.Fatalf("round %d: after the failed probe: %v, want ErrOpen", round, err)
							}
							time.Sleep(time.Nanosecond)
						}
						if err := try(false); err != nil {
							t.Fatalf("round %d: probe at the open time: %v, want admitted", round, err)
						}
						if got := b.State(); got != breaker.Closed {
							t.Fatalf("round %d: after a good probe: %v, want closed", round, got)
						}
					}
					if got, want := b.Stats().Rejected, uint64(3*3+1); got != want {
						t.Errorf("Stats().Rejected = %d, want %d", got, want)
					}
				})
			})
		}
	}
}

// In rate mode a success finds its bucket without a clock read while a
// timer vouches for the current bucket (issue 20); a success must still
// be counted in the bucket of its time at the edges of the buckets, for
// buckets shorter and longer than the timer's lead.
func TestRateModeBucketEdges(t *testing.T) {
	for _, width := range []time.Duration{time.Millisecond, 20 * time.Millisecond, time.Second} {
		t.Run(width.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := mustNew(t, breaker.Config{FailureRate: 0.5, Window: 10 * width, Buckets: 10, MinCalls: 1000})
				guarded := middleware.Apply(ok, breaker.Middleware[int, int](b))
				for range 3 {
					guarded(context.Background(), 0) // bucket 0, from its start
				}
				time.Sleep(width / 2)
				guarded(context.Background(), 0) // bucket 0
				time.Sleep(width/2 - time.Nanosecond)
				guarded(context.Background(), 0) // bucket 0, at its last nanosecond
				time.Sleep(time.Nanosecond)
				guarded(context.Background(), 0) // bucket 1, at its first
				call(b, nil)                     // bucket 1, through Acquire
				if got := counts(b).Successes; got != 7 {
					t.Fatalf("Successes in the window = %d, want 7", got)
				}
				time.Sleep(9*width - time.Nanosecond) // the last nanosecond of bucket 9
				if got := counts(b).Successes; got != 7 {
					t.Fatalf("Successes at the end of the window = %d, want 7", got)
				}
				time.Sleep(time.Nanosecond) // bucket 0 leaves the window
				if got := counts(b).Successes; got != 2 {
					t.Fatalf("Successes after bucket 0 left = %d, want 2", got)
				}
				time.Sleep(width) // bucket 1 leaves the window
				if got := counts(b).Successes; got != 0 {
					t.Fatalf("Successes after bucket 1 left = %d, want 0", got)
				}
			})
		})
	}
}

// Rate-mode successes are counted lock-free in stripes, one per group of
// goroutines (issue 20): the counts must stay exact with many goroutines
// adding at once, and a bucket reused for a later time must start from
// zero in every stripe.
func TestRateModeStripedCountsExact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const width = time.Second
		b := mustNew(t, breaker.Config{FailureRate: 0.5, Window: 10 * width, Buckets: 10, MinCalls: 1 << 30})
		guarded := middleware.Apply(ok, breaker.Middleware[int, int](b))
		const goroutines, calls = 64, 100
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Go(func() {
				for i := range calls {
					if g%2 == 0 {
						guarded(context.Background(), i)
					} else {
						call(b, nil) // through Acquire and Done
					}
				}
			})
		}
		wg.Wait()
		if got := counts(b).Successes; got != goroutines*calls {
			t.Fatalf("Successes = %d, want %d", got, goroutines*calls)
		}
		// Bucket 0's index is reused by bucket 10: it must not carry the
		// counts of bucket 0 in any stripe.
		time.Sleep(10 * width)
		for g := range goroutines {
			wg.Go(func() { guarded(context.Background(), g) })
		}
		wg.Wait()
		if got := counts(b).Successes; got != goroutines {
			t.Fatalf("Successes in the reused bucket = %d, want %d", got, goroutines)
		}
		// A failure is judged against the striped successes: 1 failure in
		// 65 results is far below the rate.
		call(b, errBoom)
		if diff := cmp.Diff(breaker.Counts{Successes: goroutines, Failures: 1}, counts(b)); diff != "" {
			t.Errorf("counts (-want +got):\n%s", diff)
		}
	})
}
