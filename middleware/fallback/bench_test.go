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
	for _, bb := range []struct {
		name string
		s    middleware.Stage[int, int]
	}{
		{"success", middleware.Apply(direct, fallback.Value[int](-1, fallback.Config{}))},
		{"value", middleware.Apply(failing, fallback.Value[int](-1, fallback.Config{}))},
		{"stage", middleware.Apply(failing, fallback.Stage(direct, fallback.Config{}))},
		{"stage-fails", middleware.Apply(failing, fallback.Stage(failing, fallback.Config{}))},
	} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				sink, _ = bb.s(ctx, i)
			}
		})
	}
}
