package grpcx_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/adaptive"
	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/grpcx"
	"github.com/brace-go/brace/middleware/ratelimit"
)

func newServer(t testing.TB, cfg grpcx.ServerConfig, tap bool) []grpc.ServerOption {
	t.Helper()
	s, err := grpcx.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	opts := []grpc.ServerOption{grpc.UnaryInterceptor(s.Unary), grpc.StreamInterceptor(s.Stream)}
	if tap {
		opts = append(opts, grpc.InTapHandle(s.Tap))
	}
	return opts
}

func retryInfo(err error) (time.Duration, bool) {
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}

// blocking returns a service whose UnaryCall blocks until release is
// closed, signalling entered once per call.
func blocking() (svc *service, entered chan struct{}, release chan struct{}) {
	entered, release = make(chan struct{}, 10), make(chan struct{})
	svc = &service{unary: func(ctx context.Context, n int, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
		entered <- struct{}{}
		<-release
		return &testpb.SimpleResponse{}, nil
	}}
	return svc, entered, release
}

// TestTapShedsBeforeDecoding: with Tap, a shed call is refused with
// Unavailable and a RetryInfo pushback before its request is decoded.
func TestTapShedsBeforeDecoding(t *testing.T) {
	bp, _ := backpressure.New(backpressure.Config{Capacity: 1})
	codec := &countingCodec{}
	svc, entered, release := blocking()
	sopts := append(newServer(t, grpcx.ServerConfig{
		Guards:   func(string) grpcx.Guards { return grpcx.Guards{Backpressure: bp} },
		Pushback: 250 * time.Millisecond,
	}, true), grpc.ForceServerCodec(codec))
	cl := start(t, svc, sopts)

	done := make(chan error, 1)
	go func() { _, err := cl.UnaryCall(context.Background(), &testpb.SimpleRequest{}); done <- err }()
	<-entered
	var trailer metadata.MD
	_, err := cl.UnaryCall(context.Background(), &testpb.SimpleRequest{}, grpc.Trailer(&trailer))
	if status.Code(err) != codes.Unavailable {
		t.Errorf("shed call: %v, want Unavailable", err)
	}
	if d, ok := retryInfo(err); !ok || d != 250*time.Millisecond {
		t.Errorf("RetryInfo %v, %v; want 250ms", d, ok)
	}
	if got := codec.decoded.Load(); got != 1 {
		t.Errorf("server decoded %d requests, want 1 (the admitted one)", got)
	}
	close(release)
	if err := <-done; err != nil {
		t.Errorf("admitted call: %v", err)
	}
	if got := bp.Stats().InFlight; got != 0 {
		t.Errorf("in flight after the calls: %d, want 0", got)
	}
}

// TestInterceptorRateLimit: without Tap, the interceptor refuses a
// rate-limited call with ResourceExhausted, a grpc-retry-pushback-ms
// trailer and a RetryInfo detail.
func TestInterceptorRateLimit(t *testing.T) {
	rl, _ := ratelimit.New(ratelimit.Config{Rate: 1, Burst: 1})
	svc := &service{}
	cl := start(t, svc, newServer(t, grpcx.ServerConfig{Guards: func(string) grpcx.Guards { return grpcx.Guards{RateLimit: rl} }}, false))
	if _, err := cl.UnaryCall(context.Background(), &testpb.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	var trailer metadata.MD
	_, err := cl.UnaryCall(context.Background(), &testpb.SimpleRequest{}, grpc.Trailer(&trailer))
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("rate-limited call: %v, want ResourceExhausted", err)
	}
	d, ok := grpcx.ParsePushback(trailer.Get(grpcx.PushbackKey))
	if !ok || d < 900*time.Millisecond || d > time.Second {
		t.Errorf("pushback trailer %q: %v; want about 1s", trailer.Get(grpcx.PushbackKey), d)
	}
	if ri, ok := retryInfo(err); !ok || ri != d {
		t.Errorf("RetryInfo %v, %v; want the trailer's %v", ri, ok, d)
	}
	if got := svc.unaryCalls.Load(); got != 1 {
		t.Errorf("handler ran %d times, want 1", got)
	}
}

