package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/breaker"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var errBoom = errors.New("boom")

type change struct {
	From, To breaker.State
	Counts   breaker.Counts
}

// recorder collects state changes in the order the hook saw them.
type recorder struct {
	mu  sync.Mutex
	got []change
}

func (r *recorder) hook(from, to breaker.State, c breaker.Counts) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, change{from, to, c})
}

func (r *recorder) changes() []change {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]change(nil), r.got...)
}

func mustNew(t *testing.T, cfg breaker.Config) *breaker.Breaker {
	t.Helper()
	b, err := breaker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// call runs one call through b with the given result.
func call(b *breaker.Breaker, err error) error {
	ctx := context.Background()
	tk, aerr := b.Allow(ctx)
	if aerr != nil {
		return aerr
	}
	b.Done(ctx, tk, err)
	return err
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
		b := mustNew(t, breaker.Config{Name: "payments", Threshold: 3, OpenTimeout: 10 * time.Second, OnStateChange: rec.hook})

		// A success resets the consecutive count.
		call(b, errBoom)
		call(b, errBoom)
		call(b, nil)
		if got := b.Counts().ConsecutiveFailures; got != 0 {
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
		want := []change{
			{breaker.Closed, breaker.Open, breaker.Counts{Successes: 1, Failures: 5, ConsecutiveFailures: 3}},
			{breaker.Open, breaker.HalfOpen, breaker.Counts{}},
			{breaker.HalfOpen, breaker.Open, breaker.Counts{Probes: 1}},
			{breaker.Open, breaker.HalfOpen, breaker.Counts{}},
			{breaker.HalfOpen, breaker.Closed, breaker.Counts{Probes: 1, ProbeSuccesses: 1}},
		}
		if diff := cmp.Diff(want, rec.changes()); diff != "" {
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
		if diff := cmp.Diff(breaker.Counts{}, b.Counts()); diff != "" {
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
		b := mustNew(t, breaker.Config{FailureRate: 0.5, Window: 10 * time.Second, Buckets: 10, MinCalls: 4, OnStateChange: rec.hook})
		// Three failures: 100% but fewer than MinCalls.
		for range 3 {
			call(b, errBoom)
		}
		if got := b.State(); got != breaker.Closed {
			t.Fatalf("below MinCalls: %v", got)
		}
		// The failures roll out of the window one bucket at a time.
		time.Sleep(10 * time.Second)
		if diff := cmp.Diff(breaker.Counts{ConsecutiveFailures: 0}, b.Counts()); diff != "" {
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
			t.Fatalf("at 3/4 failures: %v, counts %+v", got, b.Counts())
		}
		want := []change{{breaker.Closed, breaker.Open, breaker.Counts{Successes: 1, Failures: 3}}}
		if diff := cmp.Diff(want, rec.changes()); diff != "" {
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
			t.Fatalf("after 1 slow of 2 calls: %v, counts %+v", got, b.Counts())
		}
	})
}

func TestHalfOpenProbes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := mustNew(t, breaker.Config{Threshold: 1, OpenTimeout: time.Second, HalfOpenProbes: 3, SuccessThreshold: 2})
		ctx := context.Background()
		call(b, errBoom)
		time.Sleep(time.Second)
		var tk [3]breaker.Ticket
		for i := range tk {
			var err error
			if tk[i], err = b.Allow(ctx); err != nil {
				t.Fatalf("probe %d: %v", i, err)
			}
		}
		_, err := b.Allow(ctx)
		var oe *breaker.OpenError
		if !errors.As(err, &oe) || oe.State != breaker.HalfOpen || oe.RetryAfter() != 0 {
			t.Fatalf("fourth call: %v, want a half-open OpenError", err)
		}
		// A cancelled probe gives its slot back.
		b.Done(ctx, tk[0], context.Canceled)
		if tk[0], err = b.Allow(ctx); err != nil {
			t.Fatalf("slot not given back: %v", err)
		}
		b.Done(ctx, tk[0], nil)
		if got := b.State(); got != breaker.HalfOpen {
			t.Fatalf("after 1 of 2 successes: %v", got)
		}
		b.Done(ctx, tk[1], nil)
		if got := b.State(); got != breaker.Closed {
			t.Fatalf("after 2 successes: %v", got)
		}
		// The third probe's failure belongs to the half-open generation.
		b.Done(ctx, tk[2], errBoom)
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
			early, _ := b.Allow(ctx) // admitted while closed, generation 1
			early2, _ := b.Allow(ctx)
			call(b, errBoom)
			call(b, errBoom)
			if got := b.State(); got != breaker.Open {
				t.Fatalf("%+v: %v, want open", mode, got)
			}
			// A failure from before the opening does not extend it.
			b.Done(ctx, early, errBoom)
			if got := b.State(); got != breaker.Open {
				t.Fatalf("%v", got)
			}
			time.Sleep(time.Second)
			call(b, nil) // probe: closed again
			// A success from the first closed period does not count in the new one.
			b.Done(ctx, early2, nil)
			if diff := cmp.Diff(breaker.Counts{}, b.Counts()); diff != "" {
				t.Errorf("%+v: late result counted (-want +got):\n%s", mode, diff)
			}
		}
	})
}

func TestOpenDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		type hintErr struct{ error }
		b := mustNew(t, breaker.Config{Threshold: 1, OpenDelay: func(err error) time.Duration {
			if _, ok := errors.AsType[hintErr](err); ok {
				return time.Minute
			}
			return 0
		}})
		call(b, hintErr{errBoom})
		err := call(b, nil)
		oe, ok := errors.AsType[*breaker.OpenError](err)
		if !ok || oe.RetryAfter() != time.Minute {
			t.Fatalf("got %v; want RetryAfter 1m", err)
		}
		time.Sleep(time.Minute)
		call(b, errBoom) // probe fails without a hint: the default 30s
		oe, _ = errors.AsType[*breaker.OpenError](call(b, nil))
		if oe == nil || oe.RetryAfter() != 30*time.Second {
			t.Fatalf("got %v; want RetryAfter 30s", oe)
		}
	})
}

func TestManualControl(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec recorder
		b := mustNew(t, breaker.Config{Threshold: 1, OnStateChange: rec.hook})
		b.ForceOpen()
		err := call(b, nil)
		if !errors.Is(err, breaker.ErrOpen) || err.Error() != "breaker: forced open" {
			t.Fatalf("forced open: %v", err)
		}
		time.Sleep(time.Hour)
		if got := b.State(); got != breaker.ForcedOpen {
			t.Fatalf("time moved a forced-open breaker: %v", got)
		}
		b.ForceClosed()
		for range 10 {
			if err := call(b, errBoom); err != errBoom {
				t.Fatalf("forced closed rejected: %v", err)
			}
		}
		if got := b.State(); got != breaker.ForcedClosed {
			t.Fatalf("failures moved a forced-closed breaker: %v", got)
		}
		b.Reset()
		call(b, errBoom)
		want := []change{
			{breaker.Closed, breaker.ForcedOpen, breaker.Counts{}},
			{breaker.ForcedOpen, breaker.ForcedClosed, breaker.Counts{}},
			{breaker.ForcedClosed, breaker.Closed, breaker.Counts{Failures: 10}},
			{breaker.Closed, breaker.Open, breaker.Counts{Failures: 1, ConsecutiveFailures: 1}},
		}
		if diff := cmp.Diff(want, rec.changes()); diff != "" {
			t.Errorf("state changes (-want +got):\n%s", diff)
		}
	})
}

func TestMiddlewarePanicIsAFailure(t *testing.T) {
	b := mustNew(t, breaker.Config{Threshold: 1})
	s := middleware.Apply(func(context.Context, int) (int, error) { panic("bad") },
		middleware.Recover[int, int](), breaker.Middleware[int, int](b))
	_, err := s(context.Background(), 0)
	if _, ok := errors.AsType[*middleware.PanicError](err); !ok {
		t.Fatalf("err = %v, want a PanicError", err)
	}
	if got := b.State(); got != breaker.Open {
		t.Fatalf("State after a panic = %v, want open", got)
	}
}

func TestZeroTicketIsIgnored(t *testing.T) {
	b := mustNew(t, breaker.Config{Threshold: 1})
	b.Done(context.Background(), breaker.Ticket{}, errBoom)
	if got := b.State(); got != breaker.Closed {
		t.Fatalf("zero ticket changed the state: %v", got)
	}
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
	r, ok := errors.AsType[interface {
		error
		Retryable() bool
	}](err)
	if !ok || r.Retryable() {
		t.Fatalf("rejection %v: Retryable method found %v, want one reporting false", err, ok)
	}
}

// rejection is an error that says through Rejected whether the downstream
// was never called.
type rejection bool

func (r rejection) Error() string  { return fmt.Sprintf("rejection(%t)", bool(r)) }
func (r rejection) Rejected() bool { return bool(r) }
