// Command quickstart drives a simulated flaky inventory service through a
// Brace pipeline of typed stages and prints what each concern did.
//
//	go run ./examples/quickstart [-seed N] [-v] [-serve 1m]
//
// While it runs, a status page (middleware/status) shows the concerns live
// on a loopback port; the log gives its address, and -serve keeps it up
// after the run.
// It needs no external service and runs in a few seconds. The downstream is
// seeded, so its failures, latency spikes, panics and outage window are the
// same on every run; the exact counts still vary a little because the
// workers race each other in real time.
//
// The summary reconciles: every call is counted under exactly one outcome,
// classified by the error its caller got, and the numbers each concern
// reports through its Stats (and, for late successes, an Observer) are
// checked against those outcomes. If any check fails, the program exits
// with status 1.
//
// The log shows what an operator wants to see at the default level: the
// breaker's changes of state, once each. Per-call events (every retry,
// timeout, join) are logged by middleware.Log at Debug; -v shows them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/budget"
	"github.com/brace-go/brace/middleware/dedup"
	"github.com/brace-go/brace/middleware/retry"
	"github.com/brace-go/brace/middleware/status"
	"github.com/brace-go/brace/middleware/timeout"
	"github.com/brace-go/brace/pipeline"
	"github.com/lmittmann/tint"
)

// options are the knobs of one run. The test runs shorter ones.
type options struct {
	seed        uint64
	runFor      time.Duration
	outageFrom  time.Duration // the downstream fails every call from here
	outageUntil time.Duration // to here
	serve       time.Duration // how long the status page stays up after the run
}

var defaults = options{seed: 42, runFor: 3 * time.Second, outageFrom: time.Second, outageUntil: 1800 * time.Millisecond}

const (
	workers  = 12
	skus     = 40
	interval = 6 * time.Millisecond // per worker: about 2000 requests a second in all
	attempts = 3                    // retry.Config.MaxAttempts
)

type order struct {
	SKU string
	Qty int
}

type quote struct {
	order
	Total int // cents
}

func main() {
	opts := defaults
	flag.Uint64Var(&opts.seed, "seed", opts.seed, "seed of the simulated downstream and of the workers")
	verbose := flag.Bool("v", false, "log every event, per-call ones included (level Debug)")
	flag.DurationVar(&opts.serve, "serve", 0, "keep the status page up this long after the run (e.g. 1m)")
	flag.Parse()
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := newLogger(os.Stderr, level)
	if err := run(log, os.Stdout, opts); err != nil {
		log.Error("quickstart failed", "err", err)
		os.Exit(1)
	}
}

// newLogger renders slog records with tint: coloured on a terminal, plain
// when piped.
func newLogger(w *os.File, level slog.Level) *slog.Logger {
	fi, err := w.Stat()
	tty := err == nil && fi.Mode()&os.ModeCharDevice != 0
	return slog.New(tint.NewTextHandler(w, &tint.Options{
		Level:      level,
		TimeFormat: "15:04:05.000",
		NoColor:    !tty,
	}))
}

