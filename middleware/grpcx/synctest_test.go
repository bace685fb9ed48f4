package grpcx_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/brace-go/brace/middleware/grpcx"
)

// TestPushbackToTheMillisecond runs client and server over bufconn inside
// a synctest bubble: the retry starts exactly at the pushback, on the fake
// clock.
func TestPushbackToTheMillisecond(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var times []time.Time
		svc := &service{unary: func(ctx context.Context, n int, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
			times = append(times, time.Now())
			if n < 3 {
				grpc.SetTrailer(ctx, metadata.Pairs(grpcx.PushbackKey, "1234"))
				return nil, status.Error(codes.Unavailable, "busy")
			}
			return &testpb.SimpleResponse{}, nil
		}}
		cl := start(t, svc, nil, newClient(t, grpcx.ClientConfig{Retry: fastRetry(t, 3, nil)})...)
		if _, err := cl.UnaryCall(context.Background(), &testpb.SimpleRequest{}); err != nil {
			t.Fatal(err)
		}
		if len(times) != 3 {
			t.Fatalf("%d attempts, want 3", len(times))
		}
		for i := 1; i < 3; i++ {
			if gap := times[i].Sub(times[i-1]); gap != 1234*time.Millisecond {
				t.Errorf("attempt %d started %v after the one before, want exactly 1.234s", i+1, gap)
			}
		}
	})
}
