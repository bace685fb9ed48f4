package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/httpx"
	"github.com/brace-go/brace/middleware/ratelimit"
	"github.com/brace-go/brace/middleware/throttle"
	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRun runs the example: run fails if any check is not met. The checks
// are the robust facts the run shows (interactive prompts answered, batch
// shed first, fewer requests and 429s, alpha's breaker opening), with
// thresholds far from what a run measures, never exact counts or timings.
func TestRun(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about five seconds")
	}
	var out, log strings.Builder
	if err := run(slog.New(slog.NewTextHandler(&log, nil)), &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	// The concerns' per-call events are logged at Debug: none of them is
	// in the log at the default level.
	for _, line := range strings.Split(log.String(), "\n") {
		for _, kind := range []string{"rejected", "waited", "joined", "retry", "fell-back", "gave-up"} {
			if strings.Contains(line, " "+kind+`"`) {
				t.Errorf("per-call event at the default level: %s", line)
			}
		}
	}
	if n := strings.Count(log.String(), "\n"); n > 30 {
		t.Errorf("%d log records at the default level, want at most 30:\n%s", n, log.String())
	}
	t.Logf("output:\n%s", out.String())
	for _, title := range []string{"LLM gateway", "1. Without protection", "2. Through the gateway", "3. With and without"} {
		if !strings.Contains(out.String(), "\n"+title+" ") {
			t.Errorf("no section %q in the output:\n%s", title, out.String())
		}
	}
	if got, want := strings.Count(out.String(), "  check: "), 13; got != want {
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

// The workload is the same for a seed: both runs, and every run of the
// program, send the same prompts at the same times.
func TestWorkloadSeeded(t *testing.T) {
	a, b := workload(seed), workload(seed)
	if diff := cmp.Diff(a, b, cmp.AllowUnexported(arrival{})); diff != "" {
		t.Errorf("two workloads of one seed differ (-first +second):\n%s", diff)
	}
	var dup int
	seen := map[prompt]bool{}
	for i, x := range a {
		if i > 0 && x.at < a[i-1].at {
			t.Fatalf("arrival %d at %v before arrival %d at %v", i, x.at, i-1, a[i-1].at)
		}
		if seen[x.p] {
			dup++
		}
		seen[x.p] = true
		if x.at >= workloadFor {
			t.Errorf("arrival %d at %v, after the workload's %v", i, x.at, workloadFor)
		}
	}
	if dup < 20 {
		t.Errorf("%d repeated prompts, want at least 20 for dedup to show", dup)
	}
}

// The simulated provider refuses beyond its requests or tokens per minute
// with a 429, a Retry-After and the IETF RateLimit fields naming the limit
// that refused, and bills what it answers.
func TestProviderLimits(t *testing.T) {
	const text, maxTokens = "hello there", 10
	cost := countTokens(text) + completionTokens(text, maxTokens)
	tests := []struct {
		name   string
		limits limits
		policy string // RateLimit of the refusal
	}{
		{"requests", limits{RPM: 3, TPM: 1000, InFlight: 8}, `"rpm";r=0;t=1`},
		{"tokens", limits{RPM: 100, TPM: 3 * cost, InFlight: 8}, `"tpm";r=0;t=1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newProvider(providerSpec{name: "test", limits: tt.limits, latency: time.Millisecond})
			t.Cleanup(p.close)
			body, err := json.Marshal(completionRequest{Prompt: text, MaxTokens: maxTokens})
			if err != nil {
				t.Fatal(err)
			}
			var statuses []int
			var last http.Header
			for range 4 {
				resp, err := p.srv.Client().Post(p.srv.URL+"/v1/completions", "application/json", bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				statuses = append(statuses, resp.StatusCode)
				last = resp.Header
			}
			got := p.stats()
			// The test may straddle a window's end: then the fourth gets through.
			if got.OK != 4 {
				if diff := cmp.Diff([]int{200, 200, 200, 429}, statuses); diff != "" {
					t.Errorf("statuses (-want +got):\n%s", diff)
				}
				if d, ok := httpx.ParseRetryAfter(last, time.Now()); !ok || d < time.Second {
					t.Errorf("429 Retry-After %q: want at least 1s", last.Get("Retry-After"))
				}
				if got := last.Get("RateLimit"); got != tt.policy {
					t.Errorf("429 RateLimit %q, want %q", got, tt.policy)
				}
				if d, ok := httpx.ParseRateLimit(last); !ok || d != time.Second {
					t.Errorf("httpx.ParseRateLimit of the 429 = %v, %v; want 1s, true", d, ok)
				}
			}
			wantPolicy := fmt.Sprintf(`"rpm";q=%d;w=1, "tpm";q=%d;w=1`, tt.limits.RPM, tt.limits.TPM)
			if got := last.Get("RateLimit-Policy"); got != wantPolicy {
				t.Errorf("RateLimit-Policy %q, want %q", got, wantPolicy)
			}
			if got.MaxWindowReqs > tt.limits.RPM || got.MaxWindowToks > tt.limits.TPM || got.Tokens != got.OK*cost {
				t.Errorf("provider counts %+v: over the limits, or billed wrong", got)
			}
		})
	}
}

// kindOf sorts every refusal a caller can get into the tables' columns,
// also when a concern wrapped it (retry's ExhaustedError, fallback's Error).
func TestKindOf(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, "ok"},
		{&providerError{Status: 429}, "limited"},
		{&ratelimit.LimitedError{Delay: time.Second}, "limited"},
		{&providerError{Status: 503, Type: "overloaded"}, "unavailable"},
		{fmt.Errorf("retry: giving up: %w", &providerError{Status: 503, Type: "unavailable"}), "unavailable"},
		{breaker.ErrOpen, "unavailable"},
		{backpressure.ErrShed, "shed"},
		{fmt.Errorf("fallback: %w", throttle.ErrThrottled), "shed"},
		{context.DeadlineExceeded, "other"},
	}
	for _, tt := range tests {
		if got := kindOf(tt.err); got != tt.want {
			t.Errorf("kindOf(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
