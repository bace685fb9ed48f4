package grpcx_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/backpressure"
	"github.com/brace-go/brace/middleware/grpcx"
	"github.com/brace-go/brace/middleware/priority"
	"github.com/brace-go/brace/middleware/ratelimit"
)

// seen records what a handler saw: the level in its context and the
// metadata values of priority.MetadataKey.
type seen struct {
	mu     sync.Mutex
	levels []priority.Level
	md     [][]string
}

func (s *seen) add(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.levels = append(s.levels, priority.From(ctx))
	s.md = append(s.md, metadata.ValueFromIncomingContext(ctx, priority.MetadataKey))
}

func (s *seen) last() (priority.Level, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.levels[len(s.levels)-1], s.md[len(s.md)-1]
}

func recordingService(sn *seen) *service {
	return &service{
		unary: func(ctx context.Context, _ int, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
			sn.add(ctx)
			return &testpb.SimpleResponse{}, nil
		},
		stream: func(_ int, _ *testpb.StreamingOutputCallRequest, ss grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
			sn.add(ss.Context())
			return ss.Send(&testpb.StreamingOutputCallResponse{})
		},
	}
}

// TestPriorityReachesHandlerAndGuards: a grpcx client with SendPriority
// sends the caller's level; a server that trusts it puts it in the
// context the guards are taken with (seen in the rate limiter's Rejected
// event) and the handler runs with (unary and stream), with and without
// Tap. A Default call sends no metadata.
func TestPriorityReachesHandlerAndGuards(t *testing.T) {
	for _, useTap := range []bool{false, true} {
		for _, l := range []priority.Level{priority.Critical, priority.Default, priority.Sheddable} {
			t.Run(fmt.Sprintf("tap=%v/%v", useTap, l), func(t *testing.T) {
				var sn seen
				var mu sync.Mutex
				var atLimiter []priority.Level
				// One token, never refilled: the first call takes it and
				// every later one is refused, with its context.
				rl, err := ratelimit.New(ratelimit.Config{Rate: 1e-9, Burst: 1, Observer: middleware.ObserverFunc(func(ctx context.Context, e middleware.Event) {
					mu.Lock()
					atLimiter = append(atLimiter, priority.From(ctx))
					mu.Unlock()
				})})
				if err != nil {
					t.Fatal(err)
				}
				sopts := newServer(t, grpcx.ServerConfig{
					TrustPriority: grpcx.TrustAll,
					Guards: func(m string) grpcx.Guards {
						if strings.HasSuffix(m, "/EmptyCall") {
							return grpcx.Guards{RateLimit: rl}
						}
						return grpcx.Guards{}
					},
				}, useTap)
				cl := start(t, recordingService(&sn), sopts, newClient(t, grpcx.ClientConfig{Retry: fastRetry(t, 1, nil), SendPriority: true})...)
				ctx := priority.With(context.Background(), l)

				if _, err := cl.UnaryCall(ctx, &testpb.SimpleRequest{}); err != nil {
					t.Fatal(err)
				}
				got, md := sn.last()
				if got != l {
					t.Errorf("unary handler saw %v, want %v", got, l)
				}
				if l == priority.Default && md != nil {
					t.Errorf("a default call sent %q, want no metadata", md)
				}
				if l != priority.Default && (len(md) != 1 || md[0] != l.String()) {
					t.Errorf("metadata %q, want [%q]", md, l.String())
				}

				st, err := cl.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := st.Recv(); err != nil {
					t.Fatal(err)
				}
				if got, _ := sn.last(); got != l {
					t.Errorf("stream handler saw %v, want %v", got, l)
				}

				_, _ = cl.EmptyCall(context.Background(), &testpb.Empty{}) // takes the token
				if _, err := cl.EmptyCall(ctx, &testpb.Empty{}); status.Code(err) != codes.ResourceExhausted {
					t.Fatalf("EmptyCall: %v, want ResourceExhausted", err)
				}
				mu.Lock()
				defer mu.Unlock()
				if len(atLimiter) != 1 || atLimiter[0] != l {
					t.Errorf("the limiter refused calls at %v, want [%v]", atLimiter, l)
				}
			})
		}
	}
}

