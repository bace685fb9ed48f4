package soak

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/budget"
	"github.com/brace-go/brace/middleware/dedup"
	"github.com/brace-go/brace/middleware/retry"
	"github.com/brace-go/brace/middleware/timeout"
	"github.com/brace-go/brace/pipeline"
)

var (
	flagCalls   = flag.Int("soak.calls", 0, "calls to make; 0 means $BRACE_SOAK_CALLS, or the short mode's count when that is unset")
	flagWorkers = flag.Int("soak.workers", 0, "concurrent callers; 0 means 1000")
	flagSeed    = flag.Uint64("soak.seed", 0, "seed of the downstream's weather; 0 means random")
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The shape of the run. Every duration is fake time (synctest).
const (
	keys             = 64 // distinct dedup keys
	capacity         = 32 // backpressure capacity
	attemptTimeout   = 5 * time.Millisecond
	maxAttempts      = 4
	baseDelay        = 500 * time.Microsecond
	maxDelay         = 4 * time.Millisecond
	threshold        = 10
	openTimeout      = 20 * time.Millisecond // must exceed attemptTimeout: see watchProbes
	probes           = 3
	successThreshold = 2
	cacheTTL         = time.Millisecond
	cacheEntries     = 16 // fewer than keys, so the cache evicts
	maxCallerWait    = 10 * time.Millisecond
	maxThink         = 60 * time.Millisecond // a caller's pause between calls
	weatherPeriod    = 50 * time.Millisecond
	warmupShare      = 10 // percent of the calls made before the baseline heap is read

	// flightBound is the longest a shared call can take: every attempt
	// cut by its timeout and every delay at its cap. No caller may wait
	// longer.
	flightBound = maxAttempts*attemptTimeout + (maxAttempts-1)*maxDelay

	// heapSlack is how much the live heap may grow from the baseline
	// (after the warm-up) to the end. A leak of one object per call grows
	// by tens of bytes per call: megabytes in the long mode.
	heapSlack = 1 << 20
)

// shortCalls is the short mode's count, sized to take a second or two.
func shortCalls() int {
	if testenv.RaceEnabled {
		return 30_000
	}
	return 100_000
}

type request struct{ Key int }

type reply struct {
	Key, Value int
	flight     *flight // the shared call that produced it
}

// flight is one shared call of the dedup stage, as seen just inside it.
type flight struct {
	key int
	// overlapped is set when a newer shared call for the same key started
	// while this one ran. Dedup starts one only after every caller of this
	// one has left, so no caller may ever get this one's outcome.
	overlapped atomic.Bool
}

// flightError tags an error with the shared call that returned it, so a
// caller can tell a shared outcome from dedup's own ctx.Err().
type flightError struct {
	f   *flight
	err error
}

func (e *flightError) Error() string { return e.err.Error() }
func (e *flightError) Unwrap() error { return e.err }

// violations collects broken invariants from any goroutine.
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

// Outcomes of a call, as its caller sees it. Every call has exactly one.
const (
	outOK       = iota
	outCanceled // the caller cancelled
	outDeadline // the caller's deadline passed
	outOpen     // the breaker rejected the attempt
	outShed     // backpressure shed the attempt
	outAttempts // retries ran out
	outBudget   // the retry budget refused a retry
	outPermanent
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"success", "caller cancelled", "caller deadline", "breaker open", "shed", "retries exhausted", "retry budget empty", "permanent error"}

type keyState struct {
	mu      sync.Mutex
	running []*flight
}

// How dedup served a call, as its Joined events say (a call that started
// a shared call has no event: tagFlights counts those).
const (
	servedJoined = iota // shared a call already running
	servedCached        // got a cached result
	numServed
)

// harness is the chain under test and a probe between every two layers.
type harness struct {
	v     violations
	ds    downstream
	dd    *dedup.Group
	rt    *retry.Retrier
	b     *breaker.Breaker
	lim   *backpressure.Limiter
	to    *timeout.Timeout
	stage middleware.Stage[request, reply]

	// Callers.
	calls, preEnded, tooLate, maxWait atomic.Int64
	outcome                           [numOutcomes]atomic.Int64
	returned                          []atomic.Uint64 // a bit per call
	checks                            atomic.Int64    // invariant checks made

	// Dedup: calls served by kind, shared calls, and shared calls that
	// started while an abandoned one for the same key was still running.
	served    [numServed]atomic.Int64
	flights   atomic.Int64
	overlaps  atomic.Int64
	abandoned atomic.Int64
	keys      [keys]keyState

	// Retry and breaker.
	retries, attempts, rejected, passed atomic.Int64
	tmu                                 sync.Mutex
	state                               breaker.State
	transitions                         map[[2]breaker.State]int
	probeCalls, probesIn, maxProbes     atomic.Int64

	// Backpressure and below.
	shed, shedEvents, bpCtx, admitted atomic.Int64
	admittedOK, panics, timeouts      atomic.Int64
	skipped, skippedRender, otherFail atomic.Int64
}

func newHarness(t *testing.T, calls int, seed uint64) *harness {
	h := &harness{returned: make([]atomic.Uint64, (calls+63)/64), transitions: map[[2]breaker.State]int{}}
	h.ds = downstream{start: time.Now(), period: weatherPeriod, seed: seed, capacity: capacity, v: &h.v}

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	obs := middleware.ObserverFunc(h.observe)
	var err error
	h.dd, err = dedup.New(dedup.Config{TTL: cacheTTL, MaxEntries: cacheEntries, Observer: obs})
	must(err)
	bud, err := budget.New(budget.Config{Ratio: 0.05, MinPerSecond: 10, Window: time.Second})
	must(err)
	h.rt, err = retry.New(retry.Config{
		MaxAttempts: maxAttempts, BaseDelay: baseDelay, MaxDelay: maxDelay, Budget: bud, Observer: obs,
	})
	must(err)
	h.b, err = breaker.New(breaker.Config{
		Threshold: threshold, OpenTimeout: openTimeout,
		HalfOpenProbes: probes, SuccessThreshold: successThreshold,
		Observer: obs,
	})
	must(err)
	h.lim, err = backpressure.New(backpressure.Config{Capacity: capacity, Observer: obs})
	must(err)
	h.to, err = timeout.New(timeout.Config{Duration: attemptTimeout})
	must(err)

	pipe := pipeline.Then(pipeline.From("lookup", h.ds.lookup), "render", render)
	down, err := pipe.Stage()
	must(err)
	h.stage = middleware.Apply(down,
		dedup.Middleware[request, reply](h.dd, func(r request) int { return r.Key }), h.tagFlights,
		retry.Middleware[request, reply](h.rt), h.countAttempts,
		breaker.Middleware[request, reply](h.b), h.watchProbes,
		backpressure.Middleware[request, reply](h.lim), h.countAdmitted,
		timeout.Middleware[request, reply](h.to),
		middleware.Recover[request, reply](),
	)
	return h
}

// observe is every concern's Observer: it counts the events the checks
// need, and checks the breaker's transitions.
func (h *harness) observe(_ context.Context, e middleware.Event) {
	switch {
	case e.Concern == "dedup" && e.Kind == middleware.Joined && e.Reason == "":
		h.served[servedJoined].Add(1)
	case e.Concern == "dedup" && e.Kind == middleware.Joined && e.Reason == "cache":
		h.served[servedCached].Add(1)
	case e.Concern == "retry" && e.Kind == middleware.Retry:
		h.retries.Add(1)
	case e.Concern == "breaker" && e.Kind == middleware.StateChanged:
		h.onStateChange(e.From, e.To)
	case e.Concern == "backpressure" && e.Kind == middleware.Rejected:
		h.shedEvents.Add(1)
	case e.Kind == middleware.Joined, e.Kind == middleware.Retry, e.Kind == middleware.GaveUp,
		e.Kind == middleware.Rejected:
		// Counted by Stats, or by the probes.
	default:
		h.v.addf("unexpected event %v from %s: %+v", e.Kind, e.Concern, e)
	}
}

// tagFlights sits just inside Dedup: each call of it is one shared call.
// It tags the outcome with the call, and flags every other call for the
// same key still running when it starts (see flight.overlapped).
func (h *harness) tagFlights(next middleware.Stage[request, reply]) middleware.Stage[request, reply] {
	return func(ctx context.Context, in request) (reply, error) {
		f := &flight{key: in.Key}
		h.flights.Add(1)
		ks := &h.keys[in.Key]
		ks.mu.Lock()
		for _, o := range ks.running {
			o.overlapped.Store(true)
			h.overlaps.Add(1)
		}
		ks.running = append(ks.running, f)
		ks.mu.Unlock()

		out, err := next(ctx, in)

		ks.mu.Lock()
		for i, o := range ks.running {
			if o == f {
				ks.running = append(ks.running[:i], ks.running[i+1:]...)
				break
			}
		}
		ks.mu.Unlock()
		if ctx.Err() != nil {
			h.abandoned.Add(1) // every caller left; dedup cancelled it
		}
		out.flight = f
		if err != nil {
			err = &flightError{f: f, err: err}
		}
		return out, err
	}
}

// countAttempts sits just inside Retry: each call of it is one attempt.
func (h *harness) countAttempts(next middleware.Stage[request, reply]) middleware.Stage[request, reply] {
	return func(ctx context.Context, in request) (reply, error) {
		h.attempts.Add(1)
		out, err := next(ctx, in)
		if errors.Is(err, breaker.ErrOpen) {
			h.rejected.Add(1)
		}
		return out, err
	}
}

// watchProbes sits just inside the breaker and counts the half-open probes
// in flight. A call that finds the breaker half-open when it gets here was
// admitted as a probe: a call admitted while closed cannot find it
// half-open, because that takes openTimeout of fake time and none passes
// while this goroutine runs from Acquire to here. A probe may instead find
// the breaker open again (another probe failed) and go uncounted, which
// only weakens the check. A probe of an earlier half-open period cannot be
// in flight in a later one: it ends within attemptTimeout, and the next
// half-open period starts openTimeout (longer) after the breaker reopened.
func (h *harness) watchProbes(next middleware.Stage[request, reply]) middleware.Stage[request, reply] {
	return func(ctx context.Context, in request) (reply, error) {
		h.passed.Add(1)
		if h.b.State() == breaker.HalfOpen {
			h.probeCalls.Add(1)
			n := h.probesIn.Add(1)
			defer h.probesIn.Add(-1)
			storeMax(&h.maxProbes, n)
			h.checks.Add(1)
			if n > probes {
				h.v.addf("%d half-open probes in flight, limit %d", n, probes)
			}
		}
		admitted := false
		ctx = context.WithValue(ctx, admittedKey{}, &admitted)
		out, err := next(ctx, in)
		switch {
		case admitted:
			if errors.Is(err, backpressure.ErrShed) {
				h.v.addf("an admitted call was shed: %v", err)
			}
		case errors.Is(err, backpressure.ErrShed):
			h.shed.Add(1)
		case err != nil && err == ctx.Err():
			h.bpCtx.Add(1) // backpressure refuses a call whose context has ended
		default:
			h.v.addf("backpressure neither admitted nor shed a call: %v", err)
		}
		return out, err
	}
}

type admittedKey struct{}

// countAdmitted sits just inside Backpressure: each call of it holds a slot.
func (h *harness) countAdmitted(next middleware.Stage[request, reply]) middleware.Stage[request, reply] {
	return func(ctx context.Context, in request) (reply, error) {
		*ctx.Value(admittedKey{}).(*bool) = true
		h.admitted.Add(1)
		h.checks.Add(1)
		if d := h.lim.Stats().InFlight; d > capacity {
			h.v.addf("backpressure: %d in flight, above capacity %d", d, capacity)
		}
		out, err := next(ctx, in)
		var pe *middleware.PanicError
		var se *pipeline.StageError
		switch {
		case err == nil:
			h.admittedOK.Add(1)
		case errors.As(err, &pe):
			h.panics.Add(1)
		case errors.Is(err, timeout.ErrTimeout):
			h.timeouts.Add(1)
		case errors.As(err, &se) && se.Skipped && se.Index == 0:
			h.skipped.Add(1)
		case errors.As(err, &se) && se.Skipped && se.Index == 1:
			// The lookup answered, but the context ended (an abandoned
			// shared call) before the pipeline's next stage.
			h.skippedRender.Add(1)
		default:
			h.otherFail.Add(1)
		}
		return out, err
	}
}

// states maps the names in StateChanged events to the breaker's states.
var states = map[string]breaker.State{}

func init() {
	for _, s := range []breaker.State{breaker.Closed, breaker.Open, breaker.HalfOpen, breaker.ForcedOpen, breaker.ForcedClosed} {
		states[s.String()] = s
	}
}

// onStateChange checks a StateChanged event. The breaker delivers them in
// the order they happened, so each starts where the last one ended.
func (h *harness) onStateChange(fromName, toName string) {
	h.tmu.Lock()
	defer h.tmu.Unlock()
	h.checks.Add(1)
	from, okFrom := states[fromName]
	to, okTo := states[toName]
	if !okFrom || !okTo {
		h.v.addf("breaker: transition between unknown states %q → %q", fromName, toName)
		return
	}
	if from != h.state {
		h.v.addf("breaker: transition %v → %v delivered while the last one ended in %v", from, to, h.state)
	}
	switch [2]breaker.State{from, to} {
	case [2]breaker.State{breaker.Closed, breaker.Open},
		[2]breaker.State{breaker.Open, breaker.HalfOpen},
		[2]breaker.State{breaker.HalfOpen, breaker.Open},
		[2]breaker.State{breaker.HalfOpen, breaker.Closed}:
	default:
		h.v.addf("breaker: illegal transition %v → %v", from, to)
	}
	h.state = to
	h.transitions[[2]breaker.State{from, to}]++
}

func storeMax(m *atomic.Int64, n int64) {
	for old := m.Load(); n > old && !m.CompareAndSwap(old, n); old = m.Load() {
	}
}

// call makes call number i as a caller with a random key and a random
// context: most wait as long as it takes, some cancel or time out after a
// random delay, a few arrive with their context already ended.
func (h *harness) call(i int) {
	key := rand.IntN(keys)
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	var end time.Time // when the caller's context ends; zero if never
	switch x := rand.IntN(100); {
	case x < 2:
		ctx, cancel = context.WithCancel(ctx)
		cancel()
	case x < 12:
		d := 1 + rand.N(maxCallerWait)
		ctx, cancel = context.WithCancel(ctx)
		defer time.AfterFunc(d, cancel).Stop()
		end = time.Now().Add(d)
	case x < 22:
		d := 1 + rand.N(maxCallerWait)
		ctx, cancel = context.WithTimeout(ctx, d)
		end = time.Now().Add(d)
	}
	defer cancel()
	h.calls.Add(1)
	if ctx.Err() != nil {
		h.preEnded.Add(1)
	}

	start := time.Now()
	out, err := h.stage(ctx, request{Key: key})
	now := time.Now()

	if old := h.returned[i/64].Or(1 << (i % 64)); old&(1<<(i%64)) != 0 {
		h.v.addf("call %d returned twice", i)
	}
	waited := now.Sub(start)
	storeMax(&h.maxWait, int64(waited))
	h.checks.Add(2)
	if !end.IsZero() && now.After(end) {
		h.tooLate.Add(1)
		h.v.addf("call %d returned %v after its context ended (err %v)", i, now.Sub(end), err)
	}
	if waited > flightBound {
		h.v.addf("call %d took %v, above the bound %v (err %v)", i, waited, flightBound, err)
	}
	h.classify(ctx, i, key, out, err)
}

// classify checks a call's result and counts its outcome.
func (h *harness) classify(ctx context.Context, i, key int, out reply, err error) {
	f := out.flight
	var fe *flightError
	if errors.As(err, &fe) {
		f = fe.f
	}
	h.checks.Add(1)
	if f != nil && f.overlapped.Load() {
		h.v.addf("call %d got the outcome of a shared call for key %d that ran concurrently with another for that key", i, key)
	}
	if f != nil && f.key != key {
		h.v.addf("call %d for key %d got the outcome of a shared call for key %d", i, key, f.key)
	}
	if err == nil {
		if f == nil || out.Key != key || out.Value != want(key) {
			h.v.addf("call %d for key %d: got %+v, want value %d from a shared call", i, key, out, want(key))
		}
		h.outcome[outOK].Add(1)
		return
	}
	if f == nil {
		// Dedup's own answer to a caller that left: its context's error.
		switch {
		case err != ctx.Err():
			h.v.addf("call %d: error %v not from a shared call, and not its context's error (%v)", i, err, ctx.Err())
		case err == context.Canceled:
			h.outcome[outCanceled].Add(1)
		default:
			h.outcome[outDeadline].Add(1)
		}
		return
	}
	var exh *retry.ExhaustedError
	switch err := fe.err; {
	case errors.Is(err, breaker.ErrOpen):
		h.outcome[outOpen].Add(1)
	case errors.Is(err, backpressure.ErrShed):
		h.outcome[outShed].Add(1)
	case errors.As(err, &exh) && exh.Reason == retry.ReasonAttempts:
		h.outcome[outAttempts].Add(1)
	case errors.As(err, &exh) && exh.Reason == retry.ReasonBudget:
		h.outcome[outBudget].Add(1)
	case errors.Is(err, errBad):
		h.outcome[outPermanent].Add(1)
	default:
		h.v.addf("call %d: unexpected error %v", i, err)
	}
}

// run makes calls [from, to) from workers goroutines and waits until
// every goroutine they caused has ended.
func (h *harness) run(from, to, workers int) {
	var next atomic.Int64
	next.Store(int64(from))
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= to {
					return
				}
				h.call(i)
				time.Sleep(rand.N(maxThink))
			}
		})
	}
	wg.Wait()
	// Abandoned shared calls end at most flightBound later; cached results
	// expire within cacheTTL.
	time.Sleep(flightBound + cacheTTL)
	synctest.Wait()
}

