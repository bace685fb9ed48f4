package retry

import (
	"context"
	"time"

	"github.com/brace-go/brace/internal/xerrors"
	"github.com/brace-go/brace/internal/xtime"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/budget"
)

// Middleware returns a middleware that retries a failed stage as r's
// Config says. Errors are classified by Config.Retryable (default
// [DefaultRetryable]).
//
// It takes at most one optional argument, a typed check of each attempt's
// outcome: retryOn(out, err) reports whether to retry, so that a result
// such as an HTTP 503 response can trigger a retry. It sees every outcome,
// successes included, and replaces Config.Retryable for the stages this
// middleware wraps (call DefaultRetryable, or your own classifier, from
// retryOn to keep it for errors). Errors marked with [Permanent] are never
// retried and never passed to retryOn.
//
// When retries run out after a rejected result, the call returns that last
// result together with an [ExhaustedError] wrapping [ErrRejected], so the
// caller can inspect it (and must release it, as for a response body).
// Results of attempts that are retried are dropped: if Out holds a
// resource, release it in the stage or in retryOn only when it returns
// true and the attempt was not the last (retryOn cannot know that, so for
// response bodies prefer turning bad statuses into errors in the stage).
//
// Middleware panics if r is nil (New's error was ignored), if a result
// check is nil or more than one is given, and, when applied, if the stage
// is nil.
func Middleware[In, Out any](r *Retrier, retryOn ...func(out Out, err error) bool) middleware.Middleware[In, Out] {
	if r == nil {
		panic("retry: nil *Retrier (was New's error ignored?)")
	}
	var check func(Out, error) bool
	switch len(retryOn) {
	case 0:
	case 1:
		if check = retryOn[0]; check == nil {
			panic("retry: nil result check")
		}
	default:
		panic("retry: more than one result check")
	}
	return func(next middleware.Stage[In, Out]) middleware.Stage[In, Out] {
		if next == nil {
			panic("retry: nil stage")
		}
		return func(ctx context.Context, in In) (Out, error) {
			// A call whose context has ended runs nothing and deposits
			// nothing. ctx.Err is one atomic load for the standard
			// contexts.
			if err := ctx.Err(); err != nil {
				var zero Out
				return zero, err
			}
			// The success path: no clock read (unless MaxElapsed is
			// set), no allocation, no random draw, no shared counter.
			var start time.Time
			if r.maxElapsed > 0 {
				start = time.Now()
			}
			if r.budget != nil {
				r.budget.Deposit()
			}
			out, err := next(ctx, in)
			if err == nil && check == nil {
				return out, nil
			}
			return again(ctx, in, next, r, check, start, out, err)
		}
	}
}

// again classifies the outcome of attempt 1 and retries for as long as the
// Retrier allows. It is kept out of the closure above so that the success
// path stays small.
func again[In, Out any](ctx context.Context, in In, next middleware.Stage[In, Out], r *Retrier,
	check func(Out, error) bool, start time.Time, out Out, err error,
) (Out, error) {
	var earlier history
	prev := time.Duration(0) // delay before the previous attempt
	for attempt := 1; ; attempt++ {
		// Classify the outcome of this attempt.
		if err != nil {
			if pe, ok := err.(*permanentError); ok {
				return out, r.stopped(ctx, attempt, pe.err)
			}
			if _, ok := xerrors.Find[*permanentError](err); ok {
				return out, r.stopped(ctx, attempt, err)
			}
		}
		var retry bool
		if check != nil {
			retry = check(out, err)
		} else {
			retry = r.retryable(err)
		}
		if !retry {
			if err == nil || attempt == 1 {
				return out, err // accepted result, or a first failure left untouched
			}
			return out, r.stopped(ctx, attempt, err)
		}
		last := err
		if last == nil {
			last = ErrRejected
		}

		// Decide whether, and after what delay, attempt+1 may run.
		d := r.decide(ctx, attempt+1, last, prev, start)
		if d.reason != "" {
			return out, r.exhausted(ctx, d, attempt, last, &earlier)
		}
		r.retries.Add(1)
		if r.obs != nil {
			middleware.Emit(ctx, r.obs, middleware.Event{
				Kind: middleware.Retry, Concern: "retry", Name: r.name,
				Attempt: attempt, Delay: d.delay, Err: last,
			})
		}
		if d.delay > 0 {
			t := time.NewTimer(d.delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return out, r.exhausted(ctx, decision{reason: ReasonCanceled}, attempt, last, &earlier)
			case <-t.C:
			}
		}
		earlier.add(last)
		prev = d.delay
		out, err = next(ctx, in)
		d.permit.Done(err) // gives nothing back; finished for form's sake
	}
}

// decision is what decide found: a delay and a budget permit for the next
// attempt, or the reason it must not run.
type decision struct {
	reason Reason
	delay  time.Duration
	limit  string // ReasonHint: the limit the hint exceeds
	permit budget.Permit
}

