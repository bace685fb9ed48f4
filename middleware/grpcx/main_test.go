package grpcx_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// service is grpc-go's own test service with programmable methods. Each
// func gets the 1-based number of the call to its method.
type service struct {
	testpb.UnimplementedTestServiceServer
	unary  func(ctx context.Context, n int, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error)
	empty  func(ctx context.Context, n int) error
	stream func(n int, req *testpb.StreamingOutputCallRequest, ss grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error
	bidi   func(n int, ss grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error

	unaryCalls, emptyCalls, streamCalls, bidiCalls atomic.Int64
}

func (s *service) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	n := int(s.unaryCalls.Add(1))
	if s.unary == nil {
		return &testpb.SimpleResponse{Username: "ok"}, nil
	}
	return s.unary(ctx, n, req)
}

func (s *service) EmptyCall(ctx context.Context, _ *testpb.Empty) (*testpb.Empty, error) {
	n := int(s.emptyCalls.Add(1))
	if s.empty == nil {
		return &testpb.Empty{}, nil
	}
	return &testpb.Empty{}, s.empty(ctx, n)
}

func (s *service) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, ss grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	return s.stream(int(s.streamCalls.Add(1)), req, ss)
}

func (s *service) FullDuplexCall(ss grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	return s.bidi(int(s.bidiCalls.Add(1)), ss)
}

// countingCodec is the proto codec, counting the messages it decodes.
type countingCodec struct{ decoded atomic.Int64 }

func (c *countingCodec) Marshal(v any) ([]byte, error) { return proto.Marshal(v.(proto.Message)) }
func (c *countingCodec) Unmarshal(data []byte, v any) error {
	c.decoded.Add(1)
	return proto.Unmarshal(data, v.(proto.Message))
}
func (c *countingCodec) Name() string { return "proto" }

var _ encoding.Codec = (*countingCodec)(nil)

// start serves svc on an in-memory listener and returns a client
// connected to it. Both are stopped when the test ends.
func start(t testing.TB, svc *service, sopts []grpc.ServerOption, dopts ...grpc.DialOption) testpb.TestServiceClient {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	return startOn(t, lis, func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }, "passthrough:///bufnet", svc, sopts, dopts...)
}

// startTCP is start on a loopback TCP port.
func startTCP(t testing.TB, svc *service, sopts []grpc.ServerOption, dopts ...grpc.DialOption) testpb.TestServiceClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startOn(t, lis, nil, lis.Addr().String(), svc, sopts, dopts...)
}

func startOn(t testing.TB, lis net.Listener, dial func(context.Context, string) (net.Conn, error), target string, svc *service, sopts []grpc.ServerOption, dopts ...grpc.DialOption) testpb.TestServiceClient {
	srv := grpc.NewServer(sopts...)
	testpb.RegisterTestServiceServer(srv, svc)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if dial != nil {
		opts = append(opts, grpc.WithContextDialer(dial))
	}
	cc, err := grpc.NewClient(target, append(opts, dopts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		srv.Stop()
		<-done
	})
	return testpb.NewTestServiceClient(cc)
}
