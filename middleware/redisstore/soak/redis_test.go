package soak_test

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

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/redisstore"
	"github.com/brace-go/brace/middleware/redisstore/internal/redistest"
	"github.com/brace-go/brace/middleware/redisstore/internal/toxitest"
)

func TestMain(m *testing.M) {
	redis.SetLogger(quietLogger{}) // go-redis logs every failed dial
	goleak.VerifyTestMain(redistest.Main(m), toxitest.IgnoreLeaks()...)
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

var flagCycles = flag.Int("soak.redis.cycles", 1, "cycles of Redis faults of the Redis soak")

// The soak's shape. It runs in real time.
const (
	rProcs         = 2  // "processes": chains with their own clients sharing one breaker, limiter and dedup in Redis
	rWorkers       = 20 // callers per process
	rKeys          = 32
	rCapacity      = 8 // global limit (Redis)
	rLocalCapacity = 4 // each process's limit while Redis is skipped or fails
	rStoreTimeout  = 20 * time.Millisecond
	rStoreSync     = 20 * time.Millisecond
	rLease         = 300 * time.Millisecond
	rMaxWait       = 200 * time.Millisecond // a dedup follower's longest wait
	rCacheTTL      = 50 * time.Millisecond
	rThreshold     = 10
	rOpenTimeout   = 50 * time.Millisecond
	rProbeLease    = 300 * time.Millisecond
	rMaxLatency    = 2 * time.Millisecond // the downstream's
	rErrorRate     = 0.03                 // the downstream's, outside its outages
	rMaxCallerWait = 20 * time.Millisecond
	rFault         = 400 * time.Millisecond // how long each Redis fault lasts
	rHealthy       = 300 * time.Millisecond // between faults
	rDownstreamOut = 150 * time.Millisecond // a downstream outage, once per cycle, to move the breaker
	// rSchedulerSlack: real time on a loaded 2-core machine under -race.
	rSchedulerSlack = 600 * time.Millisecond
	// rDownFor: how long a client is skipped after 3 consecutive failures
	// before one background PING probes it (redisstore's "DownFor",
	// stated in docs/distributed.md).
	rDownFor = time.Second

	// rCallBound: a call makes at most two breaker store operations
	// (acquire, result), two limiter ones (acquire, release) and dedup's
	// step and publish, each bounded by rStoreTimeout; a dedup follower
	// waits at most rMaxWait plus one step; the downstream takes at most
	// rMaxLatency. It is below rFault, so a call that waited for a frozen
	// or paused server would break it.
	rCallBound = rMaxWait + 7*rStoreTimeout + rMaxLatency + rSchedulerSlack
	// rLateBound: how long after its context ended a call may return: the
	// store operations that finish a call (the breaker's result, the
	// limiter's release, dedup's publish) are bounded by their own
	// Timeout, not by the caller's context.
	rLateBound = 3*rStoreTimeout + rSchedulerSlack
	// rInFlightBound: the global limit, plus calls admitted before Redis
	// was emptied (their leases are gone but they still run), plus each
	// process's local limit while Redis fails.
	rInFlightBound = 2*rCapacity + rProcs*rLocalCapacity
)

var errDown = errors.New("downstream: unavailable")

// Outcomes of a call, as its caller sees it. Every call has exactly one.
const (
	outOK       = iota
	outDeadline // the caller's deadline passed
	outOpen     // the breaker rejected it
	outLimited  // the global (or local fallback) limit rejected it
	outDown     // the downstream failed
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"ok", "caller deadline", "breaker open", "limited", "downstream error"}

type violations struct {
	n     atomic.Int64
	mu    sync.Mutex
	first []string
}

func (v *violations) addf(format string, args ...any) {
	if v.n.Add(1) > 20 {
		return
	}
	v.mu.Lock()
	v.first = append(v.first, fmt.Sprintf(format, args...))
	v.mu.Unlock()
}

// downstream is the service behind the chains: it answers key*key after a
// short latency, fails now and then, and always fails during an outage.
// It checks the calls in flight against rInFlightBound.
type downstream struct {
	v        *violations
	out      atomic.Bool // an outage: every call fails
	calls    atomic.Int64
	inFlight atomic.Int64
	maxIn    atomic.Int64
}

func (d *downstream) call(ctx context.Context, key int) (int, error) {
	d.calls.Add(1)
	n := d.inFlight.Add(1)
	defer d.inFlight.Add(-1)
	storeMax(&d.maxIn, n)
	if n > rInFlightBound {
		d.v.addf("in flight at the downstream is %d, above the bound %d", n, rInFlightBound)
	}
	if lat := rand.N(rMaxLatency); lat > 0 {
		t := time.NewTimer(lat)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return 0, ctx.Err()
		}
	}
	if d.out.Load() || rand.Float64() < rErrorRate {
		return 0, errDown
	}
	return key * key, nil
}

