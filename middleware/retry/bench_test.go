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

func newStage(b *testing.B, cfg retry.Config, retryOn ...func(int, error) bool) middleware.Stage[int, int] {
	r, err := retry.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return retry.Middleware[int, int](r, retryOn...)(okStage)
}

func benchSuccess(b *testing.B, cfg retry.Config) {
	s := newStage(b, cfg)
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
	s := newStage(b, retry.Config{}, func(n int, err error) bool { return err != nil || n < 0 })
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
	r, err := retry.New(retry.Config{DelayFunc: func(int, error) time.Duration { return 0 }})
	if err != nil {
		b.Fatal(err)
	}
	fail := true
	s := retry.Middleware[int, int](r)(func(_ context.Context, in int) (int, error) {
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
	r, err := retry.New(retry.Config{DelayFunc: func(int, error) time.Duration { return 0 }})
	if err != nil {
		b.Fatal(err)
	}
	s := retry.Middleware[int, int](r)(func(context.Context, int) (int, error) { return 0, errFlaky })
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, err := s(ctx, 1)
		if err == nil {
			b.Fatal("no error")
		}
	}
}

// BenchmarkRetrySuccessCancelCtx: the success path with a cancelable
// context, whose Err is what the ended-context check reads.
func BenchmarkRetrySuccessCancelCtx(b *testing.B) {
	s := newStage(b, retry.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ReportAllocs()
	for b.Loop() {
		n, _ := s(ctx, 1)
		sink += n
	}
}

// BenchmarkRetryEndedCtx: the rejection path, a call whose context has
// already ended.
func BenchmarkRetryEndedCtx(b *testing.B) {
	s := newStage(b, retry.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b.ReportAllocs()
	for b.Loop() {
		n, _ := s(ctx, 1)
		sink += n
	}
}

// BenchmarkRetrySuccessParallel: both cores calling through one Retrier;
// the success path touches no shared counter.
func BenchmarkRetrySuccessParallel(b *testing.B) {
	s := newStage(b, retry.Config{})
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s(ctx, 1)
		}
	})
}
