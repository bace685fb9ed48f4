package timeout_test

import (
	"context"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/timeout"
)

var sink int

//go:noinline
func okStage(_ context.Context, in int) (int, error) { return in + 1, nil }

func BenchmarkDirect(b *testing.B) {
	var s middleware.Stage[int, int] = okStage
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		n, _ := s(ctx, 1)
		sink += n
	}
}

// BenchmarkWithTimeout is the baseline: what a hand-written
// context.WithTimeout around the call costs.
func BenchmarkWithTimeout(b *testing.B) {
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		c, cancel := context.WithTimeout(ctx, time.Minute)
		n, _ := okStage(c, 1)
		cancel()
		sink += n
	}
}

func BenchmarkTimeout(b *testing.B) {
	to, err := timeout.New(timeout.Config{Duration: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	s := timeout.Middleware[int, int](to)(okStage)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		n, _ := s(ctx, 1)
		sink += n
	}
}

// BenchmarkTimeoutParentFirst: the caller's deadline is earlier, so no
// context is derived.
func BenchmarkTimeoutParentFirst(b *testing.B) {
	to, err := timeout.New(timeout.Config{Duration: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	s := timeout.Middleware[int, int](to)(okStage)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b.ReportAllocs()
	for b.Loop() {
		n, _ := s(ctx, 1)
		sink += n
	}
}
