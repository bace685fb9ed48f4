// Command quickstart drives a simulated flaky inventory service through a
// Brace pipeline of typed stages and prints what each concern did.
//
//	go run ./examples/quickstart
//
// It needs no external service and runs in a few seconds. The downstream is
// seeded, so its failures, latency spikes, panics and outage window are the
// same on every run; the exact counts still vary a little because the
// workers race each other in real time.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/budget"
	"github.com/brace-go/brace/middleware/dedup"
	"github.com/brace-go/brace/middleware/retry"
	"github.com/brace-go/brace/middleware/timeout"
	"github.com/brace-go/brace/pipeline"
	"github.com/lmittmann/tint"
)

const (
	runFor      = 3 * time.Second
	workers     = 12
	skus        = 40
	interval    = 6 * time.Millisecond // per worker: about 2000 requests a second in all
	outageFrom  = 1 * time.Second
	outageUntil = 1800 * time.Millisecond
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
	log := newLogger(os.Stderr)
	if err := run(log, os.Stdout); err != nil {
		log.Error("quickstart failed", "err", err)
		os.Exit(1)
	}
}

// newLogger renders slog records with tint: coloured on a terminal, plain
// when piped.
func newLogger(w *os.File) *slog.Logger {
	fi, err := w.Stat()
	tty := err == nil && fi.Mode()&os.ModeCharDevice != 0
	return slog.New(tint.NewTextHandler(w, &tint.Options{
		Level:      slog.LevelInfo,
		TimeFormat: "15:04:05.000",
		NoColor:    !tty,
	}))
}

func run(log *slog.Logger, out io.Writer) error {
	svc := newDownstream(42, outageFrom, outageUntil)
	var st stats

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

	guard, err := newGuard(log)
	if err != nil {
		return err
	}
	p := pipeline.From("parse", parse)
	q := pipeline.Then(p, "lookup", lookup, guard.middlewares...)
	r := pipeline.Then(q, "render", render)
	call, err := r.Stage()
	if err != nil {
		return err
	}

	log.Info("quickstart starting", "workers", workers, "run_for", runFor,
		"outage_from", outageFrom, "outage_until", outageUntil, "stages", strings.Join(r.Names(), " → "))

	ctx, cancel := context.WithTimeout(context.Background(), runFor)
	defer cancel()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			// Each worker sends a request every interval whatever happened
			// to the last one (an open-loop load, like independent users),
			// so the counts below are proportional to time, not to how fast
			// the chain fails.
			tick := time.NewTicker(interval)
			defer tick.Stop()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for {
				// Workers ask for a small set of popular SKUs, so identical
				// requests overlap and Dedup can collapse them.
				line := fmt.Sprintf("sku-%d:1", rng.IntN(skus))
				_, err := call(ctx, line)
				st.record(err)
				if err != nil && st.shouldLog() {
					log.Warn("call failed", "worker", w, "err", err)
				}
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		})
	}
	wg.Wait()

	st.print(out, guard, svc)
	return nil
}

// guard holds the lookup stage's middlewares and the shared state and
// counters behind them, so the summary can report what each concern did.
type guard struct {
	middlewares []middleware.Middleware[order, quote]
	breaker     *breaker.Breaker
	limiter     *backpressure.Limiter

	dedup        dedup.Counter
	retry        retry.Counter
	breakerStats breaker.Counter
	backpressure backpressure.Counter
	timeout      timeout.Counter
	softLimit    atomic.Int64
}

