package faults_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/brace-go/brace/middleware/bracetest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/redisstore"
	"github.com/brace-go/brace/middleware/redisstore/internal/redistest"
	"github.com/brace-go/brace/middleware/redisstore/internal/toxitest"
)

// recorder is bracetest.Recorder, with the views these tests read.
type recorder struct{ bracetest.Recorder }

func TestMain(m *testing.M) {
	redis.SetLogger(quietLogger{}) // go-redis logs every failed dial
	goleak.VerifyTestMain(redistest.Main(m), toxitest.IgnoreLeaks()...)
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// Bounds. Every one is generous: these tests run in real time on a
// loaded 2-core machine, also under -race.
const (
	// slack is the scheduling noise allowed on top of a computed bound.
	slack = time.Second

	// storeTimeout is the bound of each Redis operation in these tests:
	// redisstore's default Timeout, set explicitly.
	storeTimeout = 100 * time.Millisecond

	// downFor is how long a client is skipped after 3 consecutive
	// failures before one background PING probes it (redisstore's
	// "DownFor", stated in docs/distributed.md, "Recovery bounds").
	downFor = time.Second

	// recoveryBound: once Redis is healthy again, every part uses it
	// again within one pause of the shared health (downFor), plus one
	// operation's Timeout, plus slack: the bound docs/distributed.md
	// states for an outage, and for a lost reply when the client was
	// marked down.
	recoveryBound = downFor + storeTimeout + slack

	// callStoreOps is the most Redis operations one call through the
	// chain (breaker → limiter → dedup → stage) makes: the breaker's
	// acquire when its view is stale, the limiter's acquire and release,
	// and dedup's step and publish.
	callStoreOps = 5
	// callBound bounds one call through the chain under any fault: each
	// of its store operations is bounded by Timeout, whatever the fault.
	callBound = callStoreOps*storeTimeout + slack
)

// name returns a Redis-safe name for the test (no braces).
func name(t *testing.T) string {
	r := strings.NewReplacer("/", "-", "{", "", "}", "", " ", "_")
	return "faults-" + r.Replace(t.Name())
}

func (r *recorder) events() []middleware.Event { return r.Events() }

// of returns the events of kind k.
func (r *recorder) of(k middleware.Kind) []middleware.Event {
	var out []middleware.Event
	for _, e := range r.events() {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

// proc is one "process": its own client and its own breaker (state in
// Redis), global limiter and cross-process dedup, guarding a stage that
// always succeeds. Processes built with the same name share their state.
type proc struct {
	client *redis.Client
	store  *redisstore.BreakerStore
	b      *breaker.Breaker
	lim    *redisstore.Limiter
	dd     *redisstore.Dedup
	rec    *recorder
	stage  middleware.Stage[string, string]

	mu    sync.Mutex
	calls int // the stage's calls
}

// procConfig tunes a proc; zero fields keep the defaults below.
type procConfig struct {
	threshold  int           // breaker.Config.Threshold; default 5
	openFor    time.Duration // breaker.Config.OpenTimeout; default 1h
	probes     int           // breaker.Config.HalfOpenProbes
	probeLease time.Duration // breaker.Config.ProbeTimeout
	storeSync  time.Duration // breaker.Config.StoreSync; default 20ms
	timeout    time.Duration // every part's Timeout; default redisstore's
	capacity   int64         // LimiterConfig.Capacity; default 64
	lease      time.Duration // LimiterConfig.Lease and DedupConfig.Lease
	ttl        time.Duration // DedupConfig.TTL
	work       time.Duration // how long the stage takes
}

func newProc(t *testing.T, opts *redis.Options, nm string, pc procConfig) *proc {
	t.Helper()
	if pc.threshold == 0 {
		pc.threshold = 5
	}
	if pc.openFor == 0 {
		pc.openFor = time.Hour
	}
	if pc.storeSync == 0 {
		pc.storeSync = 20 * time.Millisecond
	}
	if pc.capacity == 0 {
		pc.capacity = 64
	}
	if pc.timeout == 0 {
		pc.timeout = storeTimeout
	}
	p := &proc{rec: &recorder{}}
	p.client = redis.NewClient(opts)
	t.Cleanup(func() { p.client.Close() })
	var err error
	must := func() {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	p.store, err = redisstore.NewBreakerStore(redisstore.BreakerStoreConfig{
		Client: p.client, Name: nm, Timeout: pc.timeout, Observer: p.rec})
	must()
	p.b, err = breaker.New(breaker.Config{
		Name: nm, Observer: p.rec, Threshold: pc.threshold, OpenTimeout: pc.openFor,
		HalfOpenProbes: pc.probes, ProbeTimeout: pc.probeLease,
		Store: p.store, StoreSync: pc.storeSync})
	must()
	p.lim, err = redisstore.NewLimiter(redisstore.LimiterConfig{
		Client: p.client, Name: nm, Capacity: pc.capacity, Lease: pc.lease,
		Timeout: pc.timeout, Observer: p.rec})
	must()
	p.dd, err = redisstore.NewDedup(redisstore.DedupConfig{
		Client: p.client, Name: nm, TTL: pc.ttl, Lease: pc.lease,
		Timeout: pc.timeout, Observer: p.rec})
	must()
	work := pc.work
	p.stage = middleware.Apply(func(ctx context.Context, key string) (string, error) {
		p.mu.Lock()
		p.calls++
		p.mu.Unlock()
		if work > 0 {
			t := time.NewTimer(work)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
		return "v:" + key, nil
	},
		breaker.Middleware[string, string](p.b),
		redisstore.LimiterMiddleware[string, string](p.lim),
		redisstore.DedupMiddleware[string, string](p.dd, func(k string) string { return k }))
	return p
}

// call makes one call for key and returns how long it took.
func (p *proc) call(ctx context.Context, key string) (time.Duration, error) {
	start := time.Now()
	out, err := p.stage(ctx, key)
	d := time.Since(start)
	if err == nil && out != "v:"+key {
		err = fmt.Errorf("key %q: got %q", key, out)
	}
	return d, err
}

// down reports whether any part of p skips Redis now.
func (p *proc) down() bool {
	return p.store.Stats().Down || p.lim.Stats().Down || p.dd.Stats().Down
}

// storeFailures sums the store failures of p's parts.
func (p *proc) storeFailures() int64 {
	return p.store.Stats().StoreFailures + p.lim.Stats().StoreFailures + p.dd.Stats().StoreFailures
}

// median returns the median of ds (which it sorts).
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// admin returns a client of the server itself, bypassing the proxy.
func admin(t *testing.T, p *toxitest.Proxy) *redis.Client {
	t.Helper()
	return p.Server.Client(t)
}

// The keys, as docs/distributed.md ("Key layout") documents them, with
// the default prefix.
func breakerKey(name string) string { return "brace:{breaker:" + name + "}:state" }
func limiterKey(name string) string { return "brace:{limiter:" + name + "}:leases" }
func dedupLockKey(name, key string) string {
	return fmt.Sprintf("brace:dedup:%d:%s:{%d:%s}:lock", len(name), name, len(key), key)
}

// hget reads one field of a hash directly, "" when it is absent.
func hget(c *redis.Client, key, field string) string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	v, err := c.HGet(ctx, key, field).Result()
	if errors.Is(err, redis.Nil) {
		return ""
	}
	if err != nil {
		return "error: " + err.Error()
	}
	return v
}
