package httpx_test

import (
	"bytes"
	"context"
	"errors"
	"io"

	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/budget"
	"github.com/brace-go/brace/middleware/hedge"
	"github.com/brace-go/brace/middleware/httpx"
	"github.com/brace-go/brace/middleware/retry"
	"github.com/brace-go/brace/middleware/timeout"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestStatusesRetried(t *testing.T) {
	tests := []struct {
		name         string
		codes        []int
		maxAttempts  int
		wantAttempts int64
		wantStatus   int
		wantBody     string
	}{
		{"success", []int{200}, 3, 1, 200, "response 1"},
		{"503 then success", []int{503, 200}, 3, 2, 200, "response 2"},
		{"429 502 504 then success", []int{429, 502, 504, 200}, 4, 4, 200, "response 4"},
		// Retries exhausted: the last response comes back, readable, with
		// a nil error, as from any RoundTripper.
		{"503 until exhausted", []int{503}, 3, 3, 503, "response 3"},
		{"429 single attempt", []int{429}, 1, 1, 429, "response 1"},
		{"500 is not retried", []int{500, 200}, 3, 1, 500, "response 1"},
		{"501 is not retried", []int{501, 200}, 3, 1, 501, "response 1"},
		{"404 is not retried", []int{404, 200}, 3, 1, 404, "response 1"},
		{"redirect status passes", []int{304, 200}, 3, 1, 304, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, count := server(t, statuses(tt.codes...))
			tr := newTransport(t, srv.Client().Transport, httpx.TransportConfig{Retry: newRetrier(t, retry.Config{MaxAttempts: tt.maxAttempts})})
			code, body, err := get(t, tr, srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			type result struct {
				Attempts int64
				Status   int
				Body     string
			}
			want := result{tt.wantAttempts, tt.wantStatus, tt.wantBody}
			if diff := cmp.Diff(want, result{count.Load(), code, body}); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestRetryStatusConfigurable(t *testing.T) {
	srv, count := server(t, statuses(500, 503, 200))
	tr := newTransport(t, srv.Client().Transport, httpx.TransportConfig{
		RetryStatus: func(code int) bool { return code == 500 },
	})
	code, _, err := get(t, tr, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	// 500 is retried; 503 is not (any more), so it is returned.
	if code != 503 || count.Load() != 2 {
		t.Errorf("got status %d after %d attempts, want 503 after 2", code, count.Load())
	}
}

func TestIdempotency(t *testing.T) {
	postIsFine := func(r *http.Request) bool { return true }
	tests := []struct {
		method     string
		header     string
		idempotent func(*http.Request) bool
		want       int64
	}{
		{http.MethodGet, "", nil, 3},
		{http.MethodHead, "", nil, 3},
		{http.MethodOptions, "", nil, 3},
		{http.MethodTrace, "", nil, 3},
		{http.MethodPut, "", nil, 3},
		{http.MethodDelete, "", nil, 3},
		{http.MethodPost, "", nil, 1},
		{http.MethodPatch, "", nil, 1},
		{http.MethodPost, "Idempotency-Key", nil, 3},
		{http.MethodPatch, "X-Idempotency-Key", nil, 3},
		{http.MethodPost, "", postIsFine, 3},
		{http.MethodGet, "", func(*http.Request) bool { return false }, 1},
	}
	for _, tt := range tests {
		name := tt.method
		if tt.header != "" {
			name += " with " + tt.header
		}
		if tt.idempotent != nil {
			name += " custom"
		}
		t.Run(name, func(t *testing.T) {
			srv, count := server(t, statuses(503))
			tr := newTransport(t, srv.Client().Transport, httpx.TransportConfig{Idempotent: tt.idempotent})
			req, _ := http.NewRequestWithContext(t.Context(), tt.method, srv.URL, nil)
			if tt.header != "" {
				req.Header.Set(tt.header, "k-1")
			}
			code, _, err := send(tr, req)
			if err != nil {
				t.Fatal(err)
			}
			if code != 503 || count.Load() != tt.want {
				t.Errorf("got %d after %d attempts, want 503 after %d", code, count.Load(), tt.want)
			}
		})
	}
}

func TestBodyRewoundForEachAttempt(t *testing.T) {
	bodies := []struct {
		name string
		body func() io.Reader
	}{
		{"strings.Reader", func() io.Reader { return strings.NewReader("payload") }},
		{"bytes.Buffer", func() io.Reader { return bytes.NewBufferString("payload") }},
		{"bytes.Reader", func() io.Reader { return bytes.NewReader([]byte("payload")) }},
	}
	for _, b := range bodies {
		t.Run(b.name, func(t *testing.T) {
			var mu sync.Mutex
			var got []string
			srv, _ := server(t, func(n int, w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				mu.Lock()
				got = append(got, string(body))
				mu.Unlock()
				statuses(503, 503, 200)(n, w, r)
			})
			tr := newTransport(t, srv.Client().Transport, httpx.TransportConfig{})
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL, b.body())
			req.Header.Set("Idempotency-Key", "order-7")
			code, _, err := send(tr, req)
			if err != nil || code != 200 {
				t.Fatalf("got %d, %v; want 200", code, err)
			}
			mu.Lock()
			defer mu.Unlock()
			if diff := cmp.Diff([]string{"payload", "payload", "payload"}, got); diff != "" {
				t.Errorf("bodies the server saw (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBodyNotRewindableIsSentOnce(t *testing.T) {
	srv, count := server(t, func(n int, w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		statuses(503, 200)(n, w, r)
	})
	tr := newTransport(t, srv.Client().Transport, httpx.TransportConfig{})
	body := &closeCounter{Reader: strings.NewReader("once")}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPut, srv.URL, body)
	if req.GetBody != nil {
		t.Fatal("test needs a request without GetBody")
	}
	code, _, err := send(tr, req)
	if err != nil {
		t.Fatal(err)
	}
	// The first outcome comes back: a PUT is idempotent, but this body
	// cannot be sent again.
	if code != 503 || count.Load() != 1 {
		t.Errorf("got %d after %d attempts, want 503 after 1", code, count.Load())
	}
	if n := body.closed.Load(); n < 1 {
		t.Errorf("request body closed %d times, want at least once", n)
	}
}

// A middleware that sends an attempt twice (a hedge, say) cannot resend a
// request that may be sent only once.
func TestNotReplayable(t *testing.T) {
	srv, count := server(t, statuses(200))
	twice := func(next middleware.Stage[*http.Request, *http.Response]) middleware.Stage[*http.Request, *http.Response] {
		return func(ctx context.Context, r *http.Request) (*http.Response, error) {
			resp, err := next(ctx, r)
			if err != nil {
				return nil, err
			}
			resp.Body.Close()
			return next(ctx, r)
		}
	}
	tr := newTransport(t, srv.Client().Transport, httpx.TransportConfig{Attempt: []httpx.Middleware{twice}})

	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL, strings.NewReader("x"))
	_, _, err := send(tr, req)
	if diff := cmp.Diff(httpx.ErrNotReplayable, err, cmpopts.EquateErrors()); diff != "" {
		t.Errorf("POST sent twice (-want +got):\n%s", diff)
	}
	req, _ = http.NewRequestWithContext(t.Context(), http.MethodPut, srv.URL, io.NopCloser(strings.NewReader("x")))
	_, _, err = send(tr, req)
	if diff := cmp.Diff(httpx.ErrNotReplayable, err, cmpopts.EquateErrors()); diff != "" {
		t.Errorf("unrewindable PUT sent twice (-want +got):\n%s", diff)
	}
	// A PUT whose body rewinds may be sent twice.
	req, _ = http.NewRequestWithContext(t.Context(), http.MethodPut, srv.URL, strings.NewReader("x"))
	if code, _, err := send(tr, req); err != nil || code != 200 {
		t.Errorf("rewindable PUT: got %d, %v; want 200", code, err)
	}
	if got := count.Load(); got != 4 {
		t.Errorf("server saw %d requests, want 4", got)
	}
}

func TestDiscardedBodiesDrainedAndClosed(t *testing.T) {
	long := strings.Repeat("x", 1000)
	var newConns atomic.Int32
	countConns := func(s *http.Server) {
		s.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				newConns.Add(1)
			}
		}
	}
	srv, _ := serverWith(t, countConns, func(n int, w http.ResponseWriter, r *http.Request) {
		if n < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		io.WriteString(w, long)
	})
	base := &countingBase{base: srv.Client().Transport}
	tr := newTransport(t, base, httpx.TransportConfig{})
	resp, err := tr.RoundTrip(mustGet(t, srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	// The two 503s were drained and closed before the retry; the response
	// returned is untouched until the caller reads it.
	want := []bodyState{{Read: 1000, Closed: 1}, {Read: 1000, Closed: 1}, {Read: 0, Closed: 0}}
	if diff := cmp.Diff(want, base.states()); diff != "" {
		t.Errorf("bodies before the caller reads (-want +got):\n%s", diff)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(b) != long {
		t.Fatalf("body: %d bytes, %v", len(b), err)
	}
	// Drained bodies let the connection be reused: one connection for all.
	if got := newConns.Load(); got != 1 {
		t.Errorf("server saw %d connections, want 1", got)
	}
}

func mustGet(t *testing.T, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// Retry-After is the floor of the next delay, in both forms. The
// Retrier's Observer sees the delay in its Retry event and cancels the
// call, so the test does not wait for it.
func TestRetryAfterHonoured(t *testing.T) {
	date := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name       string
		retryAfter string
		date       string
		want       time.Duration
	}{
		{"delta-seconds", "7", "", 7 * time.Second},
		{"HTTP-date relative to the Date header", date.Add(9 * time.Second).Format(http.TimeFormat), date.Format(http.TimeFormat), 9 * time.Second},
		{"HTTP-date in the past", date.Add(-time.Hour).Format(http.TimeFormat), date.Format(http.TimeFormat), 0},
		{"malformed is ignored", "soon", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, count := server(t, func(n int, w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", tt.retryAfter)
				if tt.date != "" {
					w.Header().Set("Date", tt.date)
				}
				w.WriteHeader(http.StatusServiceUnavailable)
			})
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var delays []time.Duration
			obs := middleware.ObserverFunc(func(_ context.Context, e middleware.Event) {
				if e.Kind == middleware.Retry {
					delays = append(delays, e.Delay)
					cancel()
				}
			})
			tr := newTransport(t, srv.Client().Transport, httpx.TransportConfig{Retry: newRetrier(t, retry.Config{
				// The schedule's own delay is 1ms; the hint raises it.
				DelayFunc: func(int, error) time.Duration { return time.Millisecond },
				Observer:  obs,
			})})
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
			_, err := tr.RoundTrip(req)
			// The caller's context ended during the delay: an error, with
			// the status that caused the retry in its chain.
			if !errors.Is(err, context.Canceled) {
				t.Errorf("err = %v, want context.Canceled", err)
			}
			var se *httpx.StatusError
			if !errors.As(err, &se) || se.StatusCode != 503 || se.Delay != tt.want {
				t.Errorf("err = %v, want a *StatusError with 503 and Delay %v", err, tt.want)
			}
			if diff := cmp.Diff([]time.Duration{max(tt.want, time.Millisecond)}, delays); diff != "" {
				t.Errorf("delays (-want +got):\n%s", diff)
			}
			if count.Load() != 1 {
				t.Errorf("%d attempts, want 1", count.Load())
			}
		})
	}
}

// hintBase answers the first request with a 429 asking for retryAfter, and
// every later one with 200 "ok". It runs no network, so that it works in a
// synctest bubble.
func hintBase(retryAfter string, calls *atomic.Int32) roundTripFunc {
	return func(r *http.Request) (*http.Response, error) {
		if calls.Add(1) == 1 {
			return &http.Response{StatusCode: http.StatusTooManyRequests, Request: r,
				Header: http.Header{"Retry-After": {retryAfter}},
				Body:   io.NopCloser(strings.NewReader("slow down"))}, nil
		}
		return &http.Response{StatusCode: http.StatusOK, Request: r, Header: http.Header{},
			Body: io.NopCloser(strings.NewReader("ok"))}, nil
	}
}

// A Retry-After longer than the Retrier's MaxDelay is waited for, not cut
// short (the retry would only be refused again) and not refused (issue 14
// item 8: the Transport used to return the response at once).
func TestRetryAfterLongerThanMaxDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int32
		rec := &recorder{}
		tr := newTransport(t, hintBase("30", &calls), httpx.TransportConfig{Retry: newRetrier(t, retry.Config{
			MaxDelay: 5 * time.Second, Observer: rec,
		})})
		start := time.Now()
		code, body, err := send(tr, mustGet(t, "http://example.invalid/"))
		if err != nil || code != 200 || body != "ok" {
			t.Fatalf("got %d %q, %v; want 200 ok", code, body, err)
		}
		if took := time.Since(start); took != 30*time.Second || calls.Load() != 2 {
			t.Errorf("took %v over %d attempts; want 30s over 2", took, calls.Load())
		}
		if evs := rec.all(); len(evs) != 1 || evs[0].Kind != middleware.Retry || evs[0].Delay != 30*time.Second {
			t.Errorf("events %+v, want one Retry with Delay 30s", evs)
		}
	})
}

// A Retry-After that does not fit in what is left — the caller's deadline,
// the Retrier's MaxElapsed — ends the loop at once with that response
// (retry.ReasonHint): the Transport neither retries early nor sleeps into
// the deadline. A huge value saturates and does the same.
func TestRetryAfterBeyondLimits(t *testing.T) {
	tests := []struct {
		name       string
		retryAfter string
		cfg        retry.Config
		deadline   time.Duration
	}{
		{"past the caller's deadline", "30", retry.Config{}, 10 * time.Second},
		{"past MaxElapsed", "30", retry.Config{MaxElapsed: 5 * time.Second}, 0},
		{"huge, past the deadline", "99999999999999999999", retry.Config{}, time.Hour},
		{"huge, past MaxElapsed", "99999999999999999999", retry.Config{MaxElapsed: time.Hour}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var calls atomic.Int32
				rec := &recorder{}
				tt.cfg.Observer = rec
				tr := newTransport(t, hintBase(tt.retryAfter, &calls), httpx.TransportConfig{Retry: newRetrier(t, tt.cfg)})
				ctx := t.Context()
				if tt.deadline > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tt.deadline)
					defer cancel()
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://example.invalid/", nil)
				start := time.Now()
				code, body, err := send(tr, req)
				if err != nil || code != 429 || body != "slow down" || calls.Load() != 1 {
					t.Errorf("got %d %q, %v after %d attempts; want 429 \"slow down\" after 1", code, body, err, calls.Load())
				}
				if took := time.Since(start); took != 0 {
					t.Errorf("took %v, want no wait", took)
				}
				if diff := cmp.Diff([]string{"retry gave-up hint"}, rec.kinds()); diff != "" {
					t.Errorf("events (-want +got):\n%s", diff)
				}
			})
		})
	}
}

// The caller gets a readable body even when a middleware cancels the
// attempt's context as soon as the attempt returns (failsafe-go #123). The
// server sends the headers, then waits until the caller has the response
// before sending the rest of the body. The 503's head is longer than the
// 4 KiB the Transport drains from a retryable response, so its tail is
// still on the wire when the attempt ends.
func TestBodyReadableAfterAttemptContextEnds(t *testing.T) {
	to := timeout.Middleware[*http.Request, *http.Response](newTimeout(t, time.Minute))
	h, err := hedge.New(hedge.Config{Percentile: hedge.Fixed, Delay: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		mw   httpx.Middleware
	}{
		{"timeout", to},
		{"hedge", hedge.Middleware[*http.Request, *http.Response](h)},
		{"cancel on return", func(next middleware.Stage[*http.Request, *http.Response]) middleware.Stage[*http.Request, *http.Response] {
			return cancelOnReturn(next)
		}},
	}
	for _, tt := range tests {
		for _, code := range []int{200, 503} { // 503: the last response of a failed retry loop
			t.Run(tt.name+"/"+http.StatusText(code), func(t *testing.T) {
				head := "head-"
				if code == 503 {
					head = strings.Repeat("h", 5000) + "-"
				}
				release := make(chan struct{})
				srv, _ := server(t, slowBody(code, head, release))
				tr := newTransport(t, srv.Client().Transport, httpx.TransportConfig{
					Retry:   newRetrier(t, retry.Config{MaxAttempts: 1}),
					Attempt: []httpx.Middleware{tt.mw},
				})
				resp, err := tr.RoundTrip(mustGet(t, srv.URL))
				close(release)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				if err != nil || string(b) != head+"tail" {
					t.Errorf("status %d, body %d bytes ending %q, %v; want %d bytes ending \"-tail\", nil",
						resp.StatusCode, len(b), b[max(len(b)-5, 0):], err, len(head)+4)
				}
			})
		}
	}

	// The control: the same middleware around a plain transport call
	// breaks the body, which is the bug this package prevents. The tail is
	// never sent, so only the cancellation can end the read.
	t.Run("control: plain stage", func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		srv, _ := server(t, slowBody(200, "head-", release))
		plain := middleware.Apply(func(ctx context.Context, r *http.Request) (*http.Response, error) {
			return srv.Client().Transport.RoundTrip(r.WithContext(ctx))
		}, to)
		resp, err := plain(t.Context(), mustGet(t, srv.URL))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if _, err := io.ReadAll(resp.Body); !errors.Is(err, context.Canceled) {
			t.Errorf("plain stage: body read error %v, want context.Canceled", err)
		}
	})
}

// slowBody writes the headers and head, flushes, and writes "tail" only
// once release is closed (or the client has gone).
func slowBody(code int, head string, release <-chan struct{}) func(int, http.ResponseWriter, *http.Request) {
	return func(_ int, w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(code)
		io.WriteString(w, head)
		http.NewResponseController(w).Flush()
		select {
		case <-release:
			io.WriteString(w, "tail")
		case <-r.Context().Done():
		}
	}
}

// Detaching the body from the attempt's context does not detach it from
// the caller's: cancelling the caller still aborts the read.
func TestCallerCancelAbortsBody(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	srv, _ := server(t, slowBody(200, "head-", release))
	to := timeout.Middleware[*http.Request, *http.Response](newTimeout(t, time.Minute))
	tr := newTransport(t, srv.Client().Transport, httpx.TransportConfig{Attempt: []httpx.Middleware{to}})
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	head := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, head); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, context.Canceled) {
		t.Errorf("read after the caller cancelled: %v, want context.Canceled", err)
	}
}

