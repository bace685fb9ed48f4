package httpx

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/brace-go/brace/internal/xerrors"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/priority"
	"github.com/brace-go/brace/middleware/ratelimit"
)

// defaultRetryAfter is the default of ProtectorConfig.RetryAfter.
const defaultRetryAfter = time.Second

// ProtectorConfig configures a [Protector]. Every protection is optional;
// the zero value protects nothing and passes every request through. They
// apply in the recommended order (docs/ordering.md): Breaker, then
// ClientRateLimit, then RateLimit, then Backpressure, then the handler.
//
// A Protector has no Observer of its own: each protection reports its
// rejections to its own Config.Observer (a middleware.Rejected event,
// with the request's context), so that a refusal is counted once.
type ProtectorConfig struct {
	// Breaker, if set, guards the handler: a response whose status
	// Failure reports as a failure (5xx by default) or a panic counts
	// against it, and while it is open requests get 503 Service
	// Unavailable with a Retry-After of the time until it lets probes
	// through (RetryAfter when it gives no hint).
	Breaker *breaker.Breaker

	// ClientRateLimit, if set, gives each client its own token bucket
	// (ratelimit.Keyed), keyed by ClientKey, with the Limiter's Rate and
	// Burst (or Limits). A refused request gets 429 Too Many Requests with
	// a Retry-After of the bucket's delay, rounded up to seconds, and the
	// RateLimit-Policy and RateLimit fields ([SetRateLimitFields]). It may be
	// the same Limiter as RateLimit: a Limiter's keyed buckets are apart
	// from its shared one.
	ClientRateLimit *ratelimit.Limiter

	// ClientKey names the client of a request for ClientRateLimit. Nil
	// means the host part of r.RemoteAddr. Behind a proxy, take the key
	// from a header the proxy sets, and only one you trust: clients can
	// write any X-Forwarded-For they like. It is an error without
	// ClientRateLimit.
	ClientKey func(r *http.Request) string

	// RateLimit, if set, bounds the rate of all requests together, with
	// the Limiter's shared bucket. A refused request gets 429 Too Many
	// Requests with a Retry-After of the limiter's delay, rounded up to
	// seconds, and the RateLimit-Policy and RateLimit fields
	// ([SetRateLimitFields]).
	RateLimit *ratelimit.Limiter

	// Backpressure, if set, bounds the requests in flight in the handler.
	// A shed request gets 503 Service Unavailable with a Retry-After of
	// RetryAfter.
	Backpressure *backpressure.Limiter

	// Failure reports whether a status the handler wrote counts against
	// the Breaker. Nil means status >= 500. A handler that writes nothing
	// wrote 200; one that hijacked the connection succeeded.
	Failure func(status int) bool

	// RetryAfter is the Retry-After sent with a refusal whose error gives
	// no time of its own: a shed, and a breaker that is forced open or
	// half-open with every probe slot taken. Zero means
	// 1 s; every Retry-After is rounded up to whole
	// seconds, at least 1. Negative is an error.
	RetryAfter time.Duration

	// TrustPriority, if set, says whether the Brace-Priority header
	// (priority.Header) of a request is to be believed: when it reports
	// true, the level the header names ("critical", "default",
	// "sheddable") is put in the request's context with priority.With,
	// before any protection runs, so that a Backpressure limiter with
	// Priorities (and the handler, and the adaptive and throttle
	// concerns it calls) sheds by it. Trust only callers you control:
	// anyone can send "critical". A request without the header, or whose
	// header is not trusted, is a default call. An unknown level is read
	// as default, never refused: it is logged through slog.Default at
	// Debug (a client that keeps sending it cannot flood the log). Nil,
	// the default, reads no header; TrustPriority runs only for requests
	// that carry the header. A panic in it is the caller's panic, before
	// any protection has taken anything.
	TrustPriority func(r *http.Request) bool

	// WriteRejection, if set, writes the response to a refused request
	// instead of the default plain-text status line. The Retry-After
	// header is already set (and, for a rate limit, RateLimit and
	// RateLimit-Policy: see [SetRateLimitFields]); status is 429 or 503
	// and err is the refusal: a *breaker.OpenError, a
	// *ratelimit.LimitedError, backpressure.ErrShed, or the request
	// context's error when the client left while a limiter kept it
	// waiting.
	WriteRejection func(w http.ResponseWriter, r *http.Request, status int, err error)
}

// Protector guards HTTP handlers with a breaker, rate limits and a
// concurrency bound, answering refused requests with 503 or 429 and a
// Retry-After. Build one with [NewProtector] and wrap handlers with
// [Protector.Handler]: every handler it wraps shares its protections. A
// Protector is safe for concurrent use and never changes after
// NewProtector.
type Protector struct {
	mws            []middleware.Middleware[exchange, struct{}]
	breaker        bool
	failure        func(int) bool
	retryAfter     time.Duration
	writeRejection func(http.ResponseWriter, *http.Request, int, error)
	trustPriority  func(*http.Request) bool
}

