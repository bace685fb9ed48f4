package grpcx_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/grpcx"
	"github.com/brace-go/brace/middleware/priority"
	"github.com/brace-go/brace/middleware/ratelimit"
	"github.com/brace-go/brace/middleware/retry"
)

// exampleServer fails its first two calls with Unavailable.
type exampleServer struct {
	testpb.UnimplementedTestServiceServer
	n atomic.Int32
}

func (s *exampleServer) UnaryCall(context.Context, *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	n := s.n.Add(1)
	if n <= 2 {
		return nil, status.Error(codes.Unavailable, "restarting")
	}
	return &testpb.SimpleResponse{Username: fmt.Sprintf("answered attempt %d", n)}, nil
}

func ExampleNewClient() {
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	testpb.RegisterTestServiceServer(gs, &exampleServer{})
	go gs.Serve(lis)
	defer gs.Stop()

	r, _ := retry.New(retry.Config{BaseDelay: time.Millisecond})
	b, _ := breaker.New(breaker.Config{Name: "users"})
	c, err := grpcx.NewClient(grpcx.ClientConfig{
		Retry:  r,
		Guards: func(method string) grpcx.Guards { return grpcx.Guards{Breaker: b} }, // one breaker for the target
	})
	if err != nil {
		panic(err)
	}
	conn, _ := grpc.NewClient("passthrough:///bufnet", append(c.DialOptions(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))...)
	defer conn.Close()

	resp, err := testpb.NewTestServiceClient(conn).UnaryCall(context.Background(), &testpb.SimpleRequest{})
	fmt.Println(resp.GetUsername(), err)
	// Output: answered attempt 3 <nil>
}

func ExampleNewServer() {
	rl, _ := ratelimit.New(ratelimit.Config{Rate: 1, Burst: 1})
	bp, _ := backpressure.New(backpressure.Config{Capacity: 100})
	s, err := grpcx.NewServer(grpcx.ServerConfig{
		Guards: func(method string) grpcx.Guards { return grpcx.Guards{RateLimit: rl, Backpressure: bp} },
	})
	if err != nil {
		panic(err)
	}
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer(s.ServerOptions()...) // refuses in the tap, before decoding
	srv := &exampleServer{}
	srv.n.Store(2) // answers at once
	testpb.RegisterTestServiceServer(gs, srv)
	go gs.Serve(lis)
	defer gs.Stop()
	conn, _ := grpc.NewClient("passthrough:///bufnet",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	defer conn.Close()
	client := testpb.NewTestServiceClient(conn)

	for range 2 {
		_, err := client.UnaryCall(context.Background(), &testpb.SimpleRequest{})
		fmt.Println(status.Code(err))
	}
	// Output:
	// OK
	// ResourceExhausted
}

func ExampleCode() {
	fmt.Println(grpcx.Code(backpressure.ErrShed))
	fmt.Println(grpcx.Code(ratelimit.ErrLimited))
	fmt.Println(grpcx.Code(errors.Join(errors.New("lookup"), status.Error(codes.NotFound, "no such user"))))
	fmt.Println(grpcx.Code(context.DeadlineExceeded))
	// Output:
	// Unavailable
	// ResourceExhausted
	// NotFound
	// DeadlineExceeded
}

// levelServer answers with the priority its handler runs at.
type levelServer struct {
	testpb.UnimplementedTestServiceServer
}

func (levelServer) UnaryCall(ctx context.Context, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{Username: priority.From(ctx).String()}, nil
}

// A client sends its callers' priorities and a server trusts them from
// its own services only (here: every caller, through TrustAll), so that
// its limiters shed sheddable calls first and its handlers see the level.
func ExampleServerConfig_trustPriority() {
	s, _ := grpcx.NewServer(grpcx.ServerConfig{TrustPriority: grpcx.TrustAll})
	c, _ := grpcx.NewClient(grpcx.ClientConfig{SendPriority: true})
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer(s.ServerOptions()...)
	testpb.RegisterTestServiceServer(gs, levelServer{})
	go gs.Serve(lis)
	defer gs.Stop()
	conn, _ := grpc.NewClient("passthrough:///bufnet", append(c.DialOptions(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))...)
	defer conn.Close()
	client := testpb.NewTestServiceClient(conn)

	for _, l := range []priority.Level{priority.Critical, priority.Default, priority.Sheddable} {
		resp, err := client.UnaryCall(priority.With(context.Background(), l), &testpb.SimpleRequest{})
		fmt.Println(resp.GetUsername(), err)
	}
	// Output:
	// critical <nil>
	// default <nil>
	// sheddable <nil>
}
