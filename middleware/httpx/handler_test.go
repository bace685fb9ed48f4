package httpx_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/httpx"
	"github.com/brace-go/brace/middleware/ratelimit"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/time/rate"
)

// protected starts a test server whose handler h is wrapped by Protect(cfg).
func protected(t *testing.T, cfg httpx.HandlerConfig, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	protect, err := httpx.Protect(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(protect(h))
	t.Cleanup(srv.Close)
	return srv
}

// reply is what a client saw.
type reply struct {
	Status     int
	RetryAfter string
	Body       string
}

func do(t *testing.T, srv *httptest.Server, header ...string) reply {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header.Get("Retry-After"), string(b)}
}

func ok(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }

func TestShed(t *testing.T) {
	bp, _ := backpressure.New(1, backpressure.Config{})
	entered, release := make(chan struct{}), make(chan struct{})
	srv := protected(t, httpx.HandlerConfig{Backpressure: bp, RetryAfter: 1500 * time.Millisecond},
		func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/hold" {
				entered <- struct{}{}
				<-release
			}
			ok(w, r)
		})
	held := make(chan reply)
	go func() {
		resp, err := srv.Client().Get(srv.URL + "/hold")
		if err != nil {
			held <- reply{}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		held <- reply{Status: resp.StatusCode, Body: string(b)}
	}()
	<-entered // the only slot is taken
	got := []reply{do(t, srv)}
	close(release)
	got = append(got, <-held, do(t, srv))
	want := []reply{
		{503, "2", "Service Unavailable\n"}, // RetryAfter rounded up
		{200, "", "ok"},
		{200, "", "ok"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestRateLimit(t *testing.T) {
	rl, _ := ratelimit.New(ratelimit.Config{Rate: rate.Every(3 * time.Second), Burst: 1})
	srv := protected(t, httpx.HandlerConfig{RateLimit: rl}, ok)
	got := []reply{do(t, srv), do(t, srv)}
	// The second request is refused; the bucket refills in just under 3s.
	want := []reply{{200, "", "ok"}, {429, "3", "Too Many Requests\n"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestClientRateLimit(t *testing.T) {
	k, _ := ratelimit.NewKeyed(ratelimit.KeyedConfig[string]{Rate: rate.Every(time.Minute), Burst: 1})
	srv := protected(t, httpx.HandlerConfig{
		ClientRateLimit: k,
		ClientKey:       func(r *http.Request) string { return r.Header.Get("X-Client") },
	}, ok)
	var got []int
	for _, client := range []string{"a", "b", "a", "b", "c"} {
		got = append(got, do(t, srv, "X-Client", client).Status)
	}
	if diff := cmp.Diff([]int{200, 200, 429, 429, 200}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// Without ClientKey, the client is the host of the remote address: every
// loopback request shares one bucket.
func TestClientRateLimitDefaultKey(t *testing.T) {
	var keys []string
	k, _ := ratelimit.NewKeyed(ratelimit.KeyedConfig[string]{Rate: rate.Every(time.Minute), Burst: 1,
		OnLimited: func(key string, _ time.Duration) { keys = append(keys, key) }})
	srv := protected(t, httpx.HandlerConfig{ClientRateLimit: k}, ok)
	got := []int{do(t, srv).Status, do(t, srv, "X-Forwarded-For", "10.0.0.1").Status}
	if diff := cmp.Diff([]int{200, 429}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"127.0.0.1"}, keys); diff != "" {
		t.Errorf("keys limited (-want +got):\n%s", diff)
	}
}

func TestBreakerOpensOn5xx(t *testing.T) {
	b, _ := breaker.New(breaker.Config{Threshold: 2, OpenTimeout: 30 * time.Second})
	var served atomic.Int32
	srv := protected(t, httpx.HandlerConfig{Breaker: b}, func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		if r.URL.Query().Get("fail") != "" {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		ok(w, r)
	})
	fail := func() reply {
		resp, err := srv.Client().Get(srv.URL + "?fail=1")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return reply{resp.StatusCode, resp.Header.Get("Retry-After"), string(b)}
	}
	got := []reply{do(t, srv), fail(), fail(), do(t, srv)}
	want := []reply{
		{200, "", "ok"},
		{500, "", "boom\n"},
		{500, "", "boom\n"},
		{503, "30", "Service Unavailable\n"}, // open for just under 30s
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if served.Load() != 3 {
		t.Errorf("handler ran %d times, want 3", served.Load())
	}
}

// The breaker's whole cycle, on fake time: open with a Retry-After that
// counts down, half-open after OpenTimeout, closed by a good probe.
func TestBreakerCycle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := breaker.New(breaker.Config{Threshold: 1, OpenTimeout: 10 * time.Second})
		status := http.StatusBadGateway
		protect, err := httpx.Protect(httpx.HandlerConfig{Breaker: b})
		if err != nil {
			t.Fatal(err)
		}
		h := protect(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(status) }))
		serve := func() reply {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/", nil))
			return reply{Status: rec.Code, RetryAfter: rec.Header().Get("Retry-After")}
		}
		got := []reply{serve(), serve()}
		time.Sleep(4 * time.Second)
		got = append(got, serve())
		time.Sleep(6 * time.Second)
		status = http.StatusOK
		got = append(got, serve(), serve())
		want := []reply{{Status: 502}, {503, "10", ""}, {503, "6", ""}, {Status: 200}, {Status: 200}}
		if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b reply) bool {
			return a.Status == b.Status && a.RetryAfter == b.RetryAfter
		})); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
		if s := b.State(); s != breaker.Closed {
			t.Errorf("state %v, want closed", s)
		}
	})
}

