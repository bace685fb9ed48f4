package retry

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/brace-go/brace/middleware"
)

// New returns a middleware that retries a failed stage as cfg says, or an
// error naming the invalid Config field. Errors are classified by
// cfg.Retryable (default [DefaultRetryable]).
func New[In, Out any](cfg Config) (middleware.Middleware[In, Out], error) {
	p, err := newPolicy(cfg)
	if err != nil {
		return nil, err
	}
	return build[In, Out](p, nil), nil
}

// NewWithResult is [New] with a typed check of each attempt's outcome:
// retryOn(out, err) reports whether to retry, so that a result such as an
// HTTP 503 response can trigger a retry. It sees every outcome, successes
// included, and replaces cfg.Retryable, which must be nil (call
// DefaultRetryable from retryOn to keep the default for errors). Errors
// marked with [Permanent] are never retried and never passed to retryOn.
//
// When retries run out after a rejected result, Retry returns that last
// result together with an [ExhaustedError] wrapping [ErrRejected], so the
// caller can inspect it (and must release it, as for a response body).
// Results of attempts that are retried are dropped: if Out holds a
// resource, release it in the stage or in retryOn only when it returns
// true and the attempt was not the last (retryOn cannot know that, so for
// response bodies prefer turning bad statuses into errors in the stage).
func NewWithResult[In, Out any](cfg Config, retryOn func(out Out, err error) bool) (middleware.Middleware[In, Out], error) {
	if retryOn == nil {
		return nil, errors.New("retry: NewWithResult needs a non-nil result check")
	}
	if cfg.Retryable != nil {
		return nil, errors.New("retry: Retryable must be nil with NewWithResult; the result check sees errors too")
	}
	p, err := newPolicy(cfg)
	if err != nil {
		return nil, err
	}
	return build[In, Out](p, retryOn), nil
}

func build[In, Out any](p *policy, check func(Out, error) bool) middleware.Middleware[In, Out] {
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		if next == nil {
			next = middleware.Apply[In, Out](nil) // fails with middleware.ErrNilStage
		}
		return func(ctx context.Context, in In) (Out, error) {
			// The success path: no clock read (unless MaxElapsed is
			// set), no allocation, no random draw.
			var start time.Time
			if p.maxElapsed > 0 {
				start = time.Now()
			}
			if p.budget != nil {
				p.budget.Deposit()
			}
			out, err := next(ctx, in)
			if err == nil && check == nil {
				if p.counter != nil {
					p.counter.successes.Add(1)
				}
				return out, nil
			}
			out, err = again(ctx, in, next, p, check, start, out, err)
			if p.counter != nil {
				p.counter.done(err)
			}
			return out, err
		}
	}
}

// again classifies the outcome of attempt 1 and retries for as long as the
// policy allows. It is kept out of the closure above so that the success
// path stays small.
func again[In, Out any](ctx context.Context, in In, next middleware.Stage[In, Out], p *policy,
	check func(Out, error) bool, start time.Time, out Out, err error,
) (Out, error) {
	var earlier history
	prev := time.Duration(0) // delay before the previous attempt
	for attempt := 1; ; attempt++ {
		// Classify the outcome of this attempt.
		if err != nil {
			if pe, ok := err.(*PermanentError); ok {
				return out, pe.Err
			}
			if _, ok := errors.AsType[*PermanentError](err); ok {
				return out, err
			}
		}
		var retry bool
		if check != nil {
			retry = check(out, err)
		} else {
			retry = p.retryable(err)
		}
		if !retry {
			return out, err
		}
		last := err
		if last == nil {
			last = ErrRejected
		}

		// Decide whether, and after what delay, attempt+1 may run.
		next1 := attempt + 1
		reason, delay := p.decide(ctx, next1, last, prev, start)
		if reason != 0 {
			return out, p.exhausted(ctx, reason, attempt, delay, last, &earlier)
		}
		if p.onRetry != nil {
			p.onRetry(next1, last, delay)
		}
		if p.logger != nil && p.logger.Enabled(ctx, slog.LevelDebug) {
			p.logger.LogAttrs(ctx, slog.LevelDebug, "retry: retrying", p.attrs(
				slog.Int("attempt", next1), slog.Duration("delay", delay), slog.Any("err", last))...)
		}
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return out, p.exhausted(ctx, ReasonContext, attempt, 0, last, &earlier)
			case <-t.C:
			}
		}
		earlier.add(last)
		prev = delay
		if p.counter != nil {
			p.counter.retries.Add(1)
		}
		out, err = next(ctx, in)
	}
}

// decide returns the delay before attempt, or the reason it must not run.
func (p *policy) decide(ctx context.Context, attempt int, err error, prev time.Duration, start time.Time) (Reason, time.Duration) {
	if p.maxAttempts != Unlimited && attempt > p.maxAttempts {
		return ReasonAttempts, 0
	}
	if ctx.Err() != nil {
		return ReasonContext, 0
	}
	var delay time.Duration
	if p.delayFunc != nil {
		delay = max(p.delayFunc(attempt, err), 0)
	} else {
		delay = p.jittered(attempt, prev, p.rnd.float64())
	}
	if hint, ok := errors.AsType[interface {
		error
		RetryAfter() time.Duration
	}](err); ok {
		delay = max(delay, hint.RetryAfter())
	}
	delay = min(delay, p.max)

	if dl, hasDL := ctx.Deadline(); p.maxElapsed > 0 || hasDL {
		end := time.Now().Add(delay) // when the next attempt would start
		if p.maxElapsed > 0 && end.Sub(start) > p.maxElapsed {
			return ReasonElapsed, delay
		}
		if hasDL && !end.Before(dl) {
			return ReasonDeadline, delay
		}
	}
	// Last, so that no token is spent on a retry refused for another reason.
	if p.budget != nil && !p.budget.Withdraw() {
		return ReasonBudget, delay
	}
	return 0, delay
}

func (p *policy) exhausted(ctx context.Context, reason Reason, attempts int, delay time.Duration, last error, earlier *history) error {
	e := &ExhaustedError{
		Reason:   reason,
		Attempts: attempts,
		Delay:    delay,
		Err:      last,
		Earlier:  earlier.slice(),
	}
	if reason == ReasonContext {
		e.CtxErr = ctx.Err()
		if cause := context.Cause(ctx); cause != e.CtxErr {
			e.cause = cause
		}
	}
	if p.logger != nil && p.logger.Enabled(ctx, slog.LevelWarn) {
		p.logger.LogAttrs(ctx, slog.LevelWarn, "retry: exhausted", p.attrs(
			slog.Int("attempts", attempts), slog.String("reason", reason.String()), slog.Any("err", last))...)
	}
	return e
}

func (p *policy) attrs(as ...slog.Attr) []slog.Attr {
	if p.name != "" {
		as = append([]slog.Attr{slog.String("name", p.name)}, as...)
	}
	return as
}
