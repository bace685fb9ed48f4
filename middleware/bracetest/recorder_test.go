package bracetest_test

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/bracetest"
)

// TestRecorder: the zero value records every event, of any concern and
// any kind, in order; Events is a copy; Kinds lists the kinds; Reset
// forgets.
func TestRecorder(t *testing.T) {
	var rec bracetest.Recorder // the zero value is ready
	if rec.Events() != nil || rec.Kinds() != nil {
		t.Errorf("empty: %v, %v; want nil, nil", rec.Events(), rec.Kinds())
	}
	events := []middleware.Event{
		{Kind: middleware.Retry, Concern: "retry", Name: "db", Attempt: 1, Err: errBoom, Delay: time.Second},
		{Kind: middleware.StateChanged, Concern: "breaker", Name: "db", From: "closed", To: "open", Failures: 5},
		{Kind: middleware.Rejected, Concern: "backpressure", Reason: "shed", InFlight: 4, Limit: 4, Err: errBoom},
		{Kind: middleware.Waited, Concern: "adaptive", Wait: time.Millisecond},
		{}, // a zero event is recorded as it is
		{Kind: 200, Concern: "mine"},
	}
	for _, e := range events {
		middleware.Emit(context.Background(), &rec, e)
	}
	if diff := cmp.Diff(events, rec.Events(), cmpopts.EquateErrors()); diff != "" {
		t.Errorf("Events (-want +got):\n%s", diff)
	}
	wantKinds := []middleware.Kind{middleware.Retry, middleware.StateChanged, middleware.Rejected, middleware.Waited, 0, 200}
	if diff := cmp.Diff(wantKinds, rec.Kinds()); diff != "" {
		t.Errorf("Kinds (-want +got):\n%s", diff)
	}

	got := rec.Events()
	got[0].Name = "changed"
	if rec.Events()[0].Name != "db" {
		t.Error("Events returned the recorder's own slice")
	}

	rec.Reset()
	if got := rec.Events(); got != nil {
		t.Errorf("after Reset: %v", got)
	}
	rec.Observe(context.Background(), events[0])
	if diff := cmp.Diff([]middleware.Kind{middleware.Retry}, rec.Kinds()); diff != "" {
		t.Errorf("after Reset and one event (-want +got):\n%s", diff)
	}
}

// TestRecorderWithLog: beside middleware.Log, the recorder sees the same
// events the log does, and a panicking observer between them keeps the
// event from neither.
func TestRecorderWithLog(t *testing.T) {
	silenceDefaultLogger(t)
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
		Level:       slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr { return dropTime(a) },
	}))
	rec := new(bracetest.Recorder)
	panicky := middleware.ObserverFunc(func(context.Context, middleware.Event) { panic("observer bug") })
	obs := middleware.Observers(panicky, rec, middleware.Log(logger))
	e := middleware.Event{Kind: middleware.StateChanged, Concern: "breaker", Name: "db", From: "closed", To: "open"}
	middleware.Emit(context.Background(), obs, e)
	if diff := cmp.Diff([]middleware.Event{e}, rec.Events()); diff != "" {
		t.Errorf("Events (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff("level=WARN msg=\"breaker state-changed\" concern=breaker name=db from=closed to=open\n", buf.String()); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
}

func dropTime(a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// TestRecorderReentrant: an observer that reads the recorder, resets it
// or records into it from inside Observe does not deadlock.
func TestRecorderReentrant(t *testing.T) {
	rec := new(bracetest.Recorder)
	var seen []int
	reentrant := middleware.ObserverFunc(func(ctx context.Context, e middleware.Event) {
		seen = append(seen, len(rec.Events()), len(rec.Kinds()))
		if e.Kind == middleware.Retry {
			rec.Observe(ctx, middleware.Event{Kind: middleware.GaveUp})
		}
	})
	obs := middleware.Observers(rec, reentrant)
	middleware.Emit(context.Background(), obs, middleware.Event{Kind: middleware.Retry})
	if diff := cmp.Diff([]middleware.Kind{middleware.Retry, middleware.GaveUp}, rec.Kinds()); diff != "" {
		t.Errorf("Kinds (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int{1, 1}, seen); diff != "" {
		t.Errorf("seen from inside Observe (-want +got):\n%s", diff)
	}
}

// TestRecorderConcurrent: 1000 goroutines record and read at once (run
// with -race); every event is kept.
func TestRecorderConcurrent(t *testing.T) {
	rec := new(bracetest.Recorder)
	var wg sync.WaitGroup
	for i := range 1000 {
		wg.Go(func() {
			rec.Observe(context.Background(), middleware.Event{Kind: middleware.Hedged, Attempt: i})
			_ = rec.Events()
			_ = rec.Kinds()
		})
	}
	wg.Wait()
	seen := make([]bool, 1000)
	for _, e := range rec.Events() {
		seen[e.Attempt] = true
	}
	for i, ok := range seen {
		if !ok {
			t.Fatalf("event %d lost", i)
		}
	}
}

// countdown is a concern written outside Brace, as a user might write
// one: it fails a call after n calls have passed, and emits Rejected
// through middleware.Emit. The recorder tests any such concern the same
// way as Brace's own.
type countdown struct {
	mu  sync.Mutex
	n   int
	obs middleware.Observer
}

func (c *countdown) middleware(next middleware.Stage[int, string]) middleware.Stage[int, string] {
	return func(ctx context.Context, in int) (string, error) {
		c.mu.Lock()
		ok := c.n > 0
		c.n--
		c.mu.Unlock()
		if !ok {
			middleware.Emit(ctx, c.obs, middleware.Event{Kind: middleware.Rejected, Concern: "countdown", Reason: "spent", Err: errBoom})
			return "", errBoom
		}
		return next(ctx, in)
	}
}

// TestRecorderWithScriptAndFaults: a user's own concern, a scripted
// downstream behind a fault, fake time: the recorder sees exactly the
// concern's events, and the test asserts the exact schedule.
func TestRecorderWithScriptAndFaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := new(bracetest.Recorder)
		c := &countdown{n: 2, obs: rec}
		script := bracetest.NewScript[int](bracetest.Return("a"), bracetest.Step[string]{Out: "b", Delay: time.Second})
		s := middleware.Apply(script.Stage, c.middleware, bracetest.Latency[int, string](100*time.Millisecond))
		start := time.Now()
		var outs []string
		for i := range 3 {
			out, _ := s(t.Context(), i)
			outs = append(outs, out)
		}
		if elapsed := time.Since(start); elapsed != 1200*time.Millisecond {
			t.Errorf("took %v; want 1.2s (2×100ms latency + 1s step)", elapsed)
		}
		if diff := cmp.Diff([]string{"a", "b", ""}, outs); diff != "" {
			t.Errorf("outputs (-want +got):\n%s", diff)
		}
		want := []middleware.Event{{Kind: middleware.Rejected, Concern: "countdown", Reason: "spent", Err: errBoom}}
		if diff := cmp.Diff(want, rec.Events(), cmpopts.EquateErrors()); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]int{0, 1}, script.Inputs()); diff != "" {
			t.Errorf("script inputs (-want +got):\n%s", diff)
		}
	})
}
