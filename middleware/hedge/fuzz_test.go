package hedge_test

import (
	"context"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/middleware/hedge"
)

// FuzzNew checks the validator: any Config yields a working Hedger or an
// error that starts with "hedge: " and names the field at fault, never a
// panic. A working Hedger returns the stage's result, starts at most
// MaxHedges extra attempts, and leaves no attempt running.
func FuzzNew(f *testing.F) {
	f.Add(int64(0), 0.0, 0, 0, int64(0))
	f.Add(int64(time.Millisecond), float64(hedge.Fixed), 0, 2, int64(5*time.Millisecond))
	f.Add(int64(time.Millisecond), 0.5, 3, 1, int64(time.Millisecond))
	f.Add(int64(-1), 0.0, 0, 0, int64(0))
	f.Add(int64(0), 1.0, 0, 0, int64(0))
	f.Add(int64(0), math.NaN(), 0, 0, int64(0))
	f.Add(int64(0), -0.5, 0, 0, int64(0))
	f.Add(int64(0), 0.0, -1, 0, int64(0))
	f.Add(int64(0), 0.0, 0, -1, int64(0))
	f.Fuzz(func(t *testing.T, delay int64, pct float64, samples, maxHedges int, work int64) {
		cfg := hedge.Config{Delay: time.Duration(delay), Percentile: pct, Samples: samples, MaxHedges: maxHedges}
		h, err := hedge.New(cfg)
		if err != nil {
			if h != nil {
				t.Fatalf("%+v: New returned a Hedger and the error %v", cfg, err)
			}
			wantFieldError(t, err, "hedge: ", "Delay", "Percentile", "Samples", "MaxHedges")
			return
		}
		if maxHedges > 100 || samples > 1<<16 {
			return
		}
		work = max(work, 0) % int64(time.Second)
		synctest.Test(t, func(t *testing.T) {
			var started, running atomic.Int64
			s := hedge.Middleware[int, int](h)(func(ctx context.Context, in int) (int, error) {
				started.Add(1)
				running.Add(1)
				defer running.Add(-1)
				select {
				case <-time.After(time.Duration(work)):
					return in, nil
				case <-ctx.Done():
					return 0, ctx.Err()
				}
			})
			for i := range 3 {
				before := started.Load()
				out, err := s(context.Background(), i)
				if out != i || err != nil {
					t.Fatalf("%+v: call %d got %d, %v", cfg, i, out, err)
				}
				if n := started.Load() - before; n > int64(1+max(maxHedges, 1 /* the default */)) {
					t.Fatalf("%+v: call %d started %d attempts", cfg, i, n)
				}
				synctest.Wait()
				if n := running.Load(); n != 0 {
					t.Fatalf("%+v: %d attempts still running after call %d returned", cfg, n, i)
				}
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
