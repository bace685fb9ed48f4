package httpx_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/httpx"
	"github.com/brace-go/brace/middleware/ratelimit"
	"github.com/brace-go/brace/middleware/timeout"
	"golang.org/x/time/rate"
)

// BenchmarkTransport sends GETs over loopback to an httptest server: raw is
// the base http.Transport alone, the baseline for the others; raw+timeout
// adds a hand-written per-request timeout done right (cancelled when the
// body is closed), the baseline for httpx+timeout.
func BenchmarkTransport(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	base := srv.Client().Transport

	br := newBreaker(b, breaker.Config{})
	to := timeout.Middleware[*http.Request, *http.Response](newTimeout(b, time.Minute))
	withDefaults, _ := httpx.NewTransport(httpx.TransportConfig{Base: base})
	withTimeout, _ := httpx.NewTransport(httpx.TransportConfig{Base: base, Attempt: []httpx.Middleware{to}})
	withAttempt, _ := httpx.NewTransport(httpx.TransportConfig{
		Base:    base,
		Attempt: []httpx.Middleware{breaker.Middleware[*http.Request, *http.Response](br), to},
	})
	open := newBreaker(b, breaker.Config{})
	if err := open.ForceOpen(b.Context()); err != nil {
		b.Fatal(err)
	}
	rejecting, _ := httpx.NewTransport(httpx.TransportConfig{
		Base:    base,
		Attempt: []httpx.Middleware{breaker.Middleware[*http.Request, *http.Response](open)},
	})
	rawTimeout := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
		resp, err := base.RoundTrip(r.WithContext(ctx))
		if err != nil {
			cancel()
			return nil, err
		}
		resp.Body = cancelOnClose{resp.Body, cancel}
		return resp, nil
	})
	for _, bm := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"raw", base},
		{"httpx", withDefaults},
		{"raw+timeout", rawTimeout},
		{"httpx+timeout", withTimeout},
		{"httpx+breaker+timeout", withAttempt},
		{"httpx+breaker-open", rejecting}, // the rejection path: nothing sent
	} {
		b.Run(bm.name, func(b *testing.B) {
			req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
			b.ReportAllocs()
			for b.Loop() {
				resp, err := bm.rt.RoundTrip(req)
				if bm.rt == rejecting && errors.Is(err, breaker.ErrOpen) {
					continue
				}
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// BenchmarkProtect serves requests into an httptest.ResponseRecorder:
// direct is the handler alone, the baseline.
func BenchmarkProtect(b *testing.B) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	br := newBreaker(b, breaker.Config{})
	rl := newRateLimit(b, ratelimit.Config{Rate: rate.Inf})
	bp := newBackpressure(b, 1<<20)
	full := newBackpressure(b, 1)
	held, _ := full.Acquire(b.Context())
	defer held.Done(nil)
	for _, bm := range []struct {
		name string
		h    http.Handler
		code int
	}{
		{"direct", h, http.StatusNoContent},
		{"backpressure", protect(b, httpx.ProtectorConfig{Backpressure: bp}, h), http.StatusNoContent},
		{"breaker+ratelimit+backpressure", protect(b, httpx.ProtectorConfig{Breaker: br, RateLimit: rl, Backpressure: bp}, h), http.StatusNoContent},
		{"shed", protect(b, httpx.ProtectorConfig{Backpressure: full}, h), http.StatusServiceUnavailable},
	} {
		b.Run(bm.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				bm.h.ServeHTTP(rec, req)
				if rec.Code != bm.code {
					b.Fatal(rec.Code)
				}
			}
		})
	}
}