// TestPriorityUntrusted: a server without TrustPriority, or whose
// TrustPriority says no, runs every call at Default whatever it sends;
// TrustPriority gets the method and a context with the peer.
func TestPriorityUntrusted(t *testing.T) {
	for _, useTap := range []bool{false, true} {
		t.Run(fmt.Sprintf("nil/tap=%v", useTap), func(t *testing.T) {
			var sn seen
			cl := start(t, recordingService(&sn), newServer(t, grpcx.ServerConfig{}, useTap),
				newClient(t, grpcx.ClientConfig{SendPriority: true})...)
			if _, err := cl.UnaryCall(priority.With(context.Background(), priority.Critical), &testpb.SimpleRequest{}); err != nil {
				t.Fatal(err)
			}
			if got, md := sn.last(); got != priority.Default || len(md) != 1 {
				t.Errorf("handler saw %v with metadata %q; want default, the metadata sent but not trusted", got, md)
			}
		})
		t.Run(fmt.Sprintf("func/tap=%v", useTap), func(t *testing.T) {
			var sn seen
			var mu sync.Mutex
			var asked []string
			trust := func(ctx context.Context, method string) bool {
				p, ok := peer.FromContext(ctx)
				mu.Lock()
				asked = append(asked, method)
				mu.Unlock()
				return ok && p.Addr != nil && strings.HasSuffix(method, "/UnaryCall")
			}
			cl := start(t, recordingService(&sn), newServer(t, grpcx.ServerConfig{TrustPriority: trust}, useTap),
				newClient(t, grpcx.ClientConfig{SendPriority: true})...)
			ctx := priority.With(context.Background(), priority.Sheddable)
			if _, err := cl.UnaryCall(ctx, &testpb.SimpleRequest{}); err != nil {
				t.Fatal(err)
			}
			if got, _ := sn.last(); got != priority.Sheddable {
				t.Errorf("trusted method: handler saw %v, want sheddable", got)
			}
			st, err := cl.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.Recv(); err != nil {
				t.Fatal(err)
			}
			if got, _ := sn.last(); got != priority.Default {
				t.Errorf("untrusted method: handler saw %v, want default", got)
			}
			// A call without the metadata does not ask.
			if _, err := cl.UnaryCall(context.Background(), &testpb.SimpleRequest{}); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(asked) < 2 || !strings.HasSuffix(asked[0], "/UnaryCall") {
				t.Errorf("TrustPriority asked for %q", asked)
			}
			for _, m := range asked {
				if m == "" {
					t.Errorf("TrustPriority asked without a method: %q", asked)
				}
			}
			t.Logf("TrustPriority asked for %q", asked)
		})
	}
}

// TestPriorityNotSent: a client without SendPriority sends no level.
func TestPriorityNotSent(t *testing.T) {
	var sn seen
	cl := start(t, recordingService(&sn), newServer(t, grpcx.ServerConfig{TrustPriority: grpcx.TrustAll}, true),
		newClient(t, grpcx.ClientConfig{})...)
	if _, err := cl.UnaryCall(priority.With(context.Background(), priority.Critical), &testpb.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	if got, md := sn.last(); got != priority.Default || md != nil {
		t.Errorf("handler saw %v, metadata %q; want default and none", got, md)
	}
}

// TestPriorityExplicitMetadataFirst: a value the caller put in the
// outgoing metadata itself comes first and wins.
func TestPriorityExplicitMetadataFirst(t *testing.T) {
	var sn seen
	cl := start(t, recordingService(&sn), newServer(t, grpcx.ServerConfig{TrustPriority: grpcx.TrustAll}, false),
		newClient(t, grpcx.ClientConfig{SendPriority: true})...)
	ctx := metadata.AppendToOutgoingContext(priority.With(context.Background(), priority.Sheddable), priority.MetadataKey, "critical")
	if _, err := cl.UnaryCall(ctx, &testpb.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	if got, md := sn.last(); got != priority.Critical || len(md) != 2 {
		t.Errorf("handler saw %v, metadata %q; want critical first of two", got, md)
	}
}

// logRecords is a slog.Handler keeping the records it gets.
type logRecords struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecords) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}
func (h *logRecords) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecords) WithGroup(string) slog.Handler      { return h }

func (h *logRecords) take() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range h.records {
		s := r.Level.String() + " " + r.Message
		r.Attrs(func(a slog.Attr) bool { s += " " + a.String(); return true })
		out = append(out, s)
	}
	h.records = nil
	return out
}

func captureDefaultLog(t *testing.T) *logRecords {
	h := &logRecords{}
	old := slog.Default()
	slog.SetDefault(slog.New(h))
	t.Cleanup(func() { slog.SetDefault(old) })
	return h
}

// TestPriorityUnknownValue: a value that is not a level runs the call at
// Default, never fails it, and is logged at Warn at most once every 10 s,
// with the count of calls since the last record; on the fake clock.
func TestPriorityUnknownValue(t *testing.T) {
	for _, useTap := range []bool{false, true} {
		t.Run(fmt.Sprintf("tap=%v", useTap), func(t *testing.T) {
			logs := captureDefaultLog(t)
			synctest.Test(t, func(t *testing.T) {
				var sn seen
				cl := start(t, recordingService(&sn), newServer(t, grpcx.ServerConfig{TrustPriority: grpcx.TrustAll}, useTap))
				call := func(v string) {
					t.Helper()
					ctx := metadata.AppendToOutgoingContext(context.Background(), priority.MetadataKey, v)
					if _, err := cl.UnaryCall(ctx, &testpb.SimpleRequest{}); err != nil {
						t.Fatalf("a call with priority %q failed: %v", v, err)
					}
					if got, _ := sn.last(); got != priority.Default {
						t.Errorf("priority %q: handler saw %v, want default", v, got)
					}
				}
				call("urgent")
				call(strings.Repeat("x", 1000))
				call("")
				got := logs.take()
				if len(got) != 1 || !strings.Contains(got[0], "WARN grpcx: unknown priority in metadata") ||
					!strings.Contains(got[0], `unknown level "urgent"`) || !strings.Contains(got[0], "calls=1") {
					t.Errorf("records %q, want one Warn for the first value", got)
				}
				time.Sleep(10 * time.Second)
				call("DEFAULT") // a known level: not counted
				call("urgent")
				got = logs.take()
				if len(got) != 1 || !strings.Contains(got[0], "calls=3") {
					t.Errorf("records after 10s %q, want one counting 3 calls", got)
				}
				for _, r := range got {
					t.Log(r)
				}
			})
		})
	}
}

