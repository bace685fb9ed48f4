package budget

import (
	"context"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"
)

// The running totals that Acquire reads must always equal the sum of the
// window's buckets, whatever the pattern of calls and pauses: long and
// short gaps, several buckets skipped at once, a whole window of silence.
func TestRunningTotalsMatchBuckets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, err := New(Config{Ratio: 0.5, MinPerSecond: 1, Window: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		r := rand.New(rand.NewPCG(1, 2))
		ctx := context.Background()
		for i := range 20000 {
			switch r.IntN(3) {
			case 0, 1:
				b.Deposit()
			case 2:
				b.Acquire(ctx)
			}
			if r.IntN(10) == 0 {
				time.Sleep(time.Duration(r.Int64N(int64(3 * time.Second / 2))))
			}
			b.mu.Lock()
			e := b.advance(b.epoch())
			d, w := b.sums(e)
			gotD, gotT := b.totD, b.totT
			b.mu.Unlock()
			if d != gotD || w != gotT {
				t.Fatalf("step %d: running totals (%d deposits, %d taken) differ from the window's buckets (%d, %d)", i, gotD, gotT, d, w)
			}
		}
	})
}
