package grpcx

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/hedge"
	"github.com/brace-go/brace/middleware/priority"
	"github.com/brace-go/brace/middleware/retry"
)

// DefaultStreamBuffer is the default of ClientConfig.StreamBuffer: 256 KiB,
// grpc-go's own per-call retry buffer.
const DefaultStreamBuffer = 256 << 10

// ClientConfig configures a [Client]. The zero value retries every method
// with retry's defaults (3 attempts, jittered exponential delays from
// 100 ms) on Unavailable, ResourceExhausted, Aborted and an attempt's own
// DeadlineExceeded, honouring the server's pushback, hedges nothing and
// applies no guards.
type ClientConfig struct {
	// Retry is the retry loop around the attempts of every call. Nil
	// means a Retrier built with retry's defaults and this Config's Name
	// and Observer; one built with MaxAttempts 1 disables retrying. A
	// failed attempt reaches it as a *StatusError whose Retryable method
	// says what RetryCode and the pushback decided and whose RetryAfter
	// is the pushback: a Retrier with its own Config.Retryable must keep
	// that (call retry.DefaultRetryable).
	Retry *retry.Retrier

	// Hedge, if set, hedges the calls of the methods Idempotent reports,
	// inside the retry loop: when an attempt is slow another is sent, and
	// the first answer wins. Nil means no hedging.
	Hedge *hedge.Hedger

	// Idempotent reports whether a method may be sent twice at once, and
	// so be hedged. Nil means no method is: hedging is opt-in per method,
	// because a hedged call reaches the server more than once. Hedge
	// without Idempotent is an error.
	Idempotent func(method string) bool

	// RetryCode reports whether a failed attempt of method with code c may
	// be retried. Nil means DefaultRetryCode(c) for every method. A
	// pushback that asks not to retry, and the end of the caller's
	// context, win over it.
	RetryCode func(method string, c codes.Code) bool

	// Failure reports whether a code counts as a failure for the Guards
	// (a breaker counts it; an adaptive limit takes no latency sample).
	// Nil means DefaultFailure.
	Failure func(c codes.Code) bool

	// AttemptTimeout, if positive, bounds each attempt: a unary attempt,
	// or a stream's attempt until its first response message. It never
	// extends the caller's deadline. An attempt cut off by it fails with
	// DeadlineExceeded and is retried while the caller's context lives.
	// Zero means none; negative is an error.
	AttemptTimeout time.Duration

	// Guards returns the breaker and limits for a method. It is called
	// once per method (from the call that first uses it, outside any
	// lock) and its result is kept; return the same values for several
	// methods to share them (one breaker per target). Nil means none.
	// Unary calls take the guards per attempt; streams take them per
	// attempt and the winning attempt holds them until the stream ends.
	Guards func(method string) Guards

	// MaxMethods bounds the methods whose Guards are kept: beyond it, a
	// new method gets the guards of Guards(""). Zero means
	// DefaultMaxMethods; negative is an error.
	MaxMethods int

	// StreamBuffer bounds the bytes of request messages a stream keeps to
	// send again to a new attempt before its first response. A stream that
	// sends more is opened at once and is no longer retried or hedged.
	// Zero means DefaultStreamBuffer; negative is an error.
	StreamBuffer int

	// SendPriority sends the call's priority (priority.From of the
	// caller's context) to the server in the priority.MetadataKey
	// ("brace-priority") metadata, when it is not priority.Default: an
	// absent value means Default to a grpcx server, so a default call
	// sends nothing. A value the caller already put in the outgoing
	// metadata comes first, and a grpcx server reads the first. False
	// means nothing is sent and the context is not read for it.
	SendPriority bool

	// Name names the Retrier built when Retry is nil.
	Name string

	// Observer receives the events of the Retrier built when Retry is
	// nil. The Client has no events of its own: retries, hedges and
	// refusals are reported by the concerns that make them.
	Observer middleware.Observer
}

