// Command toolbox shows the four toolbox policies — Fallback, RateLimit,
// Hedge and Adaptive — each doing its job against a small simulated
// downstream, and prints what each one did.
//
//	go run ./examples/toolbox
//
// It needs no external service and runs in about four seconds of real
// time. The downstreams are seeded, so their failures and slow calls are
// the same on every run; counts that depend on timing (how many calls a
// rate limiter let through, where an adaptive limit settles) still vary a
// little from run to run. Each section checks that its policy did what the
// section says, and the program exits 1 if a check is not met. The
// summaries go to stdout, and a few notable moments go to stderr through
// tint. Every concern's events go to the same log through middleware.Log,
// which logs per-call events (each fallback, refusal, hedge, change of an
// adaptive limit) at Debug, so they stay out of the log unless -v is given.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/adaptive"
	"github.com/brace-go/brace/middleware/budget"
	"github.com/brace-go/brace/middleware/fallback"
	"github.com/brace-go/brace/middleware/hedge"
	"github.com/brace-go/brace/middleware/ratelimit"
	"github.com/lmittmann/tint"
)

func main() {
	verbose := flag.Bool("v", false, "log every event, per-call ones included (level Debug)")
	flag.Parse()
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := newLogger(os.Stderr, level)
	if err := run(log, os.Stdout); err != nil {
		log.Error("toolbox failed", "err", err)
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

// run runs the four sections one after the other, so that they do not
// compete for the CPU and distort each other's latencies. It returns an
// error if a section could not be built or a check was not met.
func run(log *slog.Logger, out io.Writer) error {
	r := &report{tw: tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)}
	sections := []struct {
		name string
		run  func(*slog.Logger, *report) error
	}{
		{"fallback", showFallback},
		{"ratelimit", showRateLimit},
		{"hedge", showHedge},
		{"adaptive", showAdaptive},
	}
	for _, s := range sections {
		if err := s.run(log.With("section", s.name), r); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		r.tw.Flush()
	}
	if len(r.failed) > 0 {
		return fmt.Errorf("%d checks not met: %s", len(r.failed), strings.Join(r.failed, "; "))
	}
	return nil
}

// report prints the sections' summaries and collects the checks that were
// not met.
type report struct {
	tw     *tabwriter.Writer
	failed []string
}

func (r *report) section(title string) { fmt.Fprintf(r.tw, "\n%s\n", title) }

func (r *report) row(name string, v any) { fmt.Fprintf(r.tw, "  %s\t%v\n", name, v) }

// check prints a claim and whether it held.
func (r *report) check(claim string, ok bool) {
	verdict := "ok"
	if !ok {
		verdict = "NOT MET"
		r.failed = append(r.failed, claim)
	}
	fmt.Fprintf(r.tw, "  check: %s\t%s\n", claim, verdict)
}

// ---------------------------------------------------------------------------
// 1. Fallback: serve the last known price when the price service fails.

var (
	errUnavailable = errors.New("prices: 503 service unavailable")
	errNoStale     = errors.New("price cache: no price seen yet")
)

type sku int

func (s sku) String() string { return fmt.Sprintf("sku-%d", int(s)) }

type price struct {
	Cents int
	Stale bool // from the cache, because the price service failed
}

func (p price) String() string {
	if p.Stale {
		return fmt.Sprintf("%d¢ (stale)", p.Cents)
	}
	return fmt.Sprintf("%d¢", p.Cents)
}

// priceService is the downstream: it fails 30% of lookups at random
// (seeded), and every lookup while it is down.
type priceService struct {
	mu   sync.Mutex
	rng  *rand.Rand
	down bool
}

func (s *priceService) lookup(_ context.Context, id sku) (price, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down || s.rng.Float64() < 0.3 {
		return price{}, errUnavailable
	}
	return price{Cents: 990 + 125*int(id)}, nil
}

func (s *priceService) setDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

// priceCache remembers the last price seen for each SKU.
type priceCache struct {
	mu   sync.Mutex
	last map[sku]price
}

// remember is a middleware that records every price the service answers.
func (c *priceCache) remember(next middleware.Stage[sku, price]) middleware.Stage[sku, price] {
	return func(ctx context.Context, id sku) (price, error) {
		p, err := next(ctx, id)
		if err == nil {
			c.mu.Lock()
			c.last[id] = p
			c.mu.Unlock()
		}
		return p, err
	}
}

// stale is the fallback: the last price seen, marked stale, or an error
// when the SKU was never priced.
func (c *priceCache) stale(_ context.Context, id sku, _ error) (price, error) {
	c.mu.Lock()
	p, ok := c.last[id]
	c.mu.Unlock()
	if !ok {
		return price{}, fmt.Errorf("%w for %v", errNoStale, id)
	}
	p.Stale = true
	return p, nil
}

func showFallback(log *slog.Logger, r *report) error {
	const lookups, skus = 200, 12
	svc := &priceService{rng: rand.New(rand.NewPCG(1, 1))}
	cache := &priceCache{last: map[sku]price{}}
	fb, err := fallback.New(fallback.Config{Name: "prices", Observer: middleware.Log(log)})
	if err != nil {
		return err
	}
	getPrice := middleware.Apply(svc.lookup,
		fallback.Middleware(fb, cache.stale),
		cache.remember, // inside the fallback: only real prices are remembered
	)

	// Flaky phase: 200 lookups of 12 SKUs while 30% of lookups fail.
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(2, 2))
	var fresh, stale, failed int
	known := sku(-1) // the first SKU the price service priced
	for range lookups {
		id := sku(rng.IntN(skus))
		p, err := getPrice(ctx, id)
		switch {
		case err != nil:
			failed++
		case p.Stale:
			stale++
		default:
			fresh++
			if known < 0 {
				known = id
			}
		}
	}
	flaky := fb.Stats()

	// Outage: every lookup fails. A SKU priced before is still answered;
	// one never priced cannot be, and both failures stay reachable.
	svc.setDown(true)
	knownPrice, knownErr := getPrice(ctx, known)
	_, unseenErr := getPrice(ctx, sku(99))
	var fbErr *fallback.Error
	isFallbackErr := errors.As(unseenErr, &fbErr)
	if isFallbackErr {
		log.Info("outage: no stale price for an unseen SKU", "err", unseenErr)
	}

	r.section("1. Fallback — price lookups, the price service fails 30% of them")
	r.row("lookups", lookups)
	r.row("answered by the price service", fresh)
	r.row("answered by the fallback (stale price)", stale)
	r.row("failed (fallback had no price either)", failed)
	r.row("fallback Stats: fell back / alternative failed too", fmt.Sprintf("%d / %d", flaky.FellBack, flaky.AltFailures))
	r.row(fmt.Sprintf("outage: %v, priced before", known), knownPrice)
	r.row("outage: sku-99, never priced", unseenErr)
	r.check("the fallback served at least one lookup, and its Stats add up",
		stale >= 1 && uint64(stale) == flaky.FellBack-flaky.AltFailures && uint64(failed) == flaky.AltFailures)
	r.check("during the outage a SKU priced before gets its stale price", knownErr == nil && knownPrice.Stale)
	r.check("an unseen SKU fails with *fallback.Error, the 503 reachable with errors.Is",
		isFallbackErr && errors.Is(unseenErr, errUnavailable) && errors.Is(unseenErr, errNoStale) &&
			errors.Is(fbErr.Primary, errUnavailable))
	return nil
}

