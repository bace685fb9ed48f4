package bracetest_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/bracetest"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/dedup"
)

func TestRecorderLogger(t *testing.T) {
	rec := bracetest.NewRecorder()
	log := rec.Logger()
	log.Debug("plain")
	log.Warn("typed", "n", 3, "u", uint(4), "f", 0.5, "d", time.Second, "s", "x", "err", errBoom, "b", true)
	log.With("name", "db").WithGroup("g").With("a", 1).Info("grouped", "b", 2, slog.Group("h", "c", 3), slog.Group("", "inline", 4))
	log.LogAttrs(context.Background(), slog.LevelError, "lazy", slog.Any("v", lazy{}))
	want := []bracetest.Event{
		{Msg: "plain", Level: slog.LevelDebug},
		{Msg: "typed", Level: slog.LevelWarn, Attrs: map[string]any{
			"n": int64(3), "u": uint64(4), "f": 0.5, "d": time.Second, "s": "x", "err": errBoom, "b": true,
		}},
		{Msg: "grouped", Level: slog.LevelInfo, Attrs: map[string]any{
			"name": "db", "g.a": int64(1), "g.b": int64(2), "g.h.c": int64(3), "g.inline": int64(4),
		}},
		{Msg: "lazy", Level: slog.LevelError, Attrs: map[string]any{"v": "resolved"}},
	}
	if diff := cmp.Diff(want, rec.Events(), cmpopts.EquateErrors()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"plain", "typed", "grouped", "lazy"}, rec.Messages()); diff != "" {
		t.Errorf("Messages (-want +got):\n%s", diff)
	}
}

type lazy struct{}

func (lazy) LogValue() slog.Value { return slog.StringValue("resolved") }

func TestRecorderHooks(t *testing.T) {
	var rec bracetest.Recorder // the zero value is ready
	shed := &backpressure.ShedError{Depth: 1, Capacity: 1, Weight: 1}
	rec.OnRetry()(2, errBoom, time.Second)
	rec.OnStateChange()(breaker.Closed, breaker.Open, breaker.Counts{Failures: 5})
	rec.OnStoreError()(errBoom)
	rec.OnSoftLimit()(8, 8)
	rec.OnShed()(shed)
	rec.OnServe()(dedup.Joined)
	rec.OnTimeout()(time.Second, errBoom)
	rec.OnLimited()(time.Millisecond)
	rec.OnHedge()(2)
	rec.OnLimitChange()(10, 12)
	rec.OnReject()(12)
	rec.OnFallback()(errBoom)
	rec.OnInject()()
	bracetest.Hook2[string, time.Duration](&rec, "OnKeyedLimited")("acme", time.Second)
	rec.Logger().Info("between")
	rec.Record("Custom", 1, "two")

	want := []bracetest.Event{
		{Hook: "OnRetry", Args: []any{2, errBoom, time.Second}},
		{Hook: "OnStateChange", Args: []any{breaker.Closed, breaker.Open, breaker.Counts{Failures: 5}}},
		{Hook: "OnStoreError", Args: []any{errBoom}},
		{Hook: "OnSoftLimit", Args: []any{int64(8), int64(8)}},
		{Hook: "OnShed", Args: []any{shed}},
		{Hook: "OnServe", Args: []any{dedup.Joined}},
		{Hook: "OnTimeout", Args: []any{time.Second, errBoom}},
		{Hook: "OnLimited", Args: []any{time.Millisecond}},
		{Hook: "OnHedge", Args: []any{2}},
		{Hook: "OnLimitChange", Args: []any{10, 12}},
		{Hook: "OnReject", Args: []any{12}},
		{Hook: "OnFallback", Args: []any{errBoom}},
		{Hook: "OnInject"},
		{Hook: "OnKeyedLimited", Args: []any{"acme", time.Second}},
		{Msg: "between", Level: slog.LevelInfo},
		{Hook: "Custom", Args: []any{1, "two"}},
	}
	if diff := cmp.Diff(want, rec.Events(), cmpopts.EquateErrors()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if got := len(rec.Hooks()); got != len(want)-1 {
		t.Errorf("%d hooks; want %d", got, len(want)-1)
	}
	if diff := cmp.Diff([]bracetest.Event{{Msg: "between", Level: slog.LevelInfo}}, rec.Logs()); diff != "" {
		t.Errorf("Logs (-want +got):\n%s", diff)
	}
	rec.Reset()
	if got := rec.Events(); got != nil {
		t.Errorf("after Reset: %v", got)
	}
}

func TestRecorderEventsIsACopy(t *testing.T) {
	rec := bracetest.NewRecorder()
	rec.Record("A")
	got := rec.Events()
	got[0].Hook = "changed"
	if rec.Events()[0].Hook != "A" {
		t.Error("Events returned the recorder's own slice")
	}
}

// TestRecorderConcurrent: 1000 goroutines log and call hooks at once
// (run with -race); every event is kept.
func TestRecorderConcurrent(t *testing.T) {
	rec := bracetest.NewRecorder()
	log := rec.Logger().With("name", "x")
	hook := rec.OnHedge()
	var wg sync.WaitGroup
	for i := range 1000 {
		wg.Go(func() {
			hook(i)
			log.Info("m", "i", i)
			_ = rec.Events()
		})
	}
	wg.Wait()
	if got := len(rec.Hooks()); got != 1000 {
		t.Errorf("%d hooks; want 1000", got)
	}
	if got := len(rec.Logs()); got != 1000 {
		t.Errorf("%d log records; want 1000", got)
	}
}
