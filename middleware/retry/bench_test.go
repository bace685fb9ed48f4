package retry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/budget"
	"github.com/brace-go/brace/middleware/retry"
)

var sink int

//go:noinline
func okStage(_ context.Context, in int) (int, error) { return in + 1, nil }

// BenchmarkDirect is the baseline: the stage called through a func value,
// as every middleware calls it.
func BenchmarkDirect(b *testing.B) {
	var s middleware.Stage[int, int] = okStage
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		n, _ := s(ctx, 1)
		sink += n
	}
}

func benchSuccess(b *testing.B, cfg retry.Config) {
	mw, err := retry.New[int, int](cfg)
	if err != nil {
		b.Fatal(err)
	}
	s := mw(okStage)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		n, _ := s(ctx, 1)
		sink += n
	}
}

func BenchmarkRetrySuccess(b *testing.B) { benchSuccess(b, retry.Config{}) }

func BenchmarkRetrySuccessMaxElapsed(b *testing.B) {
	benchSuccess(b, retry.Config{MaxElapsed: time.Minute})
}

func BenchmarkRetrySuccessBudget(b *testing.B) {
	bud, _ := budget.New(budget.Config{})
	benchSuccess(b, retry.Config{Budget: bud})
}

func BenchmarkRetrySuccessWithResult(b *testing.B) {
	mw, err := retry.NewWithResult[int, int](retry.Config{}, func(n int, err error) bool { return err != nil || n < 0 })
	if err != nil {
		b.Fatal(err)
	}
	s := mw(okStage)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		n, _ := s(ctx, 1)
		sink += n
	}
}

var errFlaky = errors.New("flaky")

// BenchmarkRetryOnce measures the retry path: the first attempt fails,
// the second (after a zero delay) succeeds.
func BenchmarkRetryOnce(b *testing.B) {
	mw, err := retry.New[int, int](retry.Config{DelayFunc: func(int, error) time.Duration { return 0 }})
	if err != nil {
		b.Fatal(err)
	}
	fail := true
	s := mw(func(_ context.Context, in int) (int, error) {
		fail = !fail
		if !fail {
			return 0, errFlaky
		}
		return in, nil
	})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		n, _ := s(ctx, 1)
		sink += n
	}
}

// BenchmarkRetryExhausted measures three failed attempts with zero delays,
// ending in an *ExhaustedError.
func BenchmarkRetryExhausted(b *testing.B) {
	mw, err := retry.New[int, int](retry.Config{DelayFunc: func(int, error) time.Duration { return 0 }})
	if err != nil {
		b.Fatal(err)
	}
	s := mw(func(context.Context, int) (int, error) { return 0, errFlaky })
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, err := s(ctx, 1)
		if err == nil {
			b.Fatal("no error")
		}
	}
}
