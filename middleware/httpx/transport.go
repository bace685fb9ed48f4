package httpx

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/brace-go/brace/internal/xerrors"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/priority"
	"github.com/brace-go/brace/middleware/retry"
)

// Middleware is the type of the middlewares a [Transport] runs around each
// attempt: breaker.Middleware[*http.Request, *http.Response](b) and the
// like.
type Middleware = middleware.Middleware[*http.Request, *http.Response]

// defaultDrainTimeout is the default of TransportConfig.DrainTimeout.
const defaultDrainTimeout = time.Second

// TransportConfig configures a [Transport]. The zero value sends requests
// through http.DefaultTransport and retries idempotent requests up to 3
// attempts on transport errors and on 429, 502, 503 and 504 responses,
// with retry's default schedule, honouring Retry-After (and, without
// one, an IETF RateLimit field with nothing remaining).
type TransportConfig struct {
	// Base sends each attempt. Nil means http.DefaultTransport.
	Base http.RoundTripper

	// Retry is the retry loop around the attempts. Nil means a Retrier
	// that NewTransport builds with retry's defaults (3 attempts,
	// jittered exponential delays from 100 ms, MaxDelay 60 s) and this
	// Config's Name and Observer. A Retrier built with MaxAttempts 1
	// disables retrying. A Retrier may be shared by several Transports
	// (and other stages): its Stats and Budget are then shared too.
	//
	// A retryable response reaches the Retrier as a *StatusError whose
	// Retryable method reports true and whose RetryAfter method is the
	// response's Retry-After: retry.DefaultRetryable retries it and the
	// Retrier never retries before the hint (see the package doc). A
	// Retrier with its own Config.Retryable must keep that (call
	// retry.DefaultRetryable).
	Retry *retry.Retrier

	// Attempt holds middlewares run around every attempt, inside the
	// retry loop, the first outermost: in the recommended order, a
	// breaker, a rate limit, a backpressure limiter and a per-attempt
	// timeout (docs/ordering.md). They see a retryable or 5xx status as
	// a *StatusError. They get the caller's request and must not modify
	// it; a middleware that needs another request passes a clone on. A
	// middleware that derives a context must derive it from the one it
	// was given, and may cancel it when it returns: the response body
	// stays readable (see the package doc). A nil entry is a programmer
	// error: NewTransport panics.
	Attempt []Middleware

	// HostBreaker, if set, guards each attempt with a breaker of its own
	// per host: breaker.Keyed with the key req.URL.Host (the host and
	// port as the URL writes them), so that one failing host is cut off
	// while the others are still called. Each host's breaker is a clone
	// of HostBreaker's Config (threshold, open time, MaxKeys, ...); the
	// table of hosts is HostBreaker's and is bounded by its MaxKeys.
	// It runs first around each attempt, outside every Attempt
	// middleware (the breaker's place in docs/ordering.md), inside the
	// retry loop, so a retry may be refused by the host's open breaker
	// and a retryable or 5xx status counts as the host's failure.
	// HostBreaker's own state (that of breaker.Middleware) is not used.
	HostBreaker *breaker.Breaker

	// SendPriority makes the Transport send each request's level
	// (priority.From of its context) in the Brace-Priority header
	// (priority.Header), so that a server whose Protector trusts it
	// (ProtectorConfig.TrustPriority) sheds by the caller's level. The
	// header is sent only for a level other than Default (no header
	// means default), and never replaces one the request already has;
	// the caller's request is not modified (an attempt gets a copy with
	// its own Header). False, the default, reads no level.
	SendPriority bool

	// Idempotent reports whether a request may be sent more than once.
	// Nil means [DefaultIdempotent]. Whatever it says, a request whose
	// body cannot be rewound is sent once.
	Idempotent func(r *http.Request) bool

	// RetryStatus reports whether a response status is worth retrying.
	// Nil means [DefaultRetryStatus]: 429, 502, 503 and 504. Responses
	// with these statuses and all 5xx responses are failures to the
	// middlewares; only these are retried.
	RetryStatus func(code int) bool

	// DrainTimeout bounds the time spent reading the body of a response
	// that may be retried, or that the caller will not get, so that its
	// connection can be reused (at most 4 KiB are read). A
	// body that has not ended by then is closed: a server that stalls a
	// 503's body cannot hold the call. Zero means 1 s;
	// negative is an error.
	DrainTimeout time.Duration

	// Name is the Transport's name in its events, and the Name of the
	// Retrier it builds when Retry is nil.
	Name string

	// Observer, if set, receives a middleware.TimedOut event (Concern
	// "httpx") for every body the Transport closed because it was still
	// arriving after DrainTimeout, and, when Retry is nil, the events of
	// the Retrier the Transport builds (Concern "retry": Retry before
	// each retry's delay, GaveUp when retrying stops on a failure). With
	// a Retrier of your own, give it its own Observer.
	Observer middleware.Observer
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
	base         http.RoundTripper
	retrying     middleware.Stage[*http.Request, *http.Response] // retry, then Attempt
	once         middleware.Stage[*http.Request, *http.Response] // Attempt only
	idempotent   func(*http.Request) bool
	retryStatus  func(int) bool
	drainTimeout time.Duration
	sendPriority bool
	name         string
	obs          middleware.Observer

	timedOut atomic.Uint64 // drains cut off by drainTimeout
}