// ---------------------------------------------------------------------------
// 2. RateLimit: reject mode, wait mode, and one bucket per tenant.

const (
	rateLimit = 50 // calls a second
	rateBurst = 5
)

func showRateLimit(log *slog.Logger, r *report) error {
	ctx := context.Background()
	search := func(context.Context, string) (int, error) { return 0, nil } // the guarded call

	// Reject mode: a burst of 20 calls at once against Rate 50/s, Burst 5.
	obs := middleware.Log(log)
	reject, err := ratelimit.New(ratelimit.Config{Name: "search", Rate: rateLimit, Burst: rateBurst, Observer: obs})
	if err != nil {
		return err
	}
	limited := middleware.Apply(search, ratelimit.Middleware[string, int](reject))
	const burstCalls = 20
	var admitted int
	var delays []time.Duration
	for range burstCalls {
		_, err := limited(ctx, "q")
		var le *ratelimit.LimitedError
		if errors.As(err, &le) {
			delays = append(delays, le.Delay)
		} else if err == nil {
			admitted++
		} else {
			return err
		}
	}
	// A caller that honours Delay gets through on its next try.
	var honoured error = errors.New("no call was limited")
	if len(delays) > 0 {
		time.Sleep(delays[len(delays)-1])
		_, honoured = limited(ctx, "q")
	}
	delaysOK := len(delays) > 0
	for _, d := range delays {
		delaysOK = delaysOK && d > 0 && d <= time.Second/rateLimit
	}

	// Wait mode: 15 calls at once with MaxWait 150ms queue for their
	// tokens, 20ms apart; those that would wait longer are refused at once.
	const waitCalls, maxWait = 15, 150 * time.Millisecond
	queue, err := ratelimit.New(ratelimit.Config{Name: "search", Rate: rateLimit, Burst: rateBurst, MaxWait: maxWait, Observer: obs})
	if err != nil {
		return err
	}
	waiting := middleware.Apply(search, ratelimit.Middleware[string, int](queue))
	waits := make([]time.Duration, waitCalls) // -1: refused
	var refusedDelay atomic.Int64
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range waitCalls {
		wg.Go(func() {
			<-gate // start together
			start := time.Now()
			_, err := waiting(ctx, "q")
			waits[i] = time.Since(start)
			var le *ratelimit.LimitedError
			if errors.As(err, &le) {
				waits[i] = -1
				refusedDelay.Store(int64(le.Delay))
			}
		})
	}
	close(gate)
	wg.Wait()
	waited := 0 // admitted after waiting at least a quarter of a token's interval
	var longest time.Duration
	for _, w := range waits {
		if w >= time.Second/rateLimit/4 {
			waited++
		}
		longest = max(longest, w)
	}
	ws := queue.Stats()
	wsAdmitted := uint64(waitCalls) - ws.Rejected

	// One bucket per tenant: a noisy tenant hammers the service while a
	// quiet one makes a call every 60ms. With one shared bucket the noisy
	// tenant takes the tokens; with a bucket each the quiet tenant is
	// never refused.
	shared, err := ratelimit.New(ratelimit.Config{Rate: 2 * 20, Burst: 2 * rateBurst})
	if err != nil {
		return err
	}
	perTenant, err := ratelimit.New(ratelimit.Config{Rate: 20, Burst: rateBurst})
	if err != nil {
		return err
	}
	tenantOf := func(req string) string { return req }
	sharedRun := tenants(middleware.Apply(search, ratelimit.Middleware[string, int](shared)))
	keyedRun := tenants(middleware.Apply(search, ratelimit.Keyed[string, int](perTenant, tenantOf)))

	r.section(fmt.Sprintf("2. RateLimit — Rate %d/s, Burst %d", rateLimit, rateBurst))
	r.row(fmt.Sprintf("reject mode: a burst of %d calls: admitted / limited", burstCalls), fmt.Sprintf("%d / %d", admitted, len(delays)))
	if len(delays) > 0 {
		r.row("reject mode: LimitedError.Delay, first .. last", fmt.Sprintf("%v .. %v", delays[0].Round(time.Microsecond), delays[len(delays)-1].Round(time.Microsecond)))
	}
	r.row("reject mode: retried after waiting its Delay", errText(honoured, "admitted"))
	r.row(fmt.Sprintf("wait mode (MaxWait %v): %d calls at once: admitted / refused", maxWait, waitCalls), fmt.Sprintf("%d / %d", wsAdmitted, ws.Rejected))
	r.row("wait mode: admitted after queueing for a token (Stats.Waited)", ws.Waited)
	r.row("wait mode: longest wait", longest.Round(time.Millisecond))
	if d := refusedDelay.Load(); d > 0 {
		r.row("wait mode: a refused call would have waited", time.Duration(d).Round(time.Millisecond))
	}
	r.row("one shared bucket (40/s, burst 10): noisy admitted / sent", fmt.Sprintf("%d / %d", sharedRun.noisyOK, sharedRun.noisySent))
	r.row("one shared bucket: quiet admitted / sent", fmt.Sprintf("%d / %d", sharedRun.quietOK, quietCalls))
	r.row("a bucket per tenant (20/s, burst 5 each): noisy admitted / sent", fmt.Sprintf("%d / %d", keyedRun.noisyOK, keyedRun.noisySent))
	r.row("a bucket per tenant: quiet admitted / sent", fmt.Sprintf("%d / %d", keyedRun.quietOK, quietCalls))
	r.check("reject mode admitted the burst and limited the rest", admitted >= rateBurst && len(delays) >= 1)
	r.check("every *LimitedError carries a Delay in (0, 1/Rate]", delaysOK)
	r.check("a call made after waiting its Delay is admitted", honoured == nil)
	r.check("wait mode admitted calls beyond the burst by queueing them", wsAdmitted > rateBurst && waited >= 1 && ws.Waited >= 1)
	r.check("per tenant: the noisy tenant is limited", keyedRun.noisyOK < keyedRun.noisySent)
	r.check("per tenant: the quiet tenant is never refused", keyedRun.quietOK == quietCalls)
	return nil
}

