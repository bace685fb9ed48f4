package dedup_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/middleware/dedup"
)

// FuzzNew checks the validator: any Config yields a working Group or an
// error that starts with "dedup: " and names the
// field at fault, never a panic. A working middleware gives concurrent
// callers of one key one shared result, and runs a new call once the
// shared one has ended and any cached result has expired.
func FuzzNew(f *testing.F) {
	f.Add(int64(0), 0, false)
	f.Add(int64(time.Second), 0, false)
	f.Add(int64(time.Second), 3, true)
	f.Add(int64(-1), 0, false)
	f.Add(int64(time.Second), -1, false)
	f.Add(int64(0), 5, false)
	f.Add(int64(0), 0, true)
	f.Fuzz(func(t *testing.T, ttl int64, maxEntries int, cacheErrors bool) {
		cfg := dedup.Config{TTL: time.Duration(ttl), MaxEntries: maxEntries, CacheErrors: cacheErrors}
		g, err := dedup.New(cfg)
		if err != nil {
			if g != nil {
				t.Fatalf("%+v: New returned a Group and the error %v", cfg, err)
			}
			wantFieldError(t, err, "dedup: ", "TTL", "MaxEntries", "CacheErrors")
			return
		}
		mw := dedup.Middleware[int, int](g, func(in int) int { return in % 3 })
		synctest.Test(t, func(t *testing.T) {
			var runs atomic.Int64
			release := make(chan struct{})
			s := mw(func(ctx context.Context, in int) (int, error) {
				runs.Add(1)
				<-release
				return in * 10, nil
			})
			const callers = 5
			var wg sync.WaitGroup
			for range callers {
				wg.Go(func() {
					if out, err := s(context.Background(), 4); out != 40 || err != nil {
						t.Errorf("%+v: got %d, %v; want 40, nil", cfg, out, err)
					}
				})
			}
			synctest.Wait() // every caller has joined the one shared call
			close(release)
			wg.Wait()
			if n := runs.Load(); n != 1 {
				t.Fatalf("%+v: %d concurrent callers ran the stage %d times, want once", cfg, callers, n)
			}
			// Input 1 has the key of input 4: it gets the cached 40 while
			// the TTL lasts, and runs the stage afresh after.
			want := 10
			switch {
			case cfg.TTL > 1000*time.Hour:
				want = 40
			case cfg.TTL > 0:
				time.Sleep(cfg.TTL)
			}
			if out, err := s(context.Background(), 1); out != want || err != nil {
				t.Fatalf("%+v: got %d, %v; want %d, nil", cfg, out, err, want)
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if _, err := s(ctx, 2); !errors.Is(err, context.Canceled) {
				t.Fatalf("%+v: a cancelled caller got %v, want context.Canceled", cfg, err)
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
