package main

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// input is the output of two runs of a few comparison benchmarks, with
// round numbers so that the medians and ratios can be checked by hand.
const input = `go: go1.26.8
load-before: 0.94, 1.34, 1.74
goos: linux
goarch: amd64
pkg: github.com/brace-go/brace/internal/benchcmp
cpu: AMD EPYC
BenchmarkComposed/path=success/mode=seq/impl=brace-2 1000 40.0 ns/op 0 B/op 0 allocs/op
BenchmarkRetry/path=success/mode=seq/impl=direct-2   1000  2.00 ns/op  0 B/op  0 allocs/op
BenchmarkRetry/path=success/mode=seq/impl=brace-2    1000  4.00 ns/op  0 B/op  0 allocs/op
BenchmarkRetry/path=success/mode=seq/impl=failsafe-2 1000  400 ns/op  464 B/op  15 allocs/op
BenchmarkRetry/path=success/mode=seq/impl=direct-2   1000  2.00 ns/op  0 B/op  0 allocs/op
BenchmarkRetry/path=success/mode=seq/impl=brace-2    1000  6.00 ns/op  0 B/op  0 allocs/op
BenchmarkRetry/path=success/mode=seq/impl=failsafe-2 1000  600 ns/op  464 B/op  15 allocs/op
BenchmarkBackpressure/path=admitted/mode=seq/impl=semaphore-2 1000 20.0 ns/op 0 B/op 0 allocs/op
BenchmarkBackpressure/path=admitted/mode=seq/impl=brace-2     1000 30.0 ns/op 0 B/op 0 allocs/op
BenchmarkZebra/path=a/mode=seq/impl=brace-2 1000 1.00 ns/op 0 B/op 0 allocs/op
BenchmarkUnrelated-2 1000 1.00 ns/op
PASS
load-after: 2.50, 1.50, 1.00
`

func TestRead(t *testing.T) {
	d, err := read(strings.NewReader(input), "input")
	if err != nil {
		t.Fatal(err)
	}
	retry := row{"Retry", "success", "seq", "2"}
	got := map[string][3]float64{}
	for _, im := range d.impls["Retry"] {
		s, _ := d.get(retry, im)
		got[im] = [3]float64{s.ns, s.bytes, s.allocs}
		if !math.IsInf(s.ci, 1) {
			t.Errorf("%s: interval of 2 samples ±%v, want ±∞", im, s.ci)
		}
	}
	want := map[string][3]float64{
		"direct":   {2, 0, 0},
		"brace":    {5, 0, 0},
		"failsafe": {500, 464, 15},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Retry medians (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"direct", "brace", "failsafe"}, d.impls["Retry"]); diff != "" {
		t.Errorf("implementation order (-want +got):\n%s", diff)
	}
	// Table order, not input order (Composed comes first in the input);
	// Zebra, not in the order, comes last.
	if diff := cmp.Diff([]string{"Retry", "Backpressure", "Composed", "Zebra"}, d.concerns()); diff != "" {
		t.Errorf("concerns (-want +got):\n%s", diff)
	}
	// The run's description, including the line after the last result.
	wantConfig := map[string]string{
		"go": "go1.26.8", "load-before": "0.94, 1.34, 1.74", "load-after": "2.50, 1.50, 1.00",
		"goos": "linux", "goarch": "amd64", "pkg": "github.com/brace-go/brace/internal/benchcmp", "cpu": "AMD EPYC",
	}
	if diff := cmp.Diff(wantConfig, d.config); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
}

