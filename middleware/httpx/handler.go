package httpx

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/ratelimit"
)

// DefaultRetryAfter is the default of HandlerConfig.RetryAfter.
const DefaultRetryAfter = time.Second

// HandlerConfig configures [Protect]. Every protection is optional; the zero
// value protects nothing and passes every request through. They apply in
// the recommended order (docs/ordering.md): Breaker, then ClientRateLimit,
// then RateLimit, then Backpressure, then the handler.
type HandlerConfig struct {
	// Breaker, if set, guards the handler: a response whose status
	// Failure reports as a failure (5xx by default) or a panic counts
	// against it, and while it is open requests get 503 Service
	// Unavailable with a Retry-After of the time until it lets probes
	// through (RetryAfter when it gives no hint).
	Breaker *breaker.Breaker

	// ClientRateLimit, if set, gives each client its own token bucket,
	// keyed by ClientKey. A refused request gets 429 Too Many Requests
	// with a Retry-After of the bucket's delay, rounded up to seconds.
	ClientRateLimit *ratelimit.Keyed[string]

	// ClientKey names the client of a request for ClientRateLimit. Nil
	// means the host part of r.RemoteAddr. Behind a proxy, take the key
	// from a header the proxy sets, and only one you trust: clients can
	// write any X-Forwarded-For they like. It is an error without
	// ClientRateLimit.
	ClientKey func(r *http.Request) string

	// RateLimit, if set, bounds the rate of all requests together. A
	// refused request gets 429 Too Many Requests with a Retry-After of the
	// limiter's delay, rounded up to seconds.
	RateLimit *ratelimit.Limiter

	// Backpressure, if set, bounds the requests in flight in the handler.
	// A shed request gets 503 Service Unavailable with a Retry-After of
	// RetryAfter.
	Backpressure *backpressure.Limiter

	// Failure reports whether a status the handler wrote counts against
	// the Breaker. Nil means status >= 500. A handler that writes nothing
	// wrote 200; one that hijacked the connection succeeded.
	Failure func(status int) bool

	// RetryAfter is the Retry-After sent with a shed request's 503 and
	// with a breaker's 503 when the breaker gives no time (half-open
	// with every probe slot taken, forced open). Zero means
	// DefaultRetryAfter (1 s); every Retry-After is rounded up to whole
	// seconds, at least 1. Negative is an error.
	RetryAfter time.Duration

	// WriteRejection, if set, writes the response to a refused request
	// instead of the default plain-text status line. The Retry-After
	// header is already set; status is 429 or 503 and err is the
	// refusal: a *breaker.OpenError, a *ratelimit.LimitedError, a
	// *backpressure.ShedError, or the request context's error when the
	// client left while a limiter kept it waiting.
	WriteRejection func(w http.ResponseWriter, r *http.Request, status int, err error)

	// OnReject, if set, is called for every refused request, after the
	// response is written, with the same arguments, outside any lock.
	OnReject func(r *http.Request, status int, err error)

	// Logger, if set, receives an info record per refused request
	// ("httpx: rejected": "method", "path", "status", "err"). Nil means
	// silent.
	Logger *slog.Logger
}

// exchange is one request through the protections, passed by value.
type exchange struct {
	w http.ResponseWriter
	r *http.Request
}

type protector struct {
	cfg     HandlerConfig
	mws     []middleware.Middleware[exchange, struct{}]
	failure func(int) bool
}