// A per-attempt timeout still cuts off an attempt whose headers do not
// come, and the attempt is retried.
func TestAttemptTimeoutRetried(t *testing.T) {
	srv, count := server(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			<-r.Context().Done() // hang until the client gives up
			return
		}
		io.WriteString(w, "ok")
	})
	to := newTimeout(t, 50*time.Millisecond)
	tr := newTransport(t, srv.Client().Transport, httpx.TransportConfig{
		Attempt: []httpx.Middleware{timeout.Middleware[*http.Request, *http.Response](to)},
	})
	code, body, err := get(t, tr, srv.URL)
	if err != nil || code != 200 || body != "ok" {
		t.Fatalf("got %d %q, %v; want 200 ok", code, body, err)
	}
	if count.Load() != 2 || to.Stats().TimedOut != 1 {
		t.Errorf("%d attempts, %d timed out; want 2, 1", count.Load(), to.Stats().TimedOut)
	}
}

type reqSnapshot struct {
	Method, URL   string
	Header        http.Header
	Body          io.ReadCloser
	GetBody       bool
	ContentLength int64
	Ctx           context.Context
}

func snapshot(r *http.Request) reqSnapshot {
	return reqSnapshot{r.Method, r.URL.String(), r.Header.Clone(), r.Body, r.GetBody != nil, r.ContentLength, r.Context()}
}