func TestRun(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "compare.txt")
	if err := os.WriteFile(name, []byte(input), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(&out, []string{name}); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		// The run.
		"| CPU | AMD EPYC |",
		"| Go | go1.26.8 |",
		"| load average before (1, 5, 15 min) | 0.94, 1.34, 1.74 |",
		"| load average after (1, 5, 15 min) | 2.50, 1.50, 1.00 |",
		"| samples | 2 per benchmark |",
		// Medians side by side; 2 samples give no interval.
		"| success | seq | 2.00 ns ±∞ noisy, 0 allocs | 5.00 ns ±∞ noisy, 0 allocs | 500 ns ±∞ noisy, 15 allocs (464 B) |",
		// Ratios, medians of the rounds' ratios: brace ÷ baseline, peer ÷ brace.
		"| success | seq | +3.00 ns | 2.50× | 100× |",
		"| admitted | seq | | 1.50× |",
		// Targets.
		"| Retry: < 5 ns over a direct call, 0 allocs | +3.00 ns (5.00 ns against 2.00 ns), 0 allocs | met (noisy) |",
		"| Backpressure admitted (Shed mode): ≤ 1.0× semaphore.TryAcquire+Release inline, 0 allocs | 1.50× ±∞ noisy (30.0 ns against 20.0 ns), 0 allocs | missed (noisy) |",
		"| Breaker closed, consecutive mode: ≤ 1.0× eapache/go-resiliency, both as middlewares | not measured | — |",
		"| Retry+Breaker+Backpressure: < 50 ns per call, 0 allocs | 40.0 ns ±∞ noisy, 0 allocs | met (noisy) |",
	} {
		if !strings.Contains(out.String(), line+"\n") {
			t.Errorf("output lacks the line\n%s\noutput:\n%s", line, out.String())
		}
	}
}

// rounds returns n interleaved rounds of the benchmarks in ns, a map from
// name to the time of each round.
func rounds(n int, ns map[string][]float64, names ...string) string {
	var b strings.Builder
	for i := range n {
		for _, name := range names {
			fmt.Fprintf(&b, "%s 1000 %g ns/op 0 B/op 0 allocs/op\n", name, ns[name][i])
		}
	}
	return b.String()
}

// TestTargets checks the verdicts on six rounds: ratios are taken within
// each round, and a figure whose 95% interval exceeds ±10% is noisy.
func TestTargets(t *testing.T) {
	const (
		open   = "BenchmarkBreaker/path=open/mode=seq/impl="
		closed = "BenchmarkBreaker/path=closed/mode=seq/impl="
		shed   = "BenchmarkBackpressure/path=shed/mode=seq/impl="
	)
	ns := map[string][]float64{
		open + "direct-2": {2, 2, 2, 2, 2, 2},
		open + "flag-2":   {3, 3, 3, 3, 3, 3},
		open + "brace-2":  {3.5, 3.5, 3.5, 3.5, 3.5, 3.5},
		// The load doubles in rounds 4 to 6 for both: each round's ratio
		// is 0.9, whereas the ratio of the medians is not.
		closed + "brace-2":   {9, 9, 9, 18, 18, 18},
		closed + "eapache-2": {10, 10, 10, 20, 20, 20},
		// Brace is noisy.
		shed + "semaphore-2": {10, 10, 10, 10, 10, 10},
		shed + "brace-2":     {8, 11, 9, 13, 10, 14},
	}
	in := rounds(6, ns, open+"direct-2", open+"flag-2", open+"brace-2", closed+"brace-2", closed+"eapache-2",
		shed+"semaphore-2", shed+"brace-2")
	scaling := rounds(6, map[string][]float64{
		"BenchmarkBackpressure/path=admitted/mode=par/impl=brace":    {40, 40, 40, 40, 40, 40},
		"BenchmarkBackpressure/path=admitted/mode=par/impl=brace-2":  {25, 25, 25, 25, 25, 25},
		"BenchmarkBackpressure/path=admitted/mode=par/impl=atomic":   {30, 30, 30, 30, 30, 30},
		"BenchmarkBackpressure/path=admitted/mode=par/impl=atomic-2": {20, 20, 20, 20, 20, 20},
		"BenchmarkBreaker/path=closed-rate/mode=par/impl=brace":      {30, 30, 30, 30, 30, 30},
		"BenchmarkBreaker/path=closed-rate/mode=par/impl=brace-2":    {20, 20, 20, 20, 20, 20},
	}, "BenchmarkBackpressure/path=admitted/mode=par/impl=brace", "BenchmarkBackpressure/path=admitted/mode=par/impl=brace-2",
		"BenchmarkBackpressure/path=admitted/mode=par/impl=atomic", "BenchmarkBackpressure/path=admitted/mode=par/impl=atomic-2",
		"BenchmarkBreaker/path=closed-rate/mode=par/impl=brace", "BenchmarkBreaker/path=closed-rate/mode=par/impl=brace-2")
	d, err := read(strings.NewReader(in), "compare")
	if err != nil {
		t.Fatal(err)
	}
	sc, err := read(strings.NewReader(scaling), "scaling")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	writeTargets(&out, d, sc)
	for _, line := range []string{
		"| Breaker open (rejection): ≤ 2 ns over a direct call, 0 allocs | +1.50 ns (3.50 ns against 2.00 ns), 0 allocs | met |",
		"| Breaker open (rejection): ≤ 1.2× the raw refusal (an atomic flag), 0 allocs | 1.17× ±<1% (3.50 ns against 3.00 ns), 0 allocs | met |",
		"| Breaker closed, consecutive mode: ≤ 1.0× eapache/go-resiliency, both as middlewares | 0.90× ±<1% (13.5 ns against 15.0 ns), 0 allocs | met (noisy) |",
		"| Backpressure shed: ≤ 1.2× a refused semaphore.TryAcquire, 0 allocs | 1.05× ±33% noisy (10.5 ns against 10.0 ns), 0 allocs | met (noisy) |",
		"| Breaker closed, rate mode: ≥ 1.6× throughput from 1 to 2 CPUs | 1.50× ±<1% | missed |",
		"| Backpressure admitted (Shed mode): from 1 to 2 CPUs, scales no worse than a bare atomic counter | brace 1.60× ±<1%, atomic 1.50× ±<1%: 1.07× | met |",
	} {
		if !strings.Contains(out.String(), line+"\n") {
			t.Errorf("output lacks the line\n%s\noutput:\n%s", line, out.String())
		}
	}
}

