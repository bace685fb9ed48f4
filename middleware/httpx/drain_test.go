package httpx_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/httpx"
	"github.com/brace-go/brace/middleware/retry"
	"github.com/brace-go/brace/middleware/timeout"
	"github.com/google/go-cmp/cmp"
)

// The response being retried is released before the retry delay, inside
// the attempt: when the Retrier announces the retry (its Retry event comes
// just before the delay), the 503's body has been read to its end and
// closed, and the next attempt reuses the connection from the pool. The
// Transport used to do this in retry's OnRetry hook, which is gone.
func TestReleasedBeforeDelay(t *testing.T) {
	var newConns atomic.Int32
	countConns := func(s *http.Server) {
		s.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				newConns.Add(1)
			}
		}
	}
	srv, _ := serverWith(t, countConns, statuses(503, 200))
	base := &countingBase{base: srv.Client().Transport}
	var atRetry []bodyState
	obs := middleware.ObserverFunc(func(_ context.Context, e middleware.Event) {
		if e.Kind == middleware.Retry {
			atRetry = base.states()
		}
	})
	tr := newTransport(t, base, httpx.TransportConfig{Retry: newRetrier(t, retry.Config{Observer: obs})})

	var reused []bool
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { reused = append(reused, info.Reused) }}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), http.MethodGet, srv.URL, nil)
	code, body, err := send(tr, req)
	if err != nil || code != 200 || body != "response 2" {
		t.Fatalf("got %d %q, %v; want 200 \"response 2\"", code, body, err)
	}
	if diff := cmp.Diff([]bodyState{{Read: int64(len("response 1")), Closed: 1}}, atRetry); diff != "" {
		t.Errorf("bodies when the retry was announced (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]bool{false, true}, reused); diff != "" {
		t.Errorf("connection reused per attempt (-want +got):\n%s", diff)
	}
	if n := newConns.Load(); n != 1 {
		t.Errorf("server saw %d connections, want 1", n)
	}
}

// stalled starts a server whose first response is a 503 that sends
// "partial" and then stalls until the test ends (or the client leaves);
// later requests get 200 "ok".
func stalled(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	release := make(chan struct{})
	srv, count := server(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n > 1 {
			io.WriteString(w, "ok")
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "partial")
		http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) }) // runs before the server's Close
	return srv, count
}