// TestTapTrustPriorityPanic: a TrustPriority that panics in Tap refuses
// the call with Internal instead of ending the process.
func TestTapTrustPriorityPanic(t *testing.T) {
	cl := start(t, &service{}, newServer(t, grpcx.ServerConfig{TrustPriority: func(context.Context, string) bool { panic("boom") }}, true))
	ctx := metadata.AppendToOutgoingContext(context.Background(), priority.MetadataKey, "critical")
	_, err := cl.UnaryCall(ctx, &testpb.SimpleRequest{})
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "TrustPriority panicked") {
		t.Errorf("got %v, want Internal naming TrustPriority", err)
	}
	if _, err := cl.UnaryCall(context.Background(), &testpb.SimpleRequest{}); err != nil {
		t.Errorf("a call without priority: %v", err)
	}
}

// TestPrioritySheddingEndToEnd: a server whose backpressure limiter sheds
// by priority, trusting its clients' priorities, sheds a sheddable call
// while a critical call still gets in (capacity 2: a sheddable call may
// fill half of it, a critical call all of it), with and without Tap.
func TestPrioritySheddingEndToEnd(t *testing.T) {
	for _, useTap := range []bool{false, true} {
		t.Run(fmt.Sprintf("tap=%v", useTap), func(t *testing.T) {
			bp, err := backpressure.New(backpressure.Config{Capacity: 2, Priorities: true})
			if err != nil {
				t.Fatal(err)
			}
			svc, entered, release := blocking()
			cl := start(t, svc, newServer(t, grpcx.ServerConfig{
				TrustPriority: grpcx.TrustAll,
				Guards:        func(string) grpcx.Guards { return grpcx.Guards{Backpressure: bp} },
			}, useTap), newClient(t, grpcx.ClientConfig{Retry: fastRetry(t, 1, nil), SendPriority: true})...)
			call := func(l priority.Level) <-chan error {
				done := make(chan error, 1)
				go func() {
					_, err := cl.UnaryCall(priority.With(context.Background(), l), &testpb.SimpleRequest{})
					done <- err
				}()
				return done
			}
			first := call(priority.Default)
			<-entered // one call in flight
			if err := <-call(priority.Sheddable); status.Code(err) != codes.Unavailable {
				t.Errorf("sheddable call with one in flight: %v, want Unavailable (shed)", err)
			}
			critical := call(priority.Critical)
			<-entered // the critical call got in beside the first
			close(release)
			for _, ch := range []<-chan error{first, critical} {
				if err := <-ch; err != nil {
					t.Errorf("admitted call: %v", err)
				}
			}
		})
	}
}

// TestPriorityOnEveryAttempt: every attempt of a retried call carries the
// caller's level, unary and stream.
func TestPriorityOnEveryAttempt(t *testing.T) {
	var sn seen
	svc := &service{
		unary: func(ctx context.Context, n int, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
			sn.add(ctx)
			if n < 3 {
				return nil, status.Error(codes.Unavailable, "again")
			}
			return &testpb.SimpleResponse{}, nil
		},
		stream: func(n int, _ *testpb.StreamingOutputCallRequest, ss grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
			sn.add(ss.Context())
			if n < 2 {
				return status.Error(codes.Unavailable, "again")
			}
			return ss.Send(&testpb.StreamingOutputCallResponse{})
		},
	}
	cl := start(t, svc, newServer(t, grpcx.ServerConfig{TrustPriority: grpcx.TrustAll}, true),
		newClient(t, grpcx.ClientConfig{Retry: fastRetry(t, 3, nil), SendPriority: true})...)
	ctx := priority.With(context.Background(), priority.Critical)
	if _, err := cl.UnaryCall(ctx, &testpb.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	st, err := cl.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	sn.mu.Lock()
	defer sn.mu.Unlock()
	want := []priority.Level{priority.Critical, priority.Critical, priority.Critical, priority.Critical, priority.Critical}
	if diff := cmp.Diff(want, sn.levels); diff != "" {
		t.Errorf("levels of the attempts (-want +got):\n%s", diff)
	}
}
