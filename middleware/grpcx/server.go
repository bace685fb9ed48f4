package grpcx

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// DefaultPushback is the default of ServerConfig.Pushback.
const DefaultPushback = time.Second

// ServerConfig configures a [Server]. The zero value protects nothing: the
// interceptors pass every call through.
type ServerConfig struct {
	// Guards returns the breaker and limits for a method (its full name,
	// "/package.Service/Method"). It is called once per method, outside
	// any lock, and its result is kept; return the same values for every
	// method to guard the whole server. Nil means none.
	//
	// Used by Tap, the guards are applied before the request is read and
	// decoded, on the connection's reading goroutine: they must not wait
	// (backpressure in Shed mode, ratelimit with MaxWait 0), or they hold
	// up every stream of the connection.
	Guards func(method string) Guards

	// MaxMethods bounds the methods whose Guards are kept. Method names
	// come from clients, and Tap sees names no service registered: beyond
	// the bound, a new name gets the guards of Guards(""). Zero means
	// DefaultMaxMethods; negative is an error.
	MaxMethods int

	// Failure reports whether a handler's status code counts as a failure
	// for the Guards (a breaker counts it, an adaptive limit takes no
	// latency sample). Nil means DefaultFailure. A handler's panic is a
	// failure.
	Failure func(c codes.Code) bool

	// Pushback is the pushback sent with a refusal whose error has no
	// RetryAfter of its own (a shed, an adaptive limit). Zero means
	// DefaultPushback (1 s); negative is an error.
	Pushback time.Duration
}

// Server holds the interceptors and tap handle of a grpc.Server. Build it
// with NewServer and install its methods:
//
//	grpc.NewServer(
//		grpc.InTapHandle(s.Tap), // optional: refuse before decoding
//		grpc.UnaryInterceptor(s.Unary),
//		grpc.StreamInterceptor(s.Stream))
//
// With Tap installed, the guards are taken there and released by the
// interceptors when the handler returns; without it, the interceptors take
// them. A Server is safe for concurrent use.
type Server struct {
	guards   *methodGuards
	failure  func(codes.Code) bool
	pushback time.Duration

	// last is the last refusal of a guard, kept so that a server shedding
	// under overload builds its status and trailer once, not per call.
	last atomic.Pointer[refusal]
}

// refusal is a guard's refusal as the client gets it. Its fields are
// read-only: grpc-go copies a trailer it is given (metadata.Join) and only
// reads a status.
type refusal struct {
	err     error // the guard's error, compared by identity
	d       time.Duration
	st      error
	trailer metadata.MD
}

// NewServer returns a Server configured by cfg, or an error naming the
// invalid field.
func NewServer(cfg ServerConfig) (*Server, error) {
	switch {
	case cfg.MaxMethods < 0:
		return nil, fmt.Errorf("grpcx: MaxMethods must not be negative, got %d", cfg.MaxMethods)
	case cfg.Pushback < 0:
		return nil, fmt.Errorf("grpcx: Pushback must not be negative, got %v", cfg.Pushback)
	}
	s := &Server{failure: cfg.Failure, pushback: cfg.Pushback}
	if s.failure == nil {
		s.failure = DefaultFailure
	}
	if s.pushback == 0 {
		s.pushback = DefaultPushback
	}
	maxMethods := cfg.MaxMethods
	if maxMethods == 0 {
		maxMethods = DefaultMaxMethods
	}
	s.guards = newMethodGuards(cfg.Guards, maxMethods)
	return s, nil
}

// held carries the permits Tap took to the interceptor that releases them.
// It is the context Tap returns (one allocation for both).
type held struct {
	context.Context
	p       permits
	claimed atomic.Bool
}

type heldKey struct{}

func (h *held) Value(key any) any {
	if _, ok := key.(heldKey); ok {
		return h
	}
	return h.Context.Value(key)
}

// release finishes the permits of a stream that never reached an
// interceptor, when the stream ends.
func (h *held) release() {
	if h.claimed.CompareAndSwap(false, true) {
		h.p.done(context.Canceled)
	}
}

// ServerOptions returns the options that install s on a grpc.Server: Tap,
// Unary and Stream. To combine them with other interceptors, use the
// methods with grpc.ChainUnaryInterceptor and grpc.ChainStreamInterceptor.
// A nil s (NewServer's error ignored) is a programmer error: it panics.
func (s *Server) ServerOptions() []grpc.ServerOption {
	if s == nil {
		panic("grpcx: nil *Server (was NewServer's error ignored?)")
	}
	return []grpc.ServerOption{grpc.InTapHandle(s.Tap), grpc.UnaryInterceptor(s.Unary), grpc.StreamInterceptor(s.Stream)}
}

