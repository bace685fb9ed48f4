package soak

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brace-go/brace/internal/redistest"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/dedup"
	"github.com/brace-go/brace/middleware/redisstore"
	"github.com/brace-go/brace/middleware/retry"
	"github.com/brace-go/brace/middleware/timeout"
	"github.com/brace-go/brace/pipeline"
	"github.com/redis/go-redis/v9"
)

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

var flagRedisCycles = flag.Int("soak.redis.cycles", 1, "fault cycles (freeze, pause, kill) of the Redis soak")

// The Redis soak's shape. It runs in real time: the chain talks to a real
// redis-server over loopback, which a synctest bubble cannot fake.
const (
	rProcs          = 2 // "processes": chains with their own clients sharing one breaker and one limiter in Redis
	rWorkers        = 40
	rCapacity       = 8 // global limit (Redis)
	rLocalCapacity  = 4 // each process's limit while Redis fails
	rStoreTimeout   = 20 * time.Millisecond
	rStoreSync      = 20 * time.Millisecond
	rLease          = 300 * time.Millisecond
	rAttempts       = 2
	rThreshold      = 10
	rFault          = 1200 * time.Millisecond // how long Redis stays frozen or paused
	rDown           = 500 * time.Millisecond  // how long Redis stays killed
	rHealthy        = 300 * time.Millisecond  // between faults
	rMaxCallerWait  = 20 * time.Millisecond
	rSchedulerSlack = 600 * time.Millisecond // real time on a loaded 2-core machine under -race

	// rAttemptBound: an attempt makes at most two store operations for the
	// breaker (Allow, Done) and two for the limiter (acquire, release),
	// each bounded by rStoreTimeout, and runs the stage for at most
	// attemptTimeout. rCallBound adds the retry delay and the slack. It is
	// below rFault, so a call that waited for a frozen or paused server
	// would break it.
	rAttemptBound = attemptTimeout + 4*rStoreTimeout
	rCallBound    = rAttempts*rAttemptBound + maxDelay + rSchedulerSlack

	// rInFlightBound: the global limit, plus calls admitted before a
	// restart emptied Redis (their leases are gone but they still run),
	// plus each process's local limit while Redis fails.
	rInFlightBound = 2*rCapacity + rProcs*rLocalCapacity
)

// rProc is one process's chain and its counters.
type rProc struct {
	b     *breaker.Breaker
	lim   *redisstore.Limiter
	stage middleware.Stage[request, reply]

	breakerStoreErrs, limiterStoreErrs atomic.Int64
}

