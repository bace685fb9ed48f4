package breaker_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware/breaker"
)

// halfDownStore fails every other Update.
type halfDownStore struct {
	breaker.Store
	n atomic.Int64
}

var errHalfDown = errors.New("store down")

func (s *halfDownStore) Update(ctx context.Context, op breaker.Op) (breaker.Snapshot, error) {
	if s.n.Add(1)%2 == 0 {
		return breaker.Snapshot{}, errHalfDown
	}
	return s.Store.Update(ctx, op)
}

// TestStoreErrorWhileAdopting races results whose store operation fails
// (they fall back to local state) with results whose snapshot is being
// adopted. Under -race it guards against reading the local generation
// without the lock (found by the chaos soak against Redis, internal/soak).
func TestStoreErrorWhileAdopting(t *testing.T) {
	b := mustNew(t, breaker.Config{
		Threshold: 1 << 20, Store: &halfDownStore{Store: breaker.NewMemoryStore()}, StoreSync: time.Nanosecond,
	})
	ctx := context.Background()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 300 {
				if tk, err := b.Acquire(ctx); err == nil {
					tk.Done(errHalfDown)
				}
			}
		})
	}
	wg.Wait()
	if got := b.State(); got != breaker.Closed {
		t.Errorf("state %v, want closed (the threshold is out of reach)", got)
	}
}
