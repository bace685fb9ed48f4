package grpcx_test

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/grpcx"
	"github.com/brace-go/brace/middleware/hedge"
)

const streamMethod = "/grpc.testing.TestService/StreamingOutputCall"

func sendN(ss grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse], tag string, n int) error {
	for i := range n {
		if err := ss.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: []byte{tag[0], byte('0' + i)}}}); err != nil {
			return err
		}
	}
	return nil
}

func recvAll(s grpc.ServerStreamingClient[testpb.StreamingOutputCallResponse]) ([]string, error) {
	var got []string
	for {
		m, err := s.Recv()
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		got = append(got, string(m.GetPayload().GetBody()))
	}
}

// TestStreamRetriedBeforeFirstMessage: a stream that fails before its first
// response is opened again, with the request sent again.
func TestStreamRetriedBeforeFirstMessage(t *testing.T) {
	svc := &service{stream: func(n int, req *testpb.StreamingOutputCallRequest, ss grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
		if string(req.GetPayload().GetBody()) != "hello" {
			return status.Error(codes.InvalidArgument, "request not replayed")
		}
		if n == 1 {
			return status.Error(codes.Unavailable, "not yet")
		}
		return sendN(ss, "b", 3)
	}}
	cl := start(t, svc, nil, newClient(t, grpcx.ClientConfig{Retry: fastRetry(t, 3, nil)})...)
	s, err := cl.StreamingOutputCall(context.Background(), &testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte("hello")}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := recvAll(s)
	if err != nil || len(got) != 3 || got[0] != "b0" {
		t.Errorf("received %q, %v; want the second attempt's 3 messages", got, err)
	}
	if n := svc.streamCalls.Load(); n != 2 {
		t.Errorf("server saw %d streams, want 2", n)
	}
}

// TestStreamNotRetriedAfterFirstMessage: once a response was received, a
// failure ends the stream: the caller has seen data that a new attempt
// could not take back.
func TestStreamNotRetriedAfterFirstMessage(t *testing.T) {
	svc := &service{stream: func(n int, req *testpb.StreamingOutputCallRequest, ss grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
		if err := sendN(ss, "a", 1); err != nil {
			return err
		}
		return status.Error(codes.Unavailable, "midway")
	}}
	cl := start(t, svc, nil, newClient(t, grpcx.ClientConfig{Retry: fastRetry(t, 3, nil)})...)
	s, err := cl.StreamingOutputCall(context.Background(), &testpb.StreamingOutputCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := recvAll(s)
	if len(got) != 1 || status.Code(err) != codes.Unavailable {
		t.Errorf("received %q, %v; want one message, then Unavailable", got, err)
	}
	if n := svc.streamCalls.Load(); n != 1 {
		t.Errorf("server saw %d streams, want 1", n)
	}
}

// TestStreamHedged: a stream of an idempotent method whose first response
// is slow is hedged; the first attempt to answer wins and the loser is
// cancelled on the server.
func TestStreamHedged(t *testing.T) {
	loserEnded := make(chan error, 1)
	svc := &service{stream: func(n int, _ *testpb.StreamingOutputCallRequest, ss grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
		if n == 1 {
			<-ss.Context().Done()
			loserEnded <- ss.Context().Err()
			return ss.Context().Err()
		}
		return sendN(ss, "h", 2)
	}}
	h, err := hedge.New(hedge.Config{Delay: 5 * time.Millisecond, Percentile: hedge.Fixed})
	if err != nil {
		t.Fatal(err)
	}
	cl := start(t, svc, nil, newClient(t, grpcx.ClientConfig{Hedge: h, Idempotent: func(m string) bool { return m == streamMethod }})...)
	s, err := cl.StreamingOutputCall(context.Background(), &testpb.StreamingOutputCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := recvAll(s)
	if err != nil || len(got) != 2 || got[0] != "h0" {
		t.Errorf("received %q, %v; want the hedge's 2 messages", got, err)
	}
	if err := <-loserEnded; !errors.Is(err, context.Canceled) {
		t.Errorf("the slow attempt ended with %v, want canceled", err)
	}
}

// TestStreamHoldsGuardsForItsLife: a stream holds its backpressure slot
// until it ends, by reading to the end or by the caller cancelling.
func TestStreamHoldsGuardsForItsLife(t *testing.T) {
	svc := &service{stream: func(n int, _ *testpb.StreamingOutputCallRequest, ss grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
		return sendN(ss, "s", 2)
	}}
	bp, err := backpressure.New(backpressure.Config{Capacity: 1})
	if err != nil {
		t.Fatal(err)
	}
	cl := start(t, svc, nil, newClient(t, grpcx.ClientConfig{Guards: func(string) grpcx.Guards { return grpcx.Guards{Backpressure: bp} }})...)

	for _, end := range []string{"read to the end", "cancel"} {
		ctx, cancel := context.WithCancel(context.Background())
		s, err := cl.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			t.Fatal(err)
		}
		if got := bp.Stats().InFlight; got != 1 {
			t.Errorf("%s: in flight during the stream: %d, want 1", end, got)
		}
		_, err = cl.UnaryCall(context.Background(), &testpb.SimpleRequest{})
		if status.Code(err) != codes.Unavailable || !errors.Is(err, backpressure.ErrShed) {
			t.Errorf("%s: a call beside the stream: %v; want Unavailable matching ErrShed", end, err)
		}
		if end == "cancel" {
			cancel()
		}
		recvAll(s)
		if got := bp.Stats().InFlight; got != 0 {
			t.Errorf("%s: in flight after the stream: %d, want 0", end, got)
		}
		cancel()
	}
}

// TestBidiReplaysAndForwards: messages sent before the first response are
// sent again to a new attempt, and messages sent after it go straight on.
func TestBidiReplaysAndForwards(t *testing.T) {
	svc := &service{bidi: func(n int, ss grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
		if n == 1 {
			if _, err := ss.Recv(); err != nil {
				return err
			}
			return status.Error(codes.Unavailable, "first attempt fails")
		}
		for {
			req, err := ss.Recv()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if err := ss.Send(&testpb.StreamingOutputCallResponse{Payload: req.GetPayload()}); err != nil {
				return err
			}
		}
	}}
	cl := start(t, svc, nil, newClient(t, grpcx.ClientConfig{Retry: fastRetry(t, 3, nil)})...)
	s, err := cl.FullDuplexCall(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	send := func(b string) {
		if err := s.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte(b)}}); err != nil {
			t.Fatalf("Send(%s): %v", b, err)
		}
	}
	recv := func() string {
		m, err := s.Recv()
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		return string(m.GetPayload().GetBody())
	}
	send("a")
	send("b")
	if got := recv(); got != "a" {
		t.Errorf("first response %q, want a", got)
	}
	if got := recv(); got != "b" {
		t.Errorf("second response %q, want b", got)
	}
	send("c")
	if got := recv(); got != "c" {
		t.Errorf("third response %q, want c", got)
	}
	s.CloseSend()
	if _, err := s.Recv(); err != io.EOF {
		t.Errorf("after CloseSend: %v, want io.EOF", err)
	}
	if n := svc.bidiCalls.Load(); n != 2 {
		t.Errorf("server saw %d streams, want 2", n)
	}
}