func TestFailureConfigurable(t *testing.T) {
	b, _ := breaker.New(breaker.Config{Threshold: 1})
	srv := protected(t, httpx.HandlerConfig{
		Breaker: b,
		Failure: func(status int) bool { return status == http.StatusTooManyRequests },
	}, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/busy" {
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusInternalServerError)
	})
	got := []int{do(t, srv).Status, do(t, srv).Status}
	resp, err := srv.Client().Get(srv.URL + "/busy")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got = append(got, resp.StatusCode, do(t, srv).Status)
	if diff := cmp.Diff([]int{500, 500, 429, 503}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// The status writer keeps streaming working: a handler that asserts
// http.Flusher, or flushes through http.ResponseController, reaches the
// client before it returns.
func TestFlushThroughWrapper(t *testing.T) {
	b, _ := breaker.New(breaker.Config{})
	for _, how := range []string{"Flusher", "ResponseController"} {
		t.Run(how, func(t *testing.T) {
			release := make(chan struct{})
			srv := protected(t, httpx.HandlerConfig{Breaker: b}, func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "first|")
				if how == "Flusher" {
					w.(http.Flusher).Flush()
				} else if err := http.NewResponseController(w).Flush(); err != nil {
					t.Error(err)
				}
				<-release
				io.WriteString(w, "second")
			})
			resp, err := srv.Client().Get(srv.URL)
			if err != nil {
				close(release)
				t.Fatal(err)
			}
			defer resp.Body.Close()
			first := make([]byte, len("first|"))
			_, err = io.ReadFull(resp.Body, first) // would block forever without the flush
			close(release)
			rest, _ := io.ReadAll(resp.Body)
			if err != nil || string(first)+string(rest) != "first|second" {
				t.Errorf("got %q %q, %v", first, rest, err)
			}
		})
	}
}

// A handler may hijack the connection through the wrapper; that counts as
// a success.
func TestHijackThroughWrapper(t *testing.T) {
	b, _ := breaker.New(breaker.Config{Threshold: 1})
	srv := protected(t, httpx.HandlerConfig{Breaker: b}, func(w http.ResponseWriter, r *http.Request) {
		conn, rw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		rw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nhijacked")
		rw.Flush()
	})
	for range 2 { // the second would be 503 had the first counted as a failure
		if got := do(t, srv); got.Status != 200 || got.Body != "hijacked" {
			t.Errorf("got %+v", got)
		}
	}
}

