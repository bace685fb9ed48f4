package stack_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/retry"
	"github.com/brace-go/brace/middleware/stack"
	"github.com/brace-go/brace/middleware/throttle"
	"github.com/brace-go/brace/middleware/timeout"
)

var errDown = errors.New("downstream: 503")

func must[T any](v T, err error) T {
	if err != nil {
		panic(err) // a test's configuration is wrong
	}
	return v
}

// Apply infers In and Out from the stage: no type argument is written.
func TestApplyInfersTypes(t *testing.T) {
	rt := must(retry.New(retry.Config{MaxAttempts: 2, DelayFunc: func(int, error) time.Duration { return 0 }}))
	calls := 0
	get := stack.Apply(func(ctx context.Context, id int) (string, error) {
		if calls++; calls == 1 {
			return "", errDown
		}
		return "user", nil
	}, stack.Layers{Retry: rt})
	if out, err := get(context.Background(), 1); out != "user" || err != nil || calls != 2 {
		t.Fatalf("get = (%q, %v) after %d calls, want (user, nil) after 2", out, err, calls)
	}
}

// The breaker sits inside the retry: it sees every attempt, so one call of
// three failing attempts opens a breaker whose threshold is three.
func TestBreakerSeesEveryAttempt(t *testing.T) {
	rt := must(retry.New(retry.Config{MaxAttempts: 3, DelayFunc: func(int, error) time.Duration { return 0 }}))
	br := must(breaker.New(breaker.Config{Threshold: 3}))
	get := stack.Apply(func(context.Context, int) (int, error) { return 0, errDown }, stack.Layers{Retry: rt, Breaker: br})
	if _, err := get(context.Background(), 1); !errors.Is(err, errDown) {
		t.Fatalf("err = %v, want the downstream's error", err)
	}
	if got := br.State(); got != breaker.Open {
		t.Fatalf("breaker state = %v after one call of 3 failed attempts, want open", got)
	}
}

// The throttle sits inside the breaker: an open breaker's refusals never
// reach it (they are not requests the downstream refused). (That the
// throttle's own refusals never trip a breaker is throttle's
// TestInsideBreaker.)
func TestThrottleInsideBreaker(t *testing.T) {
	br := must(breaker.New(breaker.Config{Threshold: 3}))
	th := must(throttle.New(throttle.Config{MinRequests: 1, MaxProbability: 1, Seed: 1}))
	calls := 0
	get := stack.Apply(func(context.Context, int) (int, error) { calls++; return 0, errDown }, stack.Layers{Breaker: br, Throttle: th})
	for range 3 {
		get(context.Background(), 1)
	}
	if br.State() != breaker.Open {
		t.Fatalf("breaker state = %v after 3 failures, want open", br.State())
	}
	before := th.Stats().Requests
	for range 10 {
		if _, err := get(context.Background(), 1); !errors.Is(err, breaker.ErrOpen) {
			t.Fatalf("err = %v, want the open breaker's refusal", err)
		}
	}
	if got := th.Stats().Requests; got != before {
		t.Errorf("throttle counted %d requests while the breaker was open, want %d: it must sit inside the breaker", got, before)
	}
	if calls != 3 {
		t.Errorf("stage ran %d times, want 3", calls)
	}

}

// The timeout sits inside the retry: a hung attempt is cut off and the next
// attempt gets a fresh deadline.
func TestTimeoutIsPerAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rt := must(retry.New(retry.Config{MaxAttempts: 2, DelayFunc: func(int, error) time.Duration { return 0 }}))
		to := must(timeout.New(timeout.Config{Duration: 100 * time.Millisecond}))
		calls := 0
		get := stack.Apply(func(ctx context.Context, _ int) (int, error) {
			if calls++; calls == 1 {
				<-ctx.Done() // hangs until its deadline
				return 0, ctx.Err()
			}
			return 7, nil
		}, stack.Layers{Retry: rt, Timeout: to})
		start := time.Now()
		if out, err := get(context.Background(), 1); out != 7 || err != nil {
			t.Fatalf("get = (%d, %v), want (7, nil)", out, err)
		}
		if d := time.Since(start); d != 100*time.Millisecond {
			t.Errorf("took %v, want the first attempt's 100ms deadline", d)
		}
	})
}

// Recover is innermost: a panic becomes a failure that the breaker counts
// and the backpressure slot is released.
func TestRecoverInnermost(t *testing.T) {
	br := must(breaker.New(breaker.Config{Threshold: 1}))
	bp := must(backpressure.New(backpressure.Config{Capacity: 1}))
	get := stack.Apply(func(context.Context, int) (int, error) { panic("bug") },
		stack.Layers{Breaker: br, Backpressure: bp, Recover: true})
	_, err := get(context.Background(), 1)
	var pe *middleware.PanicError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v, want a *middleware.PanicError", err)
	}
	if br.State() != breaker.Open {
		t.Errorf("breaker state = %v, want open: it did not count the panic", br.State())
	}
	if n := bp.Stats().InFlight; n != 0 {
		t.Errorf("backpressure in flight = %d after the call, want 0", n)
	}
}

func TestEmptyLayersIsIdentity(t *testing.T) {
	get := stack.Apply(func(_ context.Context, in int) (int, error) { return in * 2, nil }, stack.Layers{})
	if out, err := get(context.Background(), 21); out != 42 || err != nil {
		t.Fatalf("get = (%d, %v), want (42, nil)", out, err)
	}
}