func errText(err error, ok string) string {
	if err != nil {
		return err.Error()
	}
	return ok
}

const quietCalls = 5

type tenantRun struct{ noisySent, noisyOK, quietOK int }

// tenants runs a noisy tenant (4 callers, one call a millisecond each) and
// a quiet one (a call every 60ms, starting once the noisy tenant has
// emptied the bucket) through guarded, and counts what each got.
func tenants(guarded middleware.Stage[string, int]) tenantRun {
	ctx, stop := context.WithCancel(context.Background())
	var sent, ok atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				if _, err := guarded(ctx, "noisy"); err == nil {
					ok.Add(1)
				}
				sent.Add(1)
			}
		})
	}
	var run tenantRun
	tick := time.NewTicker(60 * time.Millisecond)
	for range quietCalls {
		<-tick.C
		if _, err := guarded(ctx, "quiet"); err == nil {
			run.quietOK++
		}
	}
	tick.Stop()
	stop()
	wg.Wait()
	run.noisySent, run.noisyOK = int(sent.Load()), int(ok.Load())
	return run
}

// ---------------------------------------------------------------------------
// 3. Hedge: cut the long tail of a replica with a second (and third) copy.

// replica answers in 2ms, except that one attempt in ten (seeded) takes
// 80ms; when degraded, every attempt takes 40ms.
type replica struct {
	mu       sync.Mutex
	rng      *rand.Rand
	degraded bool
	attempts atomic.Int64
}