func storeMax(m *atomic.Int64, n int64) {
	for s := m.Load(); n > s && !m.CompareAndSwap(s, n); s = m.Load() {
	}
}

// rProc is one process's chain.
type rProc struct {
	b     *breaker.Breaker
	store *redisstore.BreakerStore
	lim   *redisstore.Limiter
	dd    *redisstore.Dedup
	stage middleware.Stage[int, int]
}

func newRProc(t *testing.T, px *toxitest.Proxy, ds *downstream) *rProc {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	client := px.Client(t)
	p := new(rProc)
	var err error
	p.store, err = redisstore.NewBreakerStore(redisstore.BreakerStoreConfig{Client: client, Name: "soak", Timeout: rStoreTimeout})
	must(err)
	p.b, err = breaker.New(breaker.Config{
		Name: "soak", Threshold: rThreshold, OpenTimeout: rOpenTimeout, HalfOpenProbes: 2,
		ProbeTimeout: rProbeLease, Store: p.store, StoreSync: rStoreSync})
	must(err)
	p.lim, err = redisstore.NewLimiter(redisstore.LimiterConfig{
		Client: client, Name: "soak", Capacity: rCapacity, LocalCapacity: rLocalCapacity,
		Lease: rLease, Timeout: rStoreTimeout})
	must(err)
	p.dd, err = redisstore.NewDedup(redisstore.DedupConfig{
		Client: client, Name: "soak", TTL: rCacheTTL, Lease: rLease, MaxWait: rMaxWait, Timeout: rStoreTimeout})
	must(err)
	p.stage = middleware.Apply(ds.call,
		breaker.Middleware[int, int](p.b),
		redisstore.LimiterMiddleware[int, int](p.lim),
		redisstore.DedupMiddleware[int, int](p.dd, func(k int) string { return fmt.Sprint(k) }))
	return p
}

// rCall makes one call with a random key and context, and returns how long
// it waited, how long after its context ended it returned (0 if it did
// not end), and its outcome (-1 if unexpected).
func rCall(p *rProc) (waited, late time.Duration, outcome int, err error) {
	key := rand.IntN(rKeys)
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	var end time.Time
	if rand.IntN(100) < 20 {
		d := 1 + rand.N(rMaxCallerWait)
		ctx, cancel = context.WithTimeout(ctx, d)
		end, _ = ctx.Deadline() // exactly the deadline the chain sees
	}
	defer cancel()
	start := time.Now()
	out, err := p.stage(ctx, key)
	now := time.Now()
	waited = now.Sub(start)
	if !end.IsZero() && now.After(end) {
		late = now.Sub(end)
	}
	switch {
	case err == nil:
		if out != key*key {
			return waited, late, -1, fmt.Errorf("key %d: got %d", key, out)
		}
		return waited, late, outOK, nil
	case errors.Is(err, context.DeadlineExceeded) && (ctx.Err() != nil || (!end.IsZero() && !now.Before(end))):
		// The deadline has passed (its timer may not have fired yet).
		return waited, late, outDeadline, err
	case errors.Is(err, breaker.ErrOpen):
		return waited, late, outOpen, err
	case errors.Is(err, redisstore.ErrLimited):
		return waited, late, outLimited, err
	case errors.Is(err, errDown):
		return waited, late, outDown, err
	}
	return waited, late, -1, err
}

