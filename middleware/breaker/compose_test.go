package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/adaptive"
	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/ratelimit"
)

// Sheds from a limiter inside the breaker are local rejections: however many
// there are, they must not open the breaker, and the calls that did reach
// the downstream are still counted.
func TestShedsInsideDoNotOpen(t *testing.T) {
	b, err := breaker.New(breaker.Config{Name: "svc", Threshold: 2})
	if err != nil {
		t.Fatal(err)
	}
	lim, err := backpressure.New(1, backpressure.Config{})
	if err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	boom := errors.New("boom")
	stage := middleware.Apply(func(ctx context.Context, hold bool) (int, error) {
		if hold {
			entered <- struct{}{}
			<-release
			return 0, boom
		}
		return 1, nil
	}, breaker.Middleware[bool, int](b), backpressure.Middleware[bool, int](lim))

	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := stage(context.Background(), true); !errors.Is(err, boom) {
			t.Errorf("holder: %v, want boom", err)
		}
	})
	<-entered // the only slot is taken
	for range 10 {
		if _, err := stage(context.Background(), false); !errors.Is(err, backpressure.ErrShed) {
			t.Fatalf("err = %v, want a shed", err)
		}
	}
	if got := b.State(); got != breaker.Closed {
		t.Fatalf("after 10 sheds the breaker is %v, want closed", got)
	}
	if c := b.Counts(); c.Failures != 0 || c.ConsecutiveFailures != 0 {
		t.Errorf("sheds were counted as failures: %+v", c)
	}
	close(release)
	wg.Wait()
	if c := b.Counts(); c.Failures != 1 || c.ConsecutiveFailures != 1 {
		t.Errorf("counts %+v, want the held call's one failure", c)
	}
}

// Every kind of local rejection Brace produces is ignored by the default
// classifier: none of them says anything about the downstream's health.
func TestBraceRejectionsAreIgnored(t *testing.T) {
	for _, err := range []error{
		&backpressure.ShedError{Depth: 1, Capacity: 1, Weight: 1},
		&backpressure.WeightError{Weight: 9, Capacity: 1},
		&ratelimit.LimitedError{Delay: time.Second},
		adaptive.ErrLimitExceeded,
		&breaker.OpenError{Name: "inner", State: breaker.Open},
	} {
		if got := breaker.DefaultClassify(fmt.Errorf("wrapped: %w", err)); got != breaker.Ignore {
			t.Errorf("DefaultClassify(%T) = %v, want Ignore", err, got)
		}
	}
}