// libraryGoroutines counts the goroutines with a frame of Brace's
// middleware or pipeline packages on their stack.
func libraryGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "github.com/brace-go/brace/middleware") || strings.Contains(g, "github.com/brace-go/brace/pipeline") {
			n++
		}
	}
	return n
}

func liveHeap() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func soakCalls(t *testing.T) int {
	n := *flagCalls
	if n == 0 {
		if s := os.Getenv("BRACE_SOAK_CALLS"); s != "" {
			var err error
			if n, err = strconv.Atoi(s); err != nil {
				t.Fatalf("BRACE_SOAK_CALLS=%q: %v", s, err)
			}
		}
	}
	if n == 0 {
		n = shortCalls()
	}
	if n < 100 {
		t.Fatalf("soak: at least 100 calls, got %d", n)
	}
	return n
}

// TestSoak drives the full chain with many concurrent callers against the
// fault-injecting downstream and checks every invariant of
// docs/reliability.md, on every call where it can and at the end.
func TestSoak(t *testing.T) {
	calls := soakCalls(t)
	workers := orDefault(*flagWorkers, 1000)
	seed := *flagSeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("soak: %d calls, %d workers, seed %d (rerun with -soak.seed=%d)", calls, workers, seed, seed)

	var h *harness
	var heapBase, heapEnd uint64
	var gBase, gEnd int
	var fake time.Duration
	wall := time.Now()
	synctest.Test(t, func(t *testing.T) {
		h = newHarness(t, calls, seed)
		start := time.Now()
		warm := calls * warmupShare / 100
		h.run(0, warm, workers)
		heapBase, gBase = liveHeap(), libraryGoroutines()
		h.run(warm, calls, workers)
		heapEnd, gEnd = liveHeap(), libraryGoroutines()
		fake = time.Since(start)
	})
	elapsed := time.Since(wall)
	goleak.VerifyNone(t)

	h.checkTotals(t, calls)
	if gBase != 0 || gEnd != 0 {
		t.Errorf("goroutines running Brace's code once every call has ended: %d after the warm-up, %d at the end; want none", gBase, gEnd)
	}
	if heapEnd > heapBase+heapSlack {
		t.Errorf("live heap grew from %d to %d bytes, more than %d", heapBase, heapEnd, heapSlack)
	}
	h.checks.Add(3)

	t.Logf("soak: %v wall clock, %v fake time; live heap %d → %d bytes (%+d)", elapsed.Round(time.Millisecond), fake.Round(time.Millisecond),
		heapBase, heapEnd, int64(heapEnd)-int64(heapBase))
	t.Log("soak: numbers (markdown)\n" + h.report(calls, workers, seed, elapsed, fake, heapBase, heapEnd))

	if n := h.v.n.Load(); n > 0 {
		t.Errorf("%d invariant violations; the first ones:\n%s", n, strings.Join(h.v.first, "\n"))
	}
}