func TestScaling(t *testing.T) {
	const scaling = `BenchmarkComposed/path=success/mode=par/impl=brace     1000 40.0 ns/op 0 B/op 0 allocs/op
BenchmarkComposed/path=success/mode=par/impl=brace-2   1000 20.0 ns/op 0 B/op 0 allocs/op
BenchmarkComposed/path=success/mode=par/impl=failsafe   1000 600 ns/op 624 B/op 20 allocs/op
BenchmarkComposed/path=success/mode=par/impl=failsafe-2 1000 400 ns/op 624 B/op 20 allocs/op
`
	d, err := read(strings.NewReader(scaling), "scaling")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	writeScaling(&out, d)
	for _, line := range []string{
		"| Composed/success/par | brace | 40.0 ns | 20.0 ns | 2.00× |",
		"| Composed/success/par | failsafe | 600 ns | 400 ns | 1.50× |",
	} {
		if !strings.Contains(out.String(), line+"\n") {
			t.Errorf("output lacks the line\n%s\noutput:\n%s", line, out.String())
		}
	}
}

func TestReadErrors(t *testing.T) {
	if _, err := read(strings.NewReader("BenchmarkOther-2 10 1 ns/op\n"), "other"); err == nil {
		t.Error("read of a file without comparison benchmarks: err = nil, want an error")
	}
	if _, err := readFile(filepath.Join(t.TempDir(), "missing.txt")); err == nil {
		t.Error("readFile of a missing file: err = nil, want an error")
	}
}

// TestAllocTargets checks the targets judged on allocation counts alone.
func TestAllocTargets(t *testing.T) {
	const in = `BenchmarkHedge/path=no-hedge/mode=seq/impl=brace-2 1000 1500 ns/op 424 B/op 5 allocs/op
BenchmarkHedge/path=no-hedge/mode=seq/impl=brace-2 1000 1600 ns/op 424 B/op 5 allocs/op
BenchmarkDedup/path=cache-hit/mode=seq/impl=brace-2 1000 70.0 ns/op 16 B/op 1 allocs/op
BenchmarkDedup/path=cache-hit/mode=seq/impl=brace-2 1000 80.0 ns/op 16 B/op 1 allocs/op
`
	d, err := read(strings.NewReader(in), "compare")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	writeTargets(&out, d, nil)
	for _, line := range []string{
		"| Hedge, no hedge sent: ≤ 5 allocs | 5 allocs (424 B) (1550 ns ±∞ noisy) | met |",
		"| Dedup cache hit: 0 allocs | 1 alloc (16 B) (75.0 ns ±∞ noisy) | missed |",
		"| Throttle overloaded (about 9 calls in 10 refused): 0 allocs | not measured | — |",
	} {
		if !strings.Contains(out.String(), line+"\n") {
			t.Errorf("output lacks the line\n%s\noutput:\n%s", line, out.String())
		}
	}
}
