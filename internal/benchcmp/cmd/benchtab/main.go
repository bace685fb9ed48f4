// Command benchtab turns the raw output of the comparison benchmarks
// (package benchcmp) into the markdown tables of docs/performance.md and
// checks Brace's performance targets.
//
// Usage:
//
//	benchtab compare.txt [scaling.txt]
//
// It prints the run (machine, Go version, load average, as the lines
// "key: value" at the head and the tail of compare.txt give them), then,
// for each concern, the median time per call of every implementation
// side by side with the half-width of its 95% confidence interval (the
// interval benchstat prints: the median's, from order statistics, which
// needs at least 6 samples), and the ratios: Brace to each baseline (a
// direct call, a hand-written loop, a raw x/sync primitive) and each
// peer to Brace. A figure whose interval exceeds ±10% is marked noisy.
//
// It then checks the targets (issue 20): each prints met or missed with
// the figure it was judged on. A ratio is the median of the ratios taken
// within each round (the files hold one sample per implementation and
// round, interleaved), with its 95% interval; a target judged on a noisy
// figure says so. Given a second file, run with -cpu 1,2, it also prints
// the scaling check (throughput with two CPUs over one) and checks the
// scaling targets.
package main

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/perf/benchfmt"
	"golang.org/x/perf/benchmath"
)

func main() {
	if len(os.Args) < 2 || len(os.Args) > 3 {
		fmt.Fprintln(os.Stderr, "usage: benchtab compare.txt [scaling.txt]")
		os.Exit(2)
	}
	if err := run(os.Stdout, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "benchtab:", err)
		os.Exit(1)
	}
}

func run(w io.Writer, files []string) error {
	d, err := readFile(files[0])
	if err != nil {
		return err
	}
	var sc *data
	if len(files) > 1 {
		if sc, err = readFile(files[1]); err != nil {
			return err
		}
	}
	writeRun(w, d)
	writeConcerns(w, d)
	writeTargets(w, d, sc)
	if sc != nil {
		writeScaling(w, sc)
	}
	return nil
}

// runKeys are the "key: value" lines of a results file that describe the
// run, in the order they are printed.
var runKeys = []struct{ key, label string }{
	{"cpu", "CPU"},
	{"machine", "machine"},
	{"cpus", "CPUs online"},
	{"goos", "OS"},
	{"goarch", "architecture"},
	{"go", "Go"},
	{"load-before", "load average before (1, 5, 15 min)"},
	{"load-during", "1-minute load average at the start of each round"},
	{"load-after", "load average after (1, 5, 15 min)"},
	{"rounds", "rounds"},
	{"benchtime", "benchtime"},
}

func writeRun(w io.Writer, d *data) {
	fmt.Fprintf(w, "### Run\n\n| | |\n|---|---|\n")
	for _, k := range runKeys {
		if v, ok := d.config[k.key]; ok {
			fmt.Fprintf(w, "| %s | %s |\n", k.label, v)
		}
	}
	fmt.Fprintf(w, "| samples | %d per benchmark |\n\n", d.maxSamples())
}

// baselines are the implementations that are not libraries: Brace is
// compared to them as brace ÷ baseline, whereas peers are compared as
// peer ÷ brace.
var baselines = map[string]bool{
	"direct": true, "loop": true, "semaphore": true, "atomic": true, "context": true,
	"singleflight-Do": true, "singleflight-DoChan": true, "flag": true, "flag-counted": true,
	"grpc-go-retry": true, "xrate": true, "mutex-clock": true,
}

// A row is one scenario of one concern at one GOMAXPROCS.
type row struct {
	concern, path, mode, procs string
}

// stats are the median measurements of one implementation in one row,
// with the half-width of the 95% confidence interval of the time, as a
// fraction of the median (+Inf with fewer than 6 samples).
type stats struct {
	ns, bytes, allocs float64
	ci                float64
}

// noisyCI is the half-width beyond which a figure is marked noisy.
const noisyCI = 0.10

