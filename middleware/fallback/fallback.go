package fallback

import (
	"context"
	"log/slog"

	"github.com/brace-go/brace/middleware"
)

// Config configures a fallback. The zero value is ready to use: every error
// is replaced by the fallback, nothing is logged and no hook is called.
type Config struct {
	// When reports whether a failure of the primary stage should be replaced
	// by the fallback. It sees only non-nil errors. Nil means every error.
	//
	// Whatever When says, a failure is returned unchanged, without running
	// the fallback, once the caller's own context has ended: a caller that
	// has gone gets its context error, not a substitute value.
	When func(err error) bool

	// OnFallback, if set, is called with the primary error each time the
	// fallback is about to be used.
	OnFallback func(err error)

	// Logger, if set, receives a Warn record "fallback: used" (attribute
	// "err") each time the fallback is used, and an Error record
	// "fallback: failed" (attributes "err" and "primary") when the fallback
	// itself fails. Both carry "name" when Name is set. Nil means silent.
	Logger *slog.Logger

	// Name, if not empty, is added to log records as "name".
	Name string

	// Counter, if set, counts calls, fallbacks and failed fallbacks (see
	// [Counter]). Nil means no counting, at the cost of one nil check per
	// call.
	Counter *Counter
}

// Error is returned when the fallback itself fails. Both failures stay
// reachable: errors.Is and errors.As look at the primary error first, then
// at the fallback's.
type Error struct {
	Primary  error // what the primary stage returned
	Fallback error // what the fallback returned
}

func (e *Error) Error() string {
	return "fallback: primary failed: " + e.Primary.Error() + "; fallback failed: " + e.Fallback.Error()
}

// Unwrap returns the primary and the fallback error, in that order.
func (e *Error) Unwrap() []error { return []error{e.Primary, e.Fallback} }

// Value returns a middleware that answers v, with a nil error, when the
// stage it wraps fails and cfg.When accepts the failure.
func Value[In, Out any](v Out, cfg Config) middleware.Middleware[In, Out] {
	return build(cfg, func(context.Context, In, error) (Out, error) { return v, nil })
}

// Stage returns a middleware that calls fb, with the same context and input,
// when the stage it wraps fails and cfg.When accepts the failure. If fb fails
// too, the call returns a *[Error] holding both errors. A nil fb fails with
// [middleware.ErrNilStage], as nil stages do everywhere in Brace.
func Stage[In, Out any](fb middleware.Stage[In, Out], cfg Config) middleware.Middleware[In, Out] {
	fb = middleware.Apply(fb) // a nil fb becomes a stage that returns ErrNilStage
	return build(cfg, func(ctx context.Context, in In, _ error) (Out, error) { return fb(ctx, in) })
}

// Func is [Stage] for a fallback that needs to see the primary error, for
// example to serve a stale cached value or to map an error to a default. If
// fb fails, the call returns a *[Error] holding both errors; to let some
// failures through untouched, say so in cfg.When. A nil fb fails with
// [middleware.ErrNilStage].
func Func[In, Out any](fb func(ctx context.Context, in In, err error) (Out, error), cfg Config) middleware.Middleware[In, Out] {
	if fb == nil {
		fb = func(context.Context, In, error) (Out, error) {
			var zero Out
			return zero, middleware.ErrNilStage
		}
	}
	return build(cfg, fb)
}

func build[In, Out any](cfg Config, fb func(context.Context, In, error) (Out, error)) middleware.Middleware[In, Out] {
	when, onFallback, logger, name, counter := cfg.When, cfg.OnFallback, cfg.Logger, cfg.Name, cfg.Counter
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		next = middleware.Apply(next)
		return func(ctx context.Context, in In) (Out, error) {
			if counter != nil {
				counter.calls.Add(1)
			}
			out, err := next(ctx, in)
			if err == nil || ctx.Err() != nil || (when != nil && !when(err)) {
				return out, err
			}
			if counter != nil {
				counter.fallbacks.Add(1)
			}
			if onFallback != nil {
				onFallback(err)
			}
			if logger != nil {
				log(ctx, logger, name, slog.LevelWarn, "fallback: used", slog.Any("err", err))
			}
			fout, ferr := fb(ctx, in, err)
			if ferr == nil {
				return fout, nil
			}
			if counter != nil {
				counter.failures.Add(1)
			}
			if logger != nil {
				log(ctx, logger, name, slog.LevelError, "fallback: failed", slog.Any("err", ferr), slog.Any("primary", err))
			}
			var zero Out
			return zero, &Error{Primary: err, Fallback: ferr}
		}
	}
}

// log writes a record with attrs and, if set, name.
func log(ctx context.Context, logger *slog.Logger, name string, level slog.Level, msg string, attrs ...slog.Attr) {
	if !logger.Enabled(ctx, level) {
		return
	}
	if name != "" {
		attrs = append(attrs, slog.String("name", name))
	}
	logger.LogAttrs(ctx, level, msg, attrs...)
}
