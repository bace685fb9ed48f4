package dedup_test

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware/dedup"
	"github.com/google/go-cmp/cmp"
)

// TestConfigCounter: Config.Counter counts as OnServe sees, next to it.
func TestConfigCounter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var c, hook dedup.Counter
		s := build(t, dedup.Config{TTL: time.Minute, Counter: &c, OnServe: hook.Observe},
			func(_ context.Context, k string) (string, error) {
				time.Sleep(time.Second)
				return k, nil
			})
		var wg sync.WaitGroup
		for range 1000 {
			wg.Go(func() { s(context.Background(), "a") })
		}
		wg.Wait()
		s(context.Background(), "a")
		s(context.Background(), "b")
		want := dedup.Stats{Executions: 2, Joins: 999, CacheHits: 1}
		if diff := cmp.Diff(want, c.Stats()); diff != "" {
			t.Errorf("Config.Counter Stats (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(want, hook.Stats()); diff != "" {
			t.Errorf("OnServe Stats (-want +got):\n%s", diff)
		}
	})
}

func TestNilCounterStats(t *testing.T) {
	var c *dedup.Counter
	if diff := cmp.Diff(dedup.Stats{}, c.Stats()); diff != "" {
		t.Errorf("nil Counter Stats (-want +got):\n%s", diff)
	}
}

func TestCacheHitAllocsWithCounter(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	s := build(t, dedup.Config{TTL: time.Hour, Counter: new(dedup.Counter)}, func(_ context.Context, k string) (string, error) { return k, nil })
	ctx := context.Background()
	s(ctx, "k")
	if n := testing.AllocsPerRun(1000, func() { s(ctx, "k") }); n != 0 {
		t.Errorf("cache hit with a Counter allocates %v times, want 0", n)
	}
}

func BenchmarkCacheHitCounter(b *testing.B) {
	s := mustStage(b, dedup.Config{TTL: time.Hour, Counter: new(dedup.Counter)})
	ctx := context.Background()
	sink, _ = s(ctx, 1)
	b.ReportAllocs()
	for b.Loop() {
		sink, _ = s(ctx, 1)
	}
}
