package throttle_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/bracetest"
	"github.com/brace-go/brace/middleware/priority"
	"github.com/brace-go/brace/middleware/throttle"
)

func mustNew(t testing.TB, cfg throttle.Config) *throttle.Throttler {
	t.Helper()
	th, err := throttle.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return th
}

// feed finishes n admitted calls with err; it fails the test if one is
// rejected.
func feed(t testing.TB, ctx context.Context, th *throttle.Throttler, n int, err error) {
	t.Helper()
	for range n {
		p, aerr := th.Acquire(ctx)
		if aerr != nil {
			t.Fatalf("Acquire: %v", aerr)
		}
		p.Done(err)
	}
}

func TestNewErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  throttle.Config
		want string // the start of the error text
	}{
		{"K negative", throttle.Config{K: -1}, "throttle: K must be"},
		{"K below 1", throttle.Config{K: 0.5}, "throttle: K must be"},
		{"K NaN", throttle.Config{K: math.NaN()}, "throttle: K must be"},
		{"K Inf", throttle.Config{K: math.Inf(1)}, "throttle: K must be"},
		{"Window negative", throttle.Config{Window: -time.Second}, "throttle: Window must be positive"},
		{"Buckets negative", throttle.Config{Buckets: -1}, "throttle: Buckets must be"},
		{"Buckets too many", throttle.Config{Buckets: 1001}, "throttle: Buckets must be"},
		{"Window shorter than Buckets ns", throttle.Config{Window: 5, Buckets: 10}, "throttle: Window (5ns) must be"},
		{"MinRequests negative", throttle.Config{MinRequests: -1}, "throttle: MinRequests must not be negative"},
		{"MaxProbability negative", throttle.Config{MaxProbability: -0.1}, "throttle: MaxProbability must be in (0, 1]"},
		{"MaxProbability above 1", throttle.Config{MaxProbability: 1.5}, "throttle: MaxProbability must be in (0, 1]"},
		{"MaxProbability NaN", throttle.Config{MaxProbability: math.NaN()}, "throttle: MaxProbability must be in (0, 1]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			th, err := throttle.New(c.cfg)
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Fatalf("New(%+v) = %v, %v; want an error starting %q", c.cfg, th, err, c.want)
			}
			if th != nil {
				t.Errorf("New returned a throttler with its error")
			}
		})
	}
}

func TestNewValid(t *testing.T) {
	for _, cfg := range []throttle.Config{
		{},
		{K: 1},
		{MaxProbability: 1},
		{Window: 10, Buckets: 10},
		{Buckets: 1000},
		{Priorities: true},
		{MinRequests: 1},
	} {
		if _, err := throttle.New(cfg); err != nil {
			t.Errorf("New(%+v): %v", cfg, err)
		}
	}
}

// attempt makes n calls that end with err, rejected or not.
func attempt(ctx context.Context, th *throttle.Throttler, n int, err error) {
	for range n {
		if p, aerr := th.Acquire(ctx); aerr == nil {
			p.Done(err)
		}
	}
}

// TestFormula drives known counts and checks the SRE book's probability,
// its cap and MinRequests.
func TestFormula(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		th := mustNew(t, throttle.Config{MinRequests: 100, MaxProbability: 1, Seed: 1})
		feed(t, ctx, th, 60, errUnavailable)
		feed(t, ctx, th, 39, nil)
		// 99 requests: below MinRequests, nothing is rejected.
		if got := th.Stats(); got.Probability != 0 || got.Requests != 99 || got.Accepts != 39 {
			t.Fatalf("below MinRequests: Stats = %+v", got)
		}
		feed(t, ctx, th, 1, nil)
		want := (100 - 2*40) / 101.0
		got := th.Stats()
		if diff := cmp.Diff(throttle.Stats{Requests: 100, Accepts: 40, Probability: want, State: throttle.StateThrottling}, got); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
		if p := th.Probability(priority.Sheddable); p != want {
			t.Errorf("Probability without priorities = %v, want %v for every level", p, want)
		}

		// The cap.
		th = mustNew(t, throttle.Config{MinRequests: 100, MaxProbability: 0.5, Seed: 1})
		feed(t, ctx, th, 100, errUnavailable)
		if p := th.Stats().Probability; p != 0.5 {
			t.Errorf("capped probability = %v, want 0.5", p)
		}

		// The window: after Window everything has fallen out.
		time.Sleep(10 * time.Second)
		if s := th.Stats(); s.Requests != 0 || s.Probability != 0 {
			t.Errorf("after a window: Stats = %+v", s)
		}
	})
}