// exchange is one request through the protections, passed by value.
type exchange struct {
	w http.ResponseWriter
	r *http.Request
}

// NewProtector returns a Protector for cfg, or an error naming the invalid
// field.
//
//	p, err := httpx.NewProtector(httpx.ProtectorConfig{Breaker: b, RateLimit: rl, Backpressure: bp})
//	...
//	http.ListenAndServe(addr, p.Handler(mux))
func NewProtector(cfg ProtectorConfig) (*Protector, error) {
	if cfg.RetryAfter < 0 {
		return nil, fmt.Errorf("httpx: RetryAfter must not be negative, got %v", cfg.RetryAfter)
	}
	if cfg.ClientKey != nil && cfg.ClientRateLimit == nil {
		return nil, errors.New("httpx: ClientKey is set but ClientRateLimit is nil")
	}
	p := &Protector{
		breaker:        cfg.Breaker != nil,
		failure:        cfg.Failure,
		retryAfter:     cfg.RetryAfter,
		writeRejection: cfg.WriteRejection,
		trustPriority:  cfg.TrustPriority,
	}
	if p.retryAfter == 0 {
		p.retryAfter = defaultRetryAfter
	}
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
		p.mws = append(p.mws, ratelimit.Keyed[exchange, struct{}](cfg.ClientRateLimit,
			func(e exchange) string { return key(e.r) }))
	}
	if cfg.RateLimit != nil {
		p.mws = append(p.mws, ratelimit.Middleware[exchange, struct{}](cfg.RateLimit))
	}
	if cfg.Backpressure != nil {
		p.mws = append(p.mws, backpressure.Middleware[exchange, struct{}](cfg.Backpressure))
	}
	return p, nil
}

// remoteHost is the default ClientKey: the host of r.RemoteAddr.
func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Handler returns h guarded by p's protections. Call it once per handler
// (a whole mux, or each route) and serve what it returns: all the work of
// composing the protections is done here, none per request. With no
// protection configured it returns h itself.
//
// A nil p (NewProtector's error ignored) or a nil h is a programmer error:
// Handler panics, as http.Handle does for a nil handler.
func (p *Protector) Handler(h http.Handler) http.Handler {
	if p == nil {
		panic("httpx: nil *Protector (was NewProtector's error ignored?)")
	}
	if h == nil {
		panic("httpx: nil handler")
	}
	if len(p.mws) == 0 && p.trustPriority == nil {
		return h
	}
	serve := func(_ context.Context, e exchange) (struct{}, error) {
		if !p.breaker {
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
		if p.trustPriority != nil {
			r = p.withPriority(r)
		}
		if _, err := st(r.Context(), exchange{w: w, r: r}); err != nil {
			if _, served := xerrors.Find[*StatusError](err); !served { // a rejection, not the handler's status
				p.reject(w, r, err)
			}
		}
	})
}

// withPriority returns r with the level of its trusted Brace-Priority
// header in its context, or r itself when there is nothing to add.
func (p *Protector) withPriority(r *http.Request) *http.Request {
	v := r.Header.Get(priority.Header)
	if v == "" || !p.trustPriority(r) {
		return r
	}
	lv, err := priority.Parse(v)
	if err != nil {
		slog.Default().LogAttrs(r.Context(), slog.LevelDebug, "httpx: unknown priority, read as default",
			slog.String("header", priority.Header), slog.String("error", err.Error()))
		return r
	}
	if lv == priority.Default {
		return r // what a context without a level means
	}
	return r.WithContext(priority.With(r.Context(), lv))
}

// reject answers a request a protection refused: 429 for a rate limit,
// 503 otherwise, with a Retry-After from the refusal's RetryAfter method,
// or p.retryAfter when it has none, and for a rate limit the IETF
// RateLimit and RateLimit-Policy fields. A client whose context ended (it left
// while a limiter kept it waiting) gets 503 without Retry-After.
func (p *Protector) reject(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusServiceUnavailable
	if errors.Is(err, ratelimit.ErrLimited) {
		status = http.StatusTooManyRequests
	}
	if ctxErr := r.Context().Err(); ctxErr == nil || !errors.Is(err, ctxErr) {
		var retryAfter time.Duration
		if hint, ok := xerrors.Find[interface{ RetryAfter() time.Duration }](err); ok {
			retryAfter = hint.RetryAfter()
		}
		if retryAfter <= 0 {
			retryAfter = p.retryAfter
		}
		w.Header().Set("Retry-After", formatRetryAfter(retryAfter))
		if status == http.StatusTooManyRequests {
			SetRateLimitFields(w.Header(), err)
		}
	}
	if p.writeRejection != nil {
		p.writeRejection(w, r, status, err)
	} else {
		http.Error(w, http.StatusText(status), status)
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