func TestRequestNotModified(t *testing.T) {
	srv, _ := server(t, func(n int, w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		statuses(503, 503, 200)(n, w, r)
	})
	to := timeout.Middleware[*http.Request, *http.Response](newTimeout(t, time.Minute))
	tr := newTransport(t, srv.Client().Transport, httpx.TransportConfig{Attempt: []httpx.Middleware{to}})
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPut, srv.URL+"/a?b=c", strings.NewReader("body"))
	req.Header.Set("X-Test", "1")
	before := snapshot(req)
	if code, _, err := send(tr, req); err != nil || code != 200 {
		t.Fatalf("got %d, %v", code, err)
	}
	cmpCtx := cmp.Comparer(func(a, b context.Context) bool { return a == b })
	cmpBody := cmp.Comparer(func(a, b io.ReadCloser) bool { return a == b })
	if diff := cmp.Diff(before, snapshot(req), cmpCtx, cmpBody); diff != "" {
		t.Errorf("request changed (-before +after):\n%s", diff)
	}
}

// RoundTrip closes the request body also when no attempt was sent.
func TestRequestBodyClosedWhenNothingSent(t *testing.T) {
	srv, count := server(t, statuses(200))
	b := newBreaker(t, breaker.Config{})
	if err := b.ForceOpen(t.Context()); err != nil {
		t.Fatal(err)
	}
	tr := newTransport(t, srv.Client().Transport, httpx.TransportConfig{
		Attempt: []httpx.Middleware{breaker.Middleware[*http.Request, *http.Response](b)},
	})
	body := &closeCounter{Reader: strings.NewReader("x")}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL, body)
	_, err := tr.RoundTrip(req)
	if diff := cmp.Diff(breaker.ErrOpen, err, cmpopts.EquateErrors()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if body.closed.Load() != 1 || count.Load() != 0 {
		t.Errorf("body closed %d times, server saw %d; want 1, 0", body.closed.Load(), count.Load())
	}
}