// TestSoakRedis runs two processes' chains — Breaker (state in Redis) →
// global Limiter → cross-process Dedup → the downstream — against a real
// redis-server behind a toxiproxy, while Redis suffers one fault after
// another. No call may wait on Redis beyond its bound, every call returns
// once with a known outcome, no lease is lost, and the shared breaker
// works again once Redis is back.
func TestSoakRedis(t *testing.T) {
	px := toxitest.Start(t)
	adm := px.Server.Client(t)
	var v violations
	ds := &downstream{v: &v}
	procs := make([]*rProc, rProcs)
	for i := range procs {
		procs[i] = newRProc(t, px, ds)
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
				if o < 0 {
					unexpected.Add(1)
					v.addf("unexpected result: %v", err)
				} else {
					outcome[o].Add(1)
				}
				if waited > rCallBound {
					v.addf("a call took %v, above the bound %v (err %v)", waited, rCallBound, err)
				}
				if late > rLateBound {
					v.addf("a call returned %v after its context ended, above %v (err %v)", late, rLateBound, err)
				}
				time.Sleep(rand.N(2 * time.Millisecond)) // callers pause between calls
			}
		})
	}

	// The faults. The sleeps here schedule faults in real time; nothing
	// waits for a goroutine by sleeping.
	start := time.Now()
	faults := map[string]int{}
	hold := func(name string, add func() *toxitest.Toxic) {
		time.Sleep(rHealthy)
		x := add()
		time.Sleep(rFault)
		x.Remove(t)
		faults[name]++
	}
	for range *flagCycles {
		time.Sleep(rHealthy)
		ds.out.Store(true) // the downstream fails: the shared breaker opens, probes, closes
		time.Sleep(rDownstreamOut)
		ds.out.Store(false)
		faults["downstream outage"]++

		hold("latency spike 300ms", func() *toxitest.Toxic {
			return px.Latency(t, toxitest.Downstream, 300*time.Millisecond, 50*time.Millisecond)
		})
		hold("blackhole", func() *toxitest.Toxic { return px.Blackhole(t, toxitest.Downstream, 0) })
		hold("replies cut after 64 bytes", func() *toxitest.Toxic { return px.LimitData(t, toxitest.Downstream, 64) })
		hold("connections reset", func() *toxitest.Toxic { return px.ResetPeer(t, toxitest.Upstream, 0) })

		time.Sleep(rHealthy)
		px.Server.Freeze(t)
		time.Sleep(rFault)
		px.Server.Thaw(t)
		faults["frozen (SIGSTOP)"]++

		time.Sleep(rHealthy)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if err := adm.Do(ctx, "CLIENT", "PAUSE", rFault.Milliseconds(), "ALL").Err(); err != nil {
			t.Fatalf("CLIENT PAUSE: %v", err)
		}
		cancel()
		time.Sleep(rFault)
		faults["paused (CLIENT PAUSE ALL)"]++

		time.Sleep(rHealthy)
		px.FlushAll(t)
		faults["FLUSHALL"]++

		time.Sleep(rHealthy)
		px.Kill()
		time.Sleep(rFault)
		px.Restart(t)
		faults["killed and restarted empty"]++
	}
	time.Sleep(rHealthy)
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(start)

	// Every part is back on Redis within one pause of the shared health
	// (rDownFor) after the last fault.
	back, ok := toxitest.Eventually(rDownFor+rStoreTimeout+rSchedulerSlack, func() bool {
		for _, p := range procs {
			if p.store.Stats().Down || p.lim.Stats().Down || p.dd.Stats().Down {
				// A part only finds out when it is used.
				p.stage(context.Background(), 0)
				return false
			}
		}
		return true
	})
	if !ok {
		t.Errorf("some part still skips Redis %v after the last fault", back)
	}
	// Every lease was released, or expires: none is lost.
	leases, ok := toxitest.Eventually(rLease+rSchedulerSlack, func() bool {
		for _, p := range procs {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			d, err := p.lim.Depth(ctx)
			cancel()
			if err != nil || d != 0 {
				return false
			}
		}
		return true
	})
	if !ok {
		t.Errorf("global limiter leases remain %v after every call ended (bound: Lease %v + slack)", leases, rLease)
	}
	// The shared breaker works again: failures through one process open
	// it for the other. Each attempt resets it, fails rThreshold calls in
	// process 0 and polls process 1 for a rejection. An attempt can be
	// spoilt by one store operation that overruns the store's 20ms
	// Timeout on a loaded machine: the breaker then records results
	// locally for StoreSync (breaker.Config.StoreSync), so each attempt
	// first lets that pause pass (the sleep lets real time pass).
	ctx := context.Background()
	attempts := 0
	opened, ok := toxitest.Eventually(3*time.Second, func() bool {
		attempts++
		time.Sleep(2 * rStoreSync)
		if err := procs[0].b.Reset(ctx); err != nil {
			return false
		}
		for range rThreshold {
			if p, err := procs[0].b.Acquire(ctx); err == nil {
				p.Done(errDown)
			}
		}
		_, ok := toxitest.Eventually(5*rStoreSync, func() bool {
			p, err := procs[1].b.Acquire(ctx)
			if err == nil {
				p.Done(nil)
			}
			return errors.Is(err, breaker.ErrOpen)
		})
		return ok
	})
	if !ok {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		h, herr := adm.HGetAll(cctx, "brace:{breaker:soak}:state").Result() // docs/distributed.md, "Key layout"
		cancel()
		t.Errorf("after Redis came back, %d failures in process 0 left process 1's breaker admitting (%d attempts in %v); shared state %v (%v); process 0: %v %+v %+v; process 1: %v %+v %+v",
			rThreshold, attempts, opened, h, herr, procs[0].b.State(), procs[0].b.Stats(), procs[0].store.Stats(), procs[1].b.State(), procs[1].b.Stats(), procs[1].store.Stats())
	}

	var sum int64
	for i := range outcome {
		sum += outcome[i].Load()
	}
	if n := calls.Load(); sum+unexpected.Load() != n {
		t.Errorf("calls %d, but %d outcomes and %d unexpected results", n, sum, unexpected.Load())
	}
	var bErrs, lErrs, dErrs int64
	for _, p := range procs {
		bErrs += p.store.Stats().StoreFailures
		lErrs += p.lim.Stats().StoreFailures
		dErrs += p.dd.Stats().StoreFailures
	}
	if bErrs == 0 || lErrs == 0 || dErrs == 0 {
		t.Errorf("store failures: breaker %d, limiter %d, dedup %d; the faults never reached every part", bErrs, lErrs, dErrs)
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
	row("faults", strings.Join(fs, ", "))
	row("violations", v.n.Load())
	for i, n := range outcomeNames {
		row("outcome: "+n, outcome[i].Load())
	}
	row("store failures: breaker / limiter / dedup (fallen back to local state)", fmt.Sprintf("%d / %d / %d", bErrs, lErrs, dErrs))
	row("longest wait of a caller (bound)", fmt.Sprintf("%v (%v)", time.Duration(maxWait.Load()).Round(time.Microsecond), rCallBound))
	row("downstream: calls / most in flight (bound)", fmt.Sprintf("%d / %d (%d)", ds.calls.Load(), ds.maxIn.Load(), rInFlightBound))
	row("every part back on Redis after the last fault", back.Round(time.Millisecond))
	row("leases gone after the calls ended", leases.Round(time.Millisecond))
	row("shared breaker opened for process 1 by failures in process 0 (attempts)", fmt.Sprintf("%v (%d)", opened.Round(time.Millisecond), attempts))
	t.Log("soak: Redis numbers (markdown)\n" + b.String())
	if n := v.n.Load(); n > 0 {
		t.Errorf("%d invariant violations; the first ones:\n%s", n, strings.Join(v.first, "\n"))
	}
}
