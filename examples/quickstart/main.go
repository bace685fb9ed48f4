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
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/pipeline"
	"github.com/lmittmann/tint"
)

const (
	runFor      = 3 * time.Second
	workers     = 8
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
	return slog.New(tint.NewHandler(w, &tint.Options{
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

	p := pipeline.From("parse", parse)
	q := pipeline.Then(p, "lookup", lookup, middleware.Recover[order, quote]())
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
			for i := 0; ctx.Err() == nil; i++ {
				line := fmt.Sprintf("sku-%d:%d", (w*7+i)%12, 1+i%3)
				_, err := call(ctx, line)
				st.record(err)
				if i%200 == 0 && err != nil {
					log.Warn("call failed", "worker", w, "err", err)
				}
			}
		})
	}
	wg.Wait()

	st.print(out, svc.Calls())
	return nil
}

// stats counts the outcomes of the workers' calls by cause.
type stats struct {
	calls, ok, downstream, panics, cancelled, other atomic.Int64
}

func (s *stats) record(err error) {
	s.calls.Add(1)
	var pe *middleware.PanicError
	switch {
	case err == nil:
		s.ok.Add(1)
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

func (s *stats) print(w io.Writer, downstreamCalls int) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(name string, v int64) { fmt.Fprintf(tw, "%s\t%d\t\n", name, v) }
	fmt.Fprintln(tw, "summary\t\t")
	row("calls", s.calls.Load())
	row("successes", s.ok.Load())
	row("failed: downstream error", s.downstream.Load())
	row("failed: panic (recovered)", s.panics.Load())
	row("failed: run ended", s.cancelled.Load())
	row("failed: other", s.other.Load())
	row("downstream calls", int64(downstreamCalls))
	tw.Flush()
}