// A breaker inside the retry loop counts each failed attempt: 5xx
// responses (retried or not) and transport errors.
func TestBreakerCountsFailedAttempts(t *testing.T) {
	t.Run("retried 503s", func(t *testing.T) {
		srv, count := server(t, statuses(503))
		b := newBreaker(t, breaker.Config{Threshold: 3})
		tr := newTransport(t, srv.Client().Transport, httpx.TransportConfig{
			Attempt: []httpx.Middleware{breaker.Middleware[*http.Request, *http.Response](b)},
		})
		code, _, err := get(t, tr, srv.URL)
		if err != nil || code != 503 {
			t.Fatalf("first call: %d, %v; want the last 503", code, err)
		}
		_, _, err = get(t, tr, srv.URL)
		if !errors.Is(err, breaker.ErrOpen) {
			t.Errorf("second call: %v, want breaker.ErrOpen", err)
		}
		if count.Load() != 3 {
			t.Errorf("server saw %d requests, want 3", count.Load())
		}
	})
	t.Run("500s not retried", func(t *testing.T) {
		srv, count := server(t, statuses(500))
		b := newBreaker(t, breaker.Config{Threshold: 2})
		tr := newTransport(t, srv.Client().Transport, httpx.TransportConfig{
			Attempt: []httpx.Middleware{breaker.Middleware[*http.Request, *http.Response](b)},
		})
		var got []int
		for range 3 {
			code, _, err := get(t, tr, srv.URL)
			if errors.Is(err, breaker.ErrOpen) {
				code = -1
			} else if err != nil {
				t.Fatal(err)
			}
			got = append(got, code)
		}
		if diff := cmp.Diff([]int{500, 500, -1}, got); diff != "" {
			t.Errorf("statuses, -1 for open (-want +got):\n%s", diff)
		}
		if count.Load() != 2 {
			t.Errorf("server saw %d requests, want 2", count.Load())
		}
	})
}