func (s stats) noisy() bool { return s.ci > noisyCI }

// data holds every measurement of a file, in first-seen order.
type data struct {
	rows    []row
	impls   map[string][]string // concern → implementations in first-seen order
	samples map[row]map[string]*samples
	config  map[string]string // "key: value" lines
}

// samples are the measurements of one implementation in one row, one per
// round, in file order.
type samples struct{ ns, bytes, allocs []float64 }

func (d *data) get(r row, impl string) (stats, bool) {
	s, ok := d.samples[r][impl]
	if !ok || len(s.ns) == 0 {
		return stats{}, false
	}
	m, ci := summary(s.ns)
	return stats{m, median(s.bytes), median(s.allocs), ci}, true
}

func (d *data) maxSamples() int {
	n := 0
	for _, m := range d.samples {
		for _, s := range m {
			n = max(n, len(s.ns))
		}
	}
	return n
}

// summary returns the median of xs and the half-width of its 95%
// confidence interval as a fraction of it, as benchstat computes them.
func summary(xs []float64) (med, ci float64) {
	sum := benchmath.AssumeNothing.Summary(benchmath.NewSample(xs, &benchmath.DefaultThresholds), 0.95)
	if math.IsInf(sum.Lo, 0) || math.IsInf(sum.Hi, 0) || sum.Center == 0 {
		return sum.Center, math.Inf(1)
	}
	return sum.Center, math.Max(sum.Hi/sum.Center-1, 1-sum.Lo/sum.Center)
}

// paired returns f of the samples of a and b taken in the same round
// (the i-th of each), for the implementations a and b of rows ra and rb.
func (d *data) paired(ra row, a string, rb row, b string, f func(x, y float64) float64) ([]float64, bool) {
	sa, ok1 := d.samples[ra][a]
	sb, ok2 := d.samples[rb][b]
	if !ok1 || !ok2 {
		return nil, false
	}
	n := min(len(sa.ns), len(sb.ns))
	if n == 0 {
		return nil, false
	}
	out := make([]float64, n)
	for i := range n {
		out[i] = f(sa.ns[i], sb.ns[i])
	}
	return out, true
}

func readFile(name string) (*data, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return read(f, name)
}

// read parses benchmark results named
// Benchmark<Concern>/path=<p>/mode=<m>/impl=<i>[-procs]; others are ignored.
func read(r io.Reader, name string) (*data, error) {
	raw, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	d := &data{impls: map[string][]string{}, samples: map[row]map[string]*samples{}, config: readConfig(raw)}
	br := benchfmt.NewReader(bytes.NewReader(raw), name)
	for br.Scan() {
		res, ok := br.Result().(*benchfmt.Result)
		if !ok {
			if serr, ok := br.Result().(*benchfmt.SyntaxError); ok {
				return nil, serr
			}
			continue
		}
		base, parts := res.Name.Parts()
		rw := row{concern: strings.TrimPrefix(string(base), "Benchmark"), procs: "1"}
		var impl string
		for _, p := range parts {
			p := string(p)
			switch {
			case strings.HasPrefix(p, "/path="):
				rw.path = strings.TrimPrefix(p, "/path=")
			case strings.HasPrefix(p, "/mode="):
				rw.mode = strings.TrimPrefix(p, "/mode=")
			case strings.HasPrefix(p, "/impl="):
				impl = strings.TrimPrefix(p, "/impl=")
			case strings.HasPrefix(p, "-"):
				rw.procs = p[1:]
			}
		}
		if rw.path == "" || rw.mode == "" || impl == "" {
			continue
		}
		if d.samples[rw] == nil {
			d.samples[rw] = map[string]*samples{}
			d.rows = append(d.rows, rw)
		}
		if !slices.Contains(d.impls[rw.concern], impl) {
			d.impls[rw.concern] = append(d.impls[rw.concern], impl)
		}
		s := d.samples[rw][impl]
		if s == nil {
			s = new(samples)
			d.samples[rw][impl] = s
		}
		for _, v := range res.Values {
			switch {
			case v.OrigUnit == "ns/op": // benchfmt converts ns/op to sec/op
				s.ns = append(s.ns, v.OrigValue)
			case v.Unit == "sec/op":
				s.ns = append(s.ns, v.Value*1e9)
			case v.Unit == "B/op":
				s.bytes = append(s.bytes, v.Value)
			case v.Unit == "allocs/op":
				s.allocs = append(s.allocs, v.Value)
			}
		}
	}
	if err := br.Err(); err != nil {
		return nil, err
	}
	if len(d.rows) == 0 {
		return nil, errors.New(name + ": no comparison benchmarks found")
	}
	return d, nil
}

