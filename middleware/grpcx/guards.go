package grpcx

import (
	"context"
	"sync"

	"google.golang.org/grpc/codes"

	"github.com/brace-go/brace/middleware/adaptive"
	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/ratelimit"
	"github.com/brace-go/brace/middleware/throttle"
)

// DefaultMaxMethods is the default of ClientConfig.MaxMethods and
// ServerConfig.MaxMethods.
const DefaultMaxMethods = 1024

// Guards are the admitting concerns applied to one call: each is optional,
// and one value may be shared by any number of methods, clients and
// servers. They are applied in the recommended order (docs/ordering.md):
// Breaker, Throttle, RateLimit, Backpressure, Adaptive. Each is taken with its
// Acquire and finished with its Permit's Done, so a stream holds them for
// its whole life; a refusal by a later one gives the earlier ones back
// (a breaker's probe slot is returned, not counted).
type Guards struct {
	Breaker *breaker.Breaker
	// Throttle is client-side adaptive throttling (the SRE book's
	// "Handling Overload"): it rejects a share of the calls locally while
	// the server refuses many. It is told nil for a call the server
	// answered without error; the code's status as a *StatusError whose
	// Retryable reports true — not accepted, for throttle.DefaultAccepted
	// — when the server refused the call with a code DefaultRetryCode
	// retries (Unavailable, ResourceExhausted, Aborted,
	// DeadlineExceeded); one whose Retryable reports false — accepted: the
	// server answered — for any other code; and context.Canceled when the
	// caller left (counted for nothing). Its refusal is Unavailable, and
	// is not retried.
	Throttle     *throttle.Throttler
	RateLimit    *ratelimit.Limiter
	Backpressure *backpressure.Limiter
	Adaptive     *adaptive.Limiter
}

func (g *Guards) empty() bool {
	return g.Breaker == nil && g.Throttle == nil && g.RateLimit == nil && g.Backpressure == nil && g.Adaptive == nil
}

// permits are the permits one call holds.
type permits struct {
	b  breaker.Permit
	th throttle.Permit
	r  ratelimit.Permit
	bp backpressure.Permit
	a  adaptive.Permit
	// throttled: th was taken, so done works out its outcome.
	throttled bool
	// finished: done has run; a second done does nothing.
	finished bool
}

// acquire takes g's permits into p, in order. On a refusal it finishes the
// permits already taken with the refusal (a local rejection: breakers
// ignore it) and returns it.
func (g *Guards) acquire(ctx context.Context, p *permits) (err error) {
	if g.Breaker != nil {
		if p.b, err = g.Breaker.Acquire(ctx); err != nil {
			return err
		}
	}
	if g.Throttle != nil {
		if p.th, err = g.Throttle.Acquire(ctx); err != nil {
			p.done(err, nil)
			return err
		}
		p.throttled = true
	}
	if g.RateLimit != nil {
		if p.r, err = g.RateLimit.Acquire(ctx); err != nil {
			p.done(err, nil)
			return err
		}
	}
	if g.Backpressure != nil {
		if p.bp, err = g.Backpressure.Acquire(ctx); err != nil {
			p.done(err, nil)
			return err
		}
	}
	if g.Adaptive != nil {
		if p.a, err = g.Adaptive.Acquire(ctx); err != nil {
			p.done(err, nil)
			return err
		}
	}
	return nil
}

// done finishes every permit held, innermost first, for a call that ended
// with err as grpc-go or the handler returned it: the throttle is told
// throttleOutcome(err), the others outcome(err, failure). With a nil
// failure, err is a local error (a refusal, context.Canceled,
// errPanicked, nil), told to every guard as it is. A zero permit's Done
// is a no-op, so done may be called after a partial acquire; a second
// done does nothing. If one Done panics (a user classifier), the others
// are still finished and the panic goes on.
func (p *permits) done(err error, failure func(codes.Code) bool) {
	if p.finished {
		return
	}
	p.finished = true
	o, to := err, err
	if failure != nil {
		o = outcome(err, failure)
		if p.throttled {
			to = throttleOutcome(err)
		}
	}
	defer p.b.Done(o)
	if p.throttled {
		defer p.th.Done(to)
	}
	defer p.r.Done(o)
	defer p.bp.Done(o)
	p.a.Done(o)
}

// throttleOutcome is what a Throttle guard is told for a call that ended
// with err: see Guards.Throttle.
func throttleOutcome(err error) error {
	if err == nil {
		return nil
	}
	st, ok := findStatus(err)
	if !ok {
		return err // a local error: a refusal, the caller's context, a panic
	}
	switch c := st.Code(); {
	case c == codes.OK:
		return nil
	case c == codes.Canceled:
		return context.Canceled
	default:
		return &StatusError{err: err, st: st, retryable: DefaultRetryCode(c)}
	}
}

// outcome is the error the guards are told for a call that ended with err:
// nil for a code that failure does not count (the server answered), so a
// breaker counts only the server's faults and an adaptive limit takes the
// answer's latency as a sample.
func outcome(err error, failure func(codes.Code) bool) error {
	if err == nil {
		return nil
	}
	if st, ok := findStatus(err); ok {
		if st.Code() == codes.Canceled {
			return context.Canceled // neither success nor failure
		}
		if !failure(st.Code()) {
			return nil
		}
	}
	return err
}

// methodGuards resolves a method's Guards once, with a user func, and keeps
// at most max methods: a method beyond the bound shares the guards of the
// method "" (the func is called once with "" for them), so a peer that
// sends many method names cannot grow the table.
type methodGuards struct {
	f   func(method string) Guards
	max int

	mu sync.RWMutex
	m  map[string]*Guards
}

func newMethodGuards(f func(string) Guards, max int) *methodGuards {
	if f == nil {
		return nil
	}
	return &methodGuards{f: f, max: max, m: make(map[string]*Guards)}
}

var noGuards = &Guards{}

// get returns method's guards. The user func runs outside the lock.
func (t *methodGuards) get(method string) *Guards {
	if t == nil {
		return noGuards
	}
	t.mu.RLock()
	g, ok := t.m[method]
	n := len(t.m)
	t.mu.RUnlock()
	if ok {
		return g
	}
	if method != "" && n >= t.max {
		return t.get("")
	}
	ng := t.f(method)
	t.mu.Lock()
	if g, ok := t.m[method]; ok {
		t.mu.Unlock()
		return g // another call resolved it first: one Guards per method
	}
	if method != "" && len(t.m) >= t.max {
		t.mu.Unlock()
		return t.get("") // filled up meanwhile
	}
	t.m[method] = &ng
	t.mu.Unlock()
	return &ng
}
