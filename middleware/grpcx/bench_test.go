package grpcx_test

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/grpcx"
	"github.com/brace-go/brace/middleware/throttle"
)

// grpcRetryPolicy is grpc-go's own retry (gRFC A6) through the service
// config, the baseline of BenchmarkUnary.
const grpcRetryPolicy = `{"methodConfig":[{"name":[{"service":"grpc.testing.TestService"}],
 "retryPolicy":{"maxAttempts":3,"initialBackoff":"0.1s","maxBackoff":"1s","backoffMultiplier":2,
 "retryableStatusCodes":["UNAVAILABLE","RESOURCE_EXHAUSTED","ABORTED"]}}]}`

// BenchmarkUnary is the cost per successful unary call over bufconn:
// grpc-go alone, grpc-go's service-config retry, and the grpcx client with
// its default retry, and with a breaker and a backpressure limiter.
func BenchmarkUnary(b *testing.B) {
	b.Run("grpc-go/no-retry", func(b *testing.B) {
		benchUnary(b, grpc.WithDisableRetry())
	})
	b.Run("grpc-go/service-config-retry", func(b *testing.B) {
		benchUnary(b, grpc.WithDefaultServiceConfig(grpcRetryPolicy))
	})
	b.Run("grpcx/retry", func(b *testing.B) {
		c, _ := grpcx.NewClient(grpcx.ClientConfig{})
		benchUnary(b, append(c.DialOptions(), grpc.WithDisableRetry())...)
	})
	b.Run("grpcx/retry+breaker+backpressure", func(b *testing.B) {
		br, _ := breaker.New(breaker.Config{})
		bp, _ := backpressure.New(backpressure.Config{Capacity: 1000})
		c, _ := grpcx.NewClient(grpcx.ClientConfig{Guards: func(string) grpcx.Guards {
			return grpcx.Guards{Breaker: br, Backpressure: bp}
		}})
		benchUnary(b, append(c.DialOptions(), grpc.WithDisableRetry())...)
	})
	b.Run("grpcx/server-interceptor+tap", func(b *testing.B) {
		bp, _ := backpressure.New(backpressure.Config{Capacity: 1000})
		s, _ := grpcx.NewServer(grpcx.ServerConfig{Guards: func(string) grpcx.Guards { return grpcx.Guards{Backpressure: bp} }})
		benchUnaryServer(b, s.ServerOptions(), grpc.WithDisableRetry())
	})
}

func benchUnary(b *testing.B, dopts ...grpc.DialOption) { benchUnaryServer(b, nil, dopts...) }

func benchUnaryServer(b *testing.B, sopts []grpc.ServerOption, dopts ...grpc.DialOption) {
	cl := start(b, &service{}, sopts, dopts...)
	ctx := context.Background()
	req := &testpb.SimpleRequest{}
	if _, err := cl.UnaryCall(ctx, req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := cl.UnaryCall(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

func okInvoker(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
	return nil
}

func okHandler(context.Context, any) (any, error) { return nil, nil }

// TestAllocs counts the allocations of the interceptors themselves on the
// success path and the refusal path, without grpc-go's.
func TestAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocations differ under -race")
	}
	br, _ := breaker.New(breaker.Config{})
	bp, _ := backpressure.New(backpressure.Config{Capacity: 1})
	full, _ := backpressure.New(backpressure.Config{Capacity: 1})
	p, _ := full.Acquire(context.Background())
	defer p.Done(nil)
	guarded, _ := grpcx.NewClient(grpcx.ClientConfig{Guards: func(string) grpcx.Guards { return grpcx.Guards{Breaker: br, Backpressure: bp} }})
	plain, _ := grpcx.NewClient(grpcx.ClientConfig{})
	srv, _ := grpcx.NewServer(grpcx.ServerConfig{Guards: func(string) grpcx.Guards { return grpcx.Guards{Breaker: br, Backpressure: bp} }})
	refusedClient, _ := grpcx.NewClient(grpcx.ClientConfig{Guards: func(string) grpcx.Guards { return grpcx.Guards{Backpressure: full} }})
	refusedServer, _ := grpcx.NewServer(grpcx.ServerConfig{Guards: func(string) grpcx.Guards { return grpcx.Guards{Backpressure: full} }})
	th, _ := throttle.New(throttle.Config{})
	throttled, _ := grpcx.NewClient(grpcx.ClientConfig{Guards: func(string) grpcx.Guards { return grpcx.Guards{Breaker: br, Throttle: th} }})
	sending, _ := grpcx.NewClient(grpcx.ClientConfig{SendPriority: true})
	trusting, _ := grpcx.NewServer(grpcx.ServerConfig{TrustPriority: grpcx.TrustAll, Guards: func(string) grpcx.Guards { return grpcx.Guards{Breaker: br, Backpressure: bp} }})
	ctx := context.Background()
	inCtx := metadata.NewIncomingContext(ctx, metadata.Pairs("user-agent", "grpc-go", "x-trace", "1"))
	info := &grpc.UnaryServerInfo{FullMethod: unaryMethod}
	var reply testpb.SimpleResponse
	for _, tc := range []struct {
		name string
		max  float64
		f    func()
	}{
		{"client, success", 1, func() { plain.Unary(ctx, unaryMethod, nil, &reply, nil, okInvoker) }},
		{"client with guards, success", 1, func() { guarded.Unary(ctx, unaryMethod, nil, &reply, nil, okInvoker) }},
		{"server with guards, success", 0, func() { srv.Unary(ctx, nil, info, okHandler) }},
		{"client with a throttle guard, success", 1, func() { throttled.Unary(ctx, unaryMethod, nil, &reply, nil, okInvoker) }},
		{"client with SendPriority, default call", 1, func() { sending.Unary(ctx, unaryMethod, nil, &reply, nil, okInvoker) }},
		{"server with TrustPriority, call without priority", 0, func() { trusting.Unary(inCtx, nil, info, okHandler) }},
		{"client, refused", 8, func() { refusedClient.Unary(ctx, unaryMethod, nil, &reply, nil, okInvoker) }},
		{"server, refused", 5, func() { refusedServer.Unary(ctx, nil, info, okHandler) }},
	} {
		got := testing.AllocsPerRun(100, tc.f)
		t.Logf("%s: %v", tc.name, got)
		if got > tc.max {
			t.Errorf("%s: %v allocations per call, want at most %v", tc.name, got, tc.max)
		}
	}
}
