// Command grpc runs a flaky gRPC server and a Brace-protected client in one
// process, over loopback TCP, and prints what the client saw in each
// scenario: a server that fails now and then, one that pushes back, one that
// says not to retry, a request error that must not be retried, an attempt
// that hangs, a slow replica beaten by a hedge, a server that sheds load
// before decoding, a method whose breaker opens, and a stream that fails
// before its first message.
//
//	go run ./examples/grpc
//
// It runs in about two seconds and exits 1 if any scenario does not turn out
// as described. The concerns' events (each retry, the breaker opening, the
// server's sheds) go to stderr as log records through middleware.Log.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/grpcx"
	"github.com/brace-go/brace/middleware/hedge"
	"github.com/brace-go/brace/middleware/retry"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if err := run(log, os.Stdout); err != nil {
		log.Error("grpc example failed", "err", err)
		os.Exit(1)
	}
}

// flaky is the server: grpc-go's own test service, whose UnaryCall
// behaves as the request's payload says.
type flaky struct {
	testpb.UnimplementedTestServiceServer
	mu    sync.Mutex
	calls map[string]int // attempts seen per scenario
}

func (f *flaky) count(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[key]++
	return f.calls[key]
}

func (f *flaky) seen(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[key]
}

func (f *flaky) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	scenario := string(req.GetPayload().GetBody())
	n := f.count(scenario)
	switch scenario {
	case "flaky": // fails twice, then answers
		if n <= 2 {
			return nil, status.Error(codes.Unavailable, "backend restarting")
		}
	case "pushback": // overloaded: asks for 200 ms
		if n == 1 {
			grpc.SetTrailer(ctx, metadata.Pairs(grpcx.PushbackKey, "200"))
			return nil, status.Error(codes.ResourceExhausted, "quota; come back in 200ms")
		}
	case "do-not-retry": // gRFC A6: a negative pushback means do not retry
		grpc.SetTrailer(ctx, metadata.Pairs(grpcx.PushbackKey, "-1"))
		return nil, status.Error(codes.Unavailable, "draining; go elsewhere")
	case "invalid":
		return nil, status.Error(codes.InvalidArgument, "no such user")
	case "hang": // the first attempt hangs until the client gives up on it
		if n == 1 {
			<-ctx.Done()
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	case "shed": // holds its slot for a while: a second call is shed
		time.Sleep(150 * time.Millisecond)
	}
	return &testpb.SimpleResponse{Username: fmt.Sprintf("%s: answered attempt %d", scenario, n)}, nil
}

// CacheableUnaryCall is the idempotent method: its first replica is slow.
func (f *flaky) CacheableUnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	n := f.count("hedge")
	if n == 1 {
		select {
		case <-ctx.Done(): // the hedge won: this attempt is cancelled
			return nil, status.FromContextError(ctx.Err()).Err()
		case <-time.After(2 * time.Second):
		}
	}
	return &testpb.SimpleResponse{Username: fmt.Sprintf("hedge: answered attempt %d", n)}, nil
}

// EmptyCall is broken: the client's breaker for it opens.
func (f *flaky) EmptyCall(context.Context, *testpb.Empty) (*testpb.Empty, error) {
	f.count("breaker")
	return nil, status.Error(codes.Internal, "database corrupted")
}

// StreamingOutputCall fails before its first message once, then streams.
func (f *flaky) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, ss grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	if f.count("stream") == 1 {
		return status.Error(codes.Unavailable, "not ready")
	}
	for i := range 3 {
		if err := ss.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: []byte{byte('a' + i)}}}); err != nil {
			return err
		}
	}
	return nil
}

