package redisstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware/redisstore"
	"github.com/brace-go/brace/middleware/redisstore/internal/redistest"
)

// BenchmarkRateLimiter: a token from the process's batch, a refusal the
// process already knows (no round trip for either), and a call that is a
// round trip (MaxBatch 1).
func BenchmarkRateLimiter(b *testing.B) {
	c := redistest.Shared(b).Client(b)
	ctx := context.Background()
	b.Run("Batch", func(b *testing.B) {
		l := mustRate(b, redisstore.RateLimiterConfig{Client: c, Name: b.Name(), Rate: 1 << 40, Burst: 1 << 30, MaxBatch: 1 << 30, BatchWindow: time.Hour})
		_, _ = l.Acquire(ctx)
		_, _ = l.Acquire(ctx)
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if _, err := l.Acquire(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("RefusedLocally", func(b *testing.B) {
		l := mustRate(b, redisstore.RateLimiterConfig{Client: c, Name: b.Name(), Rate: 1, Per: time.Hour})
		_, _ = l.Acquire(ctx)
		_, _ = l.Acquire(ctx)
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if _, err := l.Acquire(ctx); err == nil {
				b.Fatal("admitted")
			}
		}
	})
	b.Run("RoundTrip", func(b *testing.B) {
		l := mustRate(b, redisstore.RateLimiterConfig{Client: c, Name: b.Name(), Rate: 1 << 40})
		b.ReportAllocs()
		for b.Loop() {
			if _, err := l.Acquire(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkLimiterBatched: a slot taken from the process's block and given
// back, with no round trip.
func BenchmarkLimiterBatched(b *testing.B) {
	c := redistest.Shared(b).Client(b)
	ctx := context.Background()
	l, err := redisstore.NewLimiter(redisstore.LimiterConfig{Client: c, Name: b.Name(), Capacity: 1000, Batch: 16, Lease: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	hold, err := l.Acquire(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer hold.Done(nil)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		p, err := l.Acquire(ctx)
		if err != nil {
			b.Fatal(err)
		}
		p.Done(nil)
	}
}
