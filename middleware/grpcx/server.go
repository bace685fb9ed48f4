package grpcx

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"reflect"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/brace-go/brace/middleware/priority"
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

	// TrustPriority reports whether the priority a call carries in its
	// priority.MetadataKey ("brace-priority") metadata may be believed.
	// It is called only for a call that carries one, with the call's
	// context (peer.FromContext gives the peer and its credentials'
	// AuthInfo) and method. When it returns true, the call runs at that
	// level: Tap and the interceptors put it in the call's context with
	// priority.With before the Guards are taken, so the limiters that
	// shed by priority see it, and the handler reads it with
	// priority.From (and a grpcx Client with SendPriority passes it on).
	// A value that is not a level ("critical", "default", "sheddable",
	// any case) means Default, and is logged (slog.Default, level Warn,
	// at most once every 10 s); the call is never refused for it. Only
	// the first value is read. Nil means no call's priority is trusted:
	// every call runs at Default, whatever it sends (a server reachable
	// from outside must not let callers promote themselves). TrustAll
	// trusts every caller. In Tap, a panic in TrustPriority refuses the
	// call with Internal.
	TrustPriority func(ctx context.Context, method string) bool
}

// TrustAll is a ServerConfig.TrustPriority that trusts every caller: for a
// server only trusted clients can reach.
func TrustAll(context.Context, string) bool { return true }

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
	trust    func(context.Context, string) bool

	// badPrio counts the unknown priorities not yet logged; badLogged is
	// when the last was logged (Unix nanoseconds).
	badPrio   atomic.Int64
	badLogged atomic.Int64

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
	s := &Server{failure: cfg.Failure, pushback: cfg.Pushback, trust: cfg.TrustPriority}
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
		h.p.done(context.Canceled, nil)
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
//
// With ServerConfig.TrustPriority, the call's priority is read from its
// metadata first and put in the context the guards and the handler see.
func (s *Server) Tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	g, err := s.tapGuards(info.FullMethodName)
	if err != nil {
		return ctx, err
	}
	var vals []string
	if s.trust != nil {
		vals = info.Header[priority.MetadataKey]
	}
	if g.empty() && len(vals) == 0 {
		return ctx, nil
	}
	h := &held{Context: ctx}
	if len(vals) > 0 {
		// The interceptor finds h and reads no metadata again.
		if h.Context, err = s.tapPriority(ctx, info.FullMethodName, vals[0]); err != nil {
			return ctx, err
		}
	}
	if !g.empty() {
		if err := g.acquire(h.Context, &h.p); err != nil {
			return ctx, s.refuse(err).st
		}
		context.AfterFunc(ctx, h.release)
	}
	return h, nil
}

// tapPriority is withPriority for Tap, where a panic in TrustPriority
// becomes an Internal status for the call, as one in Guards does.
func (s *Server) tapPriority(ctx context.Context, method, v string) (pctx context.Context, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = status.Errorf(codes.Internal, "grpcx: ServerConfig.TrustPriority panicked for %q: %v", method, r)
		}
	}()
	return s.withPriority(ctx, method, v), nil
}

// withPriority returns ctx with the level v names, if the call is trusted
// and the level is not Default.
func (s *Server) withPriority(ctx context.Context, method, v string) context.Context {
	if !s.trust(ctx, method) {
		return ctx
	}
	l, err := priority.Parse(v)
	if err != nil {
		s.logBadPriority(ctx, method, err)
		return ctx
	}
	if l == priority.Default {
		return ctx
	}
	return priority.With(ctx, l)
}

// badPriorityEvery is the least time between two records of unknown
// priorities: a client sending a bad value with every call must not
// flood the log.
const badPriorityEvery = 10 * time.Second

// logBadPriority logs an unknown priority, unless one was logged in the
// last badPriorityEvery; the record counts the calls since the last. A
// panicking log handler loses the record, not the call.
func (s *Server) logBadPriority(ctx context.Context, method string, err error) {
	s.badPrio.Add(1)
	now := time.Now().UnixNano()
	last := s.badLogged.Load()
	if last != 0 && now-last < int64(badPriorityEvery) || !s.badLogged.CompareAndSwap(last, now) {
		return
	}
	n := s.badPrio.Swap(0)
	if len(method) > 128 {
		method = method[:128] + "…" // a client's string
	}
	defer func() { _ = recover() }()
	slog.Default().LogAttrs(ctx, slog.LevelWarn, "grpcx: unknown priority in metadata; the call runs at default",
		slog.String("method", method), slog.String("error", err.Error()), slog.Int64("calls", n))
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
// guarded is false when the method has no guards. It returns the call's
// context: with the trusted priority, which the guards were taken with.
// On a refusal it sets the pushback trailer and returns the status error.
func (s *Server) admit(ctx context.Context, method string, p *permits) (_ context.Context, h *held, guarded bool, err error) {
	if err := ctx.Err(); err != nil {
		return ctx, nil, false, status.FromContextError(err).Err()
	}
	if h, ok := ctx.Value(heldKey{}).(*held); ok {
		if h.claimed.CompareAndSwap(false, true) {
			return ctx, h, true, nil
		}
		return ctx, nil, false, status.FromContextError(context.Canceled).Err()
	}
	if s.trust != nil {
		if vals := metadata.ValueFromIncomingContext(ctx, priority.MetadataKey); len(vals) > 0 {
			ctx = s.withPriority(ctx, method, vals[0])
		}
	}
	g := s.guards.get(method)
	if g.empty() {
		return ctx, nil, false, nil
	}
	if err := g.acquire(ctx, p); err != nil {
		r := s.refuse(err)
		_ = grpc.SetTrailer(ctx, r.trailer)
		return ctx, nil, false, r.st
	}
	return ctx, nil, true, nil
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
	ctx, h, guarded, err := s.admit(ctx, info.FullMethod, &own)
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
	defer p.done(errPanicked, nil) // a no-op after the Done below
	resp, err := handler(ctx, req)
	err = s.handlerError(ctx, err)
	p.done(err, s.failure)
	return resp, err
}

// Stream is a grpc.StreamServerInterceptor: as Unary, for the whole
// stream.
func (s *Server) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx0 := ss.Context()
	var own permits
	ctx, h, guarded, err := s.admit(ctx0, info.FullMethod, &own)
	if err != nil {
		return err
	}
	if ctx != ctx0 {
		ss = &serverStream{ServerStream: ss, ctx: ctx} // with its priority
	}
	if !guarded {
		return s.handlerError(ctx, handler(srv, ss))
	}
	p := &own
	if h != nil {
		p = &h.p
	}
	defer p.done(errPanicked, nil)
	err = s.handlerError(ctx, handler(srv, ss))
	p.done(err, s.failure)
	return err
}

// serverStream is a grpc.ServerStream with the context admit returned.
type serverStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (ss *serverStream) Context() context.Context { return ss.ctx }

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