// readConfig returns the "key: value" lines of a results file, the last
// value of each key: those of the benchmark binary (goos, cpu, ...) and
// those the bench:compare task writes (go, cpus, load-before, ...),
// including those after the last result, which benchfmt gives to none.
func readConfig(raw []byte) map[string]string {
	config := map[string]string{}
	for line := range strings.SplitSeq(string(raw), "\n") {
		key, value, ok := strings.Cut(line, ":")
		if !ok || key == "" || strings.ContainsAny(key, " \t") || strings.HasPrefix(key, "Benchmark") {
			continue
		}
		config[key] = strings.TrimSpace(value)
	}
	return config
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	xs = slices.Sorted(slices.Values(xs))
	if n := len(xs); n%2 == 1 {
		return xs[n/2]
	} else {
		return (xs[n/2-1] + xs[n/2]) / 2
	}
}

// order is the order of the concerns in the tables, the order of the
// issues that built them; others follow in first-seen order.
var order = []string{"Retry", "Breaker", "Backpressure", "Dedup", "Timeout", "Composed", "Throttle", "GRPC", "Ratelimit", "Budget", "Hedge"}

// concerns returns the concerns of d in table order.
func (d *data) concerns() []string {
	var cs []string
	for _, r := range d.rows {
		if !slices.Contains(cs, r.concern) {
			cs = append(cs, r.concern)
		}
	}
	rank := func(c string) int {
		if i := slices.Index(order, c); i >= 0 {
			return i
		}
		return len(order)
	}
	slices.SortStableFunc(cs, func(a, b string) int { return cmp.Compare(rank(a), rank(b)) })
	return cs
}

