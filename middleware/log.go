package middleware

import (
	"context"
	"log/slog"

	"github.com/brace-go/brace/middleware/priority"
)

// Log returns an [Observer] that writes each event to l as one record. It
// is the one place where Brace's events become log records, so every
// concern logs with the same message and attribute names:
//
//   - the message is "<concern> <kind>", such as "breaker state-changed";
//   - the attributes are concern, name, and those of attempt, delay, wait,
//     in_flight, limit, from, to, failures, reason, priority (when not
//     default), probability and error that the event sets (zero fields
//     are left out);
//   - a change of state is logged at level Warn when it enters "open",
//     "forced-open", "down" or "throttling" (a breaker, a store or a
//     throttler's downstream failing), at Info when it enters "closed",
//     "half-open", "forced-closed", "up" or "passing" (recovering),
//     and at Debug otherwise (a backpressure soft limit, which may flap
//     under load many times a second); every per-call event
//     (rejections, retries, timeouts, joins, waits, hedges, fallbacks,
//     limit changes, single store failures) at Debug, so that a service under load does
//     not flood its log at the default level. Count those with
//     [Observer]s or Stats instead.
//
// Log(nil) uses slog.Default() at the time of each event. A record is
// built only when l is enabled for its level, with the call's context, so
// a handler can add the request's trace.
func Log(l *slog.Logger) Observer { return logObserver{l} }

type logObserver struct{ l *slog.Logger }

func (o logObserver) Observe(ctx context.Context, e Event) {
	l := o.l
	if l == nil {
		l = slog.Default()
	}
	level := level(e)
	if !l.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 14)
	attrs = append(attrs, slog.String("concern", e.Concern))
	if e.Name != "" {
		attrs = append(attrs, slog.String("name", e.Name))
	}
	if e.Attempt != 0 {
		attrs = append(attrs, slog.Int("attempt", e.Attempt))
	}
	if e.Delay != 0 {
		attrs = append(attrs, slog.Duration("delay", e.Delay))
	}
	if e.Wait != 0 {
		attrs = append(attrs, slog.Duration("wait", e.Wait))
	}
	if e.InFlight != 0 {
		attrs = append(attrs, slog.Int64("in_flight", e.InFlight))
	}
	if e.Limit != 0 {
		attrs = append(attrs, slog.Int64("limit", e.Limit))
	}
	if e.From != "" || e.To != "" {
		attrs = append(attrs, slog.String("from", e.From), slog.String("to", e.To))
	}
	if e.Kind == StateChanged && e.Failures != 0 {
		attrs = append(attrs, slog.Int64("failures", e.Failures))
	}
	if e.Reason != "" {
		attrs = append(attrs, slog.String("reason", e.Reason))
	}
	if e.Priority != priority.Default {
		attrs = append(attrs, slog.String("priority", e.Priority.String()))
	}
	if e.Probability != 0 {
		attrs = append(attrs, slog.Float64("probability", e.Probability))
	}
	if e.Err != nil {
		attrs = append(attrs, slog.String("error", e.Err.Error()))
	}
	l.LogAttrs(ctx, level, e.Concern+" "+e.Kind.String(), attrs...)
}

// level is the level Log gives an event.
func level(e Event) slog.Level {
	switch e.Kind {
	case StateChanged:
		switch e.To {
		case "open", "forced-open", "down", "throttling":
			return slog.LevelWarn
		case "closed", "half-open", "forced-closed", "up", "passing":
			return slog.LevelInfo
		}
		return slog.LevelDebug
	default:
		return slog.LevelDebug
	}
}