// Protect returns a standard HTTP middleware that guards handlers with the
// protections cfg holds, or an error naming the invalid field. Every
// handler it wraps shares them: wrap a whole mux once, or build one
// protection per route.
//
//	protect, err := httpx.Protect(httpx.HandlerConfig{Breaker: b, RateLimit: rl, Backpressure: bp})
//	...
//	http.ListenAndServe(addr, protect(mux))
func Protect(cfg HandlerConfig) (func(http.Handler) http.Handler, error) {
	if cfg.RetryAfter < 0 {
		return nil, errors.New("httpx: RetryAfter must not be negative, got " + cfg.RetryAfter.String())
	}
	if cfg.ClientKey != nil && cfg.ClientRateLimit == nil {
		return nil, errors.New("httpx: ClientKey is set but ClientRateLimit is nil")
	}
	if cfg.RetryAfter == 0 {
		cfg.RetryAfter = DefaultRetryAfter
	}
	p := &protector{cfg: cfg, failure: cfg.Failure}
	if p.failure == nil {
		p.failure = func(status int) bool { return status >= 500 }
	}
	if cfg.Breaker != nil {
		p.mws = append(p.mws, breaker.Middleware[exchange, struct{}](cfg.Breaker))
	}
	if cfg.ClientRateLimit != nil {
		key := cfg.ClientKey
		if key == nil {
			key = remoteHost
		}
		p.mws = append(p.mws, ratelimit.PerKey[exchange, struct{}](cfg.ClientRateLimit,
			func(e exchange) string { return key(e.r) }))
	}
	if cfg.RateLimit != nil {
		p.mws = append(p.mws, ratelimit.Middleware[exchange, struct{}](cfg.RateLimit))
	}
	if cfg.Backpressure != nil {
		p.mws = append(p.mws, backpressure.Middleware[exchange, struct{}](cfg.Backpressure))
	}
	return p.wrap, nil
}

// remoteHost is the default ClientKey: the host of r.RemoteAddr.
func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (p *protector) wrap(h http.Handler) http.Handler {
	if h == nil {
		h = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "httpx: nil handler", http.StatusInternalServerError)
		})
	}
	if len(p.mws) == 0 {
		return h
	}
	serve := func(_ context.Context, e exchange) (struct{}, error) {
		if p.cfg.Breaker == nil {
			h.ServeHTTP(e.w, e.r)
			return struct{}{}, nil
		}
		sw := &statusWriter{ResponseWriter: e.w}
		h.ServeHTTP(sw, e.r)
		if code := sw.status(); p.failure(code) {
			return struct{}{}, &StatusError{StatusCode: code}
		}
		return struct{}{}, nil
	}
	st := middleware.Apply(serve, p.mws...)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := st(r.Context(), exchange{w: w, r: r}); err != nil {
			if _, served := errors.AsType[*StatusError](err); !served {
				p.reject(w, r, err)
			}
		}
	})
}

// reject answers a request a protection refused.
func (p *protector) reject(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusServiceUnavailable
	var retryAfter time.Duration
	if le, ok := errors.AsType[*ratelimit.LimitedError](err); ok {
		status, retryAfter = http.StatusTooManyRequests, le.Delay
	} else if oe, ok := errors.AsType[*breaker.OpenError](err); ok {
		retryAfter = oe.RetryAfter()
		if retryAfter <= 0 {
			retryAfter = p.cfg.RetryAfter
		}
	} else if r.Context().Err() == nil {
		retryAfter = p.cfg.RetryAfter // shed
	}
	if retryAfter > 0 {
		w.Header().Set("Retry-After", formatRetryAfter(retryAfter))
	}
	if p.cfg.WriteRejection != nil {
		p.cfg.WriteRejection(w, r, status, err)
	} else {
		http.Error(w, http.StatusText(status), status)
	}
	if p.cfg.OnReject != nil {
		p.cfg.OnReject(r, status, err)
	}
	if p.cfg.Logger != nil {
		p.cfg.Logger.LogAttrs(r.Context(), slog.LevelInfo, "httpx: rejected",
			slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", status), slog.Any("err", err))
	}
}

// statusWriter records the status a handler writes. It keeps the writer's
// optional interfaces reachable: Flush and Hijack directly, anything else
// through http.ResponseController, which follows Unwrap.
type statusWriter struct {
	http.ResponseWriter
	code int // the final status written; 0 until then
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 { // 1xx are informational, not final
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// Flush implements http.Flusher, which handlers still assert directly.
func (w *statusWriter) Flush() {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack implements http.Hijacker. A hijacked connection counts as a
// success: the handler took it over.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.code == 0 {
		w.code = http.StatusSwitchingProtocols
	}
	return conn, rw, err
}

// Unwrap returns the wrapped writer, for http.ResponseController.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}
