package adaptive_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/adaptive"
)

// downstream simulates a service that serves capacity calls at once in
// base time; each call beyond that queues and adds perExtra to the latency
// of calls that arrive while it is there.
type downstream struct {
	base, perExtra time.Duration
	capacity       atomic.Int64
	inflight       atomic.Int64
	served         atomic.Int64
}

func (d *downstream) call(ctx context.Context, _ int) (int, error) {
	n := d.inflight.Add(1)
	defer d.inflight.Add(-1)
	latency := d.base + d.perExtra*time.Duration(max(0, n-d.capacity.Load()))
	select {
	case <-time.After(latency):
		d.served.Add(1)
		return 0, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// load runs clients closed-loop callers of s until ctx ends. A rejected
// caller backs off for backoff before trying again. It calls observe every
// period with the limiter's limit, and returns when all callers have.
func load(ctx context.Context, t *testing.T, s middleware.Stage[int, int], l *adaptive.Limiter, clients int, backoff, period time.Duration, observe func(limit int64)) {
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for ctx.Err() == nil {
				_, err := s(ctx, 0)
				switch {
				case errors.Is(err, adaptive.ErrLimitExceeded):
					select {
					case <-time.After(backoff):
					case <-ctx.Done():
					}
				case err != nil && ctx.Err() == nil:
					t.Errorf("call: %v", err)
				}
			}
		})
	}
	wg.Go(func() {
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				observe(l.Stats().Limit)
			case <-ctx.Done():
				return
			}
		}
	})
	wg.Wait()
}