// TestBucketsFallOutOneAtATime: counts leave the window bucket by bucket.
func TestBucketsFallOutOneAtATime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		th := mustNew(t, throttle.Config{Window: 10 * time.Second, Buckets: 10, Seed: 1})
		for range 10 {
			feed(t, ctx, th, 1, nil)
			time.Sleep(time.Second)
		}
		var got []int64
		for range 11 {
			got = append(got, th.Stats().Requests)
			time.Sleep(time.Second)
		}
		want := []int64{9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("requests in the window, second by second (-want +got):\n%s", diff)
		}
	})
}

func TestPriorityProbabilities(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		th := mustNew(t, throttle.Config{Priorities: true, MinRequests: 100, MaxProbability: 1, Seed: 1})
		sctx := priority.With(ctx, priority.Sheddable)
		cctx := priority.With(ctx, priority.Critical)
		// 100 requests (10 sheddable, 50 default, 40 critical), 40
		// accepts: p = (100 − 2·40)/101, so about 19.8 of the 100
		// requests should be rejected. Sheddable calls bear 10 of them
		// (all), default calls the remaining 9.8 of their 50, critical
		// calls none.
		feed(t, sctx, th, 10, errUnavailable)
		feed(t, ctx, th, 30, errUnavailable)
		feed(t, ctx, th, 20, nil)
		feed(t, cctx, th, 20, errUnavailable)
		feed(t, cctx, th, 20, nil)
		p := 20 / 101.0
		got := map[priority.Level]float64{}
		for _, l := range []priority.Level{priority.Critical, priority.Default, priority.Sheddable} {
			got[l] = th.Probability(l)
		}
		want := map[priority.Level]float64{
			priority.Critical:  0,
			priority.Default:   (p*100 - 10) / 50,
			priority.Sheddable: 1,
		}
		if diff := cmp.Diff(want, got, cmpFloat); diff != "" {
			t.Errorf("probabilities by level (-want +got):\n%s", diff)
		}
		if s := th.Stats(); s.Probability != p {
			t.Errorf("Stats.Probability = %v, want %v for all calls together", s.Probability, p)
		}
		// A critical call is never rejected at probability 0, a
		// sheddable one always at 1.
		for range 1000 {
			if _, err := th.Acquire(cctx); err != nil {
				t.Fatalf("critical call rejected at probability 0: %v", err)
			}
		}
		for range 100 {
			if _, err := th.Acquire(sctx); err == nil {
				t.Fatalf("sheddable call admitted at probability 1")
			}
		}
	})
}

// TestPriorityEmptyLevel: a level with no requests in the window is
// rejected when the rejections reach it, before any higher level.
func TestPriorityEmptyLevel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		th := mustNew(t, throttle.Config{Priorities: true, MinRequests: 10, Seed: 1})
		feed(t, ctx, th, 10, errUnavailable) // default only: p = 10/11
		got := [3]float64{th.Probability(priority.Sheddable), th.Probability(priority.Default), th.Probability(priority.Critical)}
		want := [3]float64{1, 0.9, 0}
		if diff := cmp.Diff(want, got, cmpFloat); diff != "" {
			t.Errorf("probabilities sheddable, default, critical (-want +got):\n%s", diff)
		}
	})
}

var cmpFloat = cmp.Comparer(func(a, b float64) bool { return math.Abs(a-b) < 1e-12 })

func TestNotCounted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		th := mustNew(t, throttle.Config{Seed: 1})
		inner := mustNew(t, throttle.Config{})
		innerErr := fmt.Errorf("wrapped: %w", &throttle.RejectedError{})
		_ = inner
		for _, err := range []error{
			innerErr,
			context.Canceled,
			fmt.Errorf("call: %w", context.Canceled),
			errors.Join(errors.New("x"), rejectedErr{}),
		} {
			feed(t, ctx, th, 5, err)
		}
		// An abandoned permit counts for nothing either.
		if _, err := th.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		if s := th.Stats(); s.Requests != 0 || s.Accepts != 0 {
			t.Errorf("local rejections and cancellations were counted: %+v", s)
		}
	})
}