// A connection dropped without a response is a transport error; an
// idempotent request is retried, a POST is not.
func TestTransportErrorRetried(t *testing.T) {
	srv, count := server(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		io.WriteString(w, "ok")
	})
	tr := newTransport(t, srv.Client().Transport, httpx.TransportConfig{})
	code, body, err := get(t, tr, srv.URL)
	if err != nil || code != 200 || body != "ok" || count.Load() != 2 {
		t.Errorf("got %d %q, %v after %d attempts; want 200 ok after 2", code, body, err, count.Load())
	}
}

// The caller's context ending during the retry delay ends the call at once
// with an error matching context.Canceled; the response being retried is
// released.
func TestCallerCancelDuringDelay(t *testing.T) {
	srv, _ := server(t, statuses(503))
	base := &countingBase{base: srv.Client().Transport}
	ctx, cancel := context.WithCancel(t.Context())
	tr := newTransport(t, base, httpx.TransportConfig{Retry: newRetrier(t, retry.Config{
		BaseDelay: time.Hour, MaxDelay: time.Hour, Jitter: retry.NoJitter,
		Observer: middleware.ObserverFunc(func(_ context.Context, e middleware.Event) {
			if e.Kind == middleware.Retry {
				cancel()
			}
		}),
	})})
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := tr.RoundTrip(req)
	if resp != nil || !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, %v; want nil, context.Canceled", resp, err)
	}
	if diff := cmp.Diff([]bodyState{{Read: int64(len("response 1")), Closed: 1}}, base.states()); diff != "" {
		t.Errorf("bodies (-want +got):\n%s", diff)
	}
}

