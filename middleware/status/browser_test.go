package status_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/status"
)

// chromium returns the path of Debian's chromium (or another Chrome),
// or skips the test. .ci/run installs chromium when it is missing.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("status: no chromium in PATH, so the page is not tested in a real browser; install it with `apt-get install -y chromium` (.ci/run does)")
	return ""
}

// headless runs chromium headless on url with extra flags and returns its
// standard output.
func headless(t *testing.T, bin, url string, flags ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	args := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-extensions", "--disable-dev-shm-usage", "--hide-scrollbars",
		"--user-data-dir=" + t.TempDir(),
	}, flags...)
	args = append(args, url)
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstderr:\n%s", bin, strings.Join(args, " "), err, stderr.Bytes())
	}
	return stdout.Bytes()
}

// TestBrowser loads the page in headless chromium while a real breaker,
// observed by the page, opens between the first load and the page's
// first refresh: the refreshed DOM must show the breaker open and its
// transition. Chromium's virtual time runs the one-second refresh
// without the test waiting for it. The screenshot is saved under the
// test's temporary directory, and copied to $BRACE_STATUS_SCREENSHOT when
// that is set.
func TestBrowser(t *testing.T) {
	bin := chromium(t)

	page, err := status.New(status.Config{Title: "Brace status <test>", Refresh: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	b, err := breaker.New(breaker.Config{Name: "payments", Threshold: 1, OpenTimeout: time.Hour, Observer: page})
	if err != nil {
		t.Fatal(err)
	}
	if err := status.Register(page, "breaker", "payments", b.Stats); err != nil {
		t.Fatal(err)
	}
	// Other instances, for a screenshot that shows more than one row:
	// events as the concerns would emit them, and a Stats source.
	ctx := context.Background()
	for range 7 {
		page.Observe(ctx, middleware.Event{Kind: middleware.Rejected, Concern: "backpressure", Name: "inventory", Reason: "shed", InFlight: 10, Limit: 10})
	}
	page.Observe(ctx, middleware.Event{Kind: middleware.Waited, Concern: "backpressure", Name: "inventory", Wait: 3 * time.Millisecond})
	status.Register(page, "backpressure", "inventory", func() struct{ InFlight, Queued, Capacity int64 } {
		return struct{ InFlight, Queued, Capacity int64 }{10, 2, 10}
	})
	for range 3 {
		page.Observe(ctx, middleware.Event{Kind: middleware.Retry, Concern: "retry", Name: "lookup", Attempt: 1, Delay: 5 * time.Millisecond})
	}
	page.Observe(ctx, middleware.Event{Kind: middleware.GaveUp, Concern: "retry", Name: "lookup", Attempt: 3, Reason: "attempts"})
	for _, s := range [][2]string{{"closed", "open"}, {"open", "half-open"}, {"half-open", "closed"}} {
		page.Observe(ctx, middleware.Event{Kind: middleware.StateChanged, Concern: "breaker", Name: "search", From: s[0], To: s[1]})
	}

	call := middleware.Apply(func(context.Context, int) (int, error) {
		return 0, errors.New("connection refused")
	}, breaker.Middleware[int, int](b))

	var loads atomic.Int32
	mux := http.NewServeMux()
	refresh := regexp.MustCompile(`<meta http-equiv="refresh"[^>]*>`)
	mux.Handle("/debug/brace", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := loads.Add(1)
		rec := httptest.NewRecorder()
		page.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		if n == 1 {
			// The breaker opens after the first load, before its refresh.
			call(r.Context(), 1)
		} else {
			// Under virtual time a page that refreshes itself is loaded
			// again and again, and chromium never dumps it: the page's
			// own refresh has been followed once, stop there.
			body = refresh.ReplaceAll(body, nil)
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.Code)
		w.Write(body)
	}))
	srv := httptest.NewServer(mux) // on loopback
	defer srv.Close()
	url := srv.URL + "/debug/brace"

	// Three seconds of virtual time: the page loads, refreshes once after
	// one second, and the DOM of the second load is dumped.
	dom := string(headless(t, bin, url, "--virtual-time-budget=3000", "--dump-dom"))
	if n := loads.Load(); n < 2 {
		t.Fatalf("the page was loaded %d times, want at least 2 (the refresh did not happen)\nDOM:\n%s", n, dom)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`<tr class="instance" data-concern="breaker" data-name="payments" data-state="open">`),
		regexp.MustCompile(`<span class="badge bad">open</span>`),
		regexp.MustCompile(`<li class="transition">\d\d:\d\d:\d\d closed → open · failures 1 · <span class="err">connection refused</span></li>`),
		regexp.MustCompile(`<title>Brace status &lt;test&gt;</title>`),
		regexp.MustCompile(`<svg[^>]*>.*<rect class="bad"`),
		regexp.MustCompile(`State <b>open</b>`),
	} {
		if !want.MatchString(dom) {
			t.Errorf("the DOM does not match %s\nDOM:\n%s", want, dom)
		}
	}

	dir := t.TempDir()
	shot := filepath.Join(dir, "status.png")
	headless(t, bin, url, "--window-size=1400,640", "--screenshot="+shot) // one load: no refresh
	png, err := os.ReadFile(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) || len(png) < 1000 {
		t.Fatalf("the screenshot is not a PNG image (%d bytes)", len(png))
	}
	t.Logf("screenshot: %s (%d bytes)", shot, len(png))
	if dst := os.Getenv("BRACE_STATUS_SCREENSHOT"); dst != "" {
		if err := os.WriteFile(dst, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot copied to %s", dst)
	}
}
