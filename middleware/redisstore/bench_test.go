package redisstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/redisstore"
	"github.com/brace-go/brace/middleware/redisstore/internal/redistest"
)

var sink int

//go:noinline
func direct(_ context.Context, in int) (int, error) { return in + 1, nil }

// BenchmarkBreakerClosed measures a closed-state success through
// breaker.Middleware with no store, with a MemoryStore and with a
// BreakerStore on a real Redis, beside a direct call of the stage. With a
// store the view is refreshed once per StoreSync (1s, the default); the
// benchmark includes those refreshes.
func BenchmarkBreakerClosed(b *testing.B) {
	c := redistest.Shared(b).Client(b)
	ctx := context.Background()
	b.Run("Direct", func(b *testing.B) {
		var s middleware.Stage[int, int] = direct
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			sink, _ = s(ctx, i)
		}
	})
	for _, mode := range []struct {
		name string
		cfg  breaker.Config
	}{
		{"Consecutive", breaker.Config{}},
		{"Rate", breaker.Config{FailureRate: 0.5}},
	} {
		for _, st := range []string{"NoStore", "MemoryStore", "RedisStore"} {
			b.Run(mode.name+"/"+st, func(b *testing.B) {
				cfg := mode.cfg
				switch st {
				case "MemoryStore":
					cfg.Store = breaker.NewMemoryStore()
				case "RedisStore":
					rs, err := redisstore.NewBreakerStore(redisstore.BreakerStoreConfig{Client: c, Name: b.Name()})
					if err != nil {
						b.Fatal(err)
					}
					defer rs.Reset(context.Background())
					cfg.Store = rs
				}
				br, err := breaker.New(cfg)
				if err != nil {
					b.Fatal(err)
				}
				s := middleware.Apply(direct, breaker.Middleware[int, int](br))
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					sink, _ = s(ctx, i)
				}
			})
		}
	}
}

// BenchmarkRoundTrip measures what one store operation (a failure, a
// probe, a stale view) costs on a loopback Redis, beside a PING: the
// script's own cost is the difference.
func BenchmarkRoundTrip(b *testing.B) {
	c := redistest.Shared(b).Client(b)
	ctx := context.Background()
	b.Run("Ping", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := c.Ping(ctx).Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, tc := range []struct {
		name string
		p    breaker.Policy
		op   breaker.Op
	}{
		{"Acquire", breaker.Policy{Threshold: 5, OpenTimeout: time.Minute, Probes: 1, SuccessThreshold: 1, ProbeLease: time.Second}, breaker.Op{Kind: breaker.OpAcquire}},
		// Failures of an old generation: the script runs in full but the
		// breaker never opens, so every iteration costs the same.
		{"Failure", breaker.Policy{Threshold: 5, OpenTimeout: time.Minute, Probes: 1, SuccessThreshold: 1, ProbeLease: time.Second}, breaker.Op{Kind: breaker.OpResult, Gen: 1 << 40, Failures: 1}},
		{"RateWindow", breaker.Policy{FailureRate: 1, MinCalls: 1 << 30, Buckets: 10, BucketWidth: time.Second, OpenTimeout: time.Minute, Probes: 1, SuccessThreshold: 1, ProbeLease: time.Second}, breaker.Op{Kind: breaker.OpResult, Gen: 1, Failures: 1}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			rs, err := redisstore.NewBreakerStore(redisstore.BreakerStoreConfig{Client: c, Name: b.Name()})
			if err != nil {
				b.Fatal(err)
			}
			defer rs.Reset(context.Background())
			rs.Bind(tc.p)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := rs.Update(ctx, tc.op); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLimiter measures an admitted call (acquire, release) and a
// refused one.
func BenchmarkLimiter(b *testing.B) {
	c := redistest.Shared(b).Client(b)
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		capacity int64
	}{{"Admitted", 1 << 20}, {"Rejected", 1}} {
		b.Run(tc.name, func(b *testing.B) {
			l, err := redisstore.NewLimiter(redisstore.LimiterConfig{Client: c, Name: b.Name(), Capacity: tc.capacity})
			if err != nil {
				b.Fatal(err)
			}
			if tc.name == "Rejected" {
				p, _ := l.Acquire(ctx)
				defer p.Done(nil)
			}
			s := middleware.Apply(direct, redisstore.LimiterMiddleware[int, int](l))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				sink, _ = s(ctx, i)
			}
		})
	}
}

// BenchmarkDedup measures a cache hit and a leader (no cache: every call
// leads, as no other is in flight).
func BenchmarkDedup(b *testing.B) {
	c := redistest.Shared(b).Client(b)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		ttl  time.Duration
	}{{"CacheHit", time.Minute}, {"Leader", 0}} {
		b.Run(tc.name, func(b *testing.B) {
			d, err := redisstore.NewDedup(redisstore.DedupConfig{Client: c, Name: b.Name(), TTL: tc.ttl})
			if err != nil {
				b.Fatal(err)
			}
			s := middleware.Apply(direct, redisstore.DedupMiddleware[int, int](d, func(int) string { return "k" }))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				sink, _ = s(ctx, i)
			}
		})
	}
}
