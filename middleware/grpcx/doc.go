// Package grpcx brings Brace to gRPC: client interceptors that send every
// call through a retry loop, a hedge and per-method breakers and limits, and
// server interceptors and a tap handle that shed load, limit rates and trip
// a breaker, answering with gRPC status codes and a pushback.
//
// It is a module of its own (github.com/brace-go/brace/middleware/grpcx),
// so that grpc-go and protobuf never enter the module graph of a Brace user
// who does not import it.
//
//	c, err := grpcx.NewClient(grpcx.ClientConfig{
//		Retry:  r,                                   // a *retry.Retrier; nil means retry's defaults
//		Guards: func(method string) grpcx.Guards {   // once per method
//			return grpcx.Guards{Breaker: breakerFor(method)}
//		},
//	})
//	conn, err := grpc.NewClient(target, append(c.DialOptions(), creds)...)
//
//	s, err := grpcx.NewServer(grpcx.ServerConfig{
//		Guards: func(string) grpcx.Guards { return grpcx.Guards{Backpressure: bp, RateLimit: rl} },
//	})
//	srv := grpc.NewServer(s.ServerOptions()...) // Tap, Unary and Stream
//
// # Client
//
// Client.Unary and Client.Stream are a grpc.UnaryClientInterceptor and a
// grpc.StreamClientInterceptor. Each call runs, outermost first:
//
//	Retry → Hedge (idempotent methods only) → Guards → AttemptTimeout → the attempt
//
// ClientConfig.Guards returns a method's breaker, client-side throttle,
// rate limiter, backpressure limiter and adaptive limiter (type Guards); it is called once
// per method and its answer kept (at most MaxMethods methods), so per-method
// breakers and limits, or one breaker per target, are a line each. Guards are
// taken per attempt with their Acquire and finished with Permit.Done, so a
// breaker counts failed attempts; ClientConfig.Failure says which codes are
// failures (DefaultFailure: Unavailable, DeadlineExceeded, Internal,
// Unknown, DataLoss — not the caller's own mistakes).
//
// # What is retried
//
// A failed attempt is retried when ClientConfig.RetryCode says so for its
// method and code (DefaultRetryCode: Unavailable, ResourceExhausted, Aborted
// and DeadlineExceeded; never InvalidArgument, PermissionDenied, NotFound,
// Internal ...), while the caller's context lives. The server's
// grpc-retry-pushback-ms trailer (gRFC A6), or a google.rpc.RetryInfo detail,
// is the attempt's RetryAfter: the retry never starts before it. A negative
// or malformed pushback means "do not retry", as gRFC A6 says, and is obeyed.
// Inside the chain a failed attempt is a *StatusError, which carries both to
// the Retrier.
//
// # Hedging
//
// ClientConfig.Hedge hedges only the methods ClientConfig.Idempotent reports:
// a hedged call reaches the server more than once. Each hedged attempt
// decodes into a reply of its own; the winner's is copied into the caller's
// reply once every attempt has returned, so no attempt writes to the
// caller's reply after the call, and a losing or cancelled attempt's reply
// is never seen.
//
// # Contexts and deadlines
//
// Every attempt runs on a context derived from the call's own: no context is
// shared between calls, a caller who cancels cancels its attempts, and no
// attempt outlives the call. AttemptTimeout bounds each attempt and never
// extends the caller's deadline; a call whose deadline has passed is not
// retried. A call whose context has ended before it starts sends nothing.
//
// # Streams
//
// A stream is retried and hedged only until its first response message:
// after that the caller has seen data that a new attempt could not take
// back, and the server may have acted on the requests. The stream opens no
// attempt until the first RecvMsg; the messages sent before then are kept
// (up to StreamBuffer bytes) and sent again to each new attempt; the first
// attempt to receive a message wins. Each attempt takes the guards; the
// winner holds them until the stream ends (RecvMsg returns an error, or the
// caller cancels), so a backpressure slot or an adaptive limit covers the
// whole stream and the breaker counts the stream's outcome. See
// Client.Stream for Header and large client streams.
//
// # Server
//
// Server.Unary and Server.Stream apply a method's guards around the handler;
// Server.Tap (grpc.InTapHandle) applies them when the headers arrive, before
// the request is read or decoded, and the interceptors release them when the
// handler returns. A refused call gets ResourceExhausted when a rate limit
// refused it (the caller went over a quota: send less) and Unavailable for
// every other refusal — shed, adaptive limit, open breaker (the server cannot
// take the call now; the same call may succeed later or on another replica,
// and Unavailable is the code every gRPC retry policy retries). The pushback
// is the refusal's own RetryAfter (a limiter's delay, the time until an open
// breaker probes) or ServerConfig.Pushback, sent as grpc-retry-pushback-ms
// and as a RetryInfo detail; a tap cannot send trailers, so its refusals
// carry the detail only.
//
// # Priorities
//
// A call's priority.Level travels in the priority.MetadataKey
// ("brace-priority") metadata. A Client with ClientConfig.SendPriority
// sends priority.From of the caller's context when it is not Default (an
// absent value means Default). A Server believes it only when
// ServerConfig.TrustPriority says so for the call (TrustAll trusts every
// caller; nil, none), and then puts it in the call's context with
// priority.With before the guards are taken, so limiters that shed by
// priority see it and the handler reads it with priority.From. A value
// that is not a level means Default and is logged (slog.Default, Warn, at
// most once every 10 s); the call is never refused for it.
//
// # Errors
//
// Callers get gRPC status errors: status.FromError works and the code is
// preserved. A single attempt's status comes back unchanged; anything else —
// retries exhausted, a Brace refusal — is an *Error, which is the status for
// status.FromError and unwraps to the Brace error for errors.Is and errors.As
// (errors.Is(err, breaker.ErrOpen)). Code gives the mapping.
//
// # Not yet
//
// A per-client rate limit on the server waits for a keyed Acquire in
// ratelimit.
//
// # Cost
//
// A successful unary call costs one allocation in the interceptor (the
// call's state) plus grpc-go's copy of the trailers it is asked for, which is
// where the pushback comes from; guards add none. A server interceptor adds
// no allocation on success. Tap adds a few (the permits it hands over in
// the stream's context, and a context.AfterFunc that releases them if the
// stream never reaches an interceptor) and one short goroutine when the
// stream ends, which runs that release or finds nothing to do. A Client and a Server
// are safe for concurrent use. docs/grpc.md has the measurements.
package grpcx
