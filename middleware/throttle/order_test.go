package throttle_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/retry"
	"github.com/brace-go/brace/middleware/throttle"
)

// TestInsideBreaker: the recommended order, Retry → Breaker → Throttle.
// The throttle's rejections never count as the downstream's failures
// (the breaker ignores Rejected() errors), and Retry does not retry them
// (Retryable() false).
func TestInsideBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		th := mustNew(t, throttle.Config{Seed: 1, MinRequests: 1})
		br, err := breaker.New(breaker.Config{Threshold: 1000})
		if err != nil {
			t.Fatal(err)
		}
		rt, err := retry.New(retry.Config{MaxAttempts: 3})
		if err != nil {
			t.Fatal(err)
		}
		downstream := 0
		stage := middleware.Apply(func(context.Context, int) (int, error) {
			downstream++
			return 0, errUnavailable
		}, retry.Middleware[int, int](rt), breaker.Middleware[int, int](br), throttle.Middleware[int, int](th))
		throttled := 0
		for range 200 {
			_, err := stage(ctx, 0)
			if errors.Is(err, throttle.ErrThrottled) {
				throttled++
			}
		}
		s := th.Stats()
		if throttled == 0 || s.Rejected == 0 {
			t.Fatalf("nothing throttled: %+v", s)
		}
		// Every downstream call was a failure the breaker counted; no
		// throttle rejection was.
		if bs := br.Stats(); bs.State != breaker.Closed || bs.Counts.Failures != downstream {
			t.Errorf("breaker %+v: want closed, with exactly the %d downstream failures counted", bs, downstream)
		}
		// Requests = downstream calls + rejections: each rejection ended
		// its retry loop (not retried).
		if s.Requests != int64(downstream)+int64(s.Rejected) {
			t.Errorf("requests %d, want downstream %d + rejected %d", s.Requests, downstream, s.Rejected)
		}
		t.Logf("200 calls: downstream %d attempts, %d calls ended throttled, breaker %+v", downstream, throttled, br.Stats())
	})
}
