package timeout_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/middleware/timeout"
)

// FuzzNew checks the validator: any Duration yields a working Timeout
// or an error that starts with "timeout: " and names the field, never a
// panic. Its middleware lets a stage that finishes in time return
// its result and cuts a stage that waits on its context at exactly the
// deadline.
func FuzzNew(f *testing.F) {
	f.Add(int64(time.Second), int64(time.Millisecond))
	f.Add(int64(1), int64(0))
	f.Add(int64(0), int64(0))
	f.Add(int64(-1), int64(0))
	f.Add(int64(math.MaxInt64), int64(math.MaxInt64))
	f.Fuzz(func(t *testing.T, d, work int64) {
		cfg := timeout.Config{Duration: time.Duration(d)}
		to, err := timeout.New(cfg)
		if err != nil {
			if to != nil {
				t.Fatalf("%+v: New returned a Timeout and the error %v", cfg, err)
			}
			wantFieldError(t, err, "timeout: ", "Duration")
			return
		}
		if cfg.Duration > 1000*time.Hour {
			return // the fake clock would pass year 2262
		}
		work = max(work, 0) % int64(2*cfg.Duration)
		synctest.Test(t, func(t *testing.T) {
			s := timeout.Middleware[int, int](to)(func(ctx context.Context, in int) (int, error) {
				select {
				case <-time.After(time.Duration(work)):
					return in, nil
				case <-ctx.Done():
					return 0, ctx.Err()
				}
			})
			start := time.Now()
			out, err := s(context.Background(), 7)
			elapsed := time.Since(start)
			switch {
			case work < d:
				if out != 7 || err != nil || elapsed != time.Duration(work) {
					t.Fatalf("%+v, work %v: got %d, %v after %v; want 7, nil", cfg, time.Duration(work), out, err, elapsed)
				}
			case work > d:
				if !errors.Is(err, timeout.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) || elapsed != cfg.Duration {
					t.Fatalf("%+v, work %v: got %v after %v; want ErrTimeout after %v", cfg, time.Duration(work), err, elapsed, cfg.Duration)
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