// run sends load through the pipeline for opts.runFor, prints the summary
// to out, and returns an error if the summary does not reconcile.
func run(log *slog.Logger, out io.Writer, opts options) error {
	svc := newDownstream(opts.seed, opts.outageFrom, opts.outageUntil)

	// The typed stages: string → order → quote → string.
	parse := func(_ context.Context, line string) (order, error) {
		sku, qty, ok := strings.Cut(line, ":")
		if !ok {
			return order{}, fmt.Errorf("want SKU:QTY, got %q", line)
		}
		n, err := strconv.Atoi(qty)
		return order{SKU: sku, Qty: n}, err
	}
	lookup := func(ctx context.Context, o order) (quote, error) {
		s, err := svc.Lookup(ctx, o.SKU)
		if err != nil {
			return quote{}, err
		}
		return quote{order: o, Total: s.Price * o.Qty}, nil
	}
	render := func(_ context.Context, q quote) (string, error) {
		return fmt.Sprintf("%s x%d = %d¢", q.SKU, q.Qty, q.Total), nil
	}

	// The status page shows the concerns live while the demo runs: it
	// observes their events and reads their Stats.
	page, err := status.New(status.Config{Title: "quickstart", Refresh: time.Second})
	if err != nil {
		return err
	}
	g, err := newGuard(log, opts.seed, page)
	if err != nil {
		return err
	}
	for _, err := range []error{
		status.Register(page, "breaker", "inventory", g.breaker.Stats),
		status.Register(page, "backpressure", "inventory", g.backpressure.Stats),
		status.Register(page, "dedup", "lookup", g.dedup.Stats),
		status.Register(page, "retry", "lookup", g.retry.Stats),
		status.Register(page, "budget", "lookup", g.budget.Stats),
	} {
		if err != nil {
			return err
		}
	}
	stopPage, err := servePage(log, page, opts.serve)
	if err != nil {
		return err
	}
	defer stopPage()
	p := pipeline.From("parse", parse)
	q := pipeline.Then(p, "lookup", lookup, g.middlewares()...)
	r := pipeline.Then(q, "render", render)
	call, err := r.Stage()
	if err != nil {
		return err
	}

	log.Info("quickstart starting", "seed", opts.seed, "workers", workers, "run_for", opts.runFor,
		"outage_from", opts.outageFrom, "outage_until", opts.outageUntil, "stages", strings.Join(r.Names(), " → "))

	var tally tally
	stop := make(chan struct{})
	time.AfterFunc(opts.runFor, func() { close(stop) })
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			// Each worker sends a request every interval whatever happened
			// to the last one (an open-loop load, like independent users),
			// so the counts below are proportional to time, not to how fast
			// the chain fails. Calls are not cut off when the run ends:
			// the ones in flight finish, so every call has an outcome.
			tick := time.NewTicker(interval)
			defer tick.Stop()
			rng := rand.New(rand.NewPCG(opts.seed, uint64(w)))
			for {
				// Workers ask for a small set of popular SKUs, so identical
				// requests overlap and Dedup can collapse them.
				line := fmt.Sprintf("sku-%d:1", rng.IntN(skus))
				info := new(callInfo)
				_, err := call(context.WithValue(context.Background(), callInfoKey{}, info), line)
				tally.record(info, err)
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		})
	}
	wg.Wait()

	s := summarize(&tally, g, svc)
	s.print(out)
	if n := s.mismatches(); n > 0 {
		return fmt.Errorf("the summary does not add up: %d check(s) failed (marked ✗ above)", n)
	}
	return nil
}

// servePage serves the status page on a free loopback port and logs its
// address. The returned func keeps it up for linger, then stops it.
func servePage(log *slog.Logger, page *status.Page, linger time.Duration) (stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/debug/brace", page)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln) // returns http.ErrServerClosed when stopped
	}()
	url := "http://" + ln.Addr().String() + "/debug/brace"
	log.Info("status page", "url", url)
	return func() {
		if linger > 0 {
			log.Info("status page stays up", "url", url, "for", linger)
			time.Sleep(linger) // the user asked to look at the page after the run
		}
		_ = srv.Close()
		<-done
	}, nil
}

// guard holds the lookup stage's concerns, so that the summary can report
// what each one counted.
type guard struct {
	dedup        *dedup.Group
	retry        *retry.Retrier
	budget       *budget.Budget
	breaker      *breaker.Breaker
	backpressure *backpressure.Limiter
	timeout      *timeout.Timeout

	attempts attemptTally // what each attempt returned, as the retry saw it
	events   eventTally   // the events the summary needs beyond Stats
}