func run(log *slog.Logger, out io.Writer) error {
	obs := middleware.Log(log)

	// The server: one slot per call of UnaryCall, refused in the tap
	// before the request is decoded.
	slot, err := backpressure.New(backpressure.Config{Name: "server", Capacity: 1, Observer: obs})
	if err != nil {
		return err
	}
	srv, err := grpcx.NewServer(grpcx.ServerConfig{
		Guards: func(method string) grpcx.Guards {
			if method == "/grpc.testing.TestService/UnaryCall" {
				return grpcx.Guards{Backpressure: slot}
			}
			return grpcx.Guards{}
		},
		Pushback: 100 * time.Millisecond,
	})
	if err != nil {
		return err
	}
	svc := &flaky{calls: map[string]int{}}
	gs := grpc.NewServer(srv.ServerOptions()...)
	testpb.RegisterTestServiceServer(gs, svc)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	defer func() { gs.Stop(); <-served }()

	// The client: retries, a breaker per method, a per-attempt timeout,
	// hedging for the one idempotent method.
	r, err := retry.New(retry.Config{Name: "flaky", MaxAttempts: 6, BaseDelay: 10 * time.Millisecond, Observer: obs})
	if err != nil {
		return err
	}
	h, err := hedge.New(hedge.Config{Name: "flaky", Delay: 50 * time.Millisecond, Percentile: hedge.Fixed, Observer: obs})
	if err != nil {
		return err
	}
	cl, err := grpcx.NewClient(grpcx.ClientConfig{
		Retry:          r,
		Hedge:          h,
		Idempotent:     func(method string) bool { return method == "/grpc.testing.TestService/CacheableUnaryCall" },
		AttemptTimeout: time.Second,
		Guards: func(method string) grpcx.Guards {
			b, err := breaker.New(breaker.Config{Name: method, Threshold: 3, Observer: obs})
			if err != nil {
				panic(err) // a constant Config: not reached
			}
			return grpcx.Guards{Breaker: b}
		},
	})
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(lis.Addr().String(),
		append(cl.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		return err
	}
	defer conn.Close()
	client := testpb.NewTestServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tattempts\ttook\tresult")
	var failures []string
	check := func(name string, attempts int, took time.Duration, result string, ok bool) {
		fmt.Fprintf(tw, "%s\t%d\t%v\t%s\n", name, attempts, took.Round(10*time.Millisecond), result)
		if !ok {
			failures = append(failures, name)
		}
	}
	unary := func(scenario string) (string, codes.Code, time.Duration) {
		began := time.Now()
		resp, err := client.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte(scenario)}})
		if err != nil {
			return status.Convert(err).Message(), status.Code(err), time.Since(began)
		}
		return resp.GetUsername(), codes.OK, time.Since(began)
	}

	msg, code, took := unary("flaky")
	check("flaky", svc.seen("flaky"), took, msg, code == codes.OK && svc.seen("flaky") == 3)

	msg, code, took = unary("pushback")
	check("pushback", svc.seen("pushback"), took, msg, code == codes.OK && took >= 200*time.Millisecond)

	msg, code, took = unary("do-not-retry")
	check("do-not-retry", svc.seen("do-not-retry"), took, code.String()+": "+msg, code == codes.Unavailable && svc.seen("do-not-retry") == 1)

	msg, code, took = unary("invalid")
	check("invalid", svc.seen("invalid"), took, code.String()+": "+msg, code == codes.InvalidArgument && svc.seen("invalid") == 1)

	msg, code, took = unary("hang")
	check("hang", svc.seen("hang"), took, msg, code == codes.OK && took >= time.Second)

	began := time.Now()
	resp, err := client.CacheableUnaryCall(ctx, &testpb.SimpleRequest{})
	took = time.Since(began)
	check("hedge", svc.seen("hedge"), took, resp.GetUsername(), err == nil && took < 1900*time.Millisecond)

	var wg sync.WaitGroup
	results := make([]codes.Code, 2)
	began = time.Now()
	for i := range results {
		wg.Go(func() { _, results[i], _ = unary("shed") })
		time.Sleep(20 * time.Millisecond) // the second call arrives while the first holds the slot
	}
	wg.Wait()
	took = time.Since(began)
	check("shed", svc.seen("shed"), took, fmt.Sprintf("both answered; %d shed by the server and retried", slot.Stats().Rejected),
		results[0] == codes.OK && results[1] == codes.OK && slot.Stats().Rejected >= 1)

	var last error
	began = time.Now()
	for range 5 {
		_, last = client.EmptyCall(ctx, &testpb.Empty{})
	}
	took = time.Since(began)
	check("breaker", svc.seen("breaker"), took, fmt.Sprintf("%v: %s", status.Code(last), status.Convert(last).Message()),
		status.Code(last) == codes.Unavailable && errors.Is(last, breaker.ErrOpen) && svc.seen("breaker") == 3)

	began = time.Now()
	stream, err := client.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{})
	var got []string
	for err == nil {
		var m *testpb.StreamingOutputCallResponse
		if m, err = stream.Recv(); err == nil {
			got = append(got, string(m.GetPayload().GetBody()))
		}
	}
	took = time.Since(began)
	check("stream", svc.seen("stream"), took, "received "+strings.Join(got, ","), err == io.EOF && len(got) == 3)

	if err := tw.Flush(); err != nil {
		return err
	}
	if len(failures) > 0 {
		return fmt.Errorf("scenarios not as described: %s", strings.Join(failures, ", "))
	}
	return nil
}
