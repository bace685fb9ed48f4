package bracetest

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/dedup"
)

// Event is one recorded hook call or log record. A hook call has Hook and
// Args; a log record has Msg, Level and Attrs. The zero fields of the
// other kind stay zero, so a want list can name only what it checks:
//
//	{Hook: "OnRetry", Args: []any{2, errBoom, time.Second}}
//	{Msg: "retry: exhausted", Level: slog.LevelWarn, Attrs: map[string]any{"attempts": int64(3), ...}}
type Event struct {
	Hook string // the hook's name, as given to the helper that made it
	Args []any  // the hook's arguments, in order

	Msg   string
	Level slog.Level
	// Attrs maps each attribute key (with its groups, dot-separated:
	// "g.key") to its value as slog.Value.Any returns it: an int attribute
	// is an int64, a uint a uint64, a float a float64, a slog.Duration a
	// time.Duration, an error the error itself. Nil when the record has no
	// attributes.
	Attrs map[string]any
}

// Recorder captures hook calls and log records, in the order they
// happen, for assertions with go-cmp. Its zero value is ready to use, and
// it is safe for concurrent use.
type Recorder struct {
	mu     sync.Mutex
	events []Event
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return new(Recorder) }

// Events returns a copy of the events so far.
func (r *Recorder) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// Hooks returns the hook calls so far, without the log records.
func (r *Recorder) Hooks() []Event { return r.filter(func(e Event) bool { return e.Hook != "" }) }

// Logs returns the log records so far, without the hook calls.
func (r *Recorder) Logs() []Event { return r.filter(func(e Event) bool { return e.Hook == "" }) }

// Messages returns the messages of the log records so far: a quick check
// of what was logged, in order.
func (r *Recorder) Messages() []string {
	var msgs []string
	for _, e := range r.Logs() {
		msgs = append(msgs, e.Msg)
	}
	return msgs
}

func (r *Recorder) filter(keep func(Event) bool) []Event {
	var out []Event
	for _, e := range r.Events() {
		if keep(e) {
			out = append(out, e)
		}
	}
	return out
}

// Reset forgets every event.
func (r *Recorder) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = nil
}

// Record records a call of the hook called name with args. The Hook
// helpers call it; call it directly for hooks of other shapes.
func (r *Recorder) Record(name string, args ...any) {
	r.add(Event{Hook: name, Args: args})
}

func (r *Recorder) add(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// Hook0 returns a func() that records a call of the hook called name.
func Hook0(r *Recorder, name string) func() { return func() { r.Record(name) } }

// Hook1 returns a func(A) that records its calls as the hook called name.
func Hook1[A any](r *Recorder, name string) func(A) {
	return func(a A) { r.Record(name, a) }
}

// Hook2 returns a func(A, B) that records its calls as the hook called
// name.
func Hook2[A, B any](r *Recorder, name string) func(A, B) {
	return func(a A, b B) { r.Record(name, a, b) }
}

// Hook3 returns a func(A, B, C) that records its calls as the hook called
// name.
func Hook3[A, B, C any](r *Recorder, name string) func(A, B, C) {
	return func(a A, b B, c C) { r.Record(name, a, b, c) }
}

// The hooks of Brace's concerns, each recorded under its field name.

// OnRetry is for retry.Config.OnRetry.
func (r *Recorder) OnRetry() func(attempt int, err error, delay time.Duration) {
	return Hook3[int, error, time.Duration](r, "OnRetry")
}

// OnStateChange is for breaker.Config.OnStateChange.
func (r *Recorder) OnStateChange() func(from, to breaker.State, counts breaker.Counts) {
	return Hook3[breaker.State, breaker.State, breaker.Counts](r, "OnStateChange")
}

// OnStoreError is for breaker.Config.OnStoreError.
func (r *Recorder) OnStoreError() func(err error) { return Hook1[error](r, "OnStoreError") }

// OnSoftLimit is for backpressure.Config.OnSoftLimit.
func (r *Recorder) OnSoftLimit() func(depth, softLimit int64) {
	return Hook2[int64, int64](r, "OnSoftLimit")
}

// OnShed is for backpressure.Config.OnShed.
func (r *Recorder) OnShed() func(err *backpressure.ShedError) {
	return Hook1[*backpressure.ShedError](r, "OnShed")
}

// OnServe is for dedup.Config.OnServe.
func (r *Recorder) OnServe() func(s dedup.Served) { return Hook1[dedup.Served](r, "OnServe") }

// OnTimeout is for timeout.Config.OnTimeout.
func (r *Recorder) OnTimeout() func(elapsed time.Duration, err error) {
	return Hook2[time.Duration, error](r, "OnTimeout")
}

// OnLimited is for ratelimit.Config.OnLimited (for KeyedConfig.OnLimited
// use Hook2[K, time.Duration](r, "OnLimited")).
func (r *Recorder) OnLimited() func(delay time.Duration) {
	return Hook1[time.Duration](r, "OnLimited")
}

// OnHedge is for hedge.Config.OnHedge.
func (r *Recorder) OnHedge() func(attempt int) { return Hook1[int](r, "OnHedge") }

// OnLimitChange is for adaptive.Config.OnLimitChange.
func (r *Recorder) OnLimitChange() func(from, to int) { return Hook2[int, int](r, "OnLimitChange") }

// OnReject is for adaptive.Config.OnReject.
func (r *Recorder) OnReject() func(limit int) { return Hook1[int](r, "OnReject") }

// OnFallback is for fallback.Config.OnFallback.
func (r *Recorder) OnFallback() func(err error) { return Hook1[error](r, "OnFallback") }

// OnInject is for ChaosConfig.OnInject.
func (r *Recorder) OnInject() func() { return Hook0(r, "OnInject") }

// Logger returns a logger that records every record, at every level, as
// an Event. Record times are not kept, so events compare equal across
// runs.
func (r *Recorder) Logger() *slog.Logger { return slog.New(r.Handler()) }

// Handler returns the slog.Handler behind [Recorder.Logger].
func (r *Recorder) Handler() slog.Handler { return &handler{r: r} }

type handler struct {
	r      *Recorder
	attrs  []slog.Attr // from WithAttrs, keys already qualified by their groups
	prefix string      // from WithGroup: "g1.g2."
}

func (h *handler) Enabled(context.Context, slog.Level) bool { return true }

func (h *handler) Handle(_ context.Context, rec slog.Record) error {
	e := Event{Msg: rec.Message, Level: rec.Level}
	if len(h.attrs) > 0 || rec.NumAttrs() > 0 {
		e.Attrs = make(map[string]any, len(h.attrs)+rec.NumAttrs())
		for _, a := range h.attrs {
			e.Attrs[a.Key] = a.Value.Any()
		}
		rec.Attrs(func(a slog.Attr) bool {
			flatten(e.Attrs, h.prefix, a)
			return true
		})
	}
	h.r.add(e)
	return nil
}

// flatten adds a to m under prefix, resolving values and expanding groups.
func flatten(m map[string]any, prefix string, a slog.Attr) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, ga := range v.Group() {
			flatten(m, p, ga)
		}
		return
	}
	if a.Key == "" {
		return
	}
	m[prefix+a.Key] = v.Any()
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	m := map[string]any{}
	for _, a := range as {
		flatten(m, h.prefix, a)
	}
	h2 := *h
	h2.attrs = slices.Clip(h.attrs)
	for k, v := range m {
		h2.attrs = append(h2.attrs, slog.Any(k, v))
	}
	return &h2
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.prefix += name + "."
	return &h2
}