// newGuard builds the lookup stage's concerns. Their events go to the log
// through middleware.Log: a breaker's change of state at Info or Warn,
// every per-call event at Debug.
func newGuard(log *slog.Logger, seed uint64, page *status.Page) (*guard, error) {
	g := new(guard)
	logged := middleware.Observers(middleware.Log(log), page)
	obs := middleware.Observers(logged, &g.events)
	var errs [6]error
	g.dedup, errs[0] = dedup.New(dedup.Config{
		Name:     "lookup",
		TTL:      10 * time.Millisecond, // identical requests within 10ms share one result
		Observer: logged,
	})
	g.budget, errs[1] = budget.New(budget.Config{
		Name:     "lookup",
		Ratio:    0.5, // retries worth at most half the calls
		Observer: logged,
	})
	g.retry, errs[2] = retry.New(retry.Config{
		Name:        "lookup",
		MaxAttempts: attempts,
		BaseDelay:   5 * time.Millisecond,
		MaxDelay:    40 * time.Millisecond,
		Seed:        seed,
		Budget:      g.budget,
		Observer:    logged,
	})
	g.breaker, errs[3] = breaker.New(breaker.Config{
		Name:           "inventory",
		Threshold:      8,
		OpenTimeout:    150 * time.Millisecond,
		HalfOpenProbes: 2,
		Observer:       obs,
	})
	g.backpressure, errs[4] = backpressure.New(backpressure.Config{
		Name:      "inventory",
		Capacity:  10,
		SoftLimit: 8,
		// The soft limit is crossed and left again many times a second
		// under this load: count the crossings, do not log each one.
		Observer: middleware.Observers(&g.events, page),
	})
	g.timeout, errs[5] = timeout.New(timeout.Config{
		Name:     "lookup",
		Duration: 30 * time.Millisecond,
		Observer: obs,
	})
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}
	return g, nil
}

// middlewares returns the lookup stage's chain, outermost first:
//
//	Dedup → Retry → Breaker → Backpressure → Timeout → Recover → lookup
//
// (docs/ordering.md explains why this order), with two probes that only
// count: one under Dedup marks the calls that ran their own chain rather
// than share another's result, one under Retry records what each attempt
// returned.
func (g *guard) middlewares() []middleware.Middleware[order, quote] {
	return []middleware.Middleware[order, quote]{
		dedup.Middleware[order, quote](g.dedup, func(o order) order { return o }),
		markRan,
		retry.Middleware[order, quote](g.retry),
		g.attempts.probe,
		breaker.Middleware[order, quote](g.breaker),
		backpressure.Middleware[order, quote](g.backpressure),
		timeout.Middleware[order, quote](g.timeout),
		middleware.Recover[order, quote](),
	}
}

// callInfo is what the probes learn about one call. The worker puts it in
// the call's context; Dedup runs a shared call on its first caller's
// context (without its cancellation), so the probes see the first caller's.
type callInfo struct {
	ran      atomic.Bool  // the call ran its own chain (it was not given a shared result)
	attempts atomic.Int64 // attempts it made
}

type callInfoKey struct{}

func infoOf(ctx context.Context) *callInfo {
	info, _ := ctx.Value(callInfoKey{}).(*callInfo)
	if info == nil {
		info = new(callInfo) // a call from elsewhere: counted nowhere
	}
	return info
}

func markRan(next middleware.Stage[order, quote]) middleware.Stage[order, quote] {
	return func(ctx context.Context, o order) (quote, error) {
		infoOf(ctx).ran.Store(true)
		return next(ctx, o)
	}
}

// The outcomes of a call, as its caller saw it: each call is counted under
// exactly one.
type outcome int

const (
	ok outcome = iota
	gaveUp503
	gaveUpTimeout
	gaveUpPanic
	gaveUpOther
	gaveUpBudget
	gaveUpElse // stopped for another reason (elapsed, deadline, ...): not expected here
	open
	shed
	other
	nOutcomes
)

var outcomeNames = [nOutcomes]string{
	ok:            "ok",
	gaveUp503:     "failed: gave up after 3 attempts, last one 503",
	gaveUpTimeout: "failed: gave up after 3 attempts, last one timed out",
	gaveUpPanic:   "failed: gave up after 3 attempts, last one panicked",
	gaveUpOther:   "failed: gave up after 3 attempts, last one other",
	gaveUpBudget:  "failed: gave up, retry budget empty",
	gaveUpElse:    "failed: gave up, another reason",
	open:          "failed: breaker open",
	shed:          "failed: shed (backpressure)",
	other:         "failed: other error",
}

