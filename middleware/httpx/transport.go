package httpx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/retry"
)

// Middleware is the type of the middlewares a [Transport] runs around each
// attempt: breaker.Middleware[*http.Request, *http.Response](b) and the
// like.
type Middleware = middleware.Middleware[*http.Request, *http.Response]

// drainLimit bounds how much of a discarded response body is read so that
// its connection can be reused; a longer body's connection is closed.
const drainLimit = 4 << 10

// TransportConfig configures a [Transport]. The zero value retries
// idempotent requests up to 3 attempts on transport errors and on 429, 502,
// 503 and 504 responses, with retry's default schedule, honouring
// Retry-After.
type TransportConfig struct {
	// Retry configures the retry loop around the attempts; its zero value
	// means retry's defaults (3 attempts, jittered exponential delays from
	// 100 ms, MaxDelay 60 s). MaxAttempts 1 disables retrying. A
	// Retry-After longer than MaxDelay is not waited for: that response
	// is returned at once. OnRetry, if set, is called after the Transport
	// has released the response being retried.
	Retry retry.Config

	// Attempt holds middlewares run around every attempt, inside the
	// retry loop, the first outermost: in the recommended order, a
	// breaker, a rate limit, a backpressure limiter and a per-attempt
	// timeout (docs/ordering.md). They see a retryable or 5xx status as
	// a *StatusError. They get the caller's request and must not modify
	// it; a middleware that needs another request passes a clone on. A
	// middleware that derives a context must derive it from the one it
	// was given, and may cancel it when it returns: the response body
	// stays readable (see the package doc). Nil entries are skipped.
	Attempt []Middleware

	// Idempotent reports whether a request may be sent more than once.
	// Nil means [DefaultIdempotent]. Whatever it says, a request whose
	// body cannot be rewound is sent once.
	Idempotent func(r *http.Request) bool

	// RetryStatus reports whether a response status is worth retrying.
	// Nil means [DefaultRetryStatus]: 429, 502, 503 and 504. Responses
	// with these statuses and all 5xx responses are failures to the
	// middlewares; only these are retried.
	RetryStatus func(code int) bool

	// OnAttempt, if set, is called after every attempt that reached the
	// base transport, with the caller's request, the attempt number
	// (from 1) and what the base transport returned. It must not read or
	// close resp.Body. It runs on the goroutine of the attempt, outside
	// any lock.
	OnAttempt func(r *http.Request, attempt int, resp *http.Response, err error)

	// Logger, if set, receives a debug record per attempt ("httpx:
	// attempt": "method", "url" without query, "attempt", and "status" or
	// "err"), and is used as Retry.Logger when that is nil. Nil means
	// silent.
	Logger *slog.Logger
}

// DefaultIdempotent is the default of TransportConfig.Idempotent. It
// reports true for the methods RFC 9110 defines as idempotent — GET,
// HEAD, OPTIONS, TRACE, PUT and DELETE — and for any request that carries
// a non-empty Idempotency-Key or X-Idempotency-Key header, the convention
// by which servers deduplicate a repeated POST or PATCH.
func DefaultIdempotent(r *http.Request) bool {
	switch r.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace,
		http.MethodPut, http.MethodDelete:
		return true
	}
	return r.Header.Get("Idempotency-Key") != "" || r.Header.Get("X-Idempotency-Key") != ""
}