// decide returns the delay before attempt, or the reason it must not run.
func (r *Retrier) decide(ctx context.Context, attempt int, err error, prev time.Duration, start time.Time) decision {
	if r.maxAttempts != Unlimited && attempt > r.maxAttempts {
		return decision{reason: ReasonAttempts}
	}
	if ctx.Err() != nil {
		return decision{reason: ReasonCanceled}
	}
	var delay time.Duration
	if r.delayFunc != nil {
		delay = min(max(r.delayFunc(attempt, err), 0), r.max)
	} else {
		delay = r.jittered(attempt, prev, r.rnd.Float64())
	}
	// A server's hint is a floor, never capped by MaxDelay: retrying
	// earlier would be refused again, and ignoring it would hammer a
	// server that asked for a pause.
	hinted := false
	if h, ok := xerrors.Find[interface{ RetryAfter() time.Duration }](err); ok {
		if ra := h.RetryAfter(); ra > delay {
			delay, hinted = ra, true
		}
	}

	if dl, hasDL := ctx.Deadline(); r.maxElapsed > 0 || hasDL {
		now := time.Now()
		// When the next attempt would start, as an offset from start
		// (saturating: a hint of 10^18 s must not wrap).
		if r.maxElapsed > 0 && xtime.Add(int64(now.Sub(start)), int64(delay)) > int64(r.maxElapsed) {
			if hinted {
				return decision{reason: ReasonHint, delay: delay, limit: "MaxElapsed"}
			}
			return decision{reason: ReasonElapsed, delay: delay}
		}
		if hasDL && delay >= dl.Sub(now) {
			if hinted {
				return decision{reason: ReasonHint, delay: delay, limit: "the context deadline"}
			}
			return decision{reason: ReasonDeadline, delay: delay}
		}
	}
	// Last, so that no token is spent on a retry refused for another reason.
	if r.budget != nil {
		p, err := r.budget.Acquire(ctx)
		if err != nil {
			if err == budget.ErrExhausted {
				return decision{reason: ReasonBudget, delay: delay}
			}
			return decision{reason: ReasonCanceled}
		}
		return decision{delay: delay, permit: p}
	}
	return decision{delay: delay}
}

// stopped handles an attempt whose outcome is not retried: a success
// accepted by a result check, a non-retryable error or a Permanent one. It
// returns err unchanged. A failure after at least one retry is a GaveUp
// event (Reason "permanent", or "canceled" if the context has ended); a
// failure of the first attempt passes through untouched.
func (r *Retrier) stopped(ctx context.Context, attempt int, err error) error {
	if err == nil || attempt == 1 {
		return err
	}

	reason := ReasonPermanent
	if ctx.Err() != nil {
		reason = ReasonCanceled
	}
	r.gaveUp.Add(1)
	if r.obs != nil {
		middleware.Emit(ctx, r.obs, middleware.Event{
			Kind: middleware.GaveUp, Concern: "retry", Name: r.name,
			Attempt: attempt, Reason: string(reason), Err: err,
		})
	}
	return err
}

func (r *Retrier) exhausted(ctx context.Context, d decision, attempts int, last error, earlier *history) error {
	e := &ExhaustedError{
		Reason:   d.reason,
		Attempts: attempts,
		Delay:    d.delay,
		Err:      last,
		Earlier:  earlier.slice(),
		limit:    d.limit,
	}
	if d.reason == ReasonCanceled {
		e.ctxErr = ctx.Err()
		if cause := context.Cause(ctx); cause != e.ctxErr {
			e.cause = cause
		}
	}
	r.gaveUp.Add(1)
	if r.obs != nil {
		middleware.Emit(ctx, r.obs, middleware.Event{
			Kind: middleware.GaveUp, Concern: "retry", Name: r.name,
			Attempt: attempts, Delay: d.delay, Reason: string(d.reason), Err: e,
		})
	}
	return e
}

// Stats is a snapshot of a [Retrier]'s counts. Calls that succeed at once
// are not counted (count calls in your own metrics, or with an Observer).
type Stats struct {
	// Retries counts the retries decided, one per Retry event: each is
	// counted when its delay starts, so a retry whose context ends during
	// the delay is counted here and, then, in GaveUp.
	Retries uint64
	// GaveUp counts the calls that stopped on a failure, one per GaveUp
	// event: every *ExhaustedError, and every non-retryable failure after
	// at least one retry.
	GaveUp uint64
}

// Stats returns the counts so far, over every middleware built from r. It
// has no side effects. The fields are read one by one, so while calls are
// running they may be a few counts apart.
func (r *Retrier) Stats() Stats {
	return Stats{Retries: r.retries.Load(), GaveUp: r.gaveUp.Load()}
}