func TestWriteRejectionAndHooks(t *testing.T) {
	rl, _ := ratelimit.New(ratelimit.Config{Rate: rate.Every(time.Minute), Burst: 1})
	type event struct {
		Status int
		Err    bool
	}
	var mu sync.Mutex
	var events []event
	srv := protected(t, httpx.HandlerConfig{
		RateLimit: rl,
		WriteRejection: func(w http.ResponseWriter, r *http.Request, status int, err error) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			io.WriteString(w, `{"error":"`+err.Error()+`"}`)
		},
		OnReject: func(r *http.Request, status int, err error) {
			mu.Lock()
			events = append(events, event{status, errors.Is(err, ratelimit.ErrLimited)})
			mu.Unlock()
		},
	}, ok)
	do(t, srv)
	got := do(t, srv)
	if got.Status != 429 || got.RetryAfter != "60" || !strings.HasPrefix(got.Body, `{"error":"ratelimit: `) {
		t.Errorf("got %+v", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]event{{429, true}}, events); diff != "" {
		t.Errorf("OnReject (-want +got):\n%s", diff)
	}
}

func TestRejectionLogged(t *testing.T) {
	var buf syncBuffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	b, _ := breaker.New(breaker.Config{Name: "api"})
	b.ForceOpen()
	srv := protected(t, httpx.HandlerConfig{Breaker: b, Logger: logger}, ok)
	if got := do(t, srv); got.Status != 503 || got.RetryAfter != "1" { // forced open: no hint, RetryAfter
		t.Errorf("got %+v", got)
	}
	want := `level=INFO msg="httpx: rejected" method=GET path=/ status=503 err="breaker: `
	if got := buf.String(); !strings.HasPrefix(got, want) {
		t.Errorf("log %q, want prefix %q", got, want)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Rate-limited requests never reach the breaker as failures.
func TestRateLimitDoesNotTripBreaker(t *testing.T) {
	b, _ := breaker.New(breaker.Config{Threshold: 1})
	rl, _ := ratelimit.New(ratelimit.Config{Rate: rate.Every(time.Hour), Burst: 1})
	srv := protected(t, httpx.HandlerConfig{Breaker: b, RateLimit: rl}, ok)
	var got []int
	for range 5 {
		got = append(got, do(t, srv).Status)
	}
	if diff := cmp.Diff([]int{200, 429, 429, 429, 429}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if b.State() != breaker.Closed {
		t.Errorf("breaker %v, want closed", b.State())
	}
}

// A client that leaves while a limiter keeps it waiting gets a 503 without
// Retry-After (if it is still there to read it).
func TestClientGone(t *testing.T) {
	rl, _ := ratelimit.New(ratelimit.Config{Rate: 1, Burst: 1, MaxWait: time.Minute})
	protect, _ := httpx.Protect(httpx.HandlerConfig{RateLimit: rl})
	var served atomic.Int32
	h := protect(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { served.Add(1) }))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(ctx, http.MethodGet, "/", nil))
	if rec.Code != 503 || rec.Header().Get("Retry-After") != "" || served.Load() != 0 {
		t.Errorf("got %d, Retry-After %q, served %d", rec.Code, rec.Header().Get("Retry-After"), served.Load())
	}
}

// A panicking handler counts as a failure, releases its slot, and the
// panic goes on to net/http.
func TestHandlerPanic(t *testing.T) {
	b, _ := breaker.New(breaker.Config{Threshold: 1})
	bp, _ := backpressure.New(1, backpressure.Config{})
	protect, _ := httpx.Protect(httpx.HandlerConfig{Breaker: b, Backpressure: bp})
	h := protect(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) }))
	func() {
		defer func() {
			if v := recover(); v != http.ErrAbortHandler {
				t.Errorf("recovered %v, want http.ErrAbortHandler", v)
			}
		}()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
	}()
	if b.State() != breaker.Open || bp.Depth() != 0 {
		t.Errorf("breaker %v, depth %d; want open, 0", b.State(), bp.Depth())
	}
}

