package main

import (
	"log/slog"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRun runs the example: run fails if any section's check is not met.
// The checks are the robust facts each section shows (the fallback served
// a lookup, the quiet tenant was never refused, hedging lowered the p99,
// the adaptive limit came down from the offered concurrency), never exact
// counts or timings.
func TestRun(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about four seconds")
	}
	var out, log strings.Builder
	if err := run(slog.New(slog.NewTextHandler(&log, nil)), &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	// The concerns' per-call events are logged at Debug (issue 14 item
	// 11): none of them is in the log at the default level.
	for _, line := range strings.Split(log.String(), "\n") {
		for _, kind := range []string{"fell-back", "rejected", "waited", "hedged", "limit-changed"} {
			if strings.Contains(line, " "+kind+`"`) {
				t.Errorf("per-call event at the default level: %s", line)
			}
		}
	}
	if n := strings.Count(log.String(), "\n"); n > 30 {
		t.Errorf("%d log records at the default level, want at most 30:\n%s", n, log.String())
	}
	t.Logf("output:\n%s", out.String())
	for _, title := range []string{"1. Fallback", "2. RateLimit", "3. Hedge", "4. Adaptive"} {
		if !strings.Contains(out.String(), "\n"+title+" — ") {
			t.Errorf("no section %q in the output:\n%s", title, out.String())
		}
	}
	if got, want := strings.Count(out.String(), "  check: "), 3+6+4+3; got != want {
		t.Errorf("%d checks in the output, want %d:\n%s", got, want, out.String())
	}
}

// A check that is not met is printed as such and makes run fail: the
// program's exit status depends on it.
func TestReportCheck(t *testing.T) {
	var out strings.Builder
	r := &report{tw: tabwriter.NewWriter(&out, 0, 0, 1, ' ', 0)}
	r.check("holds", true)
	r.check("does not hold", false)
	r.tw.Flush()
	if diff := cmp.Diff([]string{"does not hold"}, r.failed); diff != "" {
		t.Errorf("failed checks (-want +got):\n%s", diff)
	}
	want := "  check: holds         ok\n  check: does not hold NOT MET\n"
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}

// quantile is the nearest-rank quantile: the p99 of 100 latencies is the
// 99th, and of 320 the 317th (the fourth slowest).
func TestQuantile(t *testing.T) {
	upTo := func(n int) []time.Duration {
		d := make([]time.Duration, n)
		for i := range d {
			d[i] = time.Duration(i + 1)
		}
		return d
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		q      float64
		want   time.Duration
	}{
		{"empty", nil, 0.99, 0},
		{"one", upTo(1), 0.99, 1},
		{"p50 of 100", upTo(100), 0.5, 50},
		{"p99 of 100", upTo(100), 0.99, 99},
		{"p99 of 320", upTo(320), 0.99, 317},
		{"p100 of 320", upTo(320), 1, 320},
		{"p0 of 320", upTo(320), 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := quantile(tt.sorted, tt.q); got != tt.want {
				t.Errorf("quantile(%d values, %g) = %v, want %v", len(tt.sorted), tt.q, got, tt.want)
			}
		})
	}
}