// Client holds the interceptors of a grpc.ClientConn. Build it with
// NewClient and install its methods:
//
//	grpc.NewClient(target,
//		grpc.WithUnaryInterceptor(c.Unary),
//		grpc.WithStreamInterceptor(c.Stream))
//
// A Client is safe for concurrent use and may serve several connections.
type Client struct {
	retrying  middleware.Stage[*call, any]
	hedged    middleware.Stage[*call, any]
	idem      func(string) bool
	retryCode func(string, codes.Code) bool
	failure   func(codes.Code) bool
	timeout   time.Duration
	guards    *methodGuards
	buffer    int
	sendPrio  bool
}

// NewClient returns a Client configured by cfg, or an error naming the
// invalid field.
func NewClient(cfg ClientConfig) (*Client, error) {
	switch {
	case cfg.AttemptTimeout < 0:
		return nil, fmt.Errorf("grpcx: AttemptTimeout must not be negative, got %v", cfg.AttemptTimeout)
	case cfg.MaxMethods < 0:
		return nil, fmt.Errorf("grpcx: MaxMethods must not be negative, got %d", cfg.MaxMethods)
	case cfg.StreamBuffer < 0:
		return nil, fmt.Errorf("grpcx: StreamBuffer must not be negative, got %d", cfg.StreamBuffer)
	case cfg.Hedge != nil && cfg.Idempotent == nil:
		return nil, errors.New("grpcx: Hedge needs Idempotent: only the methods it reports are hedged")
	}
	c := &Client{
		idem:      cfg.Idempotent,
		retryCode: cfg.RetryCode,
		failure:   cfg.Failure,
		timeout:   cfg.AttemptTimeout,
		buffer:    cfg.StreamBuffer,
		sendPrio:  cfg.SendPriority,
	}
	if c.retryCode == nil {
		c.retryCode = func(_ string, code codes.Code) bool { return DefaultRetryCode(code) }
	}
	if c.failure == nil {
		c.failure = DefaultFailure
	}
	if c.buffer == 0 {
		c.buffer = DefaultStreamBuffer
	}
	maxMethods := cfg.MaxMethods
	if maxMethods == 0 {
		maxMethods = DefaultMaxMethods
	}
	c.guards = newMethodGuards(cfg.Guards, maxMethods)
	r := cfg.Retry
	if r == nil {
		var err error
		if r, err = retry.New(retry.Config{Name: cfg.Name, Observer: cfg.Observer}); err != nil {
			return nil, err // the zero Config is valid: not reached
		}
	}
	c.retrying = middleware.Apply(c.attempt, retry.Middleware[*call, any](r))
	if cfg.Hedge != nil {
		c.hedged = middleware.Apply(c.attempt, retry.Middleware[*call, any](r), hedge.Middleware[*call, any](cfg.Hedge))
	}
	return c, nil
}

// DialOptions returns the options that install c on a grpc.ClientConn:
// its Unary and Stream interceptors. To combine them with other
// interceptors, use the methods with grpc.WithChainUnaryInterceptor and
// grpc.WithChainStreamInterceptor. A nil c (NewClient's error ignored) is
// a programmer error: it panics.
func (c *Client) DialOptions() []grpc.DialOption {
	if c == nil {
		panic("grpcx: nil *Client (was NewClient's error ignored?)")
	}
	return []grpc.DialOption{grpc.WithUnaryInterceptor(c.Unary), grpc.WithStreamInterceptor(c.Stream)}
}

// call is one call's state, shared by its attempts. Its fields are set
// before the chain runs and only read by the attempts, except started.
type call struct {
	ctx    context.Context // the caller's
	method string
	guards *Guards
	hedged bool // attempts may run at once: each needs its own reply
	// noRetry: a stream sent more than its buffer; no attempt may follow.
	noRetry atomic.Bool
	started atomic.Int32

	// unary
	req, reply any
	cc         *grpc.ClientConn
	invoker    grpc.UnaryInvoker
	opts       []grpc.CallOption // the caller's and grpc.Trailer(&md)
	md         metadata.MD
	optsBuf    [6]grpc.CallOption

	// stream
	cs *clientStream
}

