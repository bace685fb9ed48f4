package grpcx_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/grpcx"
)

func TestNilPanics(t *testing.T) {
	for name, f := range map[string]func(){
		"grpcx: nil *Client (was NewClient's error ignored?)": func() { (*grpcx.Client)(nil).DialOptions() },
		"grpcx: nil *Server (was NewServer's error ignored?)": func() { (*grpcx.Server)(nil).ServerOptions() },
	} {
		func() {
			defer func() {
				if got, _ := recover().(string); got != name {
					t.Errorf("panic %q, want %q", got, name)
				}
			}()
			f()
		}()
	}
}

// TestLaterRefusalGivesEarlierGuardsBack: a call the backpressure limiter
// refuses gives the breaker's half-open probe slot back instead of holding
// it or counting a failure.
func TestLaterRefusalGivesEarlierGuardsBack(t *testing.T) {
	b, _ := breaker.New(breaker.Config{Threshold: 1})
	full, _ := backpressure.New(backpressure.Config{Capacity: 1})
	p, _ := full.Acquire(context.Background())
	c, _ := grpcx.NewClient(grpcx.ClientConfig{Retry: fastRetry(t, 1, nil), Guards: func(string) grpcx.Guards {
		return grpcx.Guards{Breaker: b, Backpressure: full}
	}})
	for range 3 {
		err := c.Unary(context.Background(), unaryMethod, nil, new(testpb.SimpleResponse), nil, okInvoker)
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "shed") {
			t.Fatalf("call: %v, want Unavailable (shed)", err)
		}
	}
	if b.State() != breaker.Closed {
		t.Errorf("breaker %v after three sheds, want closed", b.State())
	}
	p.Done(nil)
	if err := c.Unary(context.Background(), unaryMethod, nil, new(testpb.SimpleResponse), nil, okInvoker); err != nil {
		t.Errorf("with capacity back: %v", err)
	}
}

// TestServerFailureCodes: only DefaultFailure codes count against a
// server's breaker.
func TestServerFailureCodes(t *testing.T) {
	b, _ := breaker.New(breaker.Config{Threshold: 1})
	s, _ := grpcx.NewServer(grpcx.ServerConfig{Guards: func(string) grpcx.Guards { return grpcx.Guards{Breaker: b} }})
	info := &grpc.UnaryServerInfo{FullMethod: unaryMethod}
	for _, code := range []codes.Code{codes.NotFound, codes.InvalidArgument, codes.PermissionDenied, codes.AlreadyExists} {
		s.Unary(context.Background(), nil, info, func(context.Context, any) (any, error) { return nil, status.Error(code, "x") })
	}
	if b.State() != breaker.Closed {
		t.Fatalf("breaker %v after the caller's mistakes, want closed", b.State())
	}
	s.Unary(context.Background(), nil, info, func(context.Context, any) (any, error) { return nil, status.Error(codes.Internal, "x") })
	if b.State() != breaker.Open {
		t.Errorf("breaker %v after Internal, want open", b.State())
	}
}

// TestServerHandlerPanicReleases: a handler's panic finishes the permits
// (a failure) and goes on.
func TestServerHandlerPanicReleases(t *testing.T) {
	bp, _ := backpressure.New(backpressure.Config{Capacity: 1})
	b, _ := breaker.New(breaker.Config{Threshold: 1})
	s, _ := grpcx.NewServer(grpcx.ServerConfig{Guards: func(string) grpcx.Guards { return grpcx.Guards{Breaker: b, Backpressure: bp} }})
	func() {
		defer func() {
			if recover() != "boom" {
				t.Error("the panic did not go on")
			}
		}()
		s.Unary(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: unaryMethod}, func(context.Context, any) (any, error) { panic("boom") })
	}()
	if bp.Stats().InFlight != 0 || b.State() != breaker.Open {
		t.Errorf("after a panic: in flight %d, breaker %v; want 0, open", bp.Stats().InFlight, b.State())
	}
}

// TestTapAllocs counts what Tap adds per admitted call.
func TestTapAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocations differ under -race")
	}
	bp, _ := backpressure.New(backpressure.Config{Capacity: 1})
	s, _ := grpcx.NewServer(grpcx.ServerConfig{Guards: func(string) grpcx.Guards { return grpcx.Guards{Backpressure: bp} }})
	info := &tap.Info{FullMethodName: unaryMethod}
	ginfo := &grpc.UnaryServerInfo{FullMethod: unaryMethod}
	got := testing.AllocsPerRun(100, func() {
		ctx, cancel := context.WithCancel(context.Background())
		tctx, err := s.Tap(ctx, info)
		if err != nil {
			t.Fatal(err)
		}
		s.Unary(tctx, nil, ginfo, okHandler)
		cancel()
	})
	base := testing.AllocsPerRun(100, func() {
		_, cancel := context.WithCancel(context.Background())
		cancel()
	})
	if got-base > 8 {
		t.Errorf("Tap adds %v allocations per call, want at most 8", got-base)
	}
}