type rejectedErr struct{}

func (rejectedErr) Error() string  { return "rejected elsewhere" }
func (rejectedErr) Rejected() bool { return true }

type retryableErr bool

func (r retryableErr) Error() string   { return fmt.Sprintf("retryable %v", bool(r)) }
func (r retryableErr) Retryable() bool { return bool(r) }

func TestDefaultAccepted(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{nil, true},
		{retryableErr(false), true},
		{fmt.Errorf("wrapped: %w", retryableErr(false)), true},
		{errors.Join(errors.New("plain"), retryableErr(false)), true},
		{retryableErr(true), false},
		{errors.New("connection refused"), false},
		{context.DeadlineExceeded, false},
		{fmt.Errorf("%w: %w", context.DeadlineExceeded, retryableErr(false)), false},
	} {
		if got := throttle.DefaultAccepted(c.err); got != c.want {
			t.Errorf("DefaultAccepted(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestAcceptedCallback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		var calls atomic.Int32
		th := mustNew(t, throttle.Config{Seed: 1, Accepted: func(err error) bool {
			calls.Add(1)
			if err.Error() == "boom" {
				panic("accepted panicked")
			}
			return err.Error() == "fine"
		}})
		feed(t, ctx, th, 1, nil)                   // not given to Accepted
		feed(t, ctx, th, 1, errors.New("fine"))    // accepted
		feed(t, ctx, th, 1, errors.New("refused")) // not
		feed(t, ctx, th, 1, context.Canceled)      // not given to Accepted
		p, err := th.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		func() {
			defer func() {
				if v := recover(); v != "accepted panicked" {
					t.Errorf("recovered %v, want the callback's panic", v)
				}
			}()
			p.Done(errors.New("boom"))
		}()
		if p != (throttle.Permit{}) {
			t.Errorf("the permit was not finished by a panicking Done")
		}
		p.Done(errors.New("fine")) // finished: a no-op
		if got := calls.Load(); got != 3 {
			t.Errorf("Accepted called %d times, want 3", got)
		}
		if s := th.Stats(); s.Requests != 3 || s.Accepts != 2 {
			t.Errorf("Stats = %+v, want 3 requests and 2 accepts", s)
		}
		// The middleware: the panic reaches the caller, nothing is counted.
		stage := middleware.Apply(func(context.Context, int) (int, error) { return 0, errors.New("boom") },
			throttle.Middleware[int, int](th))
		func() {
			defer func() { recover() }()
			stage(ctx, 0)
		}()
		if s := th.Stats(); s.Requests != 3 {
			t.Errorf("after a panicking Accepted in the middleware: Stats = %+v", s)
		}
	})
}

func TestStagePanicCountsNothing(t *testing.T) {
	th := mustNew(t, throttle.Config{Window: time.Hour})
	stage := middleware.Apply(func(context.Context, int) (int, error) { panic("stage") },
		throttle.Middleware[int, int](th))
	func() {
		defer func() {
			if v := recover(); v != "stage" {
				t.Errorf("recovered %v", v)
			}
		}()
		stage(context.Background(), 0)
	}()
	if s := th.Stats(); s.Requests != 0 {
		t.Errorf("a panicking stage was counted: %+v", s)
	}
}

func TestEndedContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		th := mustNew(t, throttle.Config{Seed: 1, MinRequests: 1})
		ctx := context.Background()
		attempt(ctx, th, 20, errUnavailable) // probability 0.9
		before := th.Stats()
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		ran := false
		stage := middleware.Apply(func(context.Context, int) (int, error) { ran = true; return 0, nil },
			throttle.Middleware[int, int](th))
		for range 100 {
			if _, err := th.Acquire(cctx); err != context.Canceled {
				t.Fatalf("Acquire(ended ctx) = %v, want context.Canceled", err)
			}
			if _, err := stage(cctx, 0); err != context.Canceled {
				t.Fatalf("stage(ended ctx) = %v, want context.Canceled", err)
			}
		}
		if ran {
			t.Error("the stage ran for an ended context")
		}
		if diff := cmp.Diff(before, th.Stats()); diff != "" {
			t.Errorf("an ended context changed the stats (-before +after):\n%s", diff)
		}
	})
}