// TestServerBreaker: a server-side breaker counts the handler's failure
// codes and, open, refuses with Unavailable and the time until it probes.
func TestServerBreaker(t *testing.T) {
	b, _ := breaker.New(breaker.Config{Threshold: 2, OpenTimeout: 5 * time.Second})
	svc := &service{unary: func(context.Context, int, *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
		return nil, status.Error(codes.Internal, "broken")
	}}
	cl := start(t, svc, newServer(t, grpcx.ServerConfig{Guards: func(string) grpcx.Guards { return grpcx.Guards{Breaker: b} }}, true))
	for range 2 {
		if _, err := cl.UnaryCall(context.Background(), &testpb.SimpleRequest{}); status.Code(err) != codes.Internal {
			t.Fatalf("call: %v, want the handler's Internal", err)
		}
	}
	_, err := cl.UnaryCall(context.Background(), &testpb.SimpleRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("with the breaker open: %v, want Unavailable", err)
	}
	if d, ok := retryInfo(err); !ok || d <= 4*time.Second || d > 5*time.Second {
		t.Errorf("RetryInfo %v, %v; want the time until probes, about 5s", d, ok)
	}
	if got := svc.unaryCalls.Load(); got != 2 {
		t.Errorf("handler ran %d times, want 2", got)
	}
}

// TestServerStreamHoldsGuards: a server stream holds its slot while it
// runs, under Tap and without.
func TestServerStreamHoldsGuards(t *testing.T) {
	for _, tap := range []bool{false, true} {
		bp, _ := backpressure.New(backpressure.Config{Capacity: 1})
		entered, release := make(chan struct{}), make(chan struct{})
		svc := &service{stream: func(n int, _ *testpb.StreamingOutputCallRequest, ss grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
			close(entered)
			<-release
			return nil
		}}
		cl := start(t, svc, newServer(t, grpcx.ServerConfig{Guards: func(string) grpcx.Guards { return grpcx.Guards{Backpressure: bp} }}, tap))
		s, err := cl.StreamingOutputCall(context.Background(), &testpb.StreamingOutputCallRequest{})
		if err != nil {
			t.Fatal(err)
		}
		<-entered
		if _, err := cl.UnaryCall(context.Background(), &testpb.SimpleRequest{}); status.Code(err) != codes.Unavailable {
			t.Errorf("tap %v: call beside the stream: %v, want Unavailable", tap, err)
		}
		close(release)
		recvAll(s)
		if got := bp.Stats().InFlight; got != 0 {
			t.Errorf("tap %v: in flight after the stream: %d, want 0", tap, got)
		}
	}
}

// TestTapReleasesStreamsThatNeverReachTheInterceptor: a call Tap admitted
// to a method nobody serves gets Unimplemented, and its slot comes back
// when the stream ends.
func TestTapReleasesStreamsThatNeverReachTheInterceptor(t *testing.T) {
	bp, _ := backpressure.New(backpressure.Config{Capacity: 1})
	cl := start(t, &service{}, newServer(t, grpcx.ServerConfig{Guards: func(string) grpcx.Guards { return grpcx.Guards{Backpressure: bp} }}, true))
	_, err := cl.UnimplementedCall(context.Background(), &testpb.Empty{})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("UnimplementedCall: %v", err)
	}
	// The slot is given back from the stream's end, on a goroutine of
	// grpc-go's: wait for it, with a generous bound.
	deadline := time.Now().Add(5 * time.Second)
	for bp.Stats().InFlight != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := bp.Stats().InFlight; got != 0 {
		t.Errorf("in flight after the refused call: %d, want 0", got)
	}
}

