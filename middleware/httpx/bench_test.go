package httpx_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware/backpressure"
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

	br, _ := breaker.New(breaker.Config{})
	to, _ := timeout.New[*http.Request, *http.Response](timeout.Config{Duration: time.Minute})
	withDefaults, _ := httpx.NewTransport(base, httpx.TransportConfig{})
	withTimeout, _ := httpx.NewTransport(base, httpx.TransportConfig{Attempt: []httpx.Middleware{to}})
	withAttempt, _ := httpx.NewTransport(base, httpx.TransportConfig{
		Attempt: []httpx.Middleware{breaker.Middleware[*http.Request, *http.Response](br), to},
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
	} {
		b.Run(bm.name, func(b *testing.B) {
			req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
			b.ReportAllocs()
			for b.Loop() {
				resp, err := bm.rt.RoundTrip(req)
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
	br, _ := breaker.New(breaker.Config{})
	rl, _ := ratelimit.New(ratelimit.Config{Rate: rate.Inf})
	bp, _ := backpressure.New(1<<20, backpressure.Config{})
	all, _ := httpx.Protect(httpx.HandlerConfig{Breaker: br, RateLimit: rl, Backpressure: bp})
	shedOnly, _ := httpx.Protect(httpx.HandlerConfig{Backpressure: bp})
	for _, bm := range []struct {
		name string
		h    http.Handler
	}{
		{"direct", h},
		{"backpressure", shedOnly(h)},
		{"breaker+ratelimit+backpressure", all(h)},
	} {
		b.Run(bm.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				bm.h.ServeHTTP(rec, req)
				if rec.Code != http.StatusNoContent {
					b.Fatal(rec.Code)
				}
			}
		})
	}
}
