// Command llmgateway is an LLM gateway in front of two simulated LLM
// providers, "alpha" and "beta". It runs the same workload twice, once
// straight to the providers and once through the gateway's protections, and
// prints what each of Brace's concerns did:
//
//	go run ./examples/llmgateway
//
// The providers are net/http/httptest servers on loopback. Each allows a
// number of requests and of tokens (prompt and completion) per minute and a
// number of requests at once, and refuses the rest with a 429 or a 503, a
// Retry-After and the IETF RateLimit and RateLimit-Policy headers. During the
// run alpha fails every request for a while (an outage), and beta browns out:
// slower, and refusing three requests in four.
//
// The workload mixes interactive prompts (a person is waiting; some are
// popular questions that several users ask at once) with a batch job that
// summarises documents, some of them twice, at about three times what the
// providers allow. The gateway's chain, outermost first:
//
//	failover (interactive only) → dedup → retry → a breaker per provider
//	→ a throttler per provider → backpressure per provider, with priorities
//	→ rate limits per provider (requests and tokens, settled) → provider
//
// # Time
//
// Time is compressed: a provider's "minute" is one second of real time (its
// limits are counted over fixed one-second windows), so a Retry-After of 1,
// the smallest an HTTP Retry-After can say, means "when the window turns".
// The program runs in about seven seconds. The workload is seeded, so the
// prompts and their timing are the same on every run; the counts that depend
// on timing (which window a request falls in, which calls overlap) vary a
// little from run to run, and the checks leave room for that. The program
// checks its own outcomes and exits 1 if a check is not met. The tables go
// to stdout, state changes to stderr through tint; -v logs every concern's
// per-call events too (level Debug). docs/llmgateway.md explains the output.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

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
		log.Error("llmgateway failed", "err", err)
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

// The providers, the same for both runs.
var specs = []providerSpec{
	{
		name:    "alpha",
		limits:  limits{RPM: 40, TPM: 8000, InFlight: 8},
		latency: 20 * time.Millisecond,
		failing: period{100 * time.Millisecond, 500 * time.Millisecond},
	},
	{
		name:       "beta",
		limits:     limits{RPM: 40, TPM: 8000, InFlight: 8},
		latency:    20 * time.Millisecond,
		overloaded: period{1600 * time.Millisecond, 2300 * time.Millisecond},
	},
}

const seed = 16

// run runs the workload without and then with the gateway's protections,
// one after the other, prints what happened and checks it. It returns an
// error if something could not be built or a check was not met.
func run(log *slog.Logger, out io.Writer) error {
	r := &report{tw: tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)}
	arrivals := workload(seed)
	describe(r, arrivals)
	r.tw.Flush()

	plain := runPlain(arrivals)
	showRun(r, "1. Without protection — every prompt straight to its provider", plain)
	r.tw.Flush()

	guarded, err := runGuarded(log, arrivals)
	if err != nil {
		return err
	}
	showRun(r, "2. Through the gateway — "+guarded.chain, guarded.result)
	showConcerns(r, guarded)
	r.tw.Flush()

	compare(r, plain, guarded)
	r.tw.Flush()
	if len(r.failed) > 0 {
		return fmt.Errorf("%d checks not met: %s", len(r.failed), strings.Join(r.failed, "; "))
	}
	return nil
}

// report prints the sections' tables and collects the checks that were not
// met.
type report struct {
	tw     *tabwriter.Writer
	failed []string
}

func (r *report) section(title string) { fmt.Fprintf(r.tw, "\n%s\n", title) }

// table ends the rows aligned together: the next rows start new columns.
func (r *report) table() { r.tw.Flush() }

func (r *report) row(name string, v ...any) {
	cells := make([]string, len(v))
	for i, x := range v {
		cells[i] = fmt.Sprint(x)
	}
	fmt.Fprintf(r.tw, "  %s\t%s\n", name, strings.Join(cells, "\t"))
}

// check prints a claim and whether it held.
func (r *report) check(claim string, ok bool) {
	verdict := "ok"
	if !ok {
		verdict = "NOT MET"
		r.failed = append(r.failed, claim)
	}
	fmt.Fprintf(r.tw, "  check: %s\t%s\n", claim, verdict)
}

func describe(r *report, arrivals []arrival) {
	var n [classes]int
	distinct := map[prompt]bool{}
	for _, a := range arrivals {
		n[a.p.Class]++
		distinct[a.p] = true
	}
	r.section("LLM gateway — two simulated providers; a provider \"minute\" is 1s of real time")
	for _, s := range specs {
		var trouble []string
		if s.failing.to > 0 {
			trouble = append(trouble, "fails (503) "+s.failing.String())
		}
		if s.overloaded.to > 0 {
			trouble = append(trouble, fmt.Sprintf("overloaded %v: ×%d slower, refuses 3 requests in 4 (503)", s.overloaded, slowFactor))
		}
		r.row(s.name, fmt.Sprintf("%d requests and %d tokens per minute, %d at once, %v + %v a token; %s",
			s.limits.RPM, s.limits.TPM, s.limits.InFlight, s.latency, perToken, strings.Join(trouble, ", ")))
	}
	r.row("workload", fmt.Sprintf("over %v: %d interactive prompts (popular questions asked 3 at once), %d batch summaries of %d documents; %d distinct prompts",
		workloadFor, n[interactive], n[batch], documents, len(distinct)))
	r.row("callers' deadlines", fmt.Sprintf("interactive %v, batch %v", interactiveDeadline, batchDeadline))
}

