// Package stack composes the concerns a call needs in the order Brace
// recommends, so that a user who has a retry, a breaker, a limiter and a
// timeout gets them right without knowing the order, and writes the call's
// types at most once.
//
// # Use
//
//	get := stack.Apply(fetch, stack.Layers{Retry: rt, Breaker: br, Backpressure: bp, Timeout: to})
//
// Apply infers In and Out from the stage. Every field of [Layers] is
// optional; a nil field is left out. The order, outermost first, is
//
//	Retry → Hedge → Breaker → Throttle → RateLimit → Backpressure → Adaptive → Timeout → Recover → stage
//
// which is the recommended order of docs/ordering.md without the concerns
// that need the call's types to be built (Fallback, outermost, and Dedup,
// outside Retry): put them around the result with [middleware.Chain] or
// [middleware.Apply]. For any other order, use middleware.Chain directly.
//
// # Cost
//
// Apply builds the chain once; a call pays only for the concerns it holds.
package stack

import (
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/adaptive"
	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/hedge"
	"github.com/brace-go/brace/middleware/ratelimit"
	"github.com/brace-go/brace/middleware/retry"
	"github.com/brace-go/brace/middleware/throttle"
	"github.com/brace-go/brace/middleware/timeout"
)

// Layers holds the concerns to compose. Each is built by its package's New;
// a nil field is left out. Recover adds middleware.Recover innermost, so a
// panicking stage becomes an ordinary failure that Retry retries and the
// Breaker counts.
type Layers struct {
	Retry        *retry.Retrier
	Hedge        *hedge.Hedger
	Breaker      *breaker.Breaker
	Throttle     *throttle.Throttler
	RateLimit    *ratelimit.Limiter
	Backpressure *backpressure.Limiter
	Adaptive     *adaptive.Limiter
	Timeout      *timeout.Timeout
	Recover      bool
}

// Middleware returns the layers as one middleware, in the recommended order.
func Middleware[In, Out any](l Layers) middleware.Middleware[In, Out] {
	var mws []middleware.Middleware[In, Out]
	if l.Retry != nil {
		mws = append(mws, retry.Middleware[In, Out](l.Retry))
	}
	if l.Hedge != nil {
		mws = append(mws, hedge.Middleware[In, Out](l.Hedge))
	}
	if l.Breaker != nil {
		mws = append(mws, breaker.Middleware[In, Out](l.Breaker))
	}
	if l.Throttle != nil {
		mws = append(mws, throttle.Middleware[In, Out](l.Throttle))
	}
	if l.RateLimit != nil {
		mws = append(mws, ratelimit.Middleware[In, Out](l.RateLimit))
	}
	if l.Backpressure != nil {
		mws = append(mws, backpressure.Middleware[In, Out](l.Backpressure))
	}
	if l.Adaptive != nil {
		mws = append(mws, adaptive.Middleware[In, Out](l.Adaptive))
	}
	if l.Timeout != nil {
		mws = append(mws, timeout.Middleware[In, Out](l.Timeout))
	}
	if l.Recover {
		mws = append(mws, middleware.Recover[In, Out]())
	}
	return middleware.Chain(mws...)
}

// Apply decorates s with the layers in the recommended order. In and Out
// are inferred from s.
func Apply[In, Out any](s middleware.Stage[In, Out], l Layers) middleware.Stage[In, Out] {
	return Middleware[In, Out](l)(s)
}
