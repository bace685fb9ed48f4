package httpx_test

import (
	"context"
	"github.com/brace-go/brace/middleware/bracetest"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/httpx"
	"github.com/brace-go/brace/middleware/retry"
	"go.uber.org/goleak"
)

// recorder is bracetest.Recorder, with the views these tests read.
type recorder struct{ bracetest.Recorder }

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// server starts a loopback test server whose handler gets the 1-based
// number of each request. It is closed when the test ends.
func server(t testing.TB, h func(n int, w http.ResponseWriter, r *http.Request)) (*httptest.Server, *atomic.Int64) {
	return serverWith(t, nil, h)
}

// serverWith is server with a hook to configure the http.Server before it
// starts.
func serverWith(t testing.TB, configure func(*http.Server), h func(n int, w http.ResponseWriter, r *http.Request)) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var count atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h(int(count.Add(1)), w, r)
	}))
	if configure != nil {
		configure(srv.Config)
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &count
}

// statuses returns a handler that answers request n with codes[n-1] (the
// last code repeating) and a body naming the request.
func statuses(codes ...int) func(int, http.ResponseWriter, *http.Request) {
	return func(n int, w http.ResponseWriter, r *http.Request) {
		code := codes[min(n, len(codes))-1]
		w.WriteHeader(code)
		io.WriteString(w, "response "+strconv.Itoa(n))
	}
}

// noDelay makes retries immediate.
func noDelay(int, error) time.Duration { return 0 }

// newRetrier builds a Retrier for cfg, with immediate retries unless cfg
// sets a schedule.
func newRetrier(t testing.TB, cfg retry.Config) *retry.Retrier {
	t.Helper()
	if cfg.DelayFunc == nil && cfg.BaseDelay == 0 {
		cfg.DelayFunc = noDelay
	}
	r, err := retry.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// newTransport builds a Transport over base; a nil cfg.Retry means a
// Retrier with retry's defaults but immediate retries.
func newTransport(t testing.TB, base http.RoundTripper, cfg httpx.TransportConfig) *httpx.Transport {
	t.Helper()
	cfg.Base = base
	if cfg.Retry == nil {
		cfg.Retry = newRetrier(t, retry.Config{})
	}
	tr, err := httpx.NewTransport(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// kinds returns the events' kinds, concerns and reasons, in order, as
// "concern kind reason" strings.
func (r *recorder) kinds() []string {
	var out []string
	for _, e := range r.Events() {
		s := e.Concern + " " + e.Kind.String()
		if e.Reason != "" {
			s += " " + e.Reason
		}
		out = append(out, s)
	}
	return out
}

func (r *recorder) all() []middleware.Event { return r.Events() }

// get sends a GET through rt and returns the status and body.
func get(t *testing.T, rt http.RoundTripper, url string) (int, string, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return send(rt, req)
}

func send(rt http.RoundTripper, req *http.Request) (int, string, error) {
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// countingBase wraps a RoundTripper and records, for every response it
// returns, how many body bytes were read and whether the body was closed.
type countingBase struct {
	base   http.RoundTripper
	mu     sync.Mutex
	bodies []*countingBody
}

func (c *countingBase) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	b := &countingBody{rc: resp.Body}
	resp.Body = b
	c.mu.Lock()
	c.bodies = append(c.bodies, b)
	c.mu.Unlock()
	return resp, nil
}

type bodyState struct {
	Read   int64
	Closed int
}

func (c *countingBase) states() []bodyState {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []bodyState
	for _, b := range c.bodies {
		b.mu.Lock()
		out = append(out, bodyState{Read: b.read, Closed: b.closed})
		b.mu.Unlock()
	}
	return out
}

type countingBody struct {
	rc     io.ReadCloser
	mu     sync.Mutex
	read   int64
	closed int
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.mu.Lock()
	b.read += int64(n)
	b.mu.Unlock()
	return n, err
}

func (b *countingBody) Close() error {
	b.mu.Lock()
	b.closed++
	b.mu.Unlock()
	return b.rc.Close()
}

// closeCounter is a request body that counts its Close calls.
type closeCounter struct {
	io.Reader
	closed atomic.Int32
}

func (c *closeCounter) Close() error { c.closed.Add(1); return nil }

// cancelOnReturn is a middleware that runs each attempt on a context it
// cancels when the attempt returns, the way timeout and hedge do.
func cancelOnReturn(next func(context.Context, *http.Request) (*http.Response, error)) func(context.Context, *http.Request) (*http.Response, error) {
	return func(ctx context.Context, r *http.Request) (*http.Response, error) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		return next(ctx, r)
	}
}
