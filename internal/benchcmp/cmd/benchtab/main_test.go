package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// input is the output of two runs of a few comparison benchmarks, with
// round numbers so that the medians and ratios can be checked by hand.
const input = `goos: linux
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
`

func TestRead(t *testing.T) {
	d, err := read(strings.NewReader(input), "input")
	if err != nil {
		t.Fatal(err)
	}
	retry := row{"Retry", "success", "seq", "2"}
	got := map[string]stats{}
	for _, im := range d.impls["Retry"] {
		got[im], _ = d.get(retry, im)
	}
	want := map[string]stats{
		"direct":   {ns: 2},
		"brace":    {ns: 5},
		"failsafe": {ns: 500, bytes: 464, allocs: 15},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(stats{})); diff != "" {
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
		// Medians side by side.
		"| success | seq | 2.00 ns, 0 allocs | 5.00 ns, 0 allocs | 500 ns, 15 allocs (464 B) |",
		// Ratios: brace ÷ baseline, peer ÷ brace.
		"| success | seq | +3.00 ns | 2.50× | 100× |",
		"| admitted | seq | | 1.50× |",
		// Targets.
		"| Retry: < 5 ns over a direct call, 0 allocs | +3.00 ns (5.00 ns against 2.00 ns), 0 allocs | yes |",
		"| Backpressure (Shed mode): ≤ 1.2× semaphore.TryAcquire, 0 allocs | 1.50× (30.0 ns against 20.0 ns), 0 allocs | no |",
		"| Breaker (consecutive mode): < 10 ns over a direct call, 0 allocs | not measured | — |",
		"| Retry+Breaker+Backpressure: < 50 ns per call, 0 allocs | 40.0 ns, 0 allocs | yes |",
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
