package budget_test

import (
	"math"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/middleware/budget"
)

// FuzzNew checks the validator: any Config yields a working budget or an
// error that starts with "budget: " and names the field at fault, never a
// panic. A working budget never reports a negative Available, grants
// exactly Available Acquires, and refuses every one with no ratio and
// no reserve.
func FuzzNew(f *testing.F) {
	f.Add(0.0, 0.0, int64(0), uint16(10))
	f.Add(float64(budget.None), float64(budget.None), int64(time.Second), uint16(100))
	f.Add(0.1, float64(budget.None), int64(0), uint16(1000))
	f.Add(float64(budget.None), 5.0, int64(10), uint16(3))
	f.Add(-0.5, 0.0, int64(0), uint16(0))
	f.Add(math.NaN(), 0.0, int64(0), uint16(0))
	f.Add(0.0, math.Inf(1), int64(0), uint16(0))
	f.Add(0.0, 0.0, int64(9), uint16(0))
	f.Add(0.0, 0.0, int64(-time.Second), uint16(0))
	f.Add(1e300, 1e300, int64(math.MaxInt64), uint16(5))
	f.Fuzz(func(t *testing.T, ratio, perSec float64, window int64, deposits uint16) {
		cfg := budget.Config{Ratio: ratio, MinPerSecond: perSec, Window: time.Duration(window)}
		synctest.Test(t, func(t *testing.T) {
			b, err := budget.New(cfg)
			if err != nil {
				if b != nil {
					t.Fatalf("%+v: New returned a budget and the error %v", cfg, err)
				}
				wantFieldError(t, err, "budget: ", "Ratio", "MinPerSecond", "Window")
				return
			}
			for range deposits {
				b.Deposit()
			}
			avail := b.Stats().Available
			if avail < 0 {
				t.Fatalf("%+v: Available = %d after %d deposits", cfg, avail, deposits)
			}
			if ratio == budget.None && perSec == budget.None && avail != 0 {
				t.Fatalf("%+v: Available = %d with no ratio and no reserve", cfg, avail)
			}
			// Acquire what is available (up to a bound), then once more.
			n := min(avail, 5000)
			for i := range n {
				if _, err := b.Acquire(t.Context()); err != nil {
					t.Fatalf("%+v: Acquire %d of %d available refused: %v", cfg, i+1, avail, err)
				}
			}
			// Exact below 2^50; above it the float sums round.
			if got := b.Stats().Available; avail < 1<<50 && got != avail-n || got < 0 {
				t.Fatalf("%+v: Available = %d after %d of %d Acquires", cfg, got, n, avail)
			}
			if _, err := b.Acquire(t.Context()); n == avail && err != budget.ErrExhausted {
				t.Fatalf("%+v: an Acquire beyond Available = %d got %v; want ErrExhausted", cfg, avail, err)
			}
		})
	})
}

// wantFieldError fails unless err's text starts with prefix and names one
// of fields.
func wantFieldError(t *testing.T, err error, prefix string, fields ...string) {
	t.Helper()
	msg := err.Error()
	if !strings.HasPrefix(msg, prefix) {
		t.Fatalf("error %q does not start with %q", msg, prefix)
	}
	for _, f := range fields {
		if strings.Contains(msg, f) {
			return
		}
	}
	t.Fatalf("error %q names none of the fields %v", msg, fields)
}