// TestSoakRedis runs two processes' chains — Dedup → Retry → Breaker (state
// in Redis) → global Limit (Redis) → Timeout → Recover → the pipeline —
// against a real redis-server that is frozen (SIGSTOP), paused (CLIENT
// PAUSE) and killed and restarted while they run. No call may wait on
// Redis beyond its bound, every call returns once with a known outcome,
// no lease is lost, and the shared breaker works again once Redis is back.
func TestSoakRedis(t *testing.T) {
	redistest.Require(t)
	srv := redistest.Start(t)
	admin := srv.Client(t)
	var v violations
	// The downstream stays healthy (rare faults of every kind): the faults
	// that matter here are Redis's.
	redis.SetLogger(quietLogger{}) // go-redis logs every failed dial
	ds := &downstream{start: time.Now(), period: weatherPeriod, fixed: &climates[0], capacity: rInFlightBound, v: &v}

	procs := make([]*rProc, rProcs)
	for i := range procs {
		procs[i] = newRProc(t, srv, ds)
	}

	var (
		calls, unexpected atomic.Int64
		maxWait           atomic.Int64
		outcome           [numOutcomes]atomic.Int64
		stop              atomic.Bool
		wg                sync.WaitGroup
	)
	for i := range rProcs * rWorkers {
		p := procs[i%rProcs]
		wg.Go(func() {
			for !stop.Load() {
				calls.Add(1)
				waited, late, o, err := rCall(p)
				storeMax(&maxWait, int64(waited))
				switch {
				case o < 0:
					unexpected.Add(1)
					v.addf("unexpected result: %v", err)
				default:
					outcome[o].Add(1)
				}
				if waited > rCallBound {
					v.addf("a call took %v, above the bound %v (err %v)", waited, rCallBound, err)
				}
				if late > rSchedulerSlack {
					v.addf("a call returned %v after its context ended", late)
				}
				time.Sleep(rand.N(2 * time.Millisecond))
			}
		})
	}

	// The faults. The sleeps here schedule faults in real time; nothing
	// waits for a goroutine by sleeping.
	start := time.Now()
	faults := map[string]int{}
	for range *flagRedisCycles {
		time.Sleep(rHealthy)
		srv.Freeze(t)
		time.Sleep(rFault)
		srv.Thaw(t)
		faults["frozen (SIGSTOP)"]++

		time.Sleep(rHealthy)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if err := admin.Do(ctx, "CLIENT", "PAUSE", rFault.Milliseconds(), "ALL").Err(); err != nil {
			t.Fatalf("CLIENT PAUSE: %v", err)
		}
		cancel()
		time.Sleep(rFault)
		faults["paused (CLIENT PAUSE ALL)"]++

		time.Sleep(rHealthy)
		srv.Stop()
		time.Sleep(rDown)
		srv.Restart(t)
		faults["killed and restarted"]++
	}
	time.Sleep(rHealthy)
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(start)

	// Every lease was released, or expires: none is lost.
	time.Sleep(rLease)
	for i, p := range procs {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		d, err := p.lim.Depth(ctx)
		cancel()
		if err != nil || d != 0 {
			t.Errorf("process %d: global limiter depth %d (err %v) after every call ended and a lease time passed, want 0", i, d, err)
		}
	}
	// The shared breaker works again: failures through one process open
	// it for the other.
	time.Sleep(rStoreSync)
	ctx := context.Background()
	procs[0].b.Reset()
	for range rThreshold {
		if tk, err := procs[0].b.Allow(ctx); err == nil {
			procs[0].b.Done(ctx, tk, errDown)
		}
	}
	time.Sleep(rStoreSync) // let process 1's view of the store age
	if _, err := procs[1].b.Allow(ctx); !errors.Is(err, breaker.ErrOpen) {
		t.Errorf("after Redis came back, %d failures in process 0 left process 1's breaker admitting (err %v)", rThreshold, err)
	}

	var sum int64
	for i := range outcome {
		sum += outcome[i].Load()
	}
	if n := calls.Load(); sum+unexpected.Load() != n {
		t.Errorf("calls %d, but %d outcomes and %d unexpected results", n, sum, unexpected.Load())
	}
	var bErrs, lErrs int64
	for _, p := range procs {
		bErrs += p.breakerStoreErrs.Load()
		lErrs += p.limiterStoreErrs.Load()
	}
	if bErrs == 0 || lErrs == 0 {
		t.Errorf("store errors: breaker %d, limiter %d; the faults never reached the chain", bErrs, lErrs)
	}

	var b strings.Builder
	row := func(k string, val any) { fmt.Fprintf(&b, "| %s | %v |\n", k, val) }
	b.WriteString("| measure | value |\n|---|---|\n")
	row("calls", calls.Load())
	row("concurrent callers", rProcs*rWorkers)
	row("duration", elapsed.Round(time.Millisecond))
	var fs []string
	for k, n := range faults {
		fs = append(fs, fmt.Sprintf("%s %d", k, n))
	}
	row("Redis faults", strings.Join(fs, ", "))
	row("violations", v.n.Load())
	for i, n := range outcomeNames {
		row("outcome: "+n, outcome[i].Load())
	}
	row("store errors: breaker / limiter (fallen back to local state)", fmt.Sprintf("%d / %d", bErrs, lErrs))
	row("longest wait of a caller (bound)", fmt.Sprintf("%v (%v)", time.Duration(maxWait.Load()).Round(time.Microsecond), rCallBound))
	row("downstream: calls / most in flight (bound)", fmt.Sprintf("%d / %d (%d)", ds.calls.Load(), ds.maxIn.Load(), rInFlightBound))
	t.Log("soak: Redis numbers (markdown)\n" + b.String())
	if n := v.n.Load(); n > 0 {
		t.Errorf("%d invariant violations; the first ones:\n%s", n, strings.Join(v.first, "\n"))
	}
}

