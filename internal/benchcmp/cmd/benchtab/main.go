// Command benchtab turns the raw output of the comparison benchmarks
// (package benchcmp) into the markdown tables of docs/performance.md.
//
// Usage:
//
//	benchtab compare.txt [scaling.txt]
//
// For each concern it prints the median time per call and the allocations
// of every implementation side by side, then the ratios: Brace to each
// baseline (a direct call, a hand-written loop, a raw x/sync primitive)
// and each peer to Brace. It then checks Brace's published targets. Given
// a second file, run with -cpu 1,2, it prints the scaling check: the time
// per call of the composed chain under b.RunParallel with one and two
// CPUs.
//
// Medians are what benchstat reports too; benchstat remains the judge of
// significance (its confidence intervals are printed beside these tables
// by `task bench:compare`).
package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/perf/benchfmt"
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
	writeConcerns(w, d)
	writeTargets(w, d)
	if len(files) > 1 {
		sc, err := readFile(files[1])
		if err != nil {
			return err
		}
		writeScaling(w, sc)
	}
	return nil
}

// baselines are the implementations that are not libraries: Brace is
// compared to them as brace ÷ baseline, whereas peers are compared as
// peer ÷ brace.
var baselines = map[string]bool{
	"direct": true, "loop": true, "semaphore": true, "atomic": true, "context": true,
	"singleflight-Do": true, "singleflight-DoChan": true,
}

// A row is one scenario of one concern at one GOMAXPROCS.
type row struct {
	concern, path, mode, procs string
}

// stats are the median measurements of one implementation in one row.
type stats struct {
	ns, bytes, allocs float64
}

// data holds every measurement of a file, in first-seen order.
type data struct {
	rows    []row
	impls   map[string][]string // concern → implementations in first-seen order
	samples map[row]map[string]*samples
}

type samples struct{ ns, bytes, allocs []float64 }

func (d *data) get(r row, impl string) (stats, bool) {
	s, ok := d.samples[r][impl]
	if !ok {
		return stats{}, false
	}
	return stats{median(s.ns), median(s.bytes), median(s.allocs)}, true
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
	d := &data{impls: map[string][]string{}, samples: map[row]map[string]*samples{}}
	br := benchfmt.NewReader(r, name)
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
var order = []string{"Retry", "Breaker", "Backpressure", "Dedup", "Timeout", "Composed"}

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
					fmt.Fprintf(w, " %s ns, %s |", fmtNs(s.ns), fmtAllocs(s))
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
		if !slices.Contains(impls, "brace") {
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
			br, ok := d.get(r, "brace")
			if r.concern != c || !ok {
				continue
			}
			fmt.Fprintf(w, "| %s | %s |", r.path, d.modeName(r))
			if dr, ok := d.get(r, "direct"); ok {
				fmt.Fprintf(w, " %+.2f ns |", br.ns-dr.ns)
			} else {
				fmt.Fprint(w, " |")
			}
			for _, b := range base {
				if s, ok := d.get(r, b); ok {
					fmt.Fprintf(w, " %s |", fmtRatio(br.ns/s.ns))
				} else {
					fmt.Fprint(w, " |")
				}
			}
			for _, p := range peers {
				if s, ok := d.get(r, p); ok {
					fmt.Fprintf(w, " %s |", fmtRatio(s.ns/br.ns))
				} else {
					fmt.Fprint(w, " |")
				}
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w)
	}
}

// A target is one of the goals Brace's success paths must reach (issue 9,
// docs/performance.md).
type target struct {
	what string
	row  row
	// check returns the measured figure, as text, and whether it meets
	// the goal, from Brace's stats and those of the other impls.
	check func(brace stats, other func(string) (stats, bool)) (string, bool)
}

var targets = []target{
	{"Retry: < 5 ns over a direct call, 0 allocs", row{"Retry", "success", "seq", ""}, overDirect(5)},
	{"Breaker (consecutive mode): < 10 ns over a direct call, 0 allocs", row{"Breaker", "closed", "seq", ""}, overDirect(10)},
	{"Backpressure (Shed mode): ≤ 1.2× semaphore.TryAcquire, 0 allocs", row{"Backpressure", "admitted", "seq", ""}, ratioTo("semaphore", 1.2)},
	{"Backpressure (Wait mode): ≤ 1.2× semaphore.Acquire, 0 allocs", row{"Backpressure", "admitted-wait", "seq", ""}, ratioTo("semaphore", 1.2)},
	{"Retry+Breaker+Backpressure: < 50 ns per call, 0 allocs", row{"Composed", "success", "seq", ""}, below(50)},
	{"Retry+Breaker+Backpressure: ≥ 10× faster than failsafe-go", row{"Composed", "success", "seq", ""}, faster("failsafe", 10)},
}

func overDirect(limit float64) func(stats, func(string) (stats, bool)) (string, bool) {
	return func(b stats, other func(string) (stats, bool)) (string, bool) {
		d, ok := other("direct")
		if !ok {
			return "no direct row", false
		}
		over := b.ns - d.ns
		return fmt.Sprintf("%+.2f ns (%s ns against %s ns), %s", over, fmtNs(b.ns), fmtNs(d.ns), fmtAllocs(b)), over < limit && b.allocs == 0
	}
}

func below(limit float64) func(stats, func(string) (stats, bool)) (string, bool) {
	return func(b stats, _ func(string) (stats, bool)) (string, bool) {
		return fmt.Sprintf("%s ns, %s", fmtNs(b.ns), fmtAllocs(b)), b.ns < limit && b.allocs == 0
	}
}

func ratioTo(base string, limit float64) func(stats, func(string) (stats, bool)) (string, bool) {
	return func(b stats, other func(string) (stats, bool)) (string, bool) {
		s, ok := other(base)
		if !ok {
			return "no " + base + " row", false
		}
		r := b.ns / s.ns
		return fmt.Sprintf("%s (%s ns against %s ns), %s", fmtRatio(r), fmtNs(b.ns), fmtNs(s.ns), fmtAllocs(b)), r <= limit && b.allocs == 0
	}
}

func faster(peer string, factor float64) func(stats, func(string) (stats, bool)) (string, bool) {
	return func(b stats, other func(string) (stats, bool)) (string, bool) {
		s, ok := other(peer)
		if !ok {
			return "no " + peer + " row", false
		}
		r := s.ns / b.ns
		return fmt.Sprintf("%s faster (%s ns against %s ns, %s)", fmtRatio(r), fmtNs(b.ns), fmtNs(s.ns), fmtAllocs(s)), r >= factor
	}
}

func writeTargets(w io.Writer, d *data) {
	fmt.Fprintf(w, "### Targets\n\n| target | measured | met |\n|---|---|---|\n")
	for _, t := range targets {
		r, ok := d.find(t.row)
		var b stats
		if ok {
			b, ok = d.get(r, "brace")
		}
		if !ok {
			fmt.Fprintf(w, "| %s | not measured | — |\n", t.what)
			continue
		}
		got, met := t.check(b, func(impl string) (stats, bool) { return d.get(r, impl) })
		verdict := "no"
		if met {
			verdict = "yes"
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

func fmtRatio(r float64) string {
	if r < 10 {
		return fmt.Sprintf("%.2f×", r)
	}
	return fmt.Sprintf("%.0f×", r)
}