// result is what one run of the workload did.
type result struct {
	outcomes  []outcome
	providers map[string]providerCounts
}

// classCounts sums the outcomes of one class.
type classCounts struct {
	sent, ok       int
	limited        int // a provider's 429, or the gateway's own rate limit
	unavailable    int // a provider's 503 (overloaded or failing), or an open breaker
	shed           int // refused by the gateway's admission (backpressure, throttle)
	other          int
	p50, p95       time.Duration // of answered calls
	viaOther       int           // answered by the other provider (failover)
	latencies      []time.Duration
	firstOtherErrs []error
}

func (res result) class(c class) classCounts {
	var cc classCounts
	for _, o := range res.outcomes {
		if o.p.Class != c {
			continue
		}
		cc.sent++
		switch k := kindOf(o.err); k {
		case "ok":
			cc.ok++
			cc.latencies = append(cc.latencies, o.latency)
			if o.served != o.p.Provider {
				cc.viaOther++
			}
		case "limited":
			cc.limited++
		case "unavailable":
			cc.unavailable++
		case "shed":
			cc.shed++
		default:
			cc.other++
			if len(cc.firstOtherErrs) < 3 {
				cc.firstOtherErrs = append(cc.firstOtherErrs, o.err)
			}
		}
	}
	slices.Sort(cc.latencies)
	cc.p50, cc.p95 = quantile(cc.latencies, 0.5), quantile(cc.latencies, 0.95)
	return cc
}

func (cc classCounts) okRate() float64 {
	if cc.sent == 0 {
		return 0
	}
	return float64(cc.ok) / float64(cc.sent)
}

// kindOf sorts a caller's error into the columns of the tables.
func kindOf(err error) string {
	switch {
	case err == nil:
		return "ok"
	case isProvider(err, 429) || isLocalLimit(err):
		return "limited"
	case isProvider(err, 503) || isOpen(err):
		return "unavailable"
	case isShed(err):
		return "shed"
	}
	return "other"
}

// quantile returns the nearest-rank q-quantile of sorted durations.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}

func (res result) providerTotal() providerCounts {
	var t providerCounts
	for _, c := range res.providers {
		t.Requests += c.Requests
		t.OK += c.OK
		t.RateLimited += c.RateLimited
		t.Overloaded += c.Overloaded
		t.Brownout += c.Brownout
		t.Failing += c.Failing
		t.Tokens += c.Tokens
		for i, sc := range c.Timeline {
			for len(t.Timeline) <= i {
				t.Timeline = append(t.Timeline, slotCounts{})
			}
			t.Timeline[i].Requests += sc.Requests
			t.Timeline[i].Refused += sc.Refused
		}
	}
	return t
}

func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }

func pct(n, of int) string {
	if of == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100*float64(n)/float64(of))
}

func showRun(r *report, title string, res result) {
	r.section(title)
	r.row("callers", "sent", "answered", "limited", "unavailable", "shed", "other", "p50", "p95")
	var others []error
	for c := range classes {
		cc := res.class(c)
		r.row(c.String(), cc.sent, fmt.Sprintf("%d (%s)", cc.ok, pct(cc.ok, cc.sent)), cc.limited, cc.unavailable, cc.shed, cc.other, ms(cc.p50), ms(cc.p95))
		others = append(others, cc.firstOtherErrs...)
	}
	r.table()
	for _, err := range others {
		fmt.Fprintf(r.tw, "  other, e.g.: %v\n", err)
	}
	r.table()
	r.row("providers", "requests", "answered", "429", "503 at capacity", "503 brownout", "503 down", "tokens billed", "most in a minute (req/tok)", "peak at once")
	for _, s := range specs {
		c := res.providers[s.name]
		r.row(s.name, c.Requests, c.OK, c.RateLimited, c.Overloaded, c.Brownout, c.Failing, c.Tokens,
			fmt.Sprintf("%d/%d", c.MaxWindowReqs, c.MaxWindowToks), c.PeakInFlight)
	}
	r.table()
}

// startProviders starts a fresh pair of providers, whose periods count from
// now.
func startProviders() map[string]*provider {
	m := make(map[string]*provider, len(specs))
	for _, s := range specs {
		m[s.name] = newProvider(s)
	}
	return m
}

func stopProviders(m map[string]*provider) map[string]providerCounts {
	counts := make(map[string]providerCounts, len(m))
	for name, p := range m {
		p.close()
		counts[name] = p.stats()
	}
	return counts
}

// runPlain sends every prompt straight to its provider, once.
func runPlain(arrivals []arrival) result {
	providers := startProviders()
	c := newClient(providers)
	outs := drive(arrivals, c.complete, func(ctx context.Context, _ class) context.Context { return ctx })
	c.close()
	return result{outcomes: outs, providers: stopProviders(providers)}
}