func newRProc(t *testing.T, srv *redistest.Server, ds *downstream) *rProc {
	t.Helper()
	p := new(rProc)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	client := srv.Client(t)
	store, err := redisstore.NewBreakerStore(client, "soak", redisstore.BreakerConfig{Timeout: rStoreTimeout})
	must(err)
	p.b, err = breaker.New(breaker.Config{
		Name: "soak", Threshold: rThreshold, OpenTimeout: 50 * time.Millisecond, HalfOpenProbes: 2,
		Store: store, StoreSync: rStoreSync,
		OnStoreError: func(error) { p.breakerStoreErrs.Add(1) },
	})
	must(err)
	p.lim, err = redisstore.NewLimiter(client, "soak", rCapacity, redisstore.LimiterConfig{
		Timeout: rStoreTimeout, Lease: rLease, LocalCapacity: rLocalCapacity,
		OnStoreError: func(error) { p.limiterStoreErrs.Add(1) },
	})
	must(err)
	dd, err := dedup.New[request, reply](func(r request) int { return r.Key }, dedup.Config{})
	must(err)
	rt, err := retry.New[request, reply](retry.Config{MaxAttempts: rAttempts, BaseDelay: baseDelay, MaxDelay: maxDelay})
	must(err)
	to, err := timeout.New[request, reply](timeout.Config{Duration: attemptTimeout})
	must(err)
	down, err := pipeline.Then(pipeline.From("lookup", ds.lookup), "render", render).Stage()
	must(err)
	p.stage = middleware.Apply(down, dd, rt,
		breaker.Middleware[request, reply](p.b), redisstore.Limit[request, reply](p.lim),
		to, middleware.Recover[request, reply]())
	return p
}

// rCall makes one call with a random key and context, and returns how long
// it waited, how long after its context ended it returned (0 if it did
// not end), and its outcome (-1 if unexpected).
func rCall(p *rProc) (waited, late time.Duration, outcome int, err error) {
	key := rand.IntN(keys)
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	var end time.Time
	if rand.IntN(100) < 20 {
		d := 1 + rand.N(rMaxCallerWait)
		ctx, cancel = context.WithTimeout(ctx, d)
		end = time.Now().Add(d)
	}
	defer cancel()
	start := time.Now()
	out, err := p.stage(ctx, request{Key: key})
	now := time.Now()
	waited = now.Sub(start)
	if !end.IsZero() && now.After(end) {
		late = now.Sub(end)
	}
	var exh *retry.ExhaustedError
	switch {
	case err == nil:
		if out.Key != key || out.Value != want(key) {
			return waited, late, -1, fmt.Errorf("key %d: got %+v", key, out)
		}
		return waited, late, outOK, nil
	case err == ctx.Err() && err == context.DeadlineExceeded:
		return waited, late, outDeadline, err
	case errors.Is(err, breaker.ErrOpen):
		return waited, late, outOpen, err
	case errors.Is(err, backpressure.ErrShed):
		return waited, late, outShed, err
	case errors.As(err, &exh) && exh.Reason == retry.ReasonAttempts:
		return waited, late, outAttempts, err
	case errors.Is(err, errBad):
		return waited, late, outPermanent, err
	}
	return waited, late, -1, err
}
