package fallback_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/fallback"
	"github.com/google/go-cmp/cmp"
)

// TestCounter: 3000 concurrent calls — successes, fallbacks that work and
// fallbacks that fail — share one Counter.
func TestCounter(t *testing.T) {
	var c fallback.Counter
	cfg := fallback.Config{Counter: &c}
	good := middleware.Apply(fails(nil, new(atomic.Int64)), fallback.Value[int]("v", cfg))
	saved := middleware.Apply(fails(errPrimary, new(atomic.Int64)), fallback.Value[int]("v", cfg))
	lost := middleware.Apply(fails(errPrimary, new(atomic.Int64)),
		fallback.Stage(func(context.Context, int) (string, error) { return "", errFallback }, cfg))
	var wg sync.WaitGroup
	for range 1000 {
		for _, s := range []middleware.Stage[int, string]{good, saved, lost} {
			wg.Go(func() { s(context.Background(), 1) })
		}
	}
	wg.Wait()
	want := fallback.Stats{Calls: 3000, Fallbacks: 2000, FallbackFailures: 1000}
	if diff := cmp.Diff(want, c.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

func TestNilCounterStats(t *testing.T) {
	var c *fallback.Counter
	if diff := cmp.Diff(fallback.Stats{}, c.Stats()); diff != "" {
		t.Errorf("nil Counter Stats (-want +got):\n%s", diff)
	}
}

func TestLoggerName(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	bad := middleware.Apply(fails(errPrimary, new(atomic.Int64)),
		fallback.Stage(func(context.Context, int) (string, error) { return "", errFallback }, fallback.Config{Logger: logger, Name: "prices"}))
	_, _ = bad(context.Background(), 1)
	want := []string{
		`level=WARN msg="fallback: used" err="primary down" name=prices`,
		`level=ERROR msg="fallback: failed" err="fallback down" primary="primary down" name=prices`,
	}
	if diff := cmp.Diff(want, strings.Split(strings.TrimSpace(buf.String()), "\n")); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
}

func TestCounterAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	s := middleware.Apply(direct, fallback.Value[int](-1, fallback.Config{Counter: new(fallback.Counter)}))
	ctx := context.Background()
	if n := testing.AllocsPerRun(1000, func() { s(ctx, 1) }); n != 0 {
		t.Errorf("success with a Counter allocates %v times; want 0", n)
	}
}

func BenchmarkFallbackCounter(b *testing.B) {
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		c    *fallback.Counter
	}{{"counter=off", nil}, {"counter=on", new(fallback.Counter)}} {
		s := middleware.Apply(direct, fallback.Value[int](-1, fallback.Config{Counter: bc.c}))
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				sink, _ = s(ctx, i)
			}
		})
	}
}