func TestNilPanics(t *testing.T) {
	for name, f := range map[string]func(){
		"nil throttler": func() { throttle.Middleware[int, int](nil) },
		"nil stage":     func() { throttle.Middleware[int, int](mustNew(t, throttle.Config{}))(nil) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				v := recover()
				s, _ := v.(string)
				if !strings.HasPrefix(s, "throttle: nil") {
					t.Errorf("panic %v, want one starting \"throttle: nil\"", v)
				}
			}()
			f()
		})
	}
}

func TestDoneTwice(t *testing.T) {
	th := mustNew(t, throttle.Config{Window: time.Hour})
	p, err := th.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p.Done(nil)
	p.Done(nil)
	var zero throttle.Permit
	zero.Done(errUnavailable)
	if s := th.Stats(); s.Requests != 1 || s.Accepts != 1 {
		t.Errorf("Stats = %+v, want one request, one accept", s)
	}
}

func TestRejectedError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		th := mustNew(t, throttle.Config{Name: "db", Seed: 1, MinRequests: 1, MaxProbability: 1, Window: 2 * time.Second, Buckets: 4})
		attempt(ctx, th, 50, errUnavailable) // probability 50/51
		var err error
		for err == nil {
			_, err = th.Acquire(ctx)
		}
		var re *throttle.RejectedError
		if !errors.As(err, &re) || !errors.Is(err, throttle.ErrThrottled) {
			t.Fatalf("rejection %v (%T) is not a *RejectedError matching ErrThrottled", err, err)
		}
		if re.Name != "db" || re.Probability != 0.98 || re.RetryAfter() != 500*time.Millisecond ||
			!re.Rejected() || re.Retryable() {
			t.Errorf("RejectedError %+v: RetryAfter %v Rejected %v Retryable %v", *re, re.RetryAfter(), re.Rejected(), re.Retryable())
		}
		if got, want := err.Error(), `throttle: "db" rejected the call locally (rejection probability 0.98)`; got != want {
			t.Errorf("Error() = %q, want %q", got, want)
		}
		// The same pointer for the same probability: no allocation.
		var err2 error
		for err2 == nil {
			_, err2 = th.Acquire(ctx)
		}
		if err2 != err {
			t.Errorf("two rejections at one probability returned different errors")
		}
		if got := (&throttle.RejectedError{Probability: 0.5}).Error(); got != "throttle: rejected the call locally (rejection probability 0.50)" {
			t.Errorf("unnamed Error() = %q", got)
		}
	})
}

func TestEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		rec := new(bracetest.Recorder)
		th := mustNew(t, throttle.Config{Name: "api", Seed: 3, MinRequests: 1, Observer: rec})
		feed(t, ctx, th, 1, errUnavailable) // probability 0.5: throttling starts
		var rejections int
		for range 200 {
			p, err := th.Acquire(ctx)
			if err != nil {
				rejections++
				continue
			}
			p.Done(errUnavailable)
		}
		// Recovery: the failures leave the window, successes arrive.
		time.Sleep(10 * time.Second)
		feed(t, ctx, th, 1, nil)

		evs := rec.Events()
		var kinds = map[middleware.Kind]int{}
		var changes []middleware.Event
		for _, e := range evs {
			kinds[e.Kind]++
			switch e.Kind {
			case middleware.StateChanged:
				changes = append(changes, e)
			case middleware.Rejected:
				if e.Concern != "throttle" || e.Name != "api" || e.Reason != "throttle" ||
					!(e.Probability > 0 && e.Probability <= 0.9) || e.Delay != time.Second ||
					!errors.Is(e.Err, throttle.ErrThrottled) || e.Priority != priority.Default {
					t.Errorf("Rejected event %+v", e)
				}
			default:
				t.Errorf("unexpected event %+v", e)
			}
		}
		if kinds[middleware.Rejected] != rejections {
			t.Errorf("%d Rejected events for %d rejections", kinds[middleware.Rejected], rejections)
		}
		want := []middleware.Event{
			{Kind: middleware.StateChanged, Concern: "throttle", Name: "api", From: "passing", To: "throttling", Probability: 0.5},
			{Kind: middleware.StateChanged, Concern: "throttle", Name: "api", From: "throttling", To: "passing"},
		}
		if diff := cmp.Diff(want, changes); diff != "" {
			t.Errorf("StateChanged events, once per change, not per call (-want +got):\n%s", diff)
		}
		if s := th.Stats(); s.State != throttle.StatePassing || s.Rejected != uint64(rejections) {
			t.Errorf("Stats = %+v", s)
		}
	})
}