func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// checkTotals checks that the counts of adjacent layers add up.
func (h *harness) checkTotals(t *testing.T, calls int) {
	t.Helper()
	eq := func(what string, got, want int64) {
		t.Helper()
		h.checks.Add(1)
		if got != want {
			t.Errorf("%s: %d, want %d", what, got, want)
		}
	}
	le := func(what string, got, limit int64) {
		t.Helper()
		h.checks.Add(1)
		if got > limit {
			t.Errorf("%s: %d, above %d", what, got, limit)
		}
	}
	ld := func(a *atomic.Int64) int64 { return a.Load() }

	for i := range calls {
		if h.returned[i/64].Load()&(1<<(i%64)) == 0 {
			t.Errorf("call %d never returned", i)
			break
		}
	}
	var sum int64
	for i := range h.outcome {
		sum += h.outcome[i].Load()
	}
	eq("calls: successes + failures by cause", sum, int64(calls))
	eq("calls counted", ld(&h.calls), int64(calls))
	eq("calls: served by dedup (shared calls started + joined + cached) + arrived with an ended context",
		ld(&h.flights)+ld(&h.served[servedJoined])+ld(&h.served[servedCached])+ld(&h.preEnded), int64(calls))
	le("attempts", ld(&h.attempts), ld(&h.flights)+ld(&h.retries))
	le("shared calls + retries - abandoned shared calls", ld(&h.flights)+ld(&h.retries)-ld(&h.abandoned), ld(&h.attempts))
	le("retries", ld(&h.retries), ld(&h.flights)*(maxAttempts-1))
	eq("attempts = breaker rejections + calls through the breaker", ld(&h.attempts), ld(&h.rejected)+ld(&h.passed))
	eq("calls reaching backpressure = admitted + shed + ended contexts", ld(&h.passed), ld(&h.admitted)+ld(&h.shed)+ld(&h.bpCtx))
	eq("backpressure Rejected events = shed calls", ld(&h.shedEvents), ld(&h.shed))
	eq("admitted = successes + failures", ld(&h.admitted),
		ld(&h.admittedOK)+ld(&h.panics)+ld(&h.timeouts)+ld(&h.skipped)+ld(&h.skippedRender)+ld(&h.otherFail))
	eq("admitted = downstream calls + calls the pipeline skipped", ld(&h.admitted), ld(&h.ds.calls)+ld(&h.skipped))
	eq("successes below backpressure = downstream successes - those whose context ended before the render stage",
		ld(&h.admittedOK), ld(&h.ds.ok)-ld(&h.skippedRender))
	eq("panics recovered = panics injected", ld(&h.panics), ld(&h.ds.injected[faultPanic]))
	eq("downstream calls in flight at the end", ld(&h.ds.inFlight), 0)
	eq("probes in flight at the end", ld(&h.probesIn), 0)
	le("most calls in flight at the downstream", ld(&h.ds.maxIn), capacity)
	le("most half-open probes in flight", ld(&h.maxProbes), probes)
	eq("callers answered after their context ended", ld(&h.tooLate), 0)

	// The concerns' Stats agree with their events and with the probes.
	u := func(v uint64) int64 { return int64(v) }
	ds := h.dd.Stats()
	eq("dedup Stats.Joined = Joined events", u(ds.Joined), ld(&h.served[servedJoined]))
	eq("dedup Stats.CacheHits = Joined events from the cache", u(ds.CacheHits), ld(&h.served[servedCached]))
	eq("dedup Stats.Rejected", u(ds.Rejected), 0)
	eq("dedup Stats.InFlight at the end", ds.InFlight, 0)
	le("dedup Stats.CacheEntries at the end", ds.CacheEntries, cacheEntries)
	eq("retry Stats.Retries = Retry events", u(h.rt.Stats().Retries), ld(&h.retries))
	bs := h.b.Stats()
	eq("breaker Stats.Rejected = attempts rejected by the breaker", u(bs.Rejected), ld(&h.rejected))
	var transitions int64
	for _, n := range h.transitions {
		transitions += int64(n)
	}
	eq("breaker Stats.Transitions = StateChanged events", u(bs.Transitions), transitions)
	ps := h.lim.Stats()
	eq("backpressure Stats.Rejected = shed calls", u(ps.Rejected), ld(&h.shed))
	eq("backpressure Stats.InFlight at the end", ps.InFlight, 0)
	le("timeouts seen below backpressure", ld(&h.timeouts), u(h.to.Stats().TimedOut))
	if calls >= 10_000 {
		// Long enough for the weather to open the breaker: the checks
		// above must have had something to check.
		h.checks.Add(1)
		if h.probeCalls.Load() == 0 || h.transitions[[2]breaker.State{breaker.HalfOpen, breaker.Closed}] == 0 {
			t.Errorf("the breaker never probed and closed (transitions %v): the soak did not exercise it", h.transitions)
		}
	}
}