func (s *replica) get(ctx context.Context, key int) (int, error) {
	s.attempts.Add(1)
	s.mu.Lock()
	latency := 2 * time.Millisecond
	switch {
	case s.degraded:
		latency = 40 * time.Millisecond
	case s.rng.IntN(10) == 0:
		latency = 80 * time.Millisecond
	}
	s.mu.Unlock()
	t := time.NewTimer(latency)
	defer t.Stop()
	select {
	case <-t.C:
		return key, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// drive makes perWorker sequential calls from each of workers goroutines
// and returns every call's latency, sorted.
func drive(call middleware.Stage[int, int], workers, perWorker int) ([]time.Duration, error) {
	var mu sync.Mutex
	var lat []time.Duration
	var errs []error
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				start := time.Now()
				_, err := call(context.Background(), w*perWorker+i)
				d := time.Since(start)
				mu.Lock()
				lat = append(lat, d)
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(lat)
	return lat, errors.Join(errs...)
}

// quantile returns the nearest-rank q-quantile of sorted durations.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}

func showHedge(log *slog.Logger, r *report) error {
	const workers, perWorker, degradedPerWorker = 8, 40, 12
	const hedgeDelay, maxHedges = 10 * time.Millisecond, 2
	svc := &replica{rng: rand.New(rand.NewPCG(3, 3))}

	// One budget for this replica: hedges worth 20% of calls plus a
	// reserve of 10 per 10s window.
	b, err := budget.New(budget.Config{Ratio: 0.2, MinPerSecond: 1})
	if err != nil {
		return err
	}
	var logged atomic.Bool
	h, err := hedge.New(hedge.Config{
		Name:       "replica",
		Delay:      hedgeDelay,
		Percentile: hedge.Fixed,
		// With one slow attempt in ten, one hedge leaves 1 call in 100
		// slow twice — exactly the p99. A second hedge makes it 1 in 1000.
		MaxHedges: maxHedges,
		Budget:    b,
		Observer: middleware.Observers(middleware.Log(log), middleware.ObserverFunc(func(ctx context.Context, e middleware.Event) {
			if e.Kind == middleware.Hedged && logged.CompareAndSwap(false, true) {
				log.InfoContext(ctx, "hedge: sent (logged once)", "attempt", e.Attempt, "delay", e.Delay)
			}
		})),
	})
	if err != nil {
		return err
	}
	hedged := middleware.Apply(svc.get, hedge.Middleware[int, int](h))

	plain, err := drive(svc.get, workers, perWorker)
	if err != nil {
		return err
	}
	svc.attempts.Store(0)
	fast, err := drive(hedged, workers, perWorker)
	if err != nil {
		return err
	}
	normal := h.Stats()
	calls := workers * perWorker
	normalAttempts := svc.attempts.Load()

	// The replica degrades: every attempt is slow, so every call wants
	// its hedges. The budget refuses most of them, so the load on the
	// replica grows by about the budget's ratio instead of tripling.
	svc.mu.Lock()
	svc.degraded = true
	svc.mu.Unlock()
	svc.attempts.Store(0)
	if _, err := drive(hedged, workers, degradedPerWorker); err != nil {
		return err
	}
	all := h.Stats()
	degradedCalls := workers * degradedPerWorker
	degradedAttempts := svc.attempts.Load()
	log.Info("hedge: replica degraded, budget holding hedges back", "refused", all.Rejected-normal.Rejected, "available", b.Stats().Available)

	ms := func(d time.Duration) string { return d.Round(100 * time.Microsecond).String() }
	r.section(fmt.Sprintf("3. Hedge — a replica answering in 2ms, 1 attempt in 10 in 80ms; %d calls from %d workers", calls, workers))
	r.row("without hedging: p50 / p95 / p99", fmt.Sprintf("%s / %s / %s", ms(quantile(plain, 0.5)), ms(quantile(plain, 0.95)), ms(quantile(plain, 0.99))))
	r.row(fmt.Sprintf("hedged after %v (up to %d): p50 / p95 / p99", hedgeDelay, maxHedges), fmt.Sprintf("%s / %s / %s", ms(quantile(fast, 0.5)), ms(quantile(fast, 0.95)), ms(quantile(fast, 0.99))))
	r.row("hedged: hedges sent / won / refused by the budget", fmt.Sprintf("%d / %d / %d", normal.Hedged, normal.HedgeWins, normal.Rejected))
	r.row("hedged: attempts per call", fmt.Sprintf("%.2f", float64(normalAttempts)/float64(calls)))
	r.row(fmt.Sprintf("degraded (every attempt 40ms), %d calls: hedges sent / refused", degradedCalls), fmt.Sprintf("%d / %d", all.Hedged-normal.Hedged, all.Rejected-normal.Rejected))
	r.row("degraded: attempts per call (3 without a budget)", fmt.Sprintf("%.2f", float64(degradedAttempts)/float64(degradedCalls)))
	r.check("hedges were sent", normal.Hedged >= 1)
	r.check("hedging lowered the p99", quantile(fast, 0.99) < quantile(plain, 0.99))
	r.check("the budget refused hedges when the replica degraded", all.Rejected > normal.Rejected)
	r.check("degraded: fewer than 2 attempts per call", degradedAttempts < 2*int64(degradedCalls))
	return nil
}

// ---------------------------------------------------------------------------
// 4. Adaptive: find a downstream's capacity from its latency.

// server serves capacity calls at once in base time; each call in flight
// beyond capacity adds perExtra to every call's latency (it queues).
type server struct {
	capacity        int64
	base, perExtra  time.Duration
	inflight, peak  atomic.Int64
	served, latency atomic.Int64 // latency: the sum, in nanoseconds
}

func (s *server) call(ctx context.Context, _ int) (int, error) {
	n := s.inflight.Add(1)
	defer s.inflight.Add(-1)
	for p := s.peak.Load(); n > p; p = s.peak.Load() {
		if s.peak.CompareAndSwap(p, n) {
			break
		}
	}
	start := time.Now()
	t := time.NewTimer(s.base + s.perExtra*time.Duration(max(0, n-s.capacity)))
	defer t.Stop()
	select {
	case <-t.C:
		s.served.Add(1)
		s.latency.Add(int64(time.Since(start)))
		return 0, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// load runs workers closed-loop callers of call for d; a rejected caller
// backs off 5ms. It returns the number of rejections.
func load(call middleware.Stage[int, int], workers int, d time.Duration) (rejected int64, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var failures atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				_, err := call(ctx, 0)
				switch {
				case errors.Is(err, adaptive.ErrLimitExceeded):
					failures.Add(1)
					select {
					case <-time.After(5 * time.Millisecond):
					case <-ctx.Done():
					}
				case err != nil && ctx.Err() == nil:
					firstErr.CompareAndSwap(nil, err)
				}
			}
		})
	}
	wg.Wait()
	if e, ok := firstErr.Load().(error); ok {
		return 0, e
	}
	return failures.Load(), nil
}