// TestServerAdaptive: an adaptive limit at its minimum sheds the second
// concurrent call with Unavailable.
func TestServerAdaptive(t *testing.T) {
	al, err := adaptive.New(adaptive.Config{Min: 1, Max: 1, Initial: 1})
	if err != nil {
		t.Fatal(err)
	}
	svc, entered, release := blocking()
	cl := start(t, svc, newServer(t, grpcx.ServerConfig{Guards: func(string) grpcx.Guards { return grpcx.Guards{Adaptive: al} }}, false))
	done := make(chan error, 1)
	go func() { _, err := cl.UnaryCall(context.Background(), &testpb.SimpleRequest{}); done <- err }()
	<-entered
	_, err = cl.UnaryCall(context.Background(), &testpb.SimpleRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("second call: %v, want Unavailable", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Error(err)
	}
}

// TestHandlerRefusalMapped: a Brace refusal a handler returns (from a
// guard of its own downstream call) reaches the client as a status.
func TestHandlerRefusalMapped(t *testing.T) {
	svc := &service{unary: func(context.Context, int, *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
		return nil, backpressure.ErrShed
	}}
	cl := start(t, svc, newServer(t, grpcx.ServerConfig{}, false))
	var trailer metadata.MD
	_, err := cl.UnaryCall(context.Background(), &testpb.SimpleRequest{}, grpc.Trailer(&trailer))
	if status.Code(err) != codes.Unavailable || len(trailer.Get(grpcx.PushbackKey)) != 1 {
		t.Errorf("handler's shed: %v, trailer %v; want Unavailable with a pushback", err, trailer)
	}
}

// TestEndToEndShedIsRetriedAfterPushback: a grpcx client retries a call a
// grpcx server shed, no sooner than the pushback.
func TestEndToEndShedIsRetriedAfterPushback(t *testing.T) {
	for _, tap := range []bool{false, true} {
		shed := make(chan struct{}, 10)
		bp, _ := backpressure.New(backpressure.Config{Capacity: 1, Observer: middleware.ObserverFunc(func(_ context.Context, e middleware.Event) {
			if e.Kind == middleware.Rejected {
				shed <- struct{}{}
			}
		})})
		svc, entered, release := blocking()
		cl := start(t, svc, newServer(t, grpcx.ServerConfig{
			Guards:   func(string) grpcx.Guards { return grpcx.Guards{Backpressure: bp} },
			Pushback: 80 * time.Millisecond,
		}, tap), newClient(t, grpcx.ClientConfig{Retry: fastRetry(t, 3, nil)})...)
		done := make(chan error, 1)
		go func() { _, err := cl.UnaryCall(context.Background(), &testpb.SimpleRequest{}); done <- err }()
		<-entered
		began := time.Now()
		second := make(chan error, 1)
		go func() { _, err := cl.UnaryCall(context.Background(), &testpb.SimpleRequest{}); second <- err }()
		<-shed // the second call was shed once
		close(release)
		if err := <-done; err != nil {
			t.Error(err)
		}
		<-entered
		if err := <-second; err != nil {
			t.Errorf("tap %v: shed call after its retry: %v", tap, err)
		}
		if el := time.Since(began); el < 80*time.Millisecond {
			t.Errorf("tap %v: the shed call was admitted after %v, before the pushback", tap, el)
		}
	}
}

// A panic in the user's Guards func must not end the process: Tap runs on
// grpc-go's connection goroutine, where nothing would recover it. The call
// is refused with Internal and the server goes on.
func TestTapGuardsPanic(t *testing.T) {
	s, err := grpcx.NewServer(grpcx.ServerConfig{Guards: func(method string) grpcx.Guards {
		if method == "/bad" {
			panic("config bug")
		}
		return grpcx.Guards{}
	}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Tap(context.Background(), &tap.Info{FullMethodName: "/bad"})
	if status.Code(err) != codes.Internal {
		t.Fatalf("Tap after a panicking Guards = %v, want Internal", err)
	}
	if _, err := s.Tap(context.Background(), &tap.Info{FullMethodName: "/good"}); err != nil {
		t.Fatalf("the next method: %v", err)
	}
}
