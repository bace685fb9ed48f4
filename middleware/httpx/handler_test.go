package httpx_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/httpx"
	"github.com/brace-go/brace/middleware/ratelimit"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/time/rate"
)

// protect returns h guarded by a Protector built from cfg.
func protect(t testing.TB, cfg httpx.ProtectorConfig, h http.Handler) http.Handler {
	t.Helper()
	p, err := httpx.NewProtector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p.Handler(h)
}

// protected starts a test server whose handler h is guarded by a Protector
// built from cfg.
func protected(t *testing.T, cfg httpx.ProtectorConfig, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(protect(t, cfg, h))
	t.Cleanup(srv.Close)
	return srv
}

func newBackpressure(t testing.TB, capacity int64) *backpressure.Limiter {
	t.Helper()
	bp, err := backpressure.New(backpressure.Config{Capacity: capacity})
	if err != nil {
		t.Fatal(err)
	}
	return bp
}

func newRateLimit(t testing.TB, cfg ratelimit.Config) *ratelimit.Limiter {
	t.Helper()
	rl, err := ratelimit.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return rl
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
	bp := newBackpressure(t, 1)
	entered, release := make(chan struct{}), make(chan struct{})
	srv := protected(t, httpx.ProtectorConfig{Backpressure: bp, RetryAfter: 1500 * time.Millisecond},
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
	rl := newRateLimit(t, ratelimit.Config{Rate: rate.Every(3 * time.Second), Burst: 1})
	srv := protected(t, httpx.ProtectorConfig{RateLimit: rl}, ok)
	got := []reply{do(t, srv), do(t, srv)}
	// The second request is refused; the bucket refills in just under 3s.
	want := []reply{{200, "", "ok"}, {429, "3", "Too Many Requests\n"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestClientRateLimit(t *testing.T) {
	k := newRateLimit(t, ratelimit.Config{Rate: rate.Every(time.Minute), Burst: 1})
	srv := protected(t, httpx.ProtectorConfig{
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

// Without ClientKey, the client is the host of the remote address: two
// connections from one host share a bucket, whatever headers they send;
// another host has its own. A per-client limit does not touch the
// Limiter's shared bucket, so the same Limiter can be RateLimit too.
func TestClientRateLimitDefaultKey(t *testing.T) {
	k := newRateLimit(t, ratelimit.Config{Rate: rate.Every(time.Minute), Burst: 1})
	h := protect(t, httpx.ProtectorConfig{ClientRateLimit: k, RateLimit: k}, http.HandlerFunc(ok))
	serve := func(remote string, header ...string) int {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = remote
		for i := 0; i+1 < len(header); i += 2 {
			r.Header.Set(header[i], header[i+1])
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec.Code
	}
	got := []int{
		serve("192.0.2.1:1000"),
		serve("192.0.2.1:2000", "X-Forwarded-For", "10.0.0.1"), // same host: refused
		serve("192.0.2.2:1000"),                                // another host, but the shared bucket is spent
	}
	if diff := cmp.Diff([]int{200, 429, 429}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	h = protect(t, httpx.ProtectorConfig{ClientRateLimit: newRateLimit(t, ratelimit.Config{Rate: rate.Every(time.Minute), Burst: 1})}, http.HandlerFunc(ok))
	got = []int{serve("192.0.2.1:1000"), serve("192.0.2.1:2000"), serve("192.0.2.2:1000"), serve("[2001:db8::1]:1"), serve("[2001:db8::1]:2")}
	if diff := cmp.Diff([]int{200, 429, 200, 200, 429}, got); diff != "" {
		t.Errorf("per client only (-want +got):\n%s", diff)
	}
}

func TestBreakerOpensOn5xx(t *testing.T) {
	b := newBreaker(t, breaker.Config{Threshold: 2, OpenTimeout: 30 * time.Second})
	var served atomic.Int32
	srv := protected(t, httpx.ProtectorConfig{Breaker: b}, func(w http.ResponseWriter, r *http.Request) {
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
		b := newBreaker(t, breaker.Config{Threshold: 1, OpenTimeout: 10 * time.Second})
		status := http.StatusBadGateway
		h := protect(t, httpx.ProtectorConfig{Breaker: b}, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(status) }))
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
	b := newBreaker(t, breaker.Config{Threshold: 1})
	srv := protected(t, httpx.ProtectorConfig{
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
	b := newBreaker(t, breaker.Config{})
	for _, how := range []string{"Flusher", "ResponseController"} {
		t.Run(how, func(t *testing.T) {
			release := make(chan struct{})
			srv := protected(t, httpx.ProtectorConfig{Breaker: b}, func(w http.ResponseWriter, r *http.Request) {
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
	b := newBreaker(t, breaker.Config{Threshold: 1})
	srv := protected(t, httpx.ProtectorConfig{Breaker: b}, func(w http.ResponseWriter, r *http.Request) {
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

// WriteRejection writes the refusal, with Retry-After already set; the
// limiter's own Observer sees the rejection, with the request's context.
func TestWriteRejectionAndObserver(t *testing.T) {
	type ctxKey struct{}
	rec := &recorder{}
	var paths []any
	obs := middleware.Observers(rec, middleware.ObserverFunc(func(ctx context.Context, _ middleware.Event) {
		paths = append(paths, ctx.Value(ctxKey{}))
	}))
	rl := newRateLimit(t, ratelimit.Config{Name: "api", Rate: rate.Every(time.Minute), Burst: 1, Observer: obs})
	h := protect(t, httpx.ProtectorConfig{
		RateLimit: rl,
		WriteRejection: func(w http.ResponseWriter, r *http.Request, status int, err error) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			io.WriteString(w, `{"error":"`+err.Error()+`"}`)
		},
	}, http.HandlerFunc(ok))
	// A handler outside puts the path in the context, as a request-ID or
	// tracing middleware would.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, r.URL.Path)))
	}))
	t.Cleanup(srv.Close)
	do(t, srv)
	got := do(t, srv)
	if got.Status != 429 || got.RetryAfter != "60" || !strings.HasPrefix(got.Body, `{"error":"ratelimit: `) {
		t.Errorf("got %+v", got)
	}
	if diff := cmp.Diff([]string{"ratelimit rejected rate"}, rec.kinds()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]any{"/"}, paths); diff != "" {
		t.Errorf("the events' contexts carried (-want +got):\n%s", diff)
	}
}

// A refusal's Retry-After is its own RetryAfter, whichever concern refused,
// or ProtectorConfig.RetryAfter when it has none: a forced-open breaker
// gives no time.
func TestRetryAfterOfRefusal(t *testing.T) {
	b := newBreaker(t, breaker.Config{Name: "api"})
	if err := b.ForceOpen(t.Context()); err != nil {
		t.Fatal(err)
	}
	h := protect(t, httpx.ProtectorConfig{Breaker: b, RetryAfter: 2500 * time.Millisecond}, http.HandlerFunc(ok))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if got := (reply{rec.Code, rec.Header().Get("Retry-After"), rec.Body.String()}); got != (reply{503, "3", "Service Unavailable\n"}) {
		t.Errorf("got %+v", got)
	}
}

// Rate-limited requests never reach the breaker as failures.
func TestRateLimitDoesNotTripBreaker(t *testing.T) {
	b := newBreaker(t, breaker.Config{Threshold: 1})
	rl := newRateLimit(t, ratelimit.Config{Rate: rate.Every(time.Hour), Burst: 1})
	srv := protected(t, httpx.ProtectorConfig{Breaker: b, RateLimit: rl}, ok)
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
	rl := newRateLimit(t, ratelimit.Config{Rate: 1, Burst: 1, MaxWait: time.Minute})
	var served atomic.Int32
	h := protect(t, httpx.ProtectorConfig{RateLimit: rl}, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { served.Add(1) }))
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
	b := newBreaker(t, breaker.Config{Threshold: 1})
	bp := newBackpressure(t, 1)
	h := protect(t, httpx.ProtectorConfig{Breaker: b, Backpressure: bp},
		http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) }))
	func() {
		defer func() {
			if v := recover(); v != http.ErrAbortHandler {
				t.Errorf("recovered %v, want http.ErrAbortHandler", v)
			}
		}()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
	}()
	if b.State() != breaker.Open || bp.Stats().InFlight != 0 {
		t.Errorf("breaker %v, depth %d; want open, 0", b.State(), bp.Stats().InFlight)
	}
}

func TestProtectInvalid(t *testing.T) {
	tests := []struct {
		cfg  httpx.ProtectorConfig
		want string
	}{
		{httpx.ProtectorConfig{RetryAfter: -time.Second}, "httpx: RetryAfter must not be negative, got -1s"},
		{httpx.ProtectorConfig{ClientKey: func(*http.Request) string { return "" }}, "httpx: ClientKey is set but ClientRateLimit is nil"},
	}
	for _, tt := range tests {
		_, err := httpx.NewProtector(tt.cfg)
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
	h := &okHandler{}
	if got := protect(t, httpx.ProtectorConfig{}, h); got != http.Handler(h) {
		t.Errorf("Handler(h) with the zero config = %v, want h itself", got)
	}
}

// A nil handler or a nil *Protector is a programmer error: Handler panics
// (a nil handler used to be served as a 500 on every request).
func TestProtectorProgrammerErrors(t *testing.T) {
	p, err := httpx.NewProtector(httpx.ProtectorConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var nilP *httpx.Protector
	tests := []struct {
		name string
		f    func()
		want string
	}{
		{"nil handler", func() { p.Handler(nil) }, "httpx: nil handler"},
		{"nil *Protector", func() { nilP.Handler(&okHandler{}) }, "httpx: nil *Protector (was NewProtector's error ignored?)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if got := recover(); got != tt.want {
					t.Errorf("recovered %v, want %q", got, tt.want)
				}
			}()
			tt.f()
			t.Error("no panic")
		})
	}
}

// Thousands of concurrent requests: in flight never exceeds the capacity,
// every request is served or shed with a Retry-After, and every slot comes
// back.
func TestShedConcurrent(t *testing.T) {
	const capacity, requests = 8, 4000
	bp := newBackpressure(t, capacity)
	b := newBreaker(t, breaker.Config{})
	var inFlight, peak atomic.Int64
	h := protect(t, httpx.ProtectorConfig{Backpressure: bp, Breaker: b}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
	if peak.Load() > capacity || served.Load()+shed.Load() != requests || other.Load() != 0 || bp.Stats().InFlight != 0 {
		t.Errorf("peak %d, served %d, shed %d, other %d, depth %d", peak.Load(), served.Load(), shed.Load(), other.Load(), bp.Stats().InFlight)
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
			b := newBreaker(t, breaker.Config{Threshold: 1})
			protect(t, httpx.ProtectorConfig{Breaker: b}, tt.h).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
			if got := b.State() == breaker.Open; got != tt.failure {
				t.Errorf("counted as failure: %v, want %v", got, tt.failure)
			}
		})
	}
}
