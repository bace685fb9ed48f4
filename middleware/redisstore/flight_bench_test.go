package redisstore_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/brace-go/brace/internal/redistest"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/redisstore"
)

// BenchmarkFlights measures a call through Deduplicated on a loopback
// Redis, beside a direct call of the stage and a PING, and reports the
// round trips per call (rt/op):
//
//   - Leader: no call with the key is in flight; the call takes the lease,
//     runs the stage and publishes its result (two round trips).
//   - Follower: the key is leased to a leader whose result is already
//     published; the call finds the lease, pauses for its first look (1ms)
//     and reads the result (two round trips). The pause dominates: a
//     follower learns of a result at its next look, so it waits up to one
//     pause (1ms, doubling to PollInterval) beyond the leader's end.
func BenchmarkFlights(b *testing.B) {
	c := redistest.Shared(b).Client(b)
	ctx := context.Background()
	if err := c.Ping(ctx).Err(); err != nil {
		b.Fatal(err)
	}
	var rt counter
	c.AddHook(&rt)
	var stage middleware.Stage[string, user] = flightStage
	f, err := redisstore.NewFlights[user](c, b.Name(), redisstore.FlightConfig{
		OnError: func(k string, err error) { b.Errorf("%s: %v", k, err) }})
	if err != nil {
		b.Fatal(err)
	}
	s := middleware.Apply(stage, redisstore.Deduplicated(f, func(k string) string { return k }))
	run := func(b *testing.B, key string) {
		b.ReportAllocs()
		rt.take()
		for b.Loop() {
			if _, err := s(ctx, key); err != nil {
				b.Fatal(err)
			}
		}
		n, _ := rt.take()
		b.ReportMetric(float64(n)/float64(b.N), "rt/op")
	}
	b.Run("Direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := stage(ctx, "k"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Ping", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := c.Ping(ctx).Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Leader", func(b *testing.B) { run(b, "leader") })
	b.Run("Follower", func(b *testing.B) {
		// A leader "L" holds the key and has published its result, as
		// its publish does; every call then follows it.
		lock := f.Key("follower")
		res := strings.TrimSuffix(lock, "lock") + "result:L"
		if err := c.Set(ctx, lock, "L", time.Minute).Err(); err != nil {
			b.Fatal(err)
		}
		if err := c.Set(ctx, res, `v{"ID":7,"Name":"follower"}`, time.Minute).Err(); err != nil {
			b.Fatal(err)
		}
		defer c.Del(ctx, lock, res)
		run(b, "follower")
	})
}

//go:noinline
func flightStage(_ context.Context, k string) (user, error) { return user{ID: 7, Name: k}, nil }
