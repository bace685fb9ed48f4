package benchcmp

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/brace-go/brace/middleware/grpcx"
	"github.com/brace-go/brace/middleware/retry"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/failsafegrpc"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
)

// GRPC: the cost per successful unary call of a client-side retry and
// breaker around a real grpc-go call over bufconn (an in-memory
// connection: the client and server code run, the network does not), on
// grpc-go's own test service, whose handler runs the scenario's stage.
// Every implementation sends the same request on the same kind of
// connection; "direct" is grpc-go with no interceptor and its retry off,
// so brace − direct is the interceptor's overhead per call.
//
//   - grpc-go-retry: grpc-go's own retry (gRFC A6) through the service
//     config's retryPolicy (3 attempts on UNAVAILABLE), no interceptor;
//   - brace: a grpcx client interceptor whose retry loop (retry's
//     defaults: 3 attempts) runs around a breaker (5 consecutive
//     failures), with grpc-go's retry off;
//   - failsafe: failsafe-go's failsafegrpc unary client interceptor with a
//     retry policy (3 attempts) around a circuit breaker (5 consecutive
//     failures), with grpc-go's retry off.
//
// Sequential only: the request message is reused between calls (each
// call's own cost is the interceptor's and grpc-go's).
//
// path=interceptor is the same interceptors with no connection at all:
// the invoker runs the stage directly, so the time is the interceptor's
// own, which path=unary's noise (a whole gRPC call over bufconn) hides.
// grpc-go's retry lives in its transport, so it has no row there.
func grpcScenarios() []scenario {
	return []scenario{
		{path: "interceptor", attempts: 1, seqOnly: true, impls: []impl{
			{name: "direct", build: func(tb testing.TB, s Stage) Stage {
				return interceptorStage(s, nil)
			}, zeroAlloc: true},
			{name: "brace", build: func(tb testing.TB, s Stage) Stage {
				return interceptorStage(s, braceInterceptor(tb))
			}},
			{name: "failsafe", build: func(tb testing.TB, s Stage) Stage {
				return interceptorStage(s, failsafeInterceptor())
			}},
		}},
		{path: "unary", attempts: 1, seqOnly: true, impls: []impl{
			{name: "direct", build: func(tb testing.TB, s Stage) Stage {
				return grpcStage(tb, s, grpc.WithDisableRetry())
			}},
			{name: "grpc-go-retry", build: func(tb testing.TB, s Stage) Stage {
				return grpcStage(tb, s, grpc.WithDefaultServiceConfig(grpcRetryPolicy))
			}},
			{name: "brace", build: func(tb testing.TB, s Stage) Stage {
				return grpcStage(tb, s, grpc.WithDisableRetry(), grpc.WithUnaryInterceptor(braceInterceptor(tb)))
			}},
			{name: "failsafe", build: func(tb testing.TB, s Stage) Stage {
				return grpcStage(tb, s, grpc.WithDisableRetry(), grpc.WithUnaryInterceptor(failsafeInterceptor()))
			}},
		}},
	}
}

// braceInterceptor is a grpcx client's Unary: retry's defaults (3
// attempts) around a breaker (5 consecutive failures).
func braceInterceptor(tb testing.TB) grpc.UnaryClientInterceptor {
	r, err := retry.New(retry.Config{})
	must(tb, err)
	br := newBraceBreaker(tb)
	c, err := grpcx.NewClient(grpcx.ClientConfig{Retry: r, Guards: func(string) grpcx.Guards {
		return grpcx.Guards{Breaker: br}
	}})
	must(tb, err)
	return c.Unary
}

// failsafeInterceptor is failsafegrpc's unary client interceptor with a
// retry policy (3 attempts) around a circuit breaker (5 consecutive
// failures). With(a, b) is a(b(fn)): retry outermost.
func failsafeInterceptor() grpc.UnaryClientInterceptor {
	return failsafegrpc.NewUnaryClientInterceptor[any](
		retrypolicy.NewBuilder[any]().WithMaxAttempts(3).Build(),
		circuitbreaker.NewBuilder[any]().WithFailureThreshold(5).Build(),
	)
}

// interceptorStage calls ic (none if nil) around an invoker that runs s
// on the request's ResponseSize: no connection, no encoding.
func interceptorStage(s Stage, ic grpc.UnaryClientInterceptor) Stage {
	req, reply := &testpb.SimpleRequest{}, &testpb.SimpleResponse{}
	var out int
	invoker := func(ctx context.Context, _ string, req, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
		in := int(req.(*testpb.SimpleRequest).ResponseSize)
		var err error
		out, err = s(ctx, in)
		return err
	}
	const method = "/grpc.testing.TestService/UnaryCall"
	return func(ctx context.Context, in int) (int, error) {
		req.ResponseSize = int32(in)
		var err error
		if ic == nil {
			err = invoker(ctx, method, req, reply, nil)
		} else {
			err = ic(ctx, method, req, reply, nil, invoker)
		}
		return out, err
	}
}

// grpcRetryPolicy is grpc-go's own retry through the service config.
const grpcRetryPolicy = `{"methodConfig":[{"name":[{"service":"grpc.testing.TestService"}],
 "retryPolicy":{"maxAttempts":3,"initialBackoff":"0.1s","maxBackoff":"1s","backoffMultiplier":2,
 "retryableStatusCodes":["UNAVAILABLE","RESOURCE_EXHAUSTED","ABORTED"]}}]}`

// stageService is grpc-go's test service whose UnaryCall runs a Stage on
// the request's ResponseSize.
type stageService struct {
	testpb.UnimplementedTestServiceServer
	s Stage
}

var errWrongAnswer = status.Error(codes.Internal, "benchcmp: the stage returned a wrong answer")

func (svc *stageService) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	in := int(req.GetResponseSize())
	out, err := svc.s(ctx, in)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	if out != in+1 {
		return nil, errWrongAnswer
	}
	return &testpb.SimpleResponse{}, nil
}

// grpcStage serves a stageService running s over bufconn and returns a
// Stage that makes one unary call with a client dialled with dopts: it
// returns in+1 when the call succeeds (the handler checked the stage's
// answer). Everything is stopped when tb ends.
func grpcStage(tb testing.TB, s Stage, dopts ...grpc.DialOption) Stage {
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, &stageService{s: s})
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	cc, err := grpc.NewClient("passthrough:///bufnet", append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
	}, dopts...)...)
	must(tb, err)
	tb.Cleanup(func() {
		cc.Close()
		srv.Stop()
		<-done
	})
	cl := testpb.NewTestServiceClient(cc)
	req := &testpb.SimpleRequest{}
	return func(ctx context.Context, in int) (int, error) {
		req.ResponseSize = int32(in)
		if _, err := cl.UnaryCall(ctx, req); err != nil {
			return 0, err
		}
		return in + 1, nil
	}
}

func BenchmarkGRPC(b *testing.B)  { run(b, grpcScenarios()) }
func TestGRPC(t *testing.T)       { verify(t, grpcScenarios()) }
func TestGRPCAllocs(t *testing.T) { allocs(t, grpcScenarios()) }
