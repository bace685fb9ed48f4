package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/brace-go/brace/middleware/status"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/retry"
	"github.com/brace-go/brace/middleware/timeout"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRunReconciles runs the demo with a few seeds: run returns an error
// when a check of its summary fails, that is when the callers' outcomes
// and the concerns' Stats do not add up (issue 14 item 10). The runs are
// shorter than the demo's but have the same story: an outage in the
// middle that opens the breaker.
func TestRunReconciles(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about two seconds")
	}
	for _, seed := range []uint64{1, 7, 42} {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			t.Parallel()
			opts := options{seed: seed, runFor: 1500 * time.Millisecond, outageFrom: 500 * time.Millisecond, outageUntil: time.Second}
			var out, log strings.Builder
			err := run(slog.New(slog.NewTextHandler(&log, nil)), &out, opts)
			t.Logf("summary:\n%s", out.String())
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if n := strings.Count(out.String(), "✓"); n < 10 {
				t.Errorf("%d checks passed, want at least 10", n)
			}
			if strings.Contains(out.String(), "✗") {
				t.Errorf("a failed check is marked, but run returned nil")
			}
			checkLog(t, log.String())
		})
	}
}

// checkLog checks that the log at the default level holds no per-call
// records (issue 14 item 11): only the start, and the breaker's changes of
// state, of which there are few.
func checkLog(t *testing.T, log string) {
	t.Helper()
	lines := 0
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		lines++
		line := sc.Text()
		if !strings.Contains(line, `msg="quickstart starting"`) && !strings.Contains(line, `msg="breaker state-changed"`) &&
			!strings.Contains(line, `msg="status page"`) {
			t.Errorf("unexpected record at the default level: %s", line)
		}
	}
	if lines > 40 {
		t.Errorf("%d log records at the default level, want at most 40:\n%s", lines, log)
	}
	if !strings.Contains(log, "to=open") {
		t.Errorf("the outage did not open the breaker:\n%s", log)
	}
}

// TestClassifyByLastError is the regression test of issue 14 item 10: a
// call that gave up after a timeout and then 503s is counted once, under
// 503, because the retry's error unwraps to the last attempt's error only.
// Before, errors.Is also matched the earlier timeout and the demo counted
// the call under "timeout".
func TestClassifyByLastError(t *testing.T) {
	r, err := retry.New(retry.Config{MaxAttempts: 3, BaseDelay: time.Microsecond, MaxDelay: time.Microsecond})
	if err != nil {
		t.Fatal(err)
	}
	errs := []error{&timeout.Error{Duration: time.Millisecond, Err: context.DeadlineExceeded}, errUnavailable, errUnavailable}
	n := 0
	call := middleware.Apply(func(context.Context, order) (quote, error) {
		n++
		return quote{}, errs[n-1]
	}, retry.Middleware[order, quote](r))
	_, err = call(context.Background(), order{})
	var ex *retry.ExhaustedError
	if !errors.As(err, &ex) || n != 3 {
		t.Fatalf("got %v after %d attempts, want an ExhaustedError after 3", err, n)
	}
	if got := classify(err); got != gaveUp503 {
		t.Errorf("classify(%v) = %q, want %q", err, outcomeNames[got], outcomeNames[gaveUp503])
	}
	if errors.Is(err, timeout.ErrTimeout) {
		t.Errorf("errors.Is(%v, timeout.ErrTimeout) = true: it matched an earlier attempt's error", err)
	}
}

// TestSummaryDetectsMismatch checks that the checks can fail: a call
// counted under an outcome that no concern counted is reported.
func TestSummaryDetectsMismatch(t *testing.T) {
	page, err := status.New(status.Config{})
	if err != nil {
		t.Fatal(err)
	}
	g, err := newGuard(slog.New(slog.DiscardHandler), 1, page)
	if err != nil {
		t.Fatal(err)
	}
	svc := newDownstream(1, time.Hour, time.Hour)
	var tl tally
	if n := summarize(&tl, g, svc).mismatches(); n != 0 {
		t.Fatalf("%d mismatches with nothing counted, want 0", n)
	}
	info := new(callInfo)
	info.ran.Store(true)
	info.attempts.Store(1)
	g.attempts[attemptShed].Add(1)
	tl.record(info, errors.New("backpressure: shed")) // not ErrShed: "other", and the limiter shed nothing
	var out strings.Builder
	s := summarize(&tl, g, svc)
	s.print(&out)
	if n := s.mismatches(); n != 3 {
		t.Errorf("%d mismatches, want 3 (shed twice, unexplained):\n%s", n, out.String())
	}
	if got := strings.Count(out.String(), "✗"); got != s.mismatches() {
		t.Errorf("%d rows marked ✗, want %d", got, s.mismatches())
	}
}

// TestServePage: the demo's status page is served on loopback while it
// runs, shows the concerns registered with it, and stops with the run.
func TestServePage(t *testing.T) {
	page, err := status.New(status.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := status.Register(page, "breaker", "inventory", func() struct{ State string } { return struct{ State string }{"closed"} }); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	stop, err := servePage(slog.New(slog.NewTextHandler(&log, nil)), page, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, url, ok := strings.Cut(log.String(), "url=")
	if !ok {
		t.Fatalf("the log does not give the page's address: %q", log.String())
	}
	resp, err := http.Get(strings.TrimSpace(url) + "?format=json")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "inventory") {
		t.Errorf("GET the page: %d %s", resp.StatusCode, body)
	}
	stop()
	if _, err := http.Get(strings.TrimSpace(url)); err == nil {
		t.Error("the page is still served after stop")
	}
}
