package otelbrace_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/otelbrace"
)

// retrying is a stand-in for a retry with o as its Observer: it runs the
// stage up to n times, emitting a Retry event before each retry, as
// package retry does.
func retrying[In, Out any](o middleware.Observer, n int) middleware.Middleware[In, Out] {
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		return func(ctx context.Context, in In) (Out, error) {
			for attempt := 1; ; attempt++ {
				out, err := next(ctx, in)
				if err == nil || attempt == n {
					return out, err
				}
				middleware.Emit(ctx, o, middleware.Event{Kind: middleware.Retry, Concern: "retry", Attempt: attempt, Err: err})
			}
		}
	}
}

// TestMeasure: Measure counts a call's attempts from the Retry and Hedged
// events of its context and records its duration with error.type when it
// fails; Attempts numbers its spans from that count.
func TestMeasure(t *testing.T) {
	tr := newTracing(t)
	fails := 0 // the stage fails this many times, then succeeds
	stage := middleware.Apply(func(ctx context.Context, in int) (int, error) {
		if fails > 0 {
			fails--
			return 0, &customError{500}
		}
		middleware.Emit(ctx, tr.o, middleware.Event{Kind: middleware.Hedged, Concern: "hedge", Attempt: 2})
		return in, nil
	}, otelbrace.Measure[int, int](tr.o, "op"), retrying[int, int](tr.o, 3), otelbrace.Attempts[int, int](tr.o, "op"))

	ctx, span := tr.tracer.Start(context.Background(), "call")
	fails = 1
	stage(ctx, 1) // 2 attempts, a hedge in the second: 3 attempts
	fails = 5
	stage(ctx, 1) // 3 attempts, all failed
	span.End()

	var got []point
	for _, p := range collect(t, tr.reader) {
		if strings.HasPrefix(p.Metric, "brace.call.") || p.Metric == "brace.attempt.duration" {
			if p.Unit == "s" {
				p.Sum = 0 // durations are real time here
			}
			got = append(got, p)
		}
	}
	h := func(metric, unit, attrs string, count uint64) point {
		return point{Metric: metric, Kind: "histogram", Unit: unit, Attrs: attrs, Count: count}
	}
	want := []point{
		h("brace.attempt.duration", "s", "brace.name=op", 1),
		h("brace.attempt.duration", "s", "brace.name=op,error.type=*otelbrace_test.customError", 4),
		h("brace.call.attempts", "{attempt}", "brace.name=op", 1),
		h("brace.call.attempts", "{attempt}", "brace.name=op,error.type=*otelbrace_test.customError", 1),
		h("brace.call.duration", "s", "brace.name=op", 1),
		h("brace.call.duration", "s", "brace.name=op,error.type=*otelbrace_test.customError", 1),
	}
	want[2].Sum = 3 // 2 attempts and a hedge
	want[3].Sum = 3 // 3 attempts
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}

	var numbers []int64
	var statuses []codes.Code
	for _, s := range tr.recorder.Ended() {
		if s.Name() != otelbrace.AttemptSpanName {
			continue
		}
		set := attribute.NewSet(s.Attributes()...)
		v, _ := set.Value(otelbrace.AttemptKey)
		numbers = append(numbers, v.AsInt64())
		statuses = append(statuses, s.Status().Code)
	}
	if diff := cmp.Diff([]int64{1, 2, 1, 2, 3}, numbers); diff != "" {
		t.Errorf("attempt numbers (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]codes.Code{codes.Error, codes.Unset, codes.Error, codes.Error, codes.Error}, statuses); diff != "" {
		t.Errorf("attempt statuses (-want +got):\n%s", diff)
	}
}

// TestAttemptsWithoutMeasure: without a Measure outside, the attempt spans
// have no number; everything else works.
func TestAttemptsWithoutMeasure(t *testing.T) {
	tr := newTracing(t)
	stage := middleware.Apply(func(context.Context, int) (int, error) { return 0, errBoom },
		retrying[int, int](tr.o, 2), otelbrace.Attempts[int, int](tr.o, ""))
	ctx, span := tr.tracer.Start(context.Background(), "call")
	stage(ctx, 1)
	span.End()
	for _, s := range tr.recorder.Ended() {
		if s.Name() != otelbrace.AttemptSpanName {
			continue
		}
		if diff := cmp.Diff("error.type=*errors.errorString", encode(s.Attributes())); diff != "" {
			t.Errorf("attempt span attributes (-want +got):\n%s", diff)
		}
	}
	if n := len(tr.recorder.Ended()); n != 3 {
		t.Errorf("%d spans; want the call and 2 attempts", n)
	}
}

// TestAttemptsPanic: a stage that panics: the panic reaches the caller and
// the attempt's span is ended.
func TestAttemptsPanic(t *testing.T) {
	tr := newTracing(t)
	stage := middleware.Apply(func(context.Context, int) (int, error) { panic("stage bug") },
		otelbrace.Measure[int, int](tr.o, "op"), otelbrace.Attempts[int, int](tr.o, "op"))
	func() {
		defer func() {
			if v := recover(); v != "stage bug" {
				t.Errorf("recovered %v; want the stage's panic", v)
			}
		}()
		stage(context.Background(), 1)
	}()
	if n := len(tr.recorder.Ended()); n != 1 {
		t.Errorf("%d ended spans; want the attempt's", n)
	}
}

// TestMeasureContext: the context Measure passes on is the caller's:
// values, deadline, cancellation and cause all come through, and a
// context derived from it is cancelled with the caller's.
func TestMeasureContext(t *testing.T) {
	tr := newTracing(t)
	type key struct{}
	parent, cancel := context.WithCancelCause(context.WithValue(context.Background(), key{}, "v"))
	parent, cancelTimeout := context.WithTimeout(parent, time.Hour)
	defer cancelTimeout()
	var inner context.Context
	stage := middleware.Apply(func(ctx context.Context, in int) (int, error) {
		inner = ctx
		return in, nil
	}, otelbrace.Measure[int, int](tr.o, "op"))
	stage(parent, 1)
	if inner == parent {
		t.Fatal("Measure passed the caller's context itself; want one carrying the count")
	}
	if inner.Value(key{}) != "v" {
		t.Error("a value of the caller's context is lost")
	}
	if d1, _ := inner.Deadline(); d1 != func() time.Time { d, _ := parent.Deadline(); return d }() {
		t.Error("the deadline is lost")
	}
	child, cancelChild := context.WithCancel(inner)
	defer cancelChild()
	errCause := errors.New("cause")
	cancel(errCause)
	<-child.Done()
	if !errors.Is(context.Cause(inner), errCause) || !errors.Is(context.Cause(child), errCause) {
		t.Errorf("causes %v, %v; want %v", context.Cause(inner), context.Cause(child), errCause)
	}
}

func TestNilObserverPanics(t *testing.T) {
	for name, f := range map[string]func(){
		"Measure":  func() { otelbrace.Measure[int, int](nil, "op") },
		"Attempts": func() { otelbrace.Attempts[int, int](nil, "op") },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				want := "otelbrace: nil *Observer (was New's error ignored?)"
				if v := recover(); v != want {
					t.Errorf("panic %v; want %q", v, want)
				}
			}()
			f()
		})
	}
}
