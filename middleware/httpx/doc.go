// Package httpx brings Brace to net/http: a client-side [Transport], an
// http.RoundTripper that sends requests through a retry loop and any Brace
// middlewares, and a server-side [Protector] that sheds load, limits rates
// and trips a breaker, answering 503 or 429 with a Retry-After.
//
// The name avoids shadowing net/http, which every user of this package also
// imports.
//
//	tr, err := httpx.NewTransport(httpx.TransportConfig{
//		Retry: r, // a *retry.Retrier; nil means retry's defaults
//		Attempt: []httpx.Middleware{
//			breaker.Middleware[*http.Request, *http.Response](b),
//			timeout.Middleware[*http.Request, *http.Response](perAttempt),
//		},
//	})
//	client := &http.Client{Transport: tr}
//
//	p, err := httpx.NewProtector(httpx.ProtectorConfig{Breaker: b, RateLimit: rl, Backpressure: bp})
//	http.ListenAndServe(addr, p.Handler(mux))
//
// HTTP calls go through a Transport, never through a generic adapter
// (middleware.WrapFunc and the like) around (*http.Client).Do: such an
// adapter would retry a POST whose body the first attempt consumed, and a
// timeout in it would not reach the request, which carries its own
// context. The Transport rewinds bodies and gives every attempt the
// request's context (docs/http.md).
//
// # What the Transport retries
//
// A request is retried only if it is idempotent — GET, HEAD, OPTIONS, TRACE,
// PUT, DELETE, or any request with an Idempotency-Key or X-Idempotency-Key
// header ([DefaultIdempotent]; TransportConfig.Idempotent replaces it) —
// and its body can be sent again: no body, http.NoBody, or a GetBody func,
// which http.NewRequest sets for bytes and strings readers. Each retry
// sends a shallow copy of the request with a fresh body from GetBody. A
// request that cannot be retried is sent once through the Attempt
// middlewares, and its first outcome is returned.
//
// It is retried after a transport error (retry.DefaultRetryable: not after
// the caller's context ended) and after a 429, 502, 503 or 504 response
// ([DefaultRetryStatus]; TransportConfig.RetryStatus replaces it). Every
// other response, 500 included, is returned as it is.
//
// # Retry-After
//
// A Retry-After on a retryable response, in seconds or as an HTTP-date
// ([ParseRetryAfter]: relative to the response's Date header), is the
// earliest time of the next attempt, whatever the Retrier's MaxDelay: the
// Transport never retries before the server asked. If the wait fits in the
// Retrier's limits (MaxElapsed, the caller's deadline) the Transport waits;
// otherwise it stops at once (retry.ReasonHint) and returns that response.
// A request with no deadline waits as long as the server asks: give
// requests a deadline, or the Retrier a MaxElapsed.
//
// # Responses
//
// Inside the chain a retryable or 5xx response is a *[StatusError], so the
// Retrier retries it and a breaker counts it as a failure. RoundTrip turns
// it back: the caller gets the response with a nil error, as from any
// RoundTripper. In particular, when retries run out on a 503 the caller
// gets the last 503, body readable (the behaviour of
// hashicorp/go-retryablehttp without an ErrorHandler): code that checks
// resp.StatusCode keeps working, and the server's body and headers are not
// lost. RoundTrip returns an error only when there is no response to give:
// a transport error, a middleware's rejection (breaker.ErrOpen, a shed), or
// the caller's context ending during a retry delay.
//
// # RateLimit
//
// Without a Retry-After, a retryable response whose IETF RateLimit field
// has a policy with nothing left (`"tokens";r=0;t=4`) is a hint of t
// seconds, honoured like a Retry-After ([ParseRateLimit]). A Retry-After
// takes precedence when both are present.
//
// # Per-host breakers and priority
//
// TransportConfig.HostBreaker gives every host (req.URL.Host) its own
// breaker, cloned from the one given (breaker.Keyed), first around each
// attempt. TransportConfig.SendPriority sends the caller's
// priority.Level in the Brace-Priority header (none for the default
// level); a Protector reads it back only for the requests
// ProtectorConfig.TrustPriority trusts, and puts the level in the
// request's context for the protections and the handler. An unknown level
// is a default call, logged at Debug through slog.Default, never a 400.
//
// # Releasing connections
//
// A response that may be retried is drained as soon as it arrives, inside
// the attempt, before any retry delay: up to 4 KiB of its body are read
// into memory and, if the body ended, the connection goes back to the
// pool while the response stays whole for the caller. A longer body keeps
// the rest on the wire until the response is returned or discarded. Every
// response the caller does not get — those retried, and any a middleware
// dropped — is drained (4 KiB at most) and closed, exactly once.
//
// Draining is bounded in time as well as in bytes: a body that is still
// arriving TransportConfig.DrainTimeout (1 s by default) after the drain
// began, or when the attempt's context ends, is closed, so a server that
// stalls a 503's body cannot hold the call. A caller who gets such a
// response reads what had arrived and then an error matching
// io.ErrUnexpectedEOF. The request body is closed even when no attempt was
// sent.
//
// # The body and context rule
//
// A middleware that derives a per-attempt context — timeout, hedge — cancels
// it when the attempt returns, and with net/http a cancelled request
// context makes the response body unreadable (the failsafe-go #123
// pitfall). The Transport prevents it: such an attempt runs on a context
// derived from the caller's that follows the attempt's context only until
// the response headers arrive. After that the body lives until the caller
// closes it, or until the caller's own context ends. So a per-attempt
// timeout bounds the wait for the headers, not the reading of the body;
// bound that with the caller's context.
//
// # Protector
//
// A [Protector] applies the protections of a [ProtectorConfig] in the
// order of docs/ordering.md: Breaker, ClientRateLimit, RateLimit,
// Backpressure. A rate-limited request gets 429, any other refusal 503;
// the Retry-After is the refusal's own RetryAfter (a limiter's delay, the
// time until an open breaker lets probes through) or, when it has none (a
// shed), ProtectorConfig.RetryAfter (1 s by default). Every Retry-After is
// rounded up to whole seconds, at least 1. A rate-limited request also
// gets the IETF RateLimit-Policy and RateLimit fields of the limit that
// refused ([SetRateLimitFields]). The breaker counts responses
// with a status of 500 or more (ProtectorConfig.Failure) and panics as
// failures; sheds and rate limits never trip it. To see the status, the
// handler gets a ResponseWriter wrapper that keeps http.Flusher and
// http.Hijacker and unwraps for http.ResponseController.
//
// # Defaults and zero values
//
// The zero [TransportConfig] sends through http.DefaultTransport and
// retries as described above with retry's defaults (3 attempts, jittered
// exponential delays from 100 ms, at most 60 s between attempts unless
// the server asks for longer), with no Attempt middlewares. The zero
// [ProtectorConfig] protects nothing and Handler returns each handler
// unchanged. Invalid fields are errors from [NewTransport] and
// [NewProtector], for example
// "httpx: RetryAfter must not be negative, got -1s". A nil entry in
// TransportConfig.Attempt, a nil handler or a nil *Protector is a
// programmer error, and panics where the Transport or handler is built.
//
// # Events and stats
//
// The Transport's Observer receives a middleware.TimedOut event (Concern
// "httpx", Delay the drain timeout) for each body it closed because it was
// still arriving after DrainTimeout, counted in [Transport.Stats]; when
// TransportConfig.Retry is nil, it also receives the Retry and GaveUp
// events of the Retrier the Transport builds. Attempts, rejections and
// timeouts are reported by the concerns that handle them, each to its own
// Observer; so are a Protector's refusals. middleware.Log turns events
// into log records. docs/http.md tables the events.
//
// # Concurrency
//
// A Transport and the handlers a Protector returns are safe for
// concurrent use (tested with a thousand concurrent requests over loopback
// and four thousand concurrent handler calls, under -race). Attempts of
// one request may run concurrently under a hedge; a request that may be
// sent only once is never sent twice ([ErrNotReplayable]).
//
// # Cost
//
// A request that succeeds at once costs three small allocations over the
// base transport (the call state, its context value and the response
// record) and no clock read; a per-attempt middleware that derives a
// context adds the detached context that keeps the body readable. A
// retryable response adds its drain: a timer and a buffer of at most
// 4 KiB. A Protector adds no allocation per request with limiters only,
// and one (the status writer) with a breaker. docs/http.md has the
// measurements.
package httpx