// DefaultRetryStatus is the default of TransportConfig.RetryStatus: it
// reports true for 429 Too Many Requests, 502 Bad Gateway, 503 Service
// Unavailable and 504 Gateway Timeout.
func DefaultRetryStatus(code int) bool {
	switch code {
	case http.StatusTooManyRequests, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// Transport is an http.RoundTripper that sends requests through Brace
// middlewares: a retry loop and, inside it, the Attempt middlewares around
// each attempt. Build it with [NewTransport]; it is safe for concurrent
// use and never modifies the caller's request.
type Transport struct {
	base        http.RoundTripper
	retrying    middleware.Stage[*http.Request, *http.Response] // retry, then Attempt
	once        middleware.Stage[*http.Request, *http.Response] // Attempt only
	idempotent  func(*http.Request) bool
	retryStatus func(int) bool
	maxHint     time.Duration // a longer Retry-After is not retried
	onAttempt   func(*http.Request, int, *http.Response, error)
	logger      *slog.Logger
}

// NewTransport returns a Transport that sends requests through base (nil
// means http.DefaultTransport) as cfg says, or an error naming the invalid
// field.
func NewTransport(base http.RoundTripper, cfg TransportConfig) (*Transport, error) {
	if base == nil {
		base = http.DefaultTransport
	}
	t := &Transport{
		base:        base,
		idempotent:  cfg.Idempotent,
		retryStatus: cfg.RetryStatus,
		maxHint:     cfg.Retry.MaxDelay,
		onAttempt:   cfg.OnAttempt,
		logger:      cfg.Logger,
	}
	if t.idempotent == nil {
		t.idempotent = DefaultIdempotent
	}
	if t.retryStatus == nil {
		t.retryStatus = DefaultRetryStatus
	}
	if t.maxHint == 0 {
		t.maxHint = retry.DefaultMaxDelay
	}

	rc := cfg.Retry
	if rc.Logger == nil {
		rc.Logger = cfg.Logger
	}
	onRetry := rc.OnRetry
	rc.OnRetry = func(attempt int, err error, delay time.Duration) {
		// Release the response being retried before the delay, so its
		// connection goes back to the pool instead of idling through it.
		if se, ok := errors.AsType[*StatusError](err); ok && se.res != nil {
			se.res.discard()
		}
		if onRetry != nil {
			onRetry(attempt, err, delay)
		}
	}
	re, err := retry.New[*http.Request, *http.Response](rc)
	if err != nil {
		return nil, err
	}
	t.once = middleware.Apply(t.attempt, cfg.Attempt...)
	t.retrying = middleware.Apply(t.attempt, append([]Middleware{re}, cfg.Attempt...)...)
	return t, nil
}

// RoundTrip implements http.RoundTripper. A response with any status comes
// back with a nil error, as from any RoundTripper; an error means no
// response. See the package doc for what is retried and when the last
// response of a failed retry loop is returned.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	c := &call{repeatable: t.idempotent(req) && rewindable(req)}
	c.ctx = context.WithValue(req.Context(), callKey{}, c)
	st := t.once
	if c.repeatable {
		st = t.retrying
	}
	resp, err := st(c.ctx, req)
	return c.finish(req, resp, err)
}

// CloseIdleConnections closes the idle connections of the base transport,
// if it has such a method. http.Client.CloseIdleConnections calls it.
func (t *Transport) CloseIdleConnections() {
	if ci, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// rewindable reports whether req's body can be sent again.
func rewindable(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

var errNilResponse = errors.New("httpx: nil response and nil error")

// attempt is the innermost stage: it sends one attempt through the base
// transport.
func (t *Transport) attempt(ctx context.Context, in *http.Request) (*http.Response, error) {
	c, _ := ctx.Value(callKey{}).(*call)
	if c == nil {
		// A middleware ran us on a context not derived from ours: send
		// once, untracked, as a plain transport would.
		c = &call{ctx: ctx}
	}
	n := int(c.sent.Add(1))
	r := in
	if n > 1 {
		if !c.repeatable {
			return nil, retry.Permanent(ErrNotReplayable)
		}
		if in.Body != nil && in.Body != http.NoBody {
			if in.GetBody == nil {
				return nil, retry.Permanent(ErrNotReplayable)
			}
			body, err := in.GetBody()
			if err != nil {
				return nil, retry.Permanent(fmt.Errorf("httpx: rewinding the request body: %w", err))
			}
			r = new(http.Request)
			*r = *in
			r.Body = body
		}
	}

	// If a middleware derived ctx (a per-attempt timeout, a hedge), it
	// may cancel ctx as soon as it returns, before the caller has read the
	// body. So the request runs on a context of its own, derived from the
	// caller's, that follows ctx only until the response headers are in,
	// and is cancelled when the body is closed.
	var (
		cancel context.CancelCauseFunc
		stop   func() bool
	)
	if ctx != c.ctx {
		var actx context.Context
		actx, cancel = context.WithCancelCause(c.ctx)
		stop = context.AfterFunc(ctx, func() { cancel(context.Cause(ctx)) })
		r = r.WithContext(actx)
	}

	resp, err := t.base.RoundTrip(r)
	if err == nil && resp == nil {
		err = errNilResponse
	}
	if err == nil && resp.Body == nil { // the contract says never nil; be lenient
		resp.Body = http.NoBody
	}
	if err == nil && cancel != nil && !stop() {
		// ctx ended just as the headers came in: the body is cancelled
		// already, so the attempt failed.
		resp.Body.Close()
		resp, err = nil, context.Cause(ctx)
	}
	if err != nil {
		if resp != nil && resp.Body != nil { // a RoundTripper breaking its contract
			resp.Body.Close()
		}
		if cancel != nil {
			stop()
			cancel(nil)
		}
		t.observe(ctx, in, n, nil, err)
		return nil, err
	}
	if cancel != nil {
		resp.Body = detach(resp.Body, cancel)
	}
	res := c.track(resp)
	t.observe(ctx, in, n, resp, nil)

	code := resp.StatusCode
	retryable := t.retryStatus(code)
	if code < 500 && !retryable {
		return resp, nil
	}
	se := &StatusError{StatusCode: code, res: res}
	se.Delay, _ = ParseRetryAfter(resp.Header, time.Now())
	se.retryable = retryable && se.Delay <= t.maxHint
	return nil, se
}

func (t *Transport) observe(ctx context.Context, r *http.Request, attempt int, resp *http.Response, err error) {
	if t.onAttempt != nil {
		t.onAttempt(r, attempt, resp, err)
	}
	if t.logger == nil || !t.logger.Enabled(ctx, slog.LevelDebug) {
		return
	}
	u := url.URL{Scheme: r.URL.Scheme, Host: r.URL.Host, Path: r.URL.Path}
	attrs := []slog.Attr{
		slog.String("method", r.Method), slog.String("url", u.String()), slog.Int("attempt", attempt),
	}
	if err != nil {
		attrs = append(attrs, slog.Any("err", err))
	} else {
		attrs = append(attrs, slog.Int("status", resp.StatusCode))
	}
	t.logger.LogAttrs(ctx, slog.LevelDebug, "httpx: attempt", attrs...)
}

type callKey struct{}

// call is the state of one RoundTrip, shared by its attempts through the
// context (attempts may run concurrently, under a hedge).
type call struct {
	ctx        context.Context // the context the chain was called with
	repeatable bool            // idempotent and rewindable
	sent       atomic.Int32    // attempts that reached the attempt stage

	mu      sync.Mutex
	results *result // every response received, newest first
}

// result is a response an attempt received. Unless it is the one RoundTrip
// returns, it is discarded: drained (bounded) and closed, exactly once.
type result struct {
	resp      *http.Response
	discarded atomic.Bool
	next      *result
}

func (c *call) track(resp *http.Response) *result {
	res := &result{resp: resp}
	c.mu.Lock()
	res.next, c.results = c.results, res
	c.mu.Unlock()
	return res
}

func (r *result) discard() {
	if r.discarded.CompareAndSwap(false, true) {
		io.CopyN(io.Discard, r.resp.Body, drainLimit)
		r.resp.Body.Close()
	}
}

// finish turns the chain's outcome into RoundTrip's and releases
// everything the caller will not get.
func (c *call) finish(req *http.Request, resp *http.Response, err error) (*http.Response, error) {
	switch {
	case err != nil:
		if res := final(err); res != nil {
			resp, err = res.resp, nil
		} else {
			resp = nil
		}
	case resp == nil:
		err = errNilResponse
	}
	c.mu.Lock()
	results := c.results
	c.mu.Unlock()
	for r := results; r != nil; r = r.next {
		if r.resp != resp {
			r.discard()
		}
	}
	if c.sent.Load() == 0 && req.Body != nil {
		req.Body.Close() // RoundTrip always closes the body, even when nothing was sent
	}
	return resp, err
}

// final returns the response to give the caller for a failed chain: the
// one behind a *StatusError of the last attempt, if it is still open,
// unless the caller's context ended during the retry loop.
func final(err error) *result {
	last := err
	if ee, ok := errors.AsType[*retry.ExhaustedError](err); ok {
		if ee.Reason == retry.ReasonContext {
			return nil
		}
		last = ee.Err
	}
	se, ok := errors.AsType[*StatusError](last)
	if !ok || se.res == nil || se.res.discarded.Load() {
		return nil
	}
	return se.res
}