// report formats the run's numbers as the markdown table of
// docs/reliability.md.
func (h *harness) report(calls, workers int, seed uint64, wall, fake time.Duration, heapBase, heapEnd uint64) string {
	var b strings.Builder
	row := func(k string, v any) { fmt.Fprintf(&b, "| %s | %v |\n", k, v) }
	ld := func(a *atomic.Int64) int64 { return a.Load() }
	b.WriteString("| measure | value |\n|---|---|\n")
	row("calls", calls)
	row("concurrent callers", workers)
	row("seed", seed)
	row("wall-clock time", wall.Round(time.Millisecond))
	row("fake time covered", fake.Round(time.Millisecond))
	row("invariant checks", ld(&h.checks))
	row("violations", ld(&h.v.n))
	for i, n := range outcomeNames {
		row("outcome: "+n, ld(&h.outcome[i]))
	}
	row("caller contexts already ended", ld(&h.preEnded))
	row("dedup: new / joined / cached", fmt.Sprintf("%d / %d / %d", ld(&h.flights), ld(&h.served[servedJoined]), ld(&h.served[servedCached])))
	row("dedup: shared calls abandoned by every caller", ld(&h.abandoned))
	row("dedup: shared calls started beside an abandoned one", ld(&h.overlaps))
	row("retry: attempts / retries", fmt.Sprintf("%d / %d", ld(&h.attempts), ld(&h.retries)))
	row("breaker: rejected", ld(&h.rejected))
	var tr []string
	for _, k := range [][2]breaker.State{{breaker.Closed, breaker.Open}, {breaker.Open, breaker.HalfOpen}, {breaker.HalfOpen, breaker.Open}, {breaker.HalfOpen, breaker.Closed}} {
		tr = append(tr, fmt.Sprintf("%v→%v %d", k[0], k[1], h.transitions[k]))
	}
	row("breaker: transitions", strings.Join(tr, ", "))
	row("breaker: probe calls / most in flight (limit)", fmt.Sprintf("%d / %d (%d)", ld(&h.probeCalls), ld(&h.maxProbes), probes))
	row("backpressure: admitted / shed / context ended", fmt.Sprintf("%d / %d / %d", ld(&h.admitted), ld(&h.shed), ld(&h.bpCtx)))
	row("downstream: calls / most in flight (capacity)", fmt.Sprintf("%d / %d (%d)", ld(&h.ds.calls), ld(&h.ds.maxIn), capacity))
	var inj []string
	for f := range numFaults {
		inj = append(inj, fmt.Sprintf("%s %d", faultNames[f], h.ds.injected[f].Load()))
	}
	row("downstream: faults injected", strings.Join(inj, ", "))
	row("downstream: waits cut by a context", ld(&h.ds.cut))
	row("below backpressure: timeouts / panics recovered", fmt.Sprintf("%d / %d", ld(&h.timeouts), ld(&h.panics)))
	row("longest wait of a caller (bound)", fmt.Sprintf("%v (%v)", time.Duration(h.maxWait.Load()), time.Duration(flightBound)))
	row("live heap after warm-up → end", fmt.Sprintf("%d → %d bytes (%+d)", heapBase, heapEnd, int64(heapEnd)-int64(heapBase)))
	return b.String()
}