// Through an http.Client, as most code will use it.
func TestWithClient(t *testing.T) {
	srv, count := server(t, statuses(502, 200))
	tr := newTransport(t, srv.Client().Transport, httpx.TransportConfig{})
	client := &http.Client{Transport: tr}
	defer client.CloseIdleConnections()
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "response 2" || count.Load() != 2 {
		t.Errorf("got %d %q after %d attempts", resp.StatusCode, b, count.Load())
	}
}

// Many goroutines share one Transport; every request fails once and is
// retried. Run with -race.
func TestConcurrent(t *testing.T) {
	const calls = 1000
	var seen sync.Map // request id -> attempts
	srv, count := server(t, func(n int, w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-ID")
		if _, loaded := seen.LoadOrStore(id, true); !loaded {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, id)
	})
	base := srv.Client().Transport.(*http.Transport)
	base.MaxConnsPerHost = 32
	base.MaxIdleConnsPerHost = 32
	to := timeout.Middleware[*http.Request, *http.Response](newTimeout(t, time.Minute))
	tr := newTransport(t, base, httpx.TransportConfig{Attempt: []httpx.Middleware{to}})
	var wg sync.WaitGroup
	var failures atomic.Int32
	for i := range calls {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
			id := "id-" + strconv.Itoa(i)
			req.Header.Set("X-ID", id)
			code, body, err := send(tr, req)
			if err != nil || code != 200 || body != id {
				failures.Add(1)
			}
		})
	}
	wg.Wait()
	if failures.Load() != 0 || count.Load() != 2*calls {
		t.Errorf("%d failures, %d requests; want 0, %d", failures.Load(), count.Load(), 2*calls)
	}
}