// errPanicked finishes the permits of an attempt that panicked: a failure.
var errPanicked = errors.New("grpcx: attempt panicked")

// Unary is a grpc.UnaryClientInterceptor: it sends the call through the
// retry loop, the hedge (for idempotent methods) and the method's guards.
// The error it returns is nil or a gRPC status error: a single attempt's
// status unchanged, or an *Error (see Code for Brace's own refusals).
func (c *Client) Unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if err := ctx.Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	if c.sendPrio {
		ctx = withOutgoingPriority(ctx)
	}
	k := &call{ctx: ctx, method: method, guards: c.guards.get(method), req: req, reply: reply, cc: cc, invoker: invoker}
	k.opts = append(append(k.optsBuf[:0], opts...), grpc.Trailer(&k.md))
	st := c.retrying
	if c.hedged != nil && canCopy(reply) && c.idem(method) {
		k.hedged, st = true, c.hedged
	}
	out, err := st(ctx, k)
	if err != nil {
		return callerError(ctx, err)
	}
	if k.hedged && out != reply {
		copyMessage(reply, out) // a hedge won: after every attempt returned
	}
	return nil
}

// withOutgoingPriority adds the priority of ctx to its outgoing metadata
// when it is not Default.
func withOutgoingPriority(ctx context.Context) context.Context {
	if l := priority.From(ctx); l != priority.Default {
		return metadata.AppendToOutgoingContext(ctx, priority.MetadataKey, l.String())
	}
	return ctx
}

// attempt is the stage under the retry loop and the hedge.
func (c *Client) attempt(ctx context.Context, k *call) (any, error) {
	if k.cs != nil {
		return c.streamAttempt(ctx, k)
	}
	reply, opts, md := k.reply, k.opts, &k.md
	if k.started.Add(1) > 1 && k.hedged {
		// It may run beside another attempt: a reply and trailer of its
		// own. The winner's reply is copied when every attempt returned.
		reply, md = newMessage(k.reply), new(metadata.MD)
		opts = append(k.opts[:len(k.opts)-1:len(k.opts)-1], grpc.Trailer(md))
	}
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	var p permits
	if err := k.guards.acquire(ctx, &p); err != nil {
		return nil, err
	}
	defer p.done(errPanicked, nil) // a no-op once p.done below has run
	*md = nil
	err := k.invoker(ctx, k.method, k.req, reply, k.cc, opts...)
	p.done(err, c.failure)
	if err != nil {
		return nil, c.attemptError(k, err, *md)
	}
	return reply, nil
}

// attemptError classifies a failed attempt's error for the retry loop.
func (c *Client) attemptError(k *call, err error, md metadata.MD) error {
	// Not a status (an error from an interceptor inside this one): the
	// status grpc-go would report, Unknown, decides.
	st, _ := status.FromError(err)
	e := &StatusError{err: err, st: st}
	if k.ctx.Err() != nil || k.noRetry.Load() {
		return e // the caller left, or a stream cannot be replayed
	}
	e.retryable = c.retryCode(k.method, st.Code())
	d, again := pushbackOf(st, md)
	e.after = d
	if !again {
		e.retryable = false // the server said not to retry (gRFC A6)
	}
	return e
}

// canCopy reports whether a reply of this type can be made anew for a
// hedged attempt and copied back.
func canCopy(m any) bool {
	if _, ok := m.(proto.Message); ok {
		return true
	}
	v := reflect.ValueOf(m)
	return v.Kind() == reflect.Pointer && !v.IsNil()
}

func newMessage(m any) any {
	if pm, ok := m.(proto.Message); ok {
		return pm.ProtoReflect().New().Interface()
	}
	return reflect.New(reflect.TypeOf(m).Elem()).Interface()
}

func copyMessage(dst, src any) {
	if pd, ok := dst.(proto.Message); ok {
		proto.Reset(pd)
		proto.Merge(pd, src.(proto.Message))
		return
	}
	reflect.ValueOf(dst).Elem().Set(reflect.ValueOf(src).Elem())
}
