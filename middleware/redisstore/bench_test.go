package redisstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/brace-go/brace/internal/redistest"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/redisstore"
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
	rs, err := redisstore.NewBreakerStore(c, b.Name(), redisstore.BreakerConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer rs.Reset(context.Background())
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
		for _, st := range []struct {
			name  string
			store breaker.Store
		}{
			{"NoStore", nil},
			{"MemoryStore", breaker.NewMemoryStore()},
			{"RedisStore", rs},
		} {
			b.Run(mode.name+"/"+st.name, func(b *testing.B) {
				cfg := mode.cfg
				cfg.Store = st.store
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
	rs, err := redisstore.NewBreakerStore(c, b.Name(), redisstore.BreakerConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer rs.Reset(context.Background())
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
		{"Acquire", breaker.Policy{Threshold: 5, OpenTimeout: time.Minute, Probes: 1, SuccessThreshold: 1}, breaker.Op{Kind: breaker.OpAcquire}},
		// Failures of an old generation: the script runs in full but the
		// breaker never opens, so every iteration costs the same.
		{"Failure", breaker.Policy{Threshold: 5, OpenTimeout: time.Minute, Probes: 1, SuccessThreshold: 1}, breaker.Op{Kind: breaker.OpResult, Gen: 1 << 40, Failures: 1}},
		{"RateWindow", breaker.Policy{FailureRate: 1, MinCalls: 1 << 30, Buckets: 10, BucketWidth: time.Second, OpenTimeout: time.Minute, Probes: 1, SuccessThreshold: 1}, breaker.Op{Kind: breaker.OpResult, Gen: 1, Failures: 1}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := rs.Update(ctx, &tc.p, tc.op); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