// The Transport's Name and Observer go to the Retrier it builds when
// TransportConfig.Retry is nil: the retry events arrive, named.
func TestObserverGetsDefaultRetrierEvents(t *testing.T) {
	srv, _ := server(t, statuses(503, 503))
	rec := &recorder{}
	tr, err := httpx.NewTransport(httpx.TransportConfig{
		Base: srv.Client().Transport, Name: "api", Observer: rec,
	})
	if err != nil {
		t.Fatal(err)
	}
	code, _, err := get(t, tr, srv.URL)
	if err != nil || code != 503 {
		t.Fatalf("got %d, %v; want the last 503", code, err)
	}
	type event struct {
		Kind    middleware.Kind
		Concern string
		Name    string
		Attempt int
		Reason  string
		Err     string
	}
	var got []event
	for _, e := range rec.all() {
		got = append(got, event{e.Kind, e.Concern, e.Name, e.Attempt, e.Reason, e.Err.Error()})
	}
	status := "httpx: response status 503 Service Unavailable"
	want := []event{
		{middleware.Retry, "retry", "api", 1, "", status},
		{middleware.Retry, "retry", "api", 2, "", status},
		{middleware.GaveUp, "retry", "api", 3, "attempts", "retry: giving up after 3 attempts: max attempts reached: last error: " + status},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestNewTransportInvalid(t *testing.T) {
	_, err := httpx.NewTransport(httpx.TransportConfig{DrainTimeout: -time.Second})
	if err == nil || err.Error() != "httpx: DrainTimeout must not be negative, got -1s" {
		t.Errorf("err = %v", err)
	}
}

// A nil middleware in Attempt, most often a constructor's ignored error,
// panics when the Transport is built (it used to be skipped, leaving the
// Transport silently without its breaker or timeout).
func TestNilAttemptPanics(t *testing.T) {
	to := timeout.Middleware[*http.Request, *http.Response](newTimeout(t, time.Minute))
	defer func() {
		want := "httpx: nil middleware in TransportConfig.Attempt (entry 2 of 2; was a constructor's error ignored?)"
		if got := recover(); got != want {
			t.Errorf("recovered %v, want %q", got, want)
		}
	}()
	httpx.NewTransport(httpx.TransportConfig{Attempt: []httpx.Middleware{to, nil}})
	t.Error("NewTransport did not panic")
}

func TestStatusErrorText(t *testing.T) {
	tests := []struct {
		err  *httpx.StatusError
		want string
	}{
		{&httpx.StatusError{StatusCode: 503}, "httpx: response status 503 Service Unavailable"},
		{&httpx.StatusError{StatusCode: 429, Delay: 2 * time.Second}, "httpx: response status 429 Too Many Requests (Retry-After 2s)"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

// A response a middleware drops (replacing it, as a fallback would) is
// released by RoundTrip.
func TestDroppedResponseReleased(t *testing.T) {
	srv, _ := server(t, statuses(200))
	base := &countingBase{base: srv.Client().Transport}
	replace := func(next middleware.Stage[*http.Request, *http.Response]) middleware.Stage[*http.Request, *http.Response] {
		return func(ctx context.Context, r *http.Request) (*http.Response, error) {
			if _, err := next(ctx, r); err != nil {
				return nil, err
			}
			return &http.Response{StatusCode: 299, Body: io.NopCloser(strings.NewReader("fake"))}, nil
		}
	}
	tr := newTransport(t, base, httpx.TransportConfig{Attempt: []httpx.Middleware{replace}})
	code, body, err := get(t, tr, srv.URL)
	if err != nil || code != 299 || body != "fake" {
		t.Fatalf("got %d %q, %v", code, body, err)
	}
	if diff := cmp.Diff([]bodyState{{Read: int64(len("response 1")), Closed: 1}}, base.states()); diff != "" {
		t.Errorf("dropped body (-want +got):\n%s", diff)
	}
}

// lateBase cancels the attempt's context once the request is in, waits
// until that has reached the request, and then returns a response anyway:
// the headers arrived as the attempt ended.
type lateBase struct {
	cancel func()
	body   *closeCounter
}

func (b *lateBase) RoundTrip(r *http.Request) (*http.Response, error) {
	b.cancel()
	<-r.Context().Done()
	return &http.Response{StatusCode: 200, Body: b.body, Request: r}, nil
}

func TestHeadersArriveAsAttemptEnds(t *testing.T) {
	errLate := errors.New("attempt over")
	base := &lateBase{body: &closeCounter{Reader: strings.NewReader("")}}
	cancelAttempt := func(next middleware.Stage[*http.Request, *http.Response]) middleware.Stage[*http.Request, *http.Response] {
		return func(ctx context.Context, r *http.Request) (*http.Response, error) {
			ctx, cancel := context.WithCancelCause(ctx)
			base.cancel = func() { cancel(errLate) }
			return next(ctx, r)
		}
	}
	tr := newTransport(t, base, httpx.TransportConfig{
		Retry:   newRetrier(t, retry.Config{MaxAttempts: 1}),
		Attempt: []httpx.Middleware{cancelAttempt},
	})
	resp, err := tr.RoundTrip(mustGet(t, "http://example.invalid/"))
	if resp != nil || !errors.Is(err, errLate) {
		t.Errorf("got %v, %v; want nil and the attempt context's cause", resp, err)
	}
	if n := base.body.closed.Load(); n != 1 {
		t.Errorf("body closed %d times, want 1", n)
	}
}

// A base transport that breaks the RoundTripper contract gets an error or
// a usable response, never a panic.
func TestBaseBreakingContract(t *testing.T) {
	tests := []struct {
		name    string
		base    roundTripFunc
		wantErr bool
	}{
		{"nil response, nil error", func(*http.Request) (*http.Response, error) { return nil, nil }, true},
		{"nil body", func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: 503, Request: r}, nil
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			to := timeout.Middleware[*http.Request, *http.Response](newTimeout(t, time.Minute))
			tr := newTransport(t, tt.base, httpx.TransportConfig{Attempt: []httpx.Middleware{to}})
			resp, err := tr.RoundTrip(mustGet(t, "http://example.invalid/"))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tt.wantErr)
			}
			if resp != nil {
				if _, err := io.ReadAll(resp.Body); err != nil {
					t.Error(err)
				}
				resp.Body.Close()
			}
		})
	}
}

// A hedge in Attempt really sends a second copy of a slow GET; the winner's
// body stays readable and the loser is cancelled. A POST is never hedged:
// the copy fails with ErrNotReplayable and the first attempt's answer
// stands.
func TestHedgeInsideTransport(t *testing.T) {
	h, err := hedge.New(hedge.Config{Percentile: hedge.Fixed, Delay: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		t.Run(method, func(t *testing.T) {
			firstGone := make(chan struct{})
			release := make(chan struct{})
			srv, count := server(t, func(n int, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					if method == http.MethodPost {
						<-release // answer only once the hedge has been refused
						io.WriteString(w, "first")
						return
					}
					<-r.Context().Done() // the slow copy, until the hedge wins
					close(firstGone)
					return
				}
				io.WriteString(w, "hedged")
			})
			var refused atomic.Int32
			hook := func(next middleware.Stage[*http.Request, *http.Response]) middleware.Stage[*http.Request, *http.Response] {
				return func(ctx context.Context, r *http.Request) (*http.Response, error) {
					resp, err := next(ctx, r)
					if errors.Is(err, httpx.ErrNotReplayable) {
						refused.Add(1)
						close(release)
					}
					return resp, err
				}
			}
			tr := newTransport(t, srv.Client().Transport, httpx.TransportConfig{
				Attempt: []httpx.Middleware{hedge.Middleware[*http.Request, *http.Response](h), hook},
			})
			req, _ := http.NewRequestWithContext(t.Context(), method, srv.URL, nil)
			code, body, err := send(tr, req)
			if err != nil {
				t.Fatal(err)
			}
			want := reply{Status: 200, Body: "hedged"}
			if method == http.MethodPost {
				want.Body = "first"
			}
			if diff := cmp.Diff(want, reply{Status: code, Body: body}); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if method == http.MethodGet {
				<-firstGone // the losing attempt was cancelled
				if count.Load() != 2 {
					t.Errorf("server saw %d requests, want 2", count.Load())
				}
			} else if count.Load() != 1 || refused.Load() != 1 {
				t.Errorf("server saw %d requests, %d copies refused; want 1, 1", count.Load(), refused.Load())
			}
		})
	}
}

// Issue 14 item 7: a timeout middleware in Attempt bounds the request. The
// old advice, middleware.WrapFunc(client.Do, ...), ran the stage on a
// context the request never saw: a 100 ms timeout let a 1 s call finish.
func TestAttemptTimeoutBoundsRequest(t *testing.T) {
	srv, _ := server(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(time.Second): // the slow server
			io.WriteString(w, "late")
		case <-r.Context().Done():
		}
	})
	tr := newTransport(t, srv.Client().Transport, httpx.TransportConfig{
		Retry:   newRetrier(t, retry.Config{MaxAttempts: 1}),
		Attempt: []httpx.Middleware{timeout.Middleware[*http.Request, *http.Response](newTimeout(t, 100*time.Millisecond))},
	})
	start := time.Now()
	resp, err := tr.RoundTrip(mustGet(t, srv.URL))
	took := time.Since(start)
	if resp != nil || !errors.Is(err, timeout.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, %v; want the timeout's error", resp, err)
	}
	// About 100 ms; anything near the server's 1 s means the timeout did
	// not reach the request.
	if took < 100*time.Millisecond || took > 700*time.Millisecond {
		t.Errorf("took %v, want about 100ms", took)
	}
}

