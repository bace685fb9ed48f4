// Command httpclient sends requests through a Brace http.RoundTripper to a
// local test server that fails in the ways real servers do — a 502 now and
// then, a 503 with Retry-After, a 429 from a rate limit, an attempt that
// hangs, a backend that is down — and prints what the client saw.
//
//	go run ./examples/httpclient
//
// It needs no network beyond loopback, runs in about three seconds (two of
// them honouring Retry-After), and exits 1 if any scenario does not turn out
// as described. The concerns' events — each retry, the breaker opening, the
// server's rate-limit rejections — become log records through
// middleware.Log and go to stderr through tint.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/httpx"
	"github.com/brace-go/brace/middleware/ratelimit"
	"github.com/brace-go/brace/middleware/retry"
	"github.com/brace-go/brace/middleware/timeout"
	"github.com/lmittmann/tint"
)

func main() {
	log := newLogger(os.Stderr)
	if err := run(log, os.Stdout); err != nil {
		log.Error("httpclient failed", "err", err)
		os.Exit(1)
	}
}

// newLogger renders slog records with tint: coloured on a terminal, plain
// when piped.
func newLogger(w *os.File) *slog.Logger {
	fi, err := w.Stat()
	tty := err == nil && fi.Mode()&os.ModeCharDevice != 0
	return slog.New(tint.NewTextHandler(w, &tint.Options{
		Level:      slog.LevelDebug,
		TimeFormat: "15:04:05.000",
		NoColor:    !tty,
	}))
}

func run(log *slog.Logger, out io.Writer) error {
	srv, err := newServer(log.With("side", "server"))
	if err != nil {
		return err
	}
	defer srv.Close()

	// Attempts are counted per scenario by a middleware of our own,
	// innermost, so it sees the attempts that reach the server.
	var attempts atomic.Int32
	countAttempts := func(next middleware.Stage[*http.Request, *http.Response]) middleware.Stage[*http.Request, *http.Response] {
		return func(ctx context.Context, r *http.Request) (*http.Response, error) {
			attempts.Add(1)
			return next(ctx, r)
		}
	}
	// Every concern reports its events to one Observer: middleware.Log
	// turns them into records (retries at Debug, the breaker opening at
	// Warn).
	clientLog := middleware.Log(log.With("side", "client"))

	// The shop client: up to 4 attempts, each bounded to 300ms until its
	// headers arrive.
	perAttempt, err := timeout.New(timeout.Config{Duration: 300 * time.Millisecond})
	if err != nil {
		return err
	}
	shopRetry, err := retry.New(retry.Config{
		Name: "shop", MaxAttempts: 4, BaseDelay: 20 * time.Millisecond, MaxDelay: 2 * time.Second, Seed: 1,
		Observer: clientLog,
	})
	if err != nil {
		return err
	}
	shopTransport, err := httpx.NewTransport(httpx.TransportConfig{
		Base:     srv.Client().Transport,
		Retry:    shopRetry,
		Attempt:  []httpx.Middleware{timeout.Middleware[*http.Request, *http.Response](perAttempt), countAttempts},
		Name:     "shop",
		Observer: clientLog,
	})
	if err != nil {
		return err
	}
	shop := &http.Client{Transport: shopTransport}

	// The payments client adds a breaker, inside the retry loop, so it
	// counts every failed attempt.
	payments, err := breaker.New(breaker.Config{Name: "payments", Threshold: 3, Observer: clientLog})
	if err != nil {
		return err
	}
	payRetry, err := retry.New(retry.Config{
		Name: "payments", MaxAttempts: 3, BaseDelay: 20 * time.Millisecond, Seed: 2, Observer: clientLog,
	})
	if err != nil {
		return err
	}
	payTransport, err := httpx.NewTransport(httpx.TransportConfig{
		Base:  srv.Client().Transport,
		Retry: payRetry,
		Attempt: []httpx.Middleware{
			breaker.Middleware[*http.Request, *http.Response](payments),
			timeout.Middleware[*http.Request, *http.Response](perAttempt),
			countAttempts,
		},
		Name:     "payments",
		Observer: clientLog,
	})
	if err != nil {
		return err
	}
	pay := &http.Client{Transport: payTransport}

	ctx := context.Background()
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tRESULT\tATTEMPTS\tTOOK")
	var failed []string
	scenario := func(name string, f func() (string, error)) {
		attempts.Store(0)
		start := time.Now()
		result, err := f()
		if err != nil {
			result = "UNEXPECTED: " + err.Error()
			failed = append(failed, name)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%v\n", name, result, attempts.Load(), time.Since(start).Round(10*time.Millisecond))
	}

	scenario("GET /flaky ×10 (random 502s)", func() (string, error) {
		ok := 0
		for range 10 {
			code, _, err := call(ctx, shop, http.MethodGet, srv.URL+"/flaky", "", "")
			if err != nil {
				return "", err
			}
			if code == 200 {
				ok++
			}
		}
		if ok != 10 {
			return "", fmt.Errorf("%d of 10 succeeded", ok)
		}
		return "10 × 200", nil
	})
	scenario("GET /busy (503, Retry-After: 1)", func() (string, error) {
		start := time.Now()
		code, body, err := call(ctx, shop, http.MethodGet, srv.URL+"/busy", "", "")
		return expect(code, body, err, 200, time.Since(start) >= time.Second, "waited less than Retry-After")
	})
	scenario("GET /limited ×3 (server rate limit)", func() (string, error) {
		var codes []string
		for range 3 {
			code, _, err := call(ctx, shop, http.MethodGet, srv.URL+"/limited", "", "")
			if err != nil {
				return "", err
			}
			codes = append(codes, fmt.Sprint(code))
		}
		if s := strings.Join(codes, " "); s != "200 200 200" {
			return "", fmt.Errorf("got %s", s)
		}
		return "3 × 200 (third waited out a 429)", nil
	})
	scenario("POST /order, no idempotency key", func() (string, error) {
		code, body, err := call(ctx, shop, http.MethodPost, srv.URL+"/order", `{"sku":"a1"}`, "")
		return expect(code, body, err, 503, true, "")
	})
	scenario("POST /order, Idempotency-Key", func() (string, error) {
		code, body, err := call(ctx, shop, http.MethodPost, srv.URL+"/order", `{"sku":"a1"}`, "order-42")
		return expect(code, body, err, 201, true, "")
	})
	scenario("GET /slow (first attempt hangs)", func() (string, error) {
		code, body, err := call(ctx, shop, http.MethodGet, srv.URL+"/slow", "", "")
		return expect(code, body, err, 200, body == "streamed after the attempt ended", "body cut short")
	})
	scenario("GET /pay (backend down)", func() (string, error) {
		code, body, err := call(ctx, pay, http.MethodGet, srv.URL+"/pay", "", "")
		return expect(code, body, err, 502, payments.State() == breaker.Open, "breaker not open")
	})
	scenario("GET /pay again", func() (string, error) {
		_, _, err := call(ctx, pay, http.MethodGet, srv.URL+"/pay", "", "")
		if !errors.Is(err, breaker.ErrOpen) {
			return "", fmt.Errorf("want breaker.ErrOpen, got %v", err)
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // drop the client's "Get <url>: " prefix
		}
		return "failed fast: " + err.Error(), nil
	})
	tw.Flush()
	if len(failed) > 0 {
		return fmt.Errorf("unexpected outcomes: %s", strings.Join(failed, "; "))
	}
	return nil
}

// call sends one request and reads the whole body.
func call(ctx context.Context, c *http.Client, method, url, body, key string) (int, string, error) {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body) // http.NewRequest sets GetBody: rewindable
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return 0, "", err
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), err
}