// NewTransport returns a Transport configured by cfg, or an error naming
// the invalid field. A nil entry in cfg.Attempt is a programmer error (most
// often a constructor's ignored error): NewTransport panics.
func NewTransport(cfg TransportConfig) (*Transport, error) {
	for i, m := range cfg.Attempt {
		if m == nil {
			panic(fmt.Sprintf("httpx: nil middleware in TransportConfig.Attempt (entry %d of %d; was a constructor's error ignored?)",
				i+1, len(cfg.Attempt)))
		}
	}
	if cfg.DrainTimeout < 0 {
		return nil, fmt.Errorf("httpx: DrainTimeout must not be negative, got %v", cfg.DrainTimeout)
	}
	t := &Transport{
		base:         cfg.Base,
		idempotent:   cfg.Idempotent,
		retryStatus:  cfg.RetryStatus,
		drainTimeout: cfg.DrainTimeout,
		sendPriority: cfg.SendPriority,
		name:         cfg.Name,
		obs:          cfg.Observer,
	}
	if t.base == nil {
		t.base = http.DefaultTransport
	}
	if t.idempotent == nil {
		t.idempotent = DefaultIdempotent
	}
	if t.retryStatus == nil {
		t.retryStatus = DefaultRetryStatus
	}
	if t.drainTimeout == 0 {
		t.drainTimeout = defaultDrainTimeout
	}
	r := cfg.Retry
	if r == nil {
		var err error
		if r, err = retry.New(retry.Config{Name: cfg.Name, Observer: cfg.Observer}); err != nil {
			return nil, err // the zero Config is valid: not reached
		}
	}
	attempt := cfg.Attempt
	if cfg.HostBreaker != nil {
		attempt = append([]Middleware{breaker.Keyed[*http.Request, *http.Response](cfg.HostBreaker, requestHost)}, attempt...)
	}
	t.once = middleware.Apply(t.attempt, attempt...)
	t.retrying = middleware.Apply(t.attempt,
		append([]Middleware{retry.Middleware[*http.Request, *http.Response](r)}, attempt...)...)
	return t, nil
}

// requestHost is HostBreaker's key: the host (and port) of the URL.
func requestHost(r *http.Request) string {
	if r.URL == nil {
		return "" // the base transport refuses such a request
	}
	return r.URL.Host
}