// window measures what s serves from its creation until end is called.
type window struct {
	s             *server
	start         time.Time
	served, total int64
}

func (s *server) window() *window {
	s.peak.Store(s.inflight.Load())
	return &window{s: s, start: time.Now(), served: s.served.Load(), total: s.latency.Load()}
}

// end returns the peak in flight, the mean latency and the throughput
// since the window started.
func (w *window) end() string {
	elapsed := time.Since(w.start)
	served := w.s.served.Load() - w.served
	var mean time.Duration
	if served > 0 {
		mean = time.Duration((w.s.latency.Load() - w.total) / served)
	}
	return fmt.Sprintf("%d / %v / %.0f/s", w.s.peak.Load(), mean.Round(100*time.Microsecond), float64(served)/elapsed.Seconds())
}

func showAdaptive(log *slog.Logger, r *report) error {
	const workers, capacity = 40, 8
	const unlimitedFor, adaptiveFor = 500 * time.Millisecond, 1600 * time.Millisecond
	svc := &server{capacity: capacity, base: 2 * time.Millisecond, perExtra: time.Millisecond}

	// Without a limit every worker's call is in flight at once.
	w := svc.window()
	if _, err := load(svc.call, workers, unlimitedFor); err != nil {
		return err
	}
	unlimited := w.end()

	// The limit changes many times a second: log at most one line every
	// 150ms, with the number of changes since the last line. A change to
	// half the limit is usually a probe for the no-load latency.
	var mu sync.Mutex
	var lastLog time.Time
	var sinceLog int
	throttled := middleware.ObserverFunc(func(ctx context.Context, e middleware.Event) {
		if e.Kind != middleware.LimitChanged {
			return
		}
		mu.Lock()
		sinceLog++
		now, n := time.Now(), sinceLog
		logNow := now.Sub(lastLog) >= 150*time.Millisecond
		if logNow {
			lastLog, sinceLog = now, 0
		}
		mu.Unlock() // log outside the lock
		if logNow {
			log.InfoContext(ctx, "adaptive: limit changed", "limit", e.Limit, "changes", n, "inflight", svc.inflight.Load())
		}
	})
	l, err := adaptive.New(adaptive.Config{
		Name: "catalog", Min: 1, Max: 200, Initial: workers,
		Observer: middleware.Observers(middleware.Log(log), throttled),
	})
	if err != nil {
		return err
	}
	limited := middleware.Apply(svc.call, adaptive.Middleware[int, int](l))

	// Run the workers through the limiter, sample the limit every 10ms,
	// and measure the second half of the run, once the limit has settled.
	var rejected int64
	var loadErr error
	var wg sync.WaitGroup
	start := time.Now()
	wg.Go(func() { rejected, loadErr = load(limited, workers, adaptiveFor) })
	var samples []int
	var settledWindow *window
	tick := time.NewTicker(10 * time.Millisecond)
	for time.Since(start) < adaptiveFor {
		<-tick.C
		if settledWindow == nil && time.Since(start) >= adaptiveFor/2 {
			settledWindow, samples = svc.window(), samples[:0]
		}
		samples = append(samples, int(l.Stats().Limit))
	}
	tick.Stop()
	settledRun := settledWindow.end()
	wg.Wait()
	if loadErr != nil {
		return loadErr
	}
	slices.Sort(samples)
	median := samples[len(samples)/2]
	stats := l.Stats()

	r.section(fmt.Sprintf("4. Adaptive — a downstream serving %d calls at once in 2ms, +1ms per call beyond; %d workers", capacity, workers))
	r.row(fmt.Sprintf("no limit (%v): peak in flight / mean latency / throughput", unlimitedFor), unlimited)
	r.row(fmt.Sprintf("adaptive, last %v: peak in flight / mean latency / throughput", adaptiveFor/2), settledRun)
	r.row("adaptive: limit at start / settled (median of last half) / range", fmt.Sprintf("%d / %d / %d..%d", workers, median, samples[0], samples[len(samples)-1]))
	r.row("adaptive: settled limit ÷ capacity", fmt.Sprintf("%.2f", float64(median)/capacity))
	r.row("adaptive: limit changes / rejected", fmt.Sprintf("%d / %d", stats.LimitChanged, stats.Rejected))
	r.check("the limit moved", stats.LimitChanged >= 1)
	r.check("calls beyond the limit were rejected", rejected >= 1 && uint64(rejected) == stats.Rejected)
	// Noise in the latencies pushes a Vegas limit down, never up, so only
	// the upper bound is checked; the ratio above shows how close it came.
	r.check(fmt.Sprintf("the limit came down from %d to at most 2× the capacity", workers), median <= 2*capacity)
	return nil
}
