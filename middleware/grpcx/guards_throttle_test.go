package grpcx_test

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/brace-go/brace/middleware/grpcx"
	"github.com/brace-go/brace/middleware/throttle"
)

// TestThrottleGuardCounts: a Throttle guard counts a call the server
// answered (OK, or a code such as NotFound or InvalidArgument) as
// accepted, and one it refused with a code DefaultRetryCode retries
// (Unavailable, ResourceExhausted, Aborted, DeadlineExceeded) as not
// accepted; a cancelled call counts for nothing.
func TestThrottleGuardCounts(t *testing.T) {
	for _, tc := range []struct {
		code     codes.Code
		accepted bool
	}{
		{codes.OK, true},
		{codes.NotFound, true},
		{codes.InvalidArgument, true},
		{codes.Internal, true},
		{codes.Unavailable, false},
		{codes.ResourceExhausted, false},
		{codes.Aborted, false},
		{codes.DeadlineExceeded, false},
	} {
		t.Run(tc.code.String(), func(t *testing.T) {
			th, err := throttle.New(throttle.Config{MinRequests: 1000}) // counts, never rejects
			if err != nil {
				t.Fatal(err)
			}
			svc := &service{unary: func(context.Context, int, *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
				if tc.code == codes.OK {
					return &testpb.SimpleResponse{}, nil
				}
				return nil, status.Error(tc.code, "answer")
			}}
			cl := start(t, svc, nil, newClient(t, grpcx.ClientConfig{Retry: fastRetry(t, 1, nil), Guards: func(string) grpcx.Guards {
				return grpcx.Guards{Throttle: th}
			}})...)
			const calls = 5
			for range calls {
				_, err := cl.UnaryCall(context.Background(), &testpb.SimpleRequest{})
				if status.Code(err) != tc.code {
					t.Fatalf("got %v, want %v", err, tc.code)
				}
			}
			st := th.Stats()
			wantAccepts := int64(0)
			if tc.accepted {
				wantAccepts = calls
			}
			if st.Requests != calls || st.Accepts != wantAccepts {
				t.Errorf("throttle counted %d requests, %d accepts; want %d, %d", st.Requests, st.Accepts, calls, wantAccepts)
			}
		})
	}
	t.Run("canceled", func(t *testing.T) {
		th, _ := throttle.New(throttle.Config{MinRequests: 1000})
		ctx, cancel := context.WithCancel(context.Background())
		svc := &service{unary: func(context.Context, int, *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
			cancel() // the caller leaves while the server works
			return nil, status.Error(codes.Canceled, "gone")
		}}
		cl := start(t, svc, nil, newClient(t, grpcx.ClientConfig{Retry: fastRetry(t, 1, nil), Guards: func(string) grpcx.Guards {
			return grpcx.Guards{Throttle: th}
		}})...)
		if _, err := cl.UnaryCall(ctx, &testpb.SimpleRequest{}); status.Code(err) != codes.Canceled {
			t.Fatalf("got %v, want Canceled", err)
		}
		if st := th.Stats(); st.Requests != 0 || st.Accepts != 0 {
			t.Errorf("a cancelled call counted: %+v", st)
		}
	})
}

// TestThrottleGuardRejectsLocally: against a server that refuses every
// call with Unavailable, a Throttle guard soon refuses most calls itself:
// the caller gets Unavailable unwrapping to throttle.ErrThrottled, the
// call is not retried, and the server sees only the calls let through.
func TestThrottleGuardRejectsLocally(t *testing.T) {
	th, err := throttle.New(throttle.Config{MinRequests: 1, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	svc := &service{unary: func(context.Context, int, *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
		return nil, status.Error(codes.Unavailable, "overloaded")
	}}
	cl := start(t, svc, nil, newClient(t, grpcx.ClientConfig{Retry: fastRetry(t, 3, nil), Guards: func(string) grpcx.Guards {
		return grpcx.Guards{Throttle: th}
	}})...)
	const calls = 200
	throttled := 0
	for range calls {
		_, err := cl.UnaryCall(context.Background(), &testpb.SimpleRequest{})
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("got %v, want Unavailable", err)
		}
		if errors.Is(err, throttle.ErrThrottled) {
			throttled++
		}
	}
	server := svc.unaryCalls.Load()
	if throttled < calls/2 || server >= 3*calls/2 {
		t.Errorf("%d of %d calls throttled, the server saw %d attempts: want most calls refused locally", throttled, calls, server)
	}
	t.Logf("%d calls (3 attempts each at most): %d ended throttled, the server saw %d attempts; %+v", calls, throttled, server, th.Stats())
}