func TestEventPriority(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		rec := new(bracetest.Recorder)
		th := mustNew(t, throttle.Config{Seed: 3, MinRequests: 1, Observer: rec, Priorities: true})
		attempt(ctx, th, 5, errUnavailable)
		rec.Reset()
		sctx := priority.With(ctx, priority.Sheddable)
		for range 100 {
			th.Acquire(sctx)
		}
		n := 0
		for _, e := range rec.Events() {
			if e.Kind == middleware.Rejected {
				n++
				if e.Priority != priority.Sheddable {
					t.Errorf("Rejected event Priority = %v, want sheddable", e.Priority)
				}
			}
		}
		if n == 0 {
			t.Error("no Rejected event")
		}
	})
}

func TestPanickingObserver(t *testing.T) {
	defer quietDefaultLog()()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		th := mustNew(t, throttle.Config{Seed: 1, MinRequests: 1, Observer: middleware.ObserverFunc(func(context.Context, middleware.Event) {
			panic("observer")
		})})
		stage := middleware.Apply(func(context.Context, int) (int, error) { return 0, errUnavailable },
			throttle.Middleware[int, int](th))
		var rejected int
		for range 100 {
			if _, err := stage(ctx, 0); errors.Is(err, throttle.ErrThrottled) {
				rejected++
			}
		}
		s := th.Stats()
		if rejected == 0 || s.Rejected != uint64(rejected) || s.Requests != 100 || s.State != throttle.StateThrottling {
			t.Errorf("with a panicking observer: %d rejected, Stats %+v", rejected, s)
		}
	})
}

func TestReentrantObserver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		var th *throttle.Throttler
		var depth atomic.Int32
		obs := middleware.ObserverFunc(func(ctx context.Context, e middleware.Event) {
			if depth.Add(1) == 1 {
				_ = th.Stats()
				_ = th.Probability(priority.Default)
				if p, err := th.Acquire(ctx); err == nil {
					p.Done(errUnavailable)
				}
			}
			depth.Add(-1)
		})
		th = mustNew(t, throttle.Config{Seed: 1, MinRequests: 1, Observer: obs})
		for range 100 {
			if p, err := th.Acquire(ctx); err == nil {
				p.Done(errUnavailable)
			}
		}
		if s := th.Stats(); s.Requests < 100 {
			t.Errorf("Stats = %+v", s)
		}
	})
}

func TestAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	ctx := context.Background()
	ok := func(context.Context, int) (int, error) { return 1, nil }
	fail := func(context.Context, int) (int, error) { return 0, errUnavailable }

	pass := mustNew(t, throttle.Config{Window: time.Hour})
	passPrio := mustNew(t, throttle.Config{Window: time.Hour, Priorities: true})
	// A throttler that rejects nearly every call.
	rej := mustNew(t, throttle.Config{Window: time.Hour, MinRequests: 1, MaxProbability: 1, Seed: 1})
	feed(t, ctx, rej, 1, errUnavailable)
	for range 100000 {
		if p, err := rej.Acquire(ctx); err == nil {
			p.Done(errUnavailable)
		}
	}
	if p := rej.Stats().Probability; p < 0.999 {
		t.Fatalf("probability %v, want nearly 1", p)
	}
	// With priorities: sheddable calls bear the rejections.
	rejPrio := mustNew(t, throttle.Config{Window: time.Hour, MinRequests: 1, Seed: 1, Priorities: true})
	attempt(ctx, rejPrio, 1000, errUnavailable)
	shed := priority.With(ctx, priority.Sheddable)
	for _, c := range []struct {
		name string
		f    func()
	}{
		{"acquire done success", func() {
			p, _ := pass.Acquire(ctx)
			p.Done(nil)
		}},
		{"acquire done failure", func() {
			p, _ := pass.Acquire(ctx)
			p.Done(errUnavailable)
		}},
		{"priorities success", func() {
			p, _ := passPrio.Acquire(ctx)
			p.Done(nil)
		}},
		{"rejection", func() { rej.Acquire(ctx) }},
		{"priorities rejection", func() { rejPrio.Acquire(shed) }}, // mostly rejected; an admitted permit is dropped
	} {
		t.Run(c.name, func(t *testing.T) {
			c.f()
			if n := testing.AllocsPerRun(1000, c.f); n != 0 {
				t.Errorf("%v allocations per call, want 0", n)
			}
		})
	}
	// The wrapped stage, built once.
	stage := middleware.Apply(ok, throttle.Middleware[int, int](pass))
	failing := middleware.Apply(fail, throttle.Middleware[int, int](rej))
	for name, f := range map[string]func(){
		"built middleware success":   func() { stage(ctx, 0) },
		"built middleware rejection": func() { failing(ctx, 0) },
	} {
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s: %v allocations per call, want 0", name, n)
		}
	}
}

