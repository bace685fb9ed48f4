package grpcx_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/grpcx"
	"github.com/brace-go/brace/middleware/hedge"
	"github.com/brace-go/brace/middleware/retry"
)

const (
	unaryMethod = "/grpc.testing.TestService/UnaryCall"
	emptyMethod = "/grpc.testing.TestService/EmptyCall"
)

// fastRetry is a Retrier with tiny delays, for tests.
func fastRetry(t testing.TB, attempts int, obs middleware.Observer) *retry.Retrier {
	t.Helper()
	r, err := retry.New(retry.Config{MaxAttempts: attempts, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond, Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func newClient(t testing.TB, cfg grpcx.ClientConfig) []grpc.DialOption {
	t.Helper()
	c, err := grpcx.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return []grpc.DialOption{grpc.WithUnaryInterceptor(c.Unary), grpc.WithStreamInterceptor(c.Stream)}
}

func TestNewClientRejectsInvalidFields(t *testing.T) {
	for _, tc := range []struct {
		cfg  grpcx.ClientConfig
		want string
	}{
		{grpcx.ClientConfig{AttemptTimeout: -1}, "grpcx: AttemptTimeout must not be negative, got -1ns"},
		{grpcx.ClientConfig{MaxMethods: -1}, "grpcx: MaxMethods must not be negative, got -1"},
		{grpcx.ClientConfig{StreamBuffer: -1}, "grpcx: StreamBuffer must not be negative, got -1"},
		{grpcx.ClientConfig{Hedge: func() *hedge.Hedger { h, _ := hedge.New(hedge.Config{}); return h }()}, "grpcx: Hedge needs Idempotent: only the methods it reports are hedged"},
	} {
		_, err := grpcx.NewClient(tc.cfg)
		if err == nil || err.Error() != tc.want {
			t.Errorf("NewClient(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
	for _, tc := range []struct {
		cfg  grpcx.ServerConfig
		want string
	}{
		{grpcx.ServerConfig{MaxMethods: -2}, "grpcx: MaxMethods must not be negative, got -2"},
		{grpcx.ServerConfig{Pushback: -time.Second}, "grpcx: Pushback must not be negative, got -1s"},
	} {
		_, err := grpcx.NewServer(tc.cfg)
		if err == nil || err.Error() != tc.want {
			t.Errorf("NewServer(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

// TestUnaryRetryByCode: the default classification retries Unavailable,
// ResourceExhausted, Aborted and DeadlineExceeded, and nothing else; the
// caller gets a status error with the server's code either way.
func TestUnaryRetryByCode(t *testing.T) {
	for _, tc := range []struct {
		code     codes.Code
		attempts int64
	}{
		{codes.Unavailable, 3},
		{codes.ResourceExhausted, 3},
		{codes.Aborted, 3},
		{codes.DeadlineExceeded, 3},
		{codes.InvalidArgument, 1},
		{codes.PermissionDenied, 1},
		{codes.NotFound, 1},
		{codes.Internal, 1},
		{codes.Unimplemented, 1},
		{codes.FailedPrecondition, 1},
	} {
		t.Run(tc.code.String(), func(t *testing.T) {
			svc := &service{unary: func(context.Context, int, *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
				return nil, status.Error(tc.code, "boom")
			}}
			cl := start(t, svc, nil, newClient(t, grpcx.ClientConfig{Retry: fastRetry(t, 3, nil)})...)
			_, err := cl.UnaryCall(context.Background(), &testpb.SimpleRequest{})
			st, ok := status.FromError(err)
			if !ok || st.Code() != tc.code || st.Message() != "boom" {
				t.Errorf("status.FromError(%v) = %v, %v; want code %v, message boom", err, st, ok, tc.code)
			}
			if got := svc.unaryCalls.Load(); got != tc.attempts {
				t.Errorf("server saw %d attempts, want %d", got, tc.attempts)
			}
			if tc.attempts > 1 {
				var ex *retry.ExhaustedError
				if !errors.As(err, &ex) || ex.Attempts != 3 {
					t.Errorf("errors.As(%v, *retry.ExhaustedError) = %v, want 3 attempts", err, ex)
				}
			}
		})
	}
}

func TestUnaryRetrySucceeds(t *testing.T) {
	svc := &service{unary: func(_ context.Context, n int, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
		if n < 3 {
			return nil, status.Error(codes.Unavailable, "not yet")
		}
		return &testpb.SimpleResponse{Username: "third"}, nil
	}}
	var retries atomic.Int64
	obs := middleware.ObserverFunc(func(_ context.Context, e middleware.Event) {
		if e.Kind == middleware.Retry {
			retries.Add(1)
		}
	})
	cl := start(t, svc, nil, newClient(t, grpcx.ClientConfig{Retry: fastRetry(t, 3, obs)})...)
	resp, err := cl.UnaryCall(context.Background(), &testpb.SimpleRequest{})
	if err != nil || resp.GetUsername() != "third" {
		t.Fatalf("UnaryCall = %v, %v; want the third attempt's reply", resp, err)
	}
	if got := retries.Load(); got != 2 {
		t.Errorf("Retry events = %d, want 2", got)
	}
}

// TestRetryCodeIsPerMethod: RetryCode sees the method.
func TestRetryCodeIsPerMethod(t *testing.T) {
	fail := func(context.Context, int) error { return status.Error(codes.Unavailable, "down") }
	svc := &service{empty: fail, unary: func(ctx context.Context, n int, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
		return nil, fail(ctx, n)
	}}
	cl := start(t, svc, nil, newClient(t, grpcx.ClientConfig{
		Retry:     fastRetry(t, 3, nil),
		RetryCode: func(m string, c codes.Code) bool { return m != emptyMethod && grpcx.DefaultRetryCode(c) },
	})...)
	cl.UnaryCall(context.Background(), &testpb.SimpleRequest{})
	cl.EmptyCall(context.Background(), &testpb.Empty{})
	if u, e := svc.unaryCalls.Load(), svc.emptyCalls.Load(); u != 3 || e != 1 {
		t.Errorf("attempts: UnaryCall %d, EmptyCall %d; want 3 and 1", u, e)
	}
}

// TestPushbackObeyed: a retry never starts before the server's
// grpc-retry-pushback-ms, even when the schedule's delay is far shorter.
func TestPushbackObeyed(t *testing.T) {
	const pushback = 60 * time.Millisecond
	var mu sync.Mutex
	var times []time.Time
	svc := &service{unary: func(ctx context.Context, n int, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
		mu.Lock()
		times = append(times, time.Now())
		mu.Unlock()
		if n == 1 {
			grpc.SetTrailer(ctx, metadata.Pairs(grpcx.PushbackKey, "60"))
			return nil, status.Error(codes.Unavailable, "busy")
		}
		return &testpb.SimpleResponse{}, nil
	}}
	cl := start(t, svc, nil, newClient(t, grpcx.ClientConfig{Retry: fastRetry(t, 3, nil)})...)
	if _, err := cl.UnaryCall(context.Background(), &testpb.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	if len(times) != 2 {
		t.Fatalf("%d attempts, want 2", len(times))
	}
	if gap := times[1].Sub(times[0]); gap < pushback {
		t.Errorf("second attempt %v after the first, want at least the pushback %v", gap, pushback)
	}
}

// TestRetryInfoDetailObeyed: a RetryInfo detail is a pushback too (what a
// tap refusal carries).
func TestRetryInfoDetailObeyed(t *testing.T) {
	var first time.Time
	var gap time.Duration
	svc := &service{unary: func(ctx context.Context, n int, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
		if n == 1 {
			first = time.Now()
			st, _ := status.New(codes.Unavailable, "busy").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(50 * time.Millisecond)})
			return nil, st.Err()
		}
		gap = time.Since(first)
		return &testpb.SimpleResponse{}, nil
	}}
	cl := start(t, svc, nil, newClient(t, grpcx.ClientConfig{Retry: fastRetry(t, 3, nil)})...)
	if _, err := cl.UnaryCall(context.Background(), &testpb.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	if gap < 50*time.Millisecond {
		t.Errorf("retried after %v, want at least 50ms", gap)
	}
}

// TestPushbackSaysDoNotRetry: a negative or malformed pushback stops the
// retries (gRFC A6), and the caller gets the server's status.
func TestPushbackSaysDoNotRetry(t *testing.T) {
	for _, v := range []string{"-1", "soon", "1.5", ""} {
		t.Run(v, func(t *testing.T) {
			svc := &service{unary: func(ctx context.Context, n int, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
				grpc.SetTrailer(ctx, metadata.Pairs(grpcx.PushbackKey, v))
				return nil, status.Error(codes.Unavailable, "go away")
			}}
			cl := start(t, svc, nil, newClient(t, grpcx.ClientConfig{Retry: fastRetry(t, 3, nil)})...)
			_, err := cl.UnaryCall(context.Background(), &testpb.SimpleRequest{})
			if status.Code(err) != codes.Unavailable {
				t.Errorf("code %v, want Unavailable", status.Code(err))
			}
			if got := svc.unaryCalls.Load(); got != 1 {
				t.Errorf("%d attempts, want 1", got)
			}
		})
	}
}

func TestParsePushback(t *testing.T) {
	type result struct {
		D     time.Duration
		Retry bool
	}
	for _, tc := range []struct {
		in   []string
		want result
	}{
		{nil, result{0, true}},
		{[]string{"0"}, result{0, true}},
		{[]string{"250"}, result{250 * time.Millisecond, true}},
		{[]string{"250", "250"}, result{0, false}},
		{[]string{"-1"}, result{0, false}},
		{[]string{"x"}, result{0, false}},
		{[]string{""}, result{0, false}},
		{[]string{" 5"}, result{0, false}},
		{[]string{"99999999999999999999"}, result{1<<63 - 1, true}},
		{[]string{"9223372036854"}, result{9223372036854 * time.Millisecond, true}},
		{[]string{"9223372036855"}, result{1<<63 - 1, true}},
		{[]string{"-99999999999999999999"}, result{0, false}},
	} {
		d, ok := grpcx.ParsePushback(tc.in)
		if diff := cmp.Diff(tc.want, result{d, ok}); diff != "" {
			t.Errorf("ParsePushback(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}

// TestBreakerPerMethod: a breaker per method opens for the failing method
// only; its refusal is an Unavailable status that matches breaker.ErrOpen.
func TestBreakerPerMethod(t *testing.T) {
	svc := &service{unary: func(context.Context, int, *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
		return nil, status.Error(codes.Internal, "broken")
	}}
	var mu sync.Mutex
	made := map[string]*breaker.Breaker{}
	cl := start(t, svc, nil, newClient(t, grpcx.ClientConfig{
		Retry: fastRetry(t, 1, nil),
		Guards: func(method string) grpcx.Guards {
			b, err := breaker.New(breaker.Config{Name: method, Threshold: 3})
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			made[method] = b
			mu.Unlock()
			return grpcx.Guards{Breaker: b}
		},
	})...)
	ctx := context.Background()
	for range 3 {
		if _, err := cl.UnaryCall(ctx, &testpb.SimpleRequest{}); status.Code(err) != codes.Internal {
			t.Fatalf("UnaryCall: %v, want Internal", err)
		}
	}
	_, err := cl.UnaryCall(ctx, &testpb.SimpleRequest{})
	if status.Code(err) != codes.Unavailable || !errors.Is(err, breaker.ErrOpen) {
		t.Errorf("4th call: %v (code %v); want Unavailable matching breaker.ErrOpen", err, status.Code(err))
	}
	if got := svc.unaryCalls.Load(); got != 3 {
		t.Errorf("server saw %d calls, want 3 (the open breaker refuses locally)", got)
	}
	if _, err := cl.EmptyCall(ctx, &testpb.Empty{}); err != nil {
		t.Errorf("EmptyCall through its own breaker: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(made) != 2 || made[unaryMethod].State() != breaker.Open || made[emptyMethod].State() != breaker.Closed {
		t.Errorf("breakers: %v; want %s open and %s closed", made, unaryMethod, emptyMethod)
	}
}

// TestBreakerIgnoresCallerErrors: codes that are the request's fault do not
// trip the breaker (DefaultFailure).
func TestBreakerIgnoresCallerErrors(t *testing.T) {
	svc := &service{unary: func(context.Context, int, *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
		return nil, status.Error(codes.InvalidArgument, "bad")
	}}
	b, _ := breaker.New(breaker.Config{Threshold: 2})
	cl := start(t, svc, nil, newClient(t, grpcx.ClientConfig{Guards: func(string) grpcx.Guards { return grpcx.Guards{Breaker: b} }})...)
	for range 5 {
		cl.UnaryCall(context.Background(), &testpb.SimpleRequest{})
	}
	if b.State() != breaker.Closed || svc.unaryCalls.Load() != 5 {
		t.Errorf("breaker %v after 5 InvalidArgument answers (server saw %d); want closed, 5", b.State(), svc.unaryCalls.Load())
	}
}

// TestMaxMethods: beyond the bound, methods share Guards("").
func TestMaxMethods(t *testing.T) {
	var mu sync.Mutex
	var asked []string
	cl := start(t, &service{}, nil, newClient(t, grpcx.ClientConfig{
		MaxMethods: 1,
		Guards: func(m string) grpcx.Guards {
			mu.Lock()
			asked = append(asked, m)
			mu.Unlock()
			return grpcx.Guards{}
		},
	})...)
	for range 2 {
		cl.UnaryCall(context.Background(), &testpb.SimpleRequest{})
		cl.EmptyCall(context.Background(), &testpb.Empty{})
	}
	if diff := cmp.Diff([]string{unaryMethod, ""}, asked); diff != "" {
		t.Errorf("Guards called for (-want +got):\n%s", diff)
	}
}

// TestAttemptTimeout: a hung attempt is cut off and retried within the
// caller's deadline.
func TestAttemptTimeout(t *testing.T) {
	svc := &service{unary: func(ctx context.Context, n int, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
		if n == 1 {
			<-ctx.Done() // hangs until the client's attempt deadline
			return nil, ctx.Err()
		}
		return &testpb.SimpleResponse{Username: "second"}, nil
	}}
	cl := start(t, svc, nil, newClient(t, grpcx.ClientConfig{Retry: fastRetry(t, 3, nil), AttemptTimeout: 50 * time.Millisecond})...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	began := time.Now()
	resp, err := cl.UnaryCall(ctx, &testpb.SimpleRequest{})
	if err != nil || resp.GetUsername() != "second" {
		t.Fatalf("UnaryCall = %v, %v", resp, err)
	}
	if el := time.Since(began); el < 50*time.Millisecond || el > 5*time.Second {
		t.Errorf("took %v, want about the attempt timeout", el)
	}
}

// TestCallerDeadlineNotRetried: when the caller's own deadline passes, the
// call ends with DeadlineExceeded and no retry starts.
func TestCallerDeadlineNotRetried(t *testing.T) {
	svc := &service{unary: func(ctx context.Context, n int, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	cl := start(t, svc, nil, newClient(t, grpcx.ClientConfig{Retry: fastRetry(t, 5, nil)})...)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := cl.UnaryCall(ctx, &testpb.SimpleRequest{})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("code %v (%v), want DeadlineExceeded", status.Code(err), err)
	}
	if got := svc.unaryCalls.Load(); got != 1 {
		t.Errorf("%d attempts, want 1", got)
	}
}

// TestCallerCancelCancelsAttempt: a caller who leaves cancels the attempt
// on the server, gets Canceled, and nothing is left running.
func TestCallerCancelCancelsAttempt(t *testing.T) {
	entered := make(chan struct{})
	serverSaw := make(chan error, 1)
	svc := &service{unary: func(ctx context.Context, n int, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
		close(entered)
		<-ctx.Done()
		serverSaw <- ctx.Err()
		return nil, ctx.Err()
	}}
	cl := start(t, svc, nil, newClient(t, grpcx.ClientConfig{Retry: fastRetry(t, 5, nil)})...)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-entered; cancel() }()
	_, err := cl.UnaryCall(ctx, &testpb.SimpleRequest{})
	if status.Code(err) != codes.Canceled {
		t.Errorf("code %v (%v), want Canceled", status.Code(err), err)
	}
	if err := <-serverSaw; !errors.Is(err, context.Canceled) {
		t.Errorf("server's context: %v, want canceled", err)
	}
	if got := svc.unaryCalls.Load(); got != 1 {
		t.Errorf("%d attempts, want 1", got)
	}
}

// TestCancelledCallerRunsNothing: a context that ended before the call runs
// nothing.
func TestCancelledCallerRunsNothing(t *testing.T) {
	svc := &service{}
	cl := start(t, svc, nil, newClient(t, grpcx.ClientConfig{})...)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := cl.UnaryCall(ctx, &testpb.SimpleRequest{}); status.Code(err) != codes.Canceled {
		t.Errorf("unary: %v, want Canceled", err)
	}
	if _, err := cl.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{}); status.Code(err) != codes.Canceled {
		t.Errorf("stream: %v, want Canceled", err)
	}
	if svc.unaryCalls.Load()+svc.streamCalls.Load() != 0 {
		t.Error("the server saw a call")
	}
}

// TestHedgeOnlyIdempotent: a slow call is hedged only for a method declared
// idempotent; the hedge's reply wins and is the caller's.
func TestHedgeOnlyIdempotent(t *testing.T) {
	release := make(chan struct{})
	slowFirst := func(ctx context.Context, n int) (string, error) {
		if n == 1 {
			select { // the first attempt is slow until the test ends
			case <-ctx.Done():
				return "", ctx.Err()
			case <-release:
			}
			return "first", nil
		}
		return "hedge", nil
	}
	svc := &service{
		unary: func(ctx context.Context, n int, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
			u, err := slowFirst(ctx, n)
			return &testpb.SimpleResponse{Username: u}, err
		},
		empty: func(ctx context.Context, n int) error {
			if n == 1 {
				time.Sleep(30 * time.Millisecond) // longer than the hedge delay
			}
			return nil
		},
	}
	h, err := hedge.New(hedge.Config{Delay: 5 * time.Millisecond, Percentile: hedge.Fixed})
	if err != nil {
		t.Fatal(err)
	}
	cl := start(t, svc, nil, newClient(t, grpcx.ClientConfig{
		Hedge:      h,
		Idempotent: func(m string) bool { return m == unaryMethod },
	})...)
	defer close(release)
	resp, err := cl.UnaryCall(context.Background(), &testpb.SimpleRequest{})
	if err != nil || resp.GetUsername() != "hedge" {
		t.Fatalf("UnaryCall = %v, %v; want the hedge's reply", resp, err)
	}
	if _, err := cl.EmptyCall(context.Background(), &testpb.Empty{}); err != nil {
		t.Fatal(err)
	}
	if u, e := svc.unaryCalls.Load(), svc.emptyCalls.Load(); u != 2 || e != 1 {
		t.Errorf("attempts: UnaryCall %d (idempotent), EmptyCall %d; want 2 and 1", u, e)
	}
}

// TestCode is the mapping of Brace's errors to codes.
func TestCode(t *testing.T) {
	b, _ := breaker.New(breaker.Config{})
	b.ForceOpen(context.Background())
	_, openErr := b.Acquire(context.Background())
	for _, tc := range []struct {
		err  error
		want codes.Code
	}{
		{nil, codes.OK},
		{status.Error(codes.NotFound, "x"), codes.NotFound},
		{errors.Join(errors.New("a"), status.Error(codes.Aborted, "x")), codes.Aborted},
		{context.Canceled, codes.Canceled},
		{context.DeadlineExceeded, codes.DeadlineExceeded},
		{openErr, codes.Unavailable},
		{errors.New("plain"), codes.Unknown},
	} {
		if got := grpcx.Code(tc.err); got != tc.want {
			t.Errorf("Code(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestLoopbackTCP runs a retry over a real TCP connection.
func TestLoopbackTCP(t *testing.T) {
	svc := &service{unary: func(_ context.Context, n int, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
		if n == 1 {
			return nil, status.Error(codes.Unavailable, "once")
		}
		return &testpb.SimpleResponse{Username: "tcp"}, nil
	}}
	cl := startTCP(t, svc, nil, newClient(t, grpcx.ClientConfig{Retry: fastRetry(t, 3, nil)})...)
	resp, err := cl.UnaryCall(context.Background(), &testpb.SimpleRequest{})
	if err != nil || resp.GetUsername() != "tcp" {
		t.Fatalf("UnaryCall = %v, %v", resp, err)
	}
}

var _ = io.EOF
var _ = strings.Contains

// TestCancelDuringRetryDelay: a caller who leaves while the retry waits for
// a pushback gets Canceled at once, not the last attempt's status.
func TestCancelDuringRetryDelay(t *testing.T) {
	svc := &service{unary: func(ctx context.Context, n int, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
		grpc.SetTrailer(ctx, metadata.Pairs(grpcx.PushbackKey, "10000"))
		return nil, status.Error(codes.Unavailable, "later")
	}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	obs := middleware.ObserverFunc(func(_ context.Context, e middleware.Event) {
		if e.Kind == middleware.Retry {
			cancel() // the retry is about to wait 10s
		}
	})
	cl := start(t, svc, nil, newClient(t, grpcx.ClientConfig{Retry: fastRetry(t, 3, obs)})...)
	began := time.Now()
	_, err := cl.UnaryCall(ctx, &testpb.SimpleRequest{})
	if status.Code(err) != codes.Canceled {
		t.Errorf("code %v (%v), want Canceled", status.Code(err), err)
	}
	var ex *retry.ExhaustedError
	if !errors.As(err, &ex) || ex.Reason != retry.ReasonCanceled {
		t.Errorf("errors.As(*retry.ExhaustedError) = %v, want ReasonCanceled", ex)
	}
	if el := time.Since(began); el > 5*time.Second {
		t.Errorf("took %v: the delay did not end with the context", el)
	}
}

// TestPlainErrorFromInnerInterceptor: a plain error from an interceptor
// inside grpcx's is Unknown: not retried, and the caller gets a status.
func TestPlainErrorFromInnerInterceptor(t *testing.T) {
	c, _ := grpcx.NewClient(grpcx.ClientConfig{Retry: fastRetry(t, 3, nil)})
	plain := errors.New("token expired")
	var n int
	inner := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
		n++
		return plain
	}
	err := c.Unary(context.Background(), unaryMethod, nil, new(testpb.SimpleResponse), nil, inner)
	if st, ok := status.FromError(err); !ok || st.Code() != codes.Unknown || !errors.Is(err, plain) || n != 1 {
		t.Errorf("err %v (status %v, %v), attempts %d; want Unknown wrapping the error, 1 attempt", err, st, ok, n)
	}
}
