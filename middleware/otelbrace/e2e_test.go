// The tests in this file compose the Observer with real concerns (retry
// and breaker). They replace the old TestAllConcerns, which drove every
// concern through its Register function; with one Observer for every
// concern, two concerns are enough to show the events arrive, and
// TestEvents and TestSpanEvents cover every kind.

package otelbrace_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/otelbrace"
	"github.com/brace-go/brace/middleware/retry"
)

// TestConcerns: a retry around a breaker, both observed by one Observer;
// the breaker opens on the third failure and rejects the rest.
func TestConcerns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o, reader := newObserver(t)
		b, err := breaker.New(breaker.Config{Name: "db", Threshold: 3, OpenTimeout: time.Hour, Observer: o})
		if err != nil {
			t.Fatal(err)
		}
		r, err := retry.New(retry.Config{Name: "db", MaxAttempts: 4, BaseDelay: 100 * time.Millisecond, Jitter: retry.NoJitter, Observer: o})
		if err != nil {
			t.Fatal(err)
		}
		s := middleware.Apply(func(context.Context, int) (int, error) { return 0, errBoom },
			retry.Middleware[int, int](r), breaker.Middleware[int, int](b))
		s(t.Context(), 0)

		var got []point
		for _, p := range collect(t, reader) {
			p.Attrs = dropErrorType(p.Attrs) // the concerns' error types are theirs to choose
			got = append(got, p)
		}
		want := []string{
			"brace.events brace.concern=breaker,brace.event=state-changed,brace.name=db,brace.state=open",
			"brace.events brace.concern=breaker,brace.event=rejected,brace.name=db,brace.reason=open",
			"brace.events brace.concern=retry,brace.event=retry,brace.name=db",
			"brace.state brace.concern=breaker,brace.name=db,brace.state=open",
			"brace.retry.delay brace.concern=retry,brace.name=db",
		}
		have := map[string]bool{}
		for _, p := range got {
			have[p.Metric+" "+p.Attrs] = true
		}
		for _, w := range want {
			if !have[w] {
				t.Errorf("no data point %s; got:\n%s", w, cmp.Diff(nil, got))
			}
		}
	})
}

// dropErrorType removes the error.type attribute from encoded attributes.
func dropErrorType(attrs string) string {
	if i := strings.Index(attrs, ",error.type="); i >= 0 {
		return attrs[:i]
	}
	return attrs
}