// TestConcurrency: every finished call and every rejection is counted
// exactly once under heavy concurrency, with and without priorities.
func TestConcurrency(t *testing.T) {
	for _, prio := range []bool{false, true} {
		t.Run(fmt.Sprintf("priorities=%v", prio), func(t *testing.T) {
			th := mustNew(t, throttle.Config{Window: time.Hour, MinRequests: 1, MaxProbability: 0.5, Seed: 1, Priorities: prio})
			workers, per := 8, 2000
			if testenv.RaceEnabled {
				per = 300
			}
			levels := []priority.Level{priority.Sheddable, priority.Default, priority.Critical}
			var admitted, accepted, rejected atomic.Int64
			var wg sync.WaitGroup
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx := priority.With(context.Background(), levels[w%3])
					for i := range per {
						p, err := th.Acquire(ctx)
						if err != nil {
							rejected.Add(1)
							continue
						}
						admitted.Add(1)
						if (i+w)%3 == 0 {
							p.Done(nil)
							accepted.Add(1)
						} else {
							p.Done(errUnavailable)
						}
						_ = th.Stats()
						_ = th.Probability(levels[i%3])
					}
				}()
			}
			wg.Wait()
			s := th.Stats()
			r, a := admitted.Load()+rejected.Load(), accepted.Load()
			want := throttle.Stats{
				Requests: r, Accepts: a,
				Probability: min(0.5, (float64(r)-2*float64(a))/float64(r+1)),
				State:       throttle.StateThrottling, Rejected: uint64(rejected.Load()),
			}
			if diff := cmp.Diff(want, s); diff != "" {
				t.Errorf("Stats (-want +got):\n%s", diff)
			}
		})
	}
}

// quietDefaultLog discards slog.Default's output (where middleware.Emit
// reports an observer's panic) until the returned func is called.
func quietDefaultLog() func() {
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	return func() { slog.SetDefault(old) }
}

// TestCacheMatchesWindow: after every call, the probability Acquire reads
// (cached when the window last changed) is the one the window gives now,
// for random sequences of results, levels, idle spells and settings,
// including the success path that skips the recomputation.
func TestCacheMatchesWindow(t *testing.T) {
	for seed := range uint64(20) {
		synctest.Test(t, func(t *testing.T) {
			rnd := rand.New(rand.NewPCG(seed, 1))
			th := mustNew(t, throttle.Config{
				Seed: seed + 1, Priorities: seed%2 == 0, MinRequests: 1 + rnd.IntN(30),
				K: 1 + 2*rnd.Float64(), MaxProbability: 0.5 + rnd.Float64()/2,
				Window: time.Second, Buckets: 1 + rnd.IntN(10),
			})
			levels := []priority.Level{priority.Sheddable, priority.Default, priority.Critical}
			for i := range 3000 {
				if rnd.IntN(50) == 0 {
					time.Sleep(time.Duration(rnd.IntN(300)) * time.Millisecond)
				}
				ctx := priority.With(context.Background(), levels[rnd.IntN(3)])
				p, err := th.Acquire(ctx)
				if err == nil {
					if rnd.IntN(100) < 40+int(seed) {
						p.Done(nil)
					} else {
						p.Done(errUnavailable)
					}
				}
				for _, l := range levels {
					cl := l
					if seed%2 != 0 {
						cl = priority.Default // without priorities every call reads Default's
					}
					if c, w := th.Cached(cl), th.Probability(l); c != w {
						t.Fatalf("seed %d, call %d, level %v: cached %v, window %v", seed, i, l, c, w)
					}
				}
			}
		})
	}
}
