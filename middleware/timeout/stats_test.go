package timeout_test

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/middleware/timeout"
	"github.com/google/go-cmp/cmp"
)

func TestCounter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var c timeout.Counter
		mw := mustNew(t, timeout.Config{Duration: time.Second, Counter: &c})
		const goroutines = 1000
		var wg sync.WaitGroup
		for i := range goroutines {
			wg.Go(func() {
				work := time.Duration(i%4) * 1500 * time.Millisecond // 0s, 1.5s, 3s, 4.5s: three in four time out
				mw(cooperative(work))(t.Context(), i)
			})
		}
		wg.Wait()
		want := timeout.Stats{Calls: goroutines, Timeouts: goroutines * 3 / 4}
		if diff := cmp.Diff(want, c.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
}

func TestNilCounterStats(t *testing.T) {
	var c *timeout.Counter
	if diff := cmp.Diff(timeout.Stats{}, c.Stats()); diff != "" {
		t.Errorf("nil Counter Stats (-want +got):\n%s", diff)
	}
}