// TestTrace: Measure outermost, then a retry, Attempts inside it, and a
// breaker, all observed by one Observer with both providers. The breaker
// opens on the third failure and rejects the fourth attempt; the retry
// then stops. The call's span carries the retry's events, each attempt's
// span the breaker's; the metrics count the call, its 4 attempts and
// their durations.
func TestTrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTracing(t)
		b, err := breaker.New(breaker.Config{Name: "db", Threshold: 3, OpenTimeout: time.Hour, Observer: tr.o})
		if err != nil {
			t.Fatal(err)
		}
		r, err := retry.New(retry.Config{Name: "db", MaxAttempts: 5, BaseDelay: 100 * time.Millisecond, Jitter: retry.NoJitter, Observer: tr.o})
		if err != nil {
			t.Fatal(err)
		}
		s := middleware.Apply(func(context.Context, int) (int, error) {
			time.Sleep(10 * time.Millisecond) // the downstream's latency, in the bubble's fake time
			return 0, errBoom
		},
			otelbrace.Measure[int, int](tr.o, "get-user"),
			retry.Middleware[int, int](r),
			otelbrace.Attempts[int, int](tr.o, "get-user"),
			breaker.Middleware[int, int](b))

		ctx, root := tr.tracer.Start(t.Context(), "GET /users/{id}")
		if _, err := s(ctx, 1); !errors.Is(err, breaker.ErrOpen) {
			t.Errorf("call: %v; want breaker.ErrOpen", err)
		}
		root.End()

		spans := tr.recorder.Ended()
		logTrace(t, spans)
		var call sdktrace.ReadOnlySpan
		var attempts []sdktrace.ReadOnlySpan
		for _, s := range spans {
			switch s.Name() {
			case "GET /users/{id}":
				call = s
			case otelbrace.AttemptSpanName:
				if s.Parent().SpanID() != root.SpanContext().SpanID() {
					t.Errorf("attempt span's parent %v; want the call's span", s.Parent().SpanID())
				}
				attempts = append(attempts, s)
			}
		}
		wantCall := []string{
			"brace.retry {brace.attempt=1,brace.concern=retry,brace.delay=0.1,brace.name=db,error.message=boom,error.type=*errors.errorString}",
			"brace.retry {brace.attempt=2,brace.concern=retry,brace.delay=0.2,brace.name=db,error.message=boom,error.type=*errors.errorString}",
			"brace.retry {brace.attempt=3,brace.concern=retry,brace.delay=0.4,brace.name=db,error.message=boom,error.type=*errors.errorString}",
		}
		gotCall := events(call)
		if len(gotCall) == 4 && strings.HasPrefix(gotCall[3], "brace.gave_up ") {
			gotCall = gotCall[:3] // how the retry reports stopping on a rejection is the retry's to choose
		}
		if diff := cmp.Diff(wantCall, gotCall); diff != "" {
			t.Errorf("the call's span events (-want +got):\n%s", diff)
		}
		if len(attempts) != 4 {
			t.Fatalf("%d attempt spans; want 4", len(attempts))
		}
		for i, a := range attempts {
			attrs := attribute.NewSet(a.Attributes()...)
			if v, _ := attrs.Value(otelbrace.AttemptKey); v.AsInt64() != int64(i+1) {
				t.Errorf("attempt span %d: brace.attempt=%v", i+1, v.String())
			}
			if v, _ := attrs.Value(otelbrace.NameKey); v.AsString() != "get-user" {
				t.Errorf("attempt span %d: brace.name=%q", i+1, v.AsString())
			}
			if a.Status().Code != codes.Error {
				t.Errorf("attempt span %d: status %v; want Error", i+1, a.Status())
			}
		}
		if diff := cmp.Diff([]string{"brace.state_changed {brace.concern=breaker,brace.failures=3,brace.name=db,brace.previous_state=closed,brace.state=open,error.message=boom,error.type=*errors.errorString}"},
			events(attempts[2])); diff != "" {
			t.Errorf("third attempt's span events (-want +got):\n%s", diff)
		}
		got4 := events(attempts[3])
		if len(got4) != 1 || !strings.HasPrefix(got4[0], "brace.rejected {brace.concern=breaker,brace.name=db,brace.reason=open,brace.retry_after=") {
			t.Errorf("fourth attempt's span events: %q; want one brace.rejected", got4)
		}

		var calls, attemptsPerCall, attemptDurations []point
		for _, p := range collect(t, tr.reader) {
			switch p.Metric {
			case "brace.call.duration":
				calls = append(calls, p)
			case "brace.call.attempts":
				attemptsPerCall = append(attemptsPerCall, p)
			case "brace.attempt.duration":
				attemptDurations = append(attemptDurations, p)
			}
		}
		// 3 attempts of 10ms, 0.1+0.2+0.4s of backoff, a rejection at once.
		wantCalls := []point{{Metric: "brace.call.duration", Kind: "histogram", Unit: "s", Attrs: "brace.name=get-user,error.type=*breaker.OpenError", Count: 1, Sum: 0.73}}
		if diff := cmp.Diff(wantCalls, calls, approx); diff != "" {
			t.Errorf("brace.call.duration (-want +got):\n%s", diff)
		}
		wantAttempts := []point{{Metric: "brace.call.attempts", Kind: "histogram", Unit: "{attempt}", Attrs: "brace.name=get-user,error.type=*breaker.OpenError", Count: 1, Sum: 4}}
		if diff := cmp.Diff(wantAttempts, attemptsPerCall); diff != "" {
			t.Errorf("brace.call.attempts (-want +got):\n%s", diff)
		}
		wantAttemptDurations := []point{
			{Metric: "brace.attempt.duration", Kind: "histogram", Unit: "s", Attrs: "brace.name=get-user,error.type=*breaker.OpenError", Count: 1, Sum: 0},
			{Metric: "brace.attempt.duration", Kind: "histogram", Unit: "s", Attrs: "brace.name=get-user,error.type=*errors.errorString", Count: 3, Sum: 0.03},
		}
		if diff := cmp.Diff(wantAttemptDurations, attemptDurations, approx); diff != "" {
			t.Errorf("brace.attempt.duration (-want +got):\n%s", diff)
		}
	})
}

// approx compares float64s to a nanosecond.
var approx = cmp.Comparer(func(a, b float64) bool { return math.Abs(a-b) < 1e-9 })

// logTrace logs the spans and their events, indented under their parents,
// as a sample trace for docs/observability.md (go test -v -run TestTrace).
func logTrace(t *testing.T, spans []sdktrace.ReadOnlySpan) {
	var start time.Time
	for _, s := range spans {
		if !s.Parent().IsValid() {
			start = s.StartTime()
		}
	}
	var b strings.Builder
	var walk func(parent trace.SpanID, depth int)
	walk = func(parent trace.SpanID, depth int) {
		for _, s := range spans {
			if s.Parent().SpanID() != parent {
				continue
			}
			indent := strings.Repeat("  ", depth)
			fmt.Fprintf(&b, "%s%s  [+%v, %v]", indent, s.Name(), s.StartTime().Sub(start), s.EndTime().Sub(s.StartTime()))
			if len(s.Attributes()) > 0 {
				fmt.Fprintf(&b, " {%s}", encode(s.Attributes()))
			}
			if s.Status().Code != codes.Unset {
				fmt.Fprintf(&b, " status=%v %q", s.Status().Code, s.Status().Description)
			}
			b.WriteByte('\n')
			for _, ev := range s.Events() {
				fmt.Fprintf(&b, "%s  · +%v %s {%s}\n", indent, ev.Time.Sub(start), ev.Name,
					encode(ev.Attributes))
			}
			walk(s.SpanContext().SpanID(), depth+1)
		}
	}
	walk(trace.SpanID{}, 0)
	t.Logf("sample trace:\n%s", b.String())
}
