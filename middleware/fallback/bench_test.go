package fallback_test

import (
	"context"
	"testing"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/fallback"
)

//go:noinline
func direct(_ context.Context, in int) (int, error) { return in + 1, nil }

//go:noinline
func failing(context.Context, int) (int, error) { return 0, errPrimary }

var sink int

// BenchmarkDirect is the baseline: the stage called through a func value.
func BenchmarkDirect(b *testing.B) {
	var s middleware.Stage[int, int] = direct
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		sink, _ = s(ctx, i)
	}
}

func BenchmarkFallback(b *testing.B) {
	ctx := context.Background()
	f := mustNew(b, fallback.Config{})
	value := func(context.Context, int, error) (int, error) { return -1, nil }
	stage := func(ctx context.Context, in int, _ error) (int, error) { return direct(ctx, in) }
	stageFails := func(ctx context.Context, in int, _ error) (int, error) { return failing(ctx, in) }
	for _, bb := range []struct {
		name string
		s    middleware.Stage[int, int]
	}{
		{"success", middleware.Apply(direct, fallback.Middleware(f, value))},
		{"value", middleware.Apply(failing, fallback.Middleware(f, value))},
		{"stage", middleware.Apply(failing, fallback.Middleware(f, stage))},
		{"stage-fails", middleware.Apply(failing, fallback.Middleware(f, stageFails))},
	} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				sink, _ = bb.s(ctx, i)
			}
		})
	}
}
