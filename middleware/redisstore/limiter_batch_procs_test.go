package redisstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware/redisstore"
	"github.com/brace-go/brace/middleware/redisstore/internal/redistest"
	"github.com/redis/go-redis/v9"
)

const limiterChildEnv = "BRACE_REDISSTORE_LIMITER_CHILD"

type limiterChild struct {
	Addr, Name      string
	Capacity, Batch int64
	Start           int64 // unix ns
	Duration        time.Duration
	Workers         int
}

type limiterResult struct {
	Admitted, Refused, Trips, Peak int64
}

// TestLimiterBatchChild is a child process of TestLimiterBatchProcesses;
// run alone it skips.
func TestLimiterBatchChild(t *testing.T) {
	spec := os.Getenv(limiterChildEnv)
	if spec == "" {
		t.Skip("a child process of TestLimiterBatchProcesses")
	}
	var cfg limiterChild
	if err := json.Unmarshal([]byte(spec), &cfg); err != nil {
		t.Fatal(err)
	}
	opts := &redis.Options{Addr: cfg.Addr, ContextTimeoutEnabled: true, MaxRetries: -1, DialerRetries: 1, PoolSize: cfg.Workers * 2}
	rdb, watch := redis.NewClient(opts), redis.NewClient(opts)
	defer rdb.Close()
	defer watch.Close()
	var n counter
	rdb.AddHook(&n)
	l, err := redisstore.NewLimiter(redisstore.LimiterConfig{Client: rdb, Name: cfg.Name, Capacity: cfg.Capacity, Batch: cfg.Batch, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	// The calls in flight across the processes, counted apart from the
	// limiter: incremented after a call is admitted, decremented before
	// it is done, so the count never exceeds the real one.
	inflight := "test:{" + cfg.Name + "}:inflight"
	time.Sleep(time.Until(time.Unix(0, cfg.Start)))
	end := time.Unix(0, cfg.Start).Add(cfg.Duration)
	n.take()
	var res limiterResult
	var admitted, refused, peak atomic.Int64
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				p, err := l.Acquire(ctx)
				if err != nil {
					var le *redisstore.LimitError
					if !errors.As(err, &le) || le.Local {
						t.Errorf("Acquire: %v", err)
						return
					}
					refused.Add(1)
					time.Sleep(time.Millisecond)
					continue
				}
				v, err := watch.Incr(ctx, inflight).Result()
				if err != nil {
					t.Error(err)
				}
				for {
					old := peak.Load()
					if v <= old || peak.CompareAndSwap(old, v) {
						break
					}
				}
				admitted.Add(1)
				time.Sleep(2 * time.Millisecond)
				watch.Decr(ctx, inflight)
				p.Done(nil)
			}
		}()
	}
	wg.Wait()
	res.Trips, _ = n.take()
	res.Admitted, res.Refused, res.Peak = admitted.Load(), refused.Load(), peak.Load()
	b, _ := json.Marshal(res)
	fmt.Printf("RESULT %s\n", b)
}

// TestLimiterBatchProcesses: 4 OS processes × 16 goroutines share a
// batching concurrency limit of 20 (Batch 8) for 3s: the calls in flight
// across the processes, counted apart in Redis, never exceed 20 (no
// slack).
func TestLimiterBatchProcesses(t *testing.T) {
	if os.Getenv(limiterChildEnv) != "" {
		t.Skip("in a child")
	}
	srv := redistest.Shared(t)
	const procs = 4
	cfg := limiterChild{Addr: srv.Addr, Name: name(t), Capacity: 20, Batch: 8, Workers: 16, Duration: 3 * time.Second,
		Start: time.Now().Add(2 * time.Second).UnixNano()}
	spec, _ := json.Marshal(cfg)
	results := runChildren[limiterResult](t, procs, "TestLimiterBatchChild", limiterChildEnv, spec)
	var admitted, refused, trips, peak int64
	for _, r := range results {
		admitted += r.Admitted
		refused += r.Refused
		trips += r.Trips
		peak = max(peak, r.Peak)
	}
	t.Logf("4 processes × 16 goroutines, capacity %d, Batch %d: peak in flight %d, %d admitted, %d refused, %.3f round trips per admitted call",
		cfg.Capacity, cfg.Batch, peak, admitted, refused, float64(trips)/float64(max(admitted, 1)))
	if peak > cfg.Capacity {
		t.Errorf("peak in flight %d across the processes, more than the capacity %d", peak, cfg.Capacity)
	}
	if admitted == 0 {
		t.Error("nothing admitted")
	}
}