// classify returns the outcome of a call that returned err. It looks at the
// error the caller got: a *retry.ExhaustedError unwraps to its last
// attempt's error only, so a call that gave up after a timeout and then two
// 503s counts once, under 503.
func classify(err error) outcome {
	if err == nil {
		return ok
	}
	var ex *retry.ExhaustedError
	if errors.As(err, &ex) {
		switch ex.Reason {
		case retry.ReasonAttempts:
			switch attemptOutcome(ex.Err) {
			case attemptFailed:
				return gaveUp503
			case attemptTimedOut:
				return gaveUpTimeout
			case attemptPanicked:
				return gaveUpPanic
			}
			return gaveUpOther
		case retry.ReasonBudget:
			return gaveUpBudget
		}
		return gaveUpElse
	}
	switch {
	case errors.Is(err, breaker.ErrOpen):
		return open
	case errors.Is(err, backpressure.ErrShed):
		return shed
	}
	return other
}

// tally counts the callers' outcomes: [outcome][0] for the calls that ran
// their own chain, [outcome][1] for those given a shared result by Dedup.
type tally struct {
	calls [nOutcomes][2]atomic.Int64
	// For the calls that ran: attempts made, and calls that failed with a
	// rejection after at least one retry (the retry counts those as given
	// up: see retry.Stats).
	attempts, rejectedAfterRetry atomic.Int64
}

func (t *tally) record(info *callInfo, err error) {
	o := classify(err)
	if !info.ran.Load() {
		t.calls[o][1].Add(1)
		return
	}
	t.calls[o][0].Add(1)
	n := info.attempts.Load()
	t.attempts.Add(n)
	if (o == open || o == shed) && n > 1 {
		t.rejectedAfterRetry.Add(1)
	}
}

// The outcomes of one attempt, as the retry saw it.
type attempt int

const (
	attemptOK attempt = iota
	attemptFailed
	attemptTimedOut
	attemptPanicked
	attemptOpen
	attemptShed
	attemptOther
	nAttempts
)

var attemptNames = [nAttempts]string{
	attemptOK:       "ok",
	attemptFailed:   "503 from the downstream",
	attemptTimedOut: "timed out (timeout)",
	attemptPanicked: "panicked (recovered)",
	attemptOpen:     "rejected (breaker open)",
	attemptShed:     "shed (backpressure)",
	attemptOther:    "other error",
}

func attemptOutcome(err error) attempt {
	var pe *middleware.PanicError
	switch {
	case err == nil:
		return attemptOK
	case errors.Is(err, timeout.ErrTimeout): // a timed-out 503 or panic counts here
		return attemptTimedOut
	case errors.As(err, &pe):
		return attemptPanicked
	case errors.Is(err, errUnavailable):
		return attemptFailed
	case errors.Is(err, breaker.ErrOpen):
		return attemptOpen
	case errors.Is(err, backpressure.ErrShed):
		return attemptShed
	}
	return attemptOther
}

type attemptTally [nAttempts]atomic.Int64

func (t *attemptTally) probe(next middleware.Stage[order, quote]) middleware.Stage[order, quote] {
	return func(ctx context.Context, o order) (quote, error) {
		infoOf(ctx).attempts.Add(1)
		q, err := next(ctx, o)
		t[attemptOutcome(err)].Add(1)
		return q, err
	}
}

// eventTally counts the events the summary needs beyond the concerns'
// Stats: the breaker's openings, the soft-limit crossings, and the timeouts
// whose stage succeeded late (the timeout counts them, but the caller gets
// the result, so no error shows them).
type eventTally struct {
	opened, closed, softLimit, lateSuccesses atomic.Int64
}

func (t *eventTally) Observe(_ context.Context, e middleware.Event) {
	switch {
	case e.Kind == middleware.StateChanged && e.Concern == "breaker" && e.To == "open":
		t.opened.Add(1)
	case e.Kind == middleware.StateChanged && e.Concern == "breaker" && e.To == "closed":
		t.closed.Add(1)
	case e.Kind == middleware.StateChanged && e.Concern == "backpressure" && e.To == backpressure.StateOverSoftLimit:
		t.softLimit.Add(1)
	case e.Kind == middleware.TimedOut && e.Err == nil:
		t.lateSuccesses.Add(1)
	}
}
