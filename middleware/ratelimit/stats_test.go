package ratelimit_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/ratelimit"
	"github.com/google/go-cmp/cmp"
)

// TestCounter: 2000 callers against a bucket of 10 at 100/s; the counts
// are what the callers saw, for a Limiter and a Keyed limiter, in both
// modes.
func TestCounter(t *testing.T) {
	for _, maxWait := range []time.Duration{0, time.Second} {
		t.Run(fmt.Sprint("MaxWait=", maxWait), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const callers, rps, burst = 2000, 100, 10
				var lc, kc ratelimit.Counter
				l := mustNew(t, ratelimit.Config{Rate: rps, Burst: burst, MaxWait: maxWait, Counter: &lc})
				k, err := ratelimit.NewKeyed(ratelimit.KeyedConfig[int]{Rate: rps, Burst: burst, MaxWait: maxWait, Counter: &kc})
				if err != nil {
					t.Fatal(err)
				}
				var wg sync.WaitGroup
				for i := range callers {
					wg.Go(func() { _ = l.Admit(context.Background()) })
					wg.Go(func() { _ = k.Admit(context.Background(), i%2) })
				}
				wg.Wait()
				admitted := uint64(burst + int(maxWait.Seconds()*rps))
				want := ratelimit.Stats{Admitted: admitted, Limited: callers - admitted}
				if diff := cmp.Diff(want, lc.Stats()); diff != "" {
					t.Errorf("Limiter Stats (-want +got):\n%s", diff)
				}
				want = ratelimit.Stats{Admitted: 2 * admitted, Limited: callers - 2*admitted}
				if diff := cmp.Diff(want, kc.Stats()); diff != "" {
					t.Errorf("Keyed Stats (-want +got):\n%s", diff)
				}
			})
		})
	}
}

// TestCounterCancelledWaiter: a waiter whose context ends is neither
// admitted nor limited.
func TestCounterCancelledWaiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var c ratelimit.Counter
		l := mustNew(t, ratelimit.Config{Rate: 1, Burst: 1, MaxWait: time.Minute, Counter: &c})
		_ = l.Admit(context.Background())
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		ctx, cancelNow := context.WithCancel(ctx)
		time.AfterFunc(100*time.Millisecond, cancelNow)
		if err := l.Admit(ctx); err != context.Canceled {
			t.Fatalf("Admit: %v; want context.Canceled", err)
		}
		if diff := cmp.Diff(ratelimit.Stats{Admitted: 1}, c.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
}

func TestNilCounterStats(t *testing.T) {
	var c *ratelimit.Counter
	if diff := cmp.Diff(ratelimit.Stats{}, c.Stats()); diff != "" {
		t.Errorf("nil Counter Stats (-want +got):\n%s", diff)
	}
}

func TestLoggerName(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: dropTime}))
		l := mustNew(t, ratelimit.Config{Rate: 2, Burst: 1, Logger: logger, Name: "api"})
		k, _ := ratelimit.NewKeyed(ratelimit.KeyedConfig[string]{Rate: 2, Burst: 1, Logger: logger, Name: "tenants"})
		for range 2 {
			_ = l.Admit(context.Background())
			_ = k.Admit(context.Background(), "acme")
		}
		want := []string{
			`level=WARN msg="ratelimit: limited" delay=500ms name=api`,
			`level=WARN msg="ratelimit: limited" key=acme delay=500ms name=tenants`,
		}
		if diff := cmp.Diff(want, strings.Split(strings.TrimSpace(buf.String()), "\n")); diff != "" {
			t.Errorf("log (-want +got):\n%s", diff)
		}
	})
}

func TestCounterAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	ctx := context.Background()
	l := mustNew(t, ratelimit.Config{Rate: 1e12, Burst: 1 << 30, Counter: new(ratelimit.Counter)})
	guarded := middleware.Apply(func(_ context.Context, in int) (int, error) { return in, nil }, ratelimit.Middleware[int, int](l))
	if n := testing.AllocsPerRun(1000, func() { _, _ = guarded(ctx, 1) }); n != 0 {
		t.Errorf("%v allocs per admitted call with a Counter, want 0", n)
	}
}

func BenchmarkMiddlewareCounter(b *testing.B) {
	for _, bc := range []struct {
		name string
		c    *ratelimit.Counter
	}{{"counter=off", nil}, {"counter=on", new(ratelimit.Counter)}} {
		l, _ := ratelimit.New(ratelimit.Config{Rate: huge, Burst: 1 << 30, Counter: bc.c})
		s := middleware.Apply(direct, ratelimit.Middleware[int, int](l))
		ctx := context.Background()
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				sink, _ = s(ctx, i)
			}
		})
	}
}