// Issue 14 item 7: a retried POST sends its body again, whole, from
// GetBody, with its Content-Length; the old advice re-sent a consumed body
// ("ContentLength=11 with Body length 0").
func TestRetriedPOSTResendsBody(t *testing.T) {
	const payload = `{"sku":"a1"}`
	type seen struct {
		Body          string
		ContentLength int64
	}
	var mu sync.Mutex
	var got []seen
	srv, _ := server(t, func(n int, w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, seen{string(b), r.ContentLength})
		mu.Unlock()
		statuses(503, 502, 201)(n, w, r)
	})
	tr := newTransport(t, srv.Client().Transport, httpx.TransportConfig{})
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL, strings.NewReader(payload))
	req.Header.Set("Idempotency-Key", "order-42")
	code, _, err := send(tr, req)
	if err != nil || code != 201 {
		t.Fatalf("got %d, %v; want 201", code, err)
	}
	mu.Lock()
	defer mu.Unlock()
	one := seen{payload, int64(len(payload))}
	if diff := cmp.Diff([]seen{one, one, one}, got); diff != "" {
		t.Errorf("what the server received (-want +got):\n%s", diff)
	}
}

// A request whose context has ended before RoundTrip sends nothing, takes
// nothing from the middlewares, closes its body and returns ctx.Err().
func TestEndedContextSendsNothing(t *testing.T) {
	srv, count := server(t, statuses(200))
	b := newBreaker(t, breaker.Config{})
	tr := newTransport(t, srv.Client().Transport, httpx.TransportConfig{
		Attempt: []httpx.Middleware{breaker.Middleware[*http.Request, *http.Response](b)},
	})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		body := &closeCounter{Reader: strings.NewReader("x")}
		req, _ := http.NewRequestWithContext(ctx, method, srv.URL, body)
		resp, err := tr.RoundTrip(req)
		if resp != nil || err != context.Canceled {
			t.Errorf("%s: got %v, %v; want nil, context.Canceled", method, resp, err)
		}
		if body.closed.Load() != 1 {
			t.Errorf("%s: body closed %d times, want 1", method, body.closed.Load())
		}
	}
	if count.Load() != 0 || b.Stats() != newBreaker(t, breaker.Config{}).Stats() {
		t.Errorf("server saw %d requests, breaker %+v; want 0 and untouched", count.Load(), b.Stats())
	}
}

func newTimeout(t testing.TB, d time.Duration) *timeout.Timeout {
	t.Helper()
	to, err := timeout.New(timeout.Config{Duration: d})
	if err != nil {
		t.Fatal(err)
	}
	return to
}

func newBreaker(t testing.TB, cfg breaker.Config) *breaker.Breaker {
	t.Helper()
	b, err := breaker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A retry the Retrier's budget refuses ends the loop with the response in
// hand: the caller gets the 503, not an error.
func TestBudgetRefusalReturnsResponse(t *testing.T) {
	srv, count := server(t, statuses(503, 200))
	bud, err := budget.New(budget.Config{Ratio: budget.None, MinPerSecond: budget.None})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	tr := newTransport(t, srv.Client().Transport, httpx.TransportConfig{Retry: newRetrier(t, retry.Config{Budget: bud, Observer: rec})})
	code, body, err := get(t, tr, srv.URL)
	if err != nil || code != 503 || body != "response 1" || count.Load() != 1 {
		t.Errorf("got %d %q, %v after %d attempts; want 503 \"response 1\" after 1", code, body, err, count.Load())
	}
	if diff := cmp.Diff([]string{"retry gave-up budget"}, rec.kinds()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}