func TestProtectInvalid(t *testing.T) {
	tests := []struct {
		cfg  httpx.HandlerConfig
		want string
	}{
		{httpx.HandlerConfig{RetryAfter: -time.Second}, "httpx: RetryAfter must not be negative, got -1s"},
		{httpx.HandlerConfig{ClientKey: func(*http.Request) string { return "" }}, "httpx: ClientKey is set but ClientRateLimit is nil"},
	}
	for _, tt := range tests {
		_, err := httpx.Protect(tt.cfg)
		if err == nil || err.Error() != tt.want {
			t.Errorf("err = %v, want %q", err, tt.want)
		}
	}
}

type okHandler struct{}

func (*okHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) { ok(w, r) }

// The zero config protects nothing and adds nothing: the handler itself
// comes back.
func TestProtectZeroConfig(t *testing.T) {
	protect, err := httpx.Protect(httpx.HandlerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	h := &okHandler{}
	if got := protect(h); got != http.Handler(h) {
		t.Errorf("Protect(zero)(h) = %v, want h itself", got)
	}
	rec := httptest.NewRecorder()
	protect(nil).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != 500 {
		t.Errorf("nil handler: got %d, want 500", rec.Code)
	}
}

// Thousands of concurrent requests: in flight never exceeds the capacity,
// every request is served or shed with a Retry-After, and every slot comes
// back.
func TestShedConcurrent(t *testing.T) {
	const capacity, requests = 8, 4000
	bp, _ := backpressure.New(capacity, backpressure.Config{})
	b, _ := breaker.New(breaker.Config{})
	var inFlight, peak atomic.Int64
	protect, _ := httpx.Protect(httpx.HandlerConfig{Backpressure: bp, Breaker: b})
	h := protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		inFlight.Add(-1)
	}))
	var wg sync.WaitGroup
	var served, shed, other atomic.Int64
	for range requests {
		wg.Go(func() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
			switch {
			case rec.Code == 200:
				served.Add(1)
			case rec.Code == 503 && rec.Header().Get("Retry-After") == "1":
				shed.Add(1)
			default:
				other.Add(1)
			}
		})
	}
	wg.Wait()
	if peak.Load() > capacity || served.Load()+shed.Load() != requests || other.Load() != 0 || bp.Depth() != 0 {
		t.Errorf("peak %d, served %d, shed %d, other %d, depth %d", peak.Load(), served.Load(), shed.Load(), other.Load(), bp.Depth())
	}
	if b.State() != breaker.Closed {
		t.Errorf("breaker %v: sheds must not count as failures", b.State())
	}
}

// The wrapper's Write, WriteHeader and 1xx handling record the right
// status for the breaker.
func TestStatusCapture(t *testing.T) {
	tests := []struct {
		name    string
		h       http.HandlerFunc
		failure bool
	}{
		{"nothing written", func(http.ResponseWriter, *http.Request) {}, false},
		{"body only", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "x") }, false},
		{"500", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) }, true},
		{"103 then 503", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(103); w.WriteHeader(503) }, true},
		{"200 then 500 ignored", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(200); w.WriteHeader(500) }, false},
		{"body then 500 ignored", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "x"); w.WriteHeader(500) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _ := breaker.New(breaker.Config{Threshold: 1})
			protect, _ := httpx.Protect(httpx.HandlerConfig{Breaker: b})
			protect(tt.h).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
			if got := b.State() == breaker.Open; got != tt.failure {
				t.Errorf("counted as failure: %v, want %v", got, tt.failure)
			}
		})
	}
}