// newGuard builds the lookup stage's chain, outermost first:
//
//	Dedup → Retry → Breaker → Backpressure → Timeout → Recover → lookup
//
// docs/ordering.md explains why this order.
func newGuard(log *slog.Logger) (*guard, error) {
	g := new(guard)
	extra, err := budget.New(budget.Config{Ratio: 0.5}) // retries worth at most half the calls
	if err != nil {
		return nil, err
	}
	dedupMW, err := dedup.New[order, quote](func(o order) order { return o }, dedup.Config{
		TTL:     10 * time.Millisecond, // identical requests within 10ms share one result
		Counter: &g.dedup,
	})
	if err != nil {
		return nil, err
	}
	retryMW, err := retry.New[order, quote](retry.Config{
		Name:        "lookup",
		MaxAttempts: 3,
		BaseDelay:   5 * time.Millisecond,
		MaxDelay:    40 * time.Millisecond,
		Budget:      extra,
		Counter:     &g.retry,
		Logger:      log,
	})
	if err != nil {
		return nil, err
	}
	g.breaker, err = breaker.New(breaker.Config{
		Name:           "inventory",
		Threshold:      8,
		OpenTimeout:    150 * time.Millisecond,
		HalfOpenProbes: 2,
		Counter:        &g.breakerStats,
		Logger:         log,
	})
	if err != nil {
		return nil, err
	}
	g.limiter, err = backpressure.New(10, backpressure.Config{
		Name:      "inventory",
		SoftLimit: 8,
		Counter:   &g.backpressure,
		// The soft limit is crossed often under this load: count every
		// crossing, log only the first rather than pass the Logger.
		OnSoftLimit: func(depth, soft int64) {
			if g.softLimit.Add(1) == 1 {
				log.Warn("backpressure: soft limit reached (logged once)", "depth", depth, "soft_limit", soft, "capacity", g.limiter.Capacity())
			}
		},
	})
	if err != nil {
		return nil, err
	}
	timeoutMW, err := timeout.New[order, quote](timeout.Config{
		Name:     "lookup",
		Duration: 30 * time.Millisecond,
		Counter:  &g.timeout,
	})
	if err != nil {
		return nil, err
	}
	g.middlewares = []middleware.Middleware[order, quote]{
		dedupMW,
		retryMW,
		breaker.Middleware[order, quote](g.breaker),
		backpressure.Middleware[order, quote](g.limiter),
		timeoutMW,
		middleware.Recover[order, quote](),
	}
	return g, nil
}

// stats counts the outcomes of the workers' calls, as the callers saw
// them, by cause.
type stats struct {
	calls, ok, downstream, panics, open, shed, timedOut, cancelled, other atomic.Int64
	logCount                                                              atomic.Int64
}

func (s *stats) record(err error) {
	s.calls.Add(1)
	var pe *middleware.PanicError
	switch {
	case err == nil:
		s.ok.Add(1)
	case errors.Is(err, breaker.ErrOpen):
		s.open.Add(1)
	case errors.Is(err, backpressure.ErrShed):
		s.shed.Add(1)
	case errors.Is(err, timeout.ErrTimeout):
		s.timedOut.Add(1)
	case errors.As(err, &pe):
		s.panics.Add(1)
	case errors.Is(err, errUnavailable):
		s.downstream.Add(1)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		s.cancelled.Add(1) // the run ended while the call was in flight
	default:
		s.other.Add(1)
	}
}

// shouldLog keeps the log readable: only the first few failures are logged.
func (s *stats) shouldLog() bool { return s.logCount.Add(1) <= 6 }

func (s *stats) print(w io.Writer, g *guard, svc *downstream) {
	calls, panics := svc.Counts()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	section := func(title string) { fmt.Fprintf(tw, "\t\t\n%s\t\t\n", title) }
	row := func(name string, v any) { fmt.Fprintf(tw, "%s\t%v\t\n", name, v) }

	section("calls, as the callers saw them")
	row("calls", s.calls.Load())
	row("successes", s.ok.Load())
	row("failed: downstream error", s.downstream.Load())
	row("failed: timeout", s.timedOut.Load())
	row("failed: panic", s.panics.Load())
	row("failed: breaker open", s.open.Load())
	row("failed: shed (backpressure)", s.shed.Load())
	row("failed: run ended", s.cancelled.Load())
	row("failed: other", s.other.Load())

	rs, bs, ps, ts, ds := g.retry.Stats(), g.breakerStats.Stats(), g.backpressure.Stats(), g.timeout.Stats(), g.dedup.Stats()
	section("what each concern did (their Counters)")
	row("dedup: ran the stage", ds.Executions)
	row("dedup: joined a running call", ds.Joins)
	row("dedup: served from cache", ds.CacheHits)
	row("retry: retries", rs.Retries)
	row("retry: gave up", rs.Exhausted)
	row("breaker: opened", bs.Transitions[breaker.Open])
	row("breaker: closed again", bs.Transitions[breaker.Closed])
	row("breaker: rejected", bs.Rejections)
	row("breaker: state at end", g.breaker.State())
	row("backpressure: admitted", ps.Admitted)
	row("backpressure: shed", ps.Shed)
	row("backpressure: soft limit reached", g.softLimit.Load())
	row("timeout: attempts cut off", ts.Timeouts)

	section("the downstream")
	row("calls that reached it", calls)
	row("panics (recovered, retried)", panics)
	tw.Flush()
}