// Tap is a tap.ServerInHandle (grpc.InTapHandle): it applies the method's
// guards when the stream's headers arrive, before any message is read or
// decoded, so a refused call costs the server almost nothing. A refusal
// is a status error (Code's mapping) with a google.rpc.RetryInfo detail
// holding the pushback: a tap cannot send trailers, so no
// grpc-retry-pushback-ms goes with it (grpcx clients read both).
//
// The permits it takes are released by Unary or Stream when the handler
// returns, or, for a stream that never reaches them (an unknown method, a
// message that cannot be read), when the stream ends.
func (s *Server) Tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	g, err := s.tapGuards(info.FullMethodName)
	if err != nil {
		return ctx, err
	}
	if g.empty() {
		return ctx, nil
	}
	h := &held{Context: ctx}
	if err := g.acquire(ctx, &h.p); err != nil {
		return ctx, s.refuse(err).st
	}
	context.AfterFunc(ctx, h.release)
	return h, nil
}

// tapGuards is s.guards.get for Tap, which grpc-go calls on the
// connection's goroutine, where a panic would end the process: a panic in
// the user's Guards func becomes an Internal status for that call.
func (s *Server) tapGuards(method string) (g *Guards, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = status.Errorf(codes.Internal, "grpcx: ServerConfig.Guards panicked for %q: %v", method, v)
		}
	}()
	return s.guards.get(method), nil
}

// refuse returns the refusal for a guard's error err: the status error,
// with the pushback as a RetryInfo detail, and the pushback trailer. The
// guards' errors are Brace's (comparable sentinels and shared pointers),
// so the last one is reused while the same error and pushback repeat.
func (s *Server) refuse(err error) *refusal {
	d := s.pushbackOf(err)
	if !reflect.TypeOf(err).Comparable() {
		return &refusal{err: err, d: d, st: refusalStatus(err, d).Err(),
			trailer: metadata.Pairs(PushbackKey, pushbackMillis(d))}
	}
	if r := s.last.Load(); r != nil && r.d == d && r.err == err {
		return r
	}
	r := &refusal{err: err, d: d, st: refusalStatus(err, d).Err(),
		trailer: metadata.Pairs(PushbackKey, pushbackMillis(d))}
	s.last.Store(r)
	return r
}

// pushbackOf is the pushback for a refusal, rounded up to a whole
// millisecond (the trailer's unit, so trailer and detail agree).
func (s *Server) pushbackOf(err error) time.Duration {
	d := retryAfter(err)
	if d <= 0 {
		d = s.pushback
	}
	if r := d % time.Millisecond; r != 0 && d < math.MaxInt64-time.Millisecond {
		d += time.Millisecond - r
	}
	return d
}

// admit takes the method's guards into p, or claims those Tap took (h).
// guarded is false when the method has no guards. On a refusal it sets
// the pushback trailer and returns the status error.
func (s *Server) admit(ctx context.Context, method string, p *permits) (h *held, guarded bool, err error) {
	if err := ctx.Err(); err != nil {
		return nil, false, status.FromContextError(err).Err()
	}
	if h, ok := ctx.Value(heldKey{}).(*held); ok {
		if h.claimed.CompareAndSwap(false, true) {
			return h, true, nil
		}
		return nil, false, status.FromContextError(context.Canceled).Err()
	}
	g := s.guards.get(method)
	if g.empty() {
		return nil, false, nil
	}
	if err := g.acquire(ctx, p); err != nil {
		r := s.refuse(err)
		_ = grpc.SetTrailer(ctx, r.trailer)
		return nil, false, r.st
	}
	return nil, true, nil
}

// Unary is a grpc.UnaryServerInterceptor: it applies the method's guards
// (or releases those Tap took) around the handler. A refusal is a status
// error (Code's mapping: ResourceExhausted for a rate limit, Unavailable
// for any other refusal) with a grpc-retry-pushback-ms trailer and a
// RetryInfo detail. A handler's error comes back unchanged, except a
// Brace refusal it returned (from a guard of its own downstream call),
// which is mapped the same way.
func (s *Server) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	var own permits
	h, guarded, err := s.admit(ctx, info.FullMethod, &own)
	if err != nil {
		return nil, err
	}
	if !guarded {
		resp, err := handler(ctx, req)
		return resp, s.handlerError(ctx, err)
	}
	p := &own
	if h != nil {
		p = &h.p
	}
	defer p.done(errPanicked) // a no-op after the Done below
	resp, err := handler(ctx, req)
	err = s.handlerError(ctx, err)
	p.done(outcome(err, s.failure))
	return resp, err
}

// Stream is a grpc.StreamServerInterceptor: as Unary, for the whole
// stream.
func (s *Server) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx := ss.Context()
	var own permits
	h, guarded, err := s.admit(ctx, info.FullMethod, &own)
	if err != nil {
		return err
	}
	if !guarded {
		return s.handlerError(ctx, handler(srv, ss))
	}
	p := &own
	if h != nil {
		p = &h.p
	}
	defer p.done(errPanicked)
	err = s.handlerError(ctx, handler(srv, ss))
	p.done(outcome(err, s.failure))
	return err
}

// handlerError maps a Brace refusal returned by a handler to its status,
// with the pushback; any other error comes back unchanged.
func (s *Server) handlerError(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	if !isRejected(err) {
		return err
	}
	d := s.pushbackOf(err)
	_ = grpc.SetTrailer(ctx, metadata.Pairs(PushbackKey, pushbackMillis(d)))
	return refusalStatus(err, d).Err()
}