// TestStreamBufferOverflowNotRetried: a stream that sends more than
// StreamBuffer before its first response is opened at once and no longer
// retried.
func TestStreamBufferOverflowNotRetried(t *testing.T) {
	var received atomic.Int64
	svc := &service{bidi: func(n int, ss grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
		for {
			if _, err := ss.Recv(); err != nil {
				return status.Error(codes.Unavailable, "fails")
			}
			received.Add(1)
		}
	}}
	cl := start(t, svc, nil, newClient(t, grpcx.ClientConfig{Retry: fastRetry(t, 3, nil), StreamBuffer: 100})...)
	s, err := cl.FullDuplexCall(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	big := &testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: make([]byte, 80)}}
	for range 3 {
		if err := s.Send(big); err != nil {
			t.Fatal(err)
		}
	}
	s.CloseSend()
	if _, err := s.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("Recv: %v, want Unavailable", err)
	}
	if n := svc.bidiCalls.Load(); n != 1 {
		t.Errorf("server saw %d streams, want 1", n)
	}
	if n := received.Load(); n != 3 {
		t.Errorf("server received %d messages, want 3", n)
	}
}

// TestStreamCallerCancelDuringRetryLoop: a caller who cancels while the
// first response is awaited ends the attempt; RecvMsg returns Canceled.
func TestStreamCallerCancelDuringRetryLoop(t *testing.T) {
	entered := make(chan struct{})
	svc := &service{stream: func(n int, _ *testpb.StreamingOutputCallRequest, ss grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
		close(entered)
		<-ss.Context().Done()
		return ss.Context().Err()
	}}
	cl := start(t, svc, nil, newClient(t, grpcx.ClientConfig{Retry: fastRetry(t, 3, nil)})...)
	ctx, cancel := context.WithCancel(context.Background())
	s, err := cl.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	go func() { <-entered; cancel() }()
	if _, err := s.Recv(); status.Code(err) != codes.Canceled {
		t.Errorf("Recv: %v, want Canceled", err)
	}
	if n := svc.streamCalls.Load(); n != 1 {
		t.Errorf("server saw %d streams, want 1", n)
	}
}

// TestStreamAttemptTimeout: AttemptTimeout bounds the wait for the first
// message (a hung attempt is retried), not the stream that follows: a
// stream that runs longer than it after its first message is not cut.
func TestStreamAttemptTimeout(t *testing.T) {
	const perAttempt = 50 * time.Millisecond
	svc := &service{stream: func(n int, _ *testpb.StreamingOutputCallRequest, ss grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
		if n == 1 {
			<-ss.Context().Done() // hangs until the attempt's deadline
			return ss.Context().Err()
		}
		if err := sendN(ss, "t", 1); err != nil {
			return err
		}
		select { // longer than an attempt may wait for its first message
		case <-time.After(3 * perAttempt):
		case <-ss.Context().Done():
			return ss.Context().Err()
		}
		return sendN(ss, "u", 1)
	}}
	cl := start(t, svc, nil, newClient(t, grpcx.ClientConfig{Retry: fastRetry(t, 3, nil), AttemptTimeout: perAttempt})...)
	s, err := cl.StreamingOutputCall(context.Background(), &testpb.StreamingOutputCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := recvAll(s)
	if err != nil || len(got) != 2 {
		t.Errorf("received %q, %v; want 2 messages", got, err)
	}
	if n := svc.streamCalls.Load(); n != 2 {
		t.Errorf("server saw %d streams, want 2", n)
	}
}