func writeConcerns(w io.Writer, d *data) {
	for _, c := range d.concerns() {
		impls := d.impls[c]
		fmt.Fprintf(w, "### %s\n\n", c)

		// Medians side by side.
		fmt.Fprintf(w, "| path | mode | %s |\n", strings.Join(impls, " | "))
		fmt.Fprintf(w, "|---|---|%s\n", strings.Repeat("---:|", len(impls)))
		for _, r := range d.rows {
			if r.concern != c {
				continue
			}
			fmt.Fprintf(w, "| %s | %s |", r.path, d.modeName(r))
			for _, im := range impls {
				if s, ok := d.get(r, im); ok {
					fmt.Fprintf(w, " %s ns %s, %s |", fmtNs(s.ns), fmtCI(s.ci), fmtAllocs(s))
				} else {
					fmt.Fprint(w, " |")
				}
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w)

		// Ratios, for the rows Brace has.
		var base, peers []string
		for _, im := range impls {
			switch {
			case im == "brace":
			case baselines[im]:
				base = append(base, im)
			default:
				peers = append(peers, im)
			}
		}
		if !slices.Contains(impls, "brace") || len(base)+len(peers) == 0 {
			continue
		}
		var head []string
		for _, b := range base {
			head = append(head, "brace ÷ "+b)
		}
		for _, p := range peers {
			head = append(head, p+" ÷ brace")
		}
		fmt.Fprintf(w, "| path | mode | brace − direct | %s |\n", strings.Join(head, " | "))
		fmt.Fprintf(w, "|---|---|---:|%s\n", strings.Repeat("---:|", len(head)))
		for _, r := range d.rows {
			_, ok := d.get(r, "brace")
			if r.concern != c || !ok {
				continue
			}
			fmt.Fprintf(w, "| %s | %s |", r.path, d.modeName(r))
			if ds, ok := d.paired(r, "brace", r, "direct", sub); ok {
				fmt.Fprintf(w, " %+.2f ns |", median(ds))
			} else {
				fmt.Fprint(w, " |")
			}
			for _, b := range base {
				if rs, ok := d.paired(r, "brace", r, b, div); ok {
					fmt.Fprintf(w, " %s |", fmtRatio(median(rs)))
				} else {
					fmt.Fprint(w, " |")
				}
			}
			for _, p := range peers {
				if rs, ok := d.paired(r, p, r, "brace", div); ok {
					fmt.Fprintf(w, " %s |", fmtRatio(median(rs)))
				} else {
					fmt.Fprint(w, " |")
				}
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w)
	}
}

// A target is one of the goals Brace must reach (issues 9 and 20,
// docs/performance.md), judged from the measurements of one run.
type target struct {
	what string
	// check returns the figure measured, as text, whether it meets the
	// goal, and whether it is noisy; ok is false when the run lacks a row
	// it needs. sc is the scaling file, or nil.
	check func(d, sc *data) (got string, met, noisy, ok bool)
}

var targets = []target{
	{"Breaker open (rejection): ≤ 2 ns over a direct call, 0 allocs",
		overReference(row{"Breaker", "open", "seq", ""}, "direct", 2)},
	{"Breaker open (rejection): ≤ 1.2× the raw refusal (an atomic flag), 0 allocs",
		ratioTo(row{"Breaker", "open", "seq", ""}, "flag", 1.2)},
	{"Breaker open (rejection): ≤ 1.2× the raw refusal counted exactly (an atomic flag and an atomic add), 0 allocs",
		ratioTo(row{"Breaker", "open", "seq", ""}, "flag-counted", 1.2)},
	{"Breaker closed, consecutive mode: ≤ 1.0× eapache/go-resiliency, both as middlewares",
		ratioTo(row{"Breaker", "closed", "seq", ""}, "eapache", 1.0)},
	{"Breaker closed, rate mode: ≤ 25 ns per success, 0 allocs",
		below(row{"Breaker", "closed-rate", "seq", ""}, 25)},
	{"Breaker closed, rate mode: ≥ 1.6× throughput from 1 to 2 CPUs",
		scales(row{"Breaker", "closed-rate", "par", ""}, "", 1.6)},
	{"Backpressure admitted (Shed mode): ≤ 1.0× semaphore.TryAcquire+Release inline, 0 allocs",
		ratioTo(row{"Backpressure", "admitted", "seq", ""}, "semaphore", 1.0)},
	{"Backpressure admitted (Shed mode): from 1 to 2 CPUs, scales no worse than a bare atomic counter",
		scales(row{"Backpressure", "admitted", "par", ""}, "atomic", 1.0)},
	{"Backpressure admitted (Wait mode): ≤ 1.2× semaphore.Acquire, 0 allocs",
		ratioTo(row{"Backpressure", "admitted-wait", "seq", ""}, "semaphore", 1.2)},
	{"Backpressure shed: ≤ 1.2× a refused semaphore.TryAcquire, 0 allocs",
		ratioTo(row{"Backpressure", "shed", "seq", ""}, "semaphore", 1.2)},
	{"Dedup leading call (uncontended, context.Background): ≤ 1.0× singleflight.DoChan, no more allocs",
		ratioToAllocs(row{"Dedup", "uncontended", "seq", ""}, "singleflight-DoChan", 1.0)},
	{"Dedup leading call (uncontended, cancellable context): ≤ 1.0× singleflight.DoChan, no more allocs",
		ratioToAllocs(row{"Dedup", "uncontended-cancellable", "seq", ""}, "singleflight-DoChan", 1.0)},
	{"Dedup cache hit: 0 allocs",
		allocsAtMost(row{"Dedup", "cache-hit", "seq", ""}, 0)},
	{"Rate limit admitted: ≤ 1.2× rate.Limiter.Allow, 0 allocs",
		ratioTo(row{"Ratelimit", "admitted", "seq", ""}, "xrate", 1.2)},
	{"Rate limit refused: ≤ 1.2× rate.Limiter.Allow refused, 0 allocs",
		ratioTo(row{"Ratelimit", "refused", "seq", ""}, "xrate", 1.2)},
	{"Budget refused: ≤ 1.2× a mutex and a clock read, 0 allocs",
		ratioTo(row{"Budget", "refused", "seq", ""}, "mutex-clock", 1.2)},
	{"Throttle overloaded (about 9 calls in 10 refused): 0 allocs",
		allocsAtMost(row{"Throttle", "overloaded", "seq", ""}, 0)},
	{"Hedge, no hedge sent: ≤ 5 allocs",
		allocsAtMost(row{"Hedge", "no-hedge", "seq", ""}, 5)},
	{"Retry: < 5 ns over a direct call, 0 allocs",
		overReference(row{"Retry", "success", "seq", ""}, "direct", 5)},
	{"Retry+Breaker+Backpressure: < 50 ns per call, 0 allocs",
		below(row{"Composed", "success", "seq", ""}, 50)},
	{"Retry+Breaker+Backpressure: ≥ 10× faster than failsafe-go",
		faster(row{"Composed", "success", "seq", ""}, "failsafe", 10)},
}

// ratioTo: Brace's time ≤ limit × base's, as the median of the ratios of
// each round, and no allocation.
func ratioTo(want row, base string, limit float64) func(d, _ *data) (string, bool, bool, bool) {
	return func(d, _ *data) (string, bool, bool, bool) {
		r, b, o, ok := d.pair(want, "brace", base)
		if !ok {
			return "", false, false, false
		}
		rs, _ := d.paired(r, "brace", r, base, div)
		med, ci := summary(rs)
		return fmt.Sprintf("%s %s (%s ns against %s ns), %s", fmtRatio(med), fmtCI(ci), fmtNs(b.ns), fmtNs(o.ns), fmtAllocs(b)),
			med <= limit && b.allocs == 0, ci > noisyCI || b.noisy() || o.noisy(), true
	}
}

// ratioToAllocs: Brace's time ≤ limit × base's, as the median of the
// ratios of each round, allocating no more than base (for paths that
// cannot be free of allocations, such as a goroutine's start).
func ratioToAllocs(want row, base string, limit float64) func(d, _ *data) (string, bool, bool, bool) {
	return func(d, _ *data) (string, bool, bool, bool) {
		r, b, o, ok := d.pair(want, "brace", base)
		if !ok {
			return "", false, false, false
		}
		rs, _ := d.paired(r, "brace", r, base, div)
		med, ci := summary(rs)
		return fmt.Sprintf("%s %s (%s ns against %s ns), %s against %s", fmtRatio(med), fmtCI(ci), fmtNs(b.ns), fmtNs(o.ns), fmtAllocs(b), fmtAllocs(o)),
			med <= limit && b.allocs <= o.allocs, ci > noisyCI || b.noisy() || o.noisy(), true
	}
}

// overReference: Brace's time − ref's ≤ limit ns, as the median of the
// differences of each round, and no allocation.
func overReference(want row, ref string, limit float64) func(d, _ *data) (string, bool, bool, bool) {
	return func(d, _ *data) (string, bool, bool, bool) {
		r, b, o, ok := d.pair(want, "brace", ref)
		if !ok {
			return "", false, false, false
		}
		ds, _ := d.paired(r, "brace", r, ref, sub)
		over := median(ds)
		return fmt.Sprintf("%+.2f ns (%s ns against %s ns), %s", over, fmtNs(b.ns), fmtNs(o.ns), fmtAllocs(b)),
			over <= limit && b.allocs == 0, b.noisy() || o.noisy(), true
	}
}

func below(want row, limit float64) func(d, _ *data) (string, bool, bool, bool) {
	return func(d, _ *data) (string, bool, bool, bool) {
		r, ok := d.find(want)
		if !ok {
			return "", false, false, false
		}
		b, ok := d.get(r, "brace")
		if !ok {
			return "", false, false, false
		}
		return fmt.Sprintf("%s ns %s, %s", fmtNs(b.ns), fmtCI(b.ci), fmtAllocs(b)), b.ns <= limit && b.allocs == 0, b.noisy(), true
	}
}

// allocsAtMost: Brace's allocations per call ≤ limit (a count, which
// noise does not change; the time is shown for information).
func allocsAtMost(want row, limit float64) func(d, _ *data) (string, bool, bool, bool) {
	return func(d, _ *data) (string, bool, bool, bool) {
		r, ok := d.find(want)
		if !ok {
			return "", false, false, false
		}
		b, ok := d.get(r, "brace")
		if !ok {
			return "", false, false, false
		}
		return fmt.Sprintf("%s (%s ns %s)", fmtAllocs(b), fmtNs(b.ns), fmtCI(b.ci)), b.allocs <= limit, false, true
	}
}

// faster: peer's time ≥ factor × Brace's, per round.
func faster(want row, peer string, factor float64) func(d, _ *data) (string, bool, bool, bool) {
	return func(d, _ *data) (string, bool, bool, bool) {
		r, b, p, ok := d.pair(want, "brace", peer)
		if !ok {
			return "", false, false, false
		}
		rs, _ := d.paired(r, peer, r, "brace", div)
		med, ci := summary(rs)
		return fmt.Sprintf("%s %s faster (%s ns against %s ns, %s)", fmtRatio(med), fmtCI(ci), fmtNs(b.ns), fmtNs(p.ns), fmtAllocs(p)),
			med >= factor, ci > noisyCI, true
	}
}

// scales: Brace's throughput with two CPUs over its throughput with one,
// per round, is at least limit, or, with base, at least limit × base's.
func scales(want row, base string, limit float64) func(_, sc *data) (string, bool, bool, bool) {
	return func(_, sc *data) (string, bool, bool, bool) {
		if sc == nil {
			return "", false, false, false
		}
		one, two := want, want
		one.procs, two.procs = "1", "2"
		gain := func(impl string) ([]float64, bool) {
			return sc.paired(one, impl, two, impl, div)
		}
		gb, ok := gain("brace")
		if !ok {
			return "", false, false, false
		}
		mb, cb := summary(gb)
		if base == "" {
			return fmt.Sprintf("%s %s", fmtRatio(mb), fmtCI(cb)), mb >= limit, cb > noisyCI, true
		}
		go_, ok := gain(base)
		if !ok {
			return "", false, false, false
		}
		mo, co := summary(go_)
		rs := make([]float64, min(len(gb), len(go_)))
		for i := range rs {
			rs[i] = gb[i] / go_[i]
		}
		m, ci := summary(rs)
		return fmt.Sprintf("brace %s %s, %s %s %s: %s", fmtRatio(mb), fmtCI(cb), base, fmtRatio(mo), fmtCI(co), fmtRatio(m)),
			m >= limit, ci > noisyCI || cb > noisyCI || co > noisyCI, true
	}
}

func div(x, y float64) float64 { return x / y }
func sub(x, y float64) float64 { return x - y }

// pair finds want's row and the stats of impls a and b in it.
func (d *data) pair(want row, a, b string) (row, stats, stats, bool) {
	r, ok := d.find(want)
	if !ok {
		return row{}, stats{}, stats{}, false
	}
	sa, ok1 := d.get(r, a)
	sb, ok2 := d.get(r, b)
	return r, sa, sb, ok1 && ok2
}

func writeTargets(w io.Writer, d, sc *data) {
	fmt.Fprintf(w, "### Targets\n\n")
	fmt.Fprintf(w, "Ratios are medians of the ratios within each round, with the half-width of their 95%% interval.\n\n")
	fmt.Fprintf(w, "| target | measured | verdict |\n|---|---|---|\n")
	for _, t := range targets {
		got, met, noisy, ok := t.check(d, sc)
		if !ok {
			fmt.Fprintf(w, "| %s | not measured | — |\n", t.what)
			continue
		}
		verdict := "missed"
		if met {
			verdict = "met"
		}
		if noisy {
			verdict += " (noisy)"
		}
		fmt.Fprintf(w, "| %s | %s | %s |\n", t.what, got, verdict)
	}
	fmt.Fprintln(w)
}

// find returns the row that matches want, whatever its GOMAXPROCS (the
// highest one if there are several).
func (d *data) find(want row) (row, bool) {
	var found []row
	for _, r := range d.rows {
		if r.concern == want.concern && r.path == want.path && r.mode == want.mode {
			found = append(found, r)
		}
	}
	if len(found) == 0 {
		return row{}, false
	}
	return slices.MaxFunc(found, func(a, b row) int { return cmp.Compare(procs(a), procs(b)) }), true
}

func writeScaling(w io.Writer, d *data) {
	fmt.Fprintf(w, "### Scaling\n\n")
	fmt.Fprintf(w, "| benchmark | impl | 1 CPU | 2 CPUs | throughput 2 CPUs ÷ 1 CPU |\n|---|---|---:|---:|---:|\n")
	for _, r := range d.rows {
		if r.procs != "1" {
			continue
		}
		two := r
		two.procs = "2"
		for _, im := range d.impls[r.concern] {
			one, ok1 := d.get(r, im)
			s2, ok2 := d.get(two, im)
			if !ok1 || !ok2 {
				continue
			}
			fmt.Fprintf(w, "| %s/%s/%s | %s | %s ns | %s ns | %s |\n", r.concern, r.path, r.mode, im,
				fmtNs(one.ns), fmtNs(s2.ns), fmtRatio(one.ns/s2.ns))
		}
	}
	fmt.Fprintln(w)
}

func procs(r row) int {
	n, _ := strconv.Atoi(r.procs)
	return n
}

// modeName names the mode of r, with its GOMAXPROCS if the file has rows
// for several.
func (d *data) modeName(r row) string {
	for _, o := range d.rows {
		if o.procs != r.procs {
			return fmt.Sprintf("%s, GOMAXPROCS=%s", r.mode, r.procs)
		}
	}
	return r.mode
}

func fmtNs(ns float64) string {
	switch {
	case ns < 10:
		return fmt.Sprintf("%.2f", ns)
	case ns < 100:
		return fmt.Sprintf("%.1f", ns)
	default:
		return fmt.Sprintf("%.0f", ns)
	}
}

func fmtAllocs(s stats) string {
	if s.allocs == 1 {
		return fmt.Sprintf("1 alloc (%.0f B)", s.bytes)
	}
	if s.allocs == 0 {
		return "0 allocs"
	}
	return fmt.Sprintf("%.0f allocs (%.0f B)", s.allocs, s.bytes)
}

// fmtCI formats the half-width of a confidence interval, marked noisy
// beyond ±10%.
func fmtCI(ci float64) string {
	var s string
	switch {
	case math.IsInf(ci, 1):
		s = "±∞"
	case ci < 0.01:
		s = "±<1%"
	default:
		s = fmt.Sprintf("±%.0f%%", 100*ci)
	}
	if ci > noisyCI {
		s += " noisy"
	}
	return s
}

func fmtRatio(r float64) string {
	if r < 10 {
		return fmt.Sprintf("%.2f×", r)
	}
	return fmt.Sprintf("%.0f×", r)
}