// RoundTrip implements http.RoundTripper. A response with any status comes
// back with a nil error, as from any RoundTripper; an error means no
// response. See the package doc for what is retried and when the last
// response of a failed retry loop is returned.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := req.Context().Err(); err != nil {
		// A caller who has left gets its context's error; nothing is
		// sent and nothing is taken from the middlewares.
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	c := &call{t: t, repeatable: t.idempotent(req) && rewindable(req)}
	c.ctx = context.WithValue(req.Context(), callKey{}, c)
	st := t.once
	if c.repeatable {
		st = t.retrying
	}
	sent := req
	if t.sendPriority {
		sent = withPriorityHeader(req)
	}
	resp, err := st(c.ctx, sent)
	return c.finish(req, resp, err)
}

// CloseIdleConnections closes the idle connections of the base transport,
// if it has such a method. http.Client.CloseIdleConnections calls it.
func (t *Transport) CloseIdleConnections() {
	if ci, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// TransportStats is a snapshot of a [Transport]'s counts, from
// [Transport.Stats]. Retries are counted by the Retrier (retry.Stats),
// rejections and timeouts of attempts by the Attempt middlewares.
type TransportStats struct {
	// TimedOut counts the response bodies the Transport closed because
	// they were still arriving DrainTimeout after it began to drain them
	// (TimedOut events).
	TimedOut uint64
}

// Stats returns the Transport's counts. It has no side effects.
func (t *Transport) Stats() TransportStats {
	return TransportStats{TimedOut: t.timedOut.Load()}
}

// withPriorityHeader returns req with a Brace-Priority header naming its
// context's level, in a shallow copy with its own Header, or req itself
// for the default level or a request that names its level already.
func withPriorityHeader(req *http.Request) *http.Request {
	lv := priority.From(req.Context())
	if lv == priority.Default || req.Header.Get(priority.Header) != "" {
		return req
	}
	r := new(http.Request)
	*r = *req
	r.Header = req.Header.Clone()
	if r.Header == nil {
		r.Header = make(http.Header, 1)
	}
	r.Header.Set(priority.Header, lv.String())
	return r
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
		c = &call{t: t, ctx: ctx}
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
		return nil, err
	}
	if cancel != nil {
		resp.Body = detach(resp.Body, cancel)
	}
	res := c.track(resp)

	code := resp.StatusCode
	retryable := t.retryStatus(code)
	if code < 500 && !retryable {
		return resp, nil
	}
	se := &StatusError{StatusCode: code, retryable: retryable, res: res}
	var hinted bool
	if se.Delay, hinted = ParseRetryAfter(resp.Header, time.Now()); !hinted {
		// No Retry-After: a RateLimit field whose policy has nothing
		// left (r=0) says when it resets.
		se.Delay, _ = ParseRateLimit(resp.Header)
	}
	if retryable && c.repeatable {
		// The Retrier may retry this response, and retry has no hook to
		// say when: release its connection now, before any delay, and
		// keep what was read so that the caller can still have it if
		// this turns out to be the last attempt.
		res.drain(ctx)
	}
	return nil, se
}

type callKey struct{}

// call is the state of one RoundTrip, shared by its attempts through the
// context (attempts may run concurrently, under a hedge).
type call struct {
	t          *Transport
	ctx        context.Context // the context the chain was called with
	repeatable bool            // idempotent and rewindable
	sent       atomic.Int32    // attempts that reached the attempt stage

	mu      sync.Mutex
	results *result // every response received, newest first
}

func (c *call) track(resp *http.Response) *result {
	res := &result{t: c.t, resp: resp}
	c.mu.Lock()
	res.next, c.results = c.results, res
	c.mu.Unlock()
	return res
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
			r.discard(c.ctx)
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
	if ee, ok := xerrors.Find[*retry.ExhaustedError](err); ok {
		if ee.Reason == retry.ReasonCanceled {
			return nil
		}
		last = ee.Err
	}
	se, ok := xerrors.Find[*StatusError](last)
	if !ok || se.res == nil || se.res.discarded.Load() {
		return nil
	}
	return se.res
}