func expect(code int, body string, err error, want int, cond bool, why string) (string, error) {
	switch {
	case err != nil:
		return "", err
	case code != want:
		return "", fmt.Errorf("status %d %q, want %d", code, body, want)
	case !cond:
		return "", errors.New(why)
	}
	return fmt.Sprintf("%d %q", code, body), nil
}

// newServer starts the misbehaving server on loopback.
func newServer(log *slog.Logger) (*httptest.Server, error) {
	mux := http.NewServeMux()

	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(7, 7)) // seeded: the same 502s every run
	mux.HandleFunc("GET /flaky", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		fail := rng.IntN(3) == 0
		mu.Unlock()
		if fail {
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		}
		fmt.Fprint(w, "ok")
	})

	var busy atomic.Int32
	mux.HandleFunc("GET /busy", func(w http.ResponseWriter, r *http.Request) {
		if busy.Add(1) == 1 {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "busy, come back in a second", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "ok")
	})

	// /limited is protected server-side by an httpx.Protector: two
	// requests, then one a second, refused with 429 and Retry-After. The
	// limiter logs each refusal through its Observer.
	rl, err := ratelimit.New(ratelimit.Config{Name: "limited", Rate: 1, Burst: 2, Observer: middleware.Log(log)})
	if err != nil {
		return nil, err
	}
	protector, err := httpx.NewProtector(httpx.ProtectorConfig{RateLimit: rl})
	if err != nil {
		return nil, err
	}
	mux.Handle("GET /limited", protector.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "ok")
	})))

	// /order fails the first time it sees a key, and always without one.
	var seenMu sync.Mutex
	seen := map[string]string{}
	mux.HandleFunc("POST /order", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		key := r.Header.Get("Idempotency-Key")
		seenMu.Lock()
		prev, again := seen[key]
		seen[key] = string(body)
		seenMu.Unlock()
		if key == "" || !again {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		if prev != string(body) {
			http.Error(w, "retry sent another body", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, "created once")
	})

	// /slow: the first attempt never answers; the second sends its headers
	// at once and its body in pieces, well after the 300ms per-attempt
	// timeout has ended that attempt.
	var slow atomic.Int32
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		if slow.Add(1) == 1 {
			<-r.Context().Done() // hang until the client gives up
			return
		}
		w.WriteHeader(http.StatusOK)
		for _, piece := range []string{"streamed ", "after the ", "attempt ended"} {
			io.WriteString(w, piece)
			http.NewResponseController(w).Flush()
			select {
			case <-time.After(100 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
	})

	mux.HandleFunc("GET /pay", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "payments backend down", http.StatusBadGateway)
	})
	return httptest.NewServer(mux), nil
}