// Issue 14 item 6: a retried response whose body never ends used to hang
// the Transport, which drained it bounded only by the caller's context. The
// drain is now bounded in time too: the stalled body is closed after
// DrainTimeout and the call goes on. The request's 10 s deadline is only a
// safety net; the old Transport ran into it and failed.
func TestStalledBodyDrainBounded(t *testing.T) {
	const drain = 50 * time.Millisecond
	// The call must end well before the safety net; the bound is loose
	// for a noisy machine.
	const bound = 3 * time.Second
	newReq := func(t *testing.T, url string) *http.Request {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		t.Cleanup(cancel)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		return req
	}

	t.Run("retried", func(t *testing.T) {
		srv, count := stalled(t)
		rec := &recorder{}
		tr := newTransport(t, srv.Client().Transport, httpx.TransportConfig{DrainTimeout: drain, Observer: rec})
		start := time.Now()
		code, body, err := send(tr, newReq(t, srv.URL))
		took := time.Since(start)
		if err != nil || code != 200 || body != "ok" || count.Load() != 2 {
			t.Fatalf("got %d %q, %v after %d attempts; want 200 ok after 2", code, body, err, count.Load())
		}
		if took >= bound {
			t.Errorf("took %v, want well under %v", took, bound)
		}
		if got := tr.Stats(); got.TimedOut != 1 {
			t.Errorf("Stats %+v, want TimedOut 1", got)
		}
		evs := rec.all()
		if len(evs) != 1 || evs[0].Kind != middleware.TimedOut || evs[0].Concern != "httpx" || evs[0].Delay != drain ||
			!errors.Is(evs[0].Err, io.ErrUnexpectedEOF) {
			t.Errorf("events %+v, want one httpx TimedOut with Delay %v", evs, drain)
		}
	})

	// The stalled 503 is the last response: the caller gets it, reads
	// what had arrived, then an error that says the body was cut.
	t.Run("last response", func(t *testing.T) {
		srv, _ := stalled(t)
		tr := newTransport(t, srv.Client().Transport, httpx.TransportConfig{
			Retry: newRetrier(t, retry.Config{MaxAttempts: 1}), DrainTimeout: drain,
		})
		start := time.Now()
		resp, err := tr.RoundTrip(newReq(t, srv.URL))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if resp.StatusCode != 503 || string(b) != "partial" || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("got %d %q, %v; want 503 \"partial\" and io.ErrUnexpectedEOF", resp.StatusCode, b, err)
		}
		if took := time.Since(start); took >= bound {
			t.Errorf("took %v, want well under %v", took, bound)
		}
	})

	// A per-attempt timeout ends the drain too, and the timed-out
	// attempt is retried.
	t.Run("attempt timeout", func(t *testing.T) {
		srv, count := stalled(t)
		to := newTimeout(t, 100*time.Millisecond)
		tr := newTransport(t, srv.Client().Transport, httpx.TransportConfig{
			Attempt:      []httpx.Middleware{timeout.Middleware[*http.Request, *http.Response](to)},
			DrainTimeout: time.Hour,
		})
		start := time.Now()
		code, body, err := send(tr, newReq(t, srv.URL))
		if err != nil || code != 200 || body != "ok" || count.Load() != 2 {
			t.Fatalf("got %d %q, %v after %d attempts; want 200 ok after 2", code, body, err, count.Load())
		}
		if took := time.Since(start); took >= bound {
			t.Errorf("took %v, want well under %v", took, bound)
		}
		if to.Stats().TimedOut != 1 || tr.Stats().TimedOut != 0 {
			t.Errorf("timeouts: attempt %d, drain %d; want 1, 0", to.Stats().TimedOut, tr.Stats().TimedOut)
		}
	})

	// A dropped response (one a middleware replaced) is discarded with the
	// same bound.
	t.Run("dropped", func(t *testing.T) {
		srv, _ := stalled(t)
		replace := func(next middleware.Stage[*http.Request, *http.Response]) middleware.Stage[*http.Request, *http.Response] {
			return func(ctx context.Context, r *http.Request) (*http.Response, error) {
				next(ctx, r) // the 503, stalled; dropped
				return &http.Response{StatusCode: 299, Body: io.NopCloser(strings.NewReader("fake"))}, nil
			}
		}
		tr := newTransport(t, srv.Client().Transport, httpx.TransportConfig{
			Retry:        newRetrier(t, retry.Config{MaxAttempts: 1}),
			Idempotent:   func(*http.Request) bool { return false }, // sent once: not drained in the attempt
			Attempt:      []httpx.Middleware{replace},
			DrainTimeout: drain,
		})
		start := time.Now()
		code, body, err := send(tr, newReq(t, srv.URL))
		if err != nil || code != 299 || body != "fake" {
			t.Fatalf("got %d %q, %v; want 299 fake", code, body, err)
		}
		if took := time.Since(start); took >= bound {
			t.Errorf("took %v, want well under %v", took, bound)
		}
	})
}

// A retryable response whose body is longer than the 4 KiB drained keeps
// the rest on the wire: when it is the last, the caller reads it whole.
func TestLongBodyKeptWhole(t *testing.T) {
	long := strings.Repeat("x", 10000)
	srv, _ := server(t, func(n int, w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, long)
	})
	base := &countingBase{base: srv.Client().Transport}
	tr := newTransport(t, base, httpx.TransportConfig{Retry: newRetrier(t, retry.Config{MaxAttempts: 2})})
	code, body, err := send(tr, mustGet(t, srv.URL))
	if err != nil || code != 503 || body != long {
		t.Fatalf("got %d, %d bytes, %v; want 503 and the whole body", code, len(body), err)
	}
	// The first was drained (4 KiB and one byte, to learn that it is
	// longer) and closed; the second was read by the caller and closed.
	want := []bodyState{{Read: 4<<10 + 1, Closed: 1}, {Read: int64(len(long)), Closed: 1}}
	if diff := cmp.Diff(want, base.states()); diff != "" {
		t.Errorf("bodies (-want +got):\n%s", diff)
	}
}
