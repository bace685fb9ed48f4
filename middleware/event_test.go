package middleware_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/priority"
	"github.com/google/go-cmp/cmp"
)

// captureDefault points slog.Default at a buffer for the test.
func captureDefault(t *testing.T) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	t.Cleanup(func() { slog.SetDefault(old) })
	return &buf
}

func TestEmitRecoversObserverPanic(t *testing.T) {
	buf := captureDefault(t)
	boom := middleware.ObserverFunc(func(context.Context, middleware.Event) { panic("observer bug") })
	middleware.Emit(context.Background(), boom, middleware.Event{Kind: middleware.Rejected, Concern: "backpressure", Name: "db"})
	out := buf.String()
	for _, want := range []string{"level=ERROR", "observer panicked", "concern=backpressure", "name=db", "event=rejected", "panic=\"observer bug\"", "stack="} {
		if !strings.Contains(out, want) {
			t.Errorf("the report %q does not contain %q", out, want)
		}
	}
}

func TestEmitNilObserver(t *testing.T) {
	middleware.Emit(context.Background(), nil, middleware.Event{Kind: middleware.Retry}) // must not panic
}

func TestObserversFanOut(t *testing.T) {
	captureDefault(t)
	var got []string
	rec := func(tag string) middleware.Observer {
		return middleware.ObserverFunc(func(_ context.Context, e middleware.Event) { got = append(got, tag+":"+e.Kind.String()) })
	}
	boom := middleware.ObserverFunc(func(context.Context, middleware.Event) { panic("x") })
	obs := middleware.Observers(rec("a"), nil, boom, rec("b"))
	middleware.Emit(context.Background(), obs, middleware.Event{Kind: middleware.Joined})
	if diff := cmp.Diff([]string{"a:joined", "b:joined"}, got); diff != "" {
		t.Errorf("a panic in one observer kept the event from the next (-want +got):\n%s", diff)
	}
	if middleware.Observers() != nil || middleware.Observers(nil, nil) != nil {
		t.Error("Observers of no observer is not nil")
	}
	one := rec("one")
	if o := middleware.Observers(nil, one); o == nil {
		t.Error("Observers(nil, o) = nil")
	}
}

func TestKindString(t *testing.T) {
	want := map[middleware.Kind]string{
		middleware.Rejected: "rejected", middleware.Retry: "retry", middleware.GaveUp: "gave-up",
		middleware.TimedOut: "timed-out", middleware.StateChanged: "state-changed", middleware.Joined: "joined",
		middleware.Waited: "waited", middleware.LimitChanged: "limit-changed", middleware.Hedged: "hedged",
		middleware.FellBack: "fell-back", middleware.StoreFailed: "store-failed",
		0: "unknown", 200: "unknown",
	}
	for k, w := range want {
		if got := k.String(); got != w {
			t.Errorf("Kind(%d).String() = %q, want %q", k, got, w)
		}
	}
}

func TestLog(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		e    middleware.Event
		want string // "" = not logged at level Info
	}{
		{"open is Warn", middleware.Event{Kind: middleware.StateChanged, Concern: "breaker", Name: "db", From: "closed", To: "open", Failures: 3},
			`level=WARN msg="breaker state-changed" concern=breaker name=db from=closed to=open failures=3`},
		{"store down is Warn", middleware.Event{Kind: middleware.StateChanged, Concern: "redisstore", From: "up", To: "down", Err: errors.New("dial tcp: connection refused")},
			`level=WARN msg="redisstore state-changed" concern=redisstore from=up to=down error="dial tcp: connection refused"`},
		{"closing is Info", middleware.Event{Kind: middleware.StateChanged, Concern: "breaker", From: "half-open", To: "closed"},
			`level=INFO msg="breaker state-changed" concern=breaker from=half-open to=closed`},
		{"throttling is Warn", middleware.Event{Kind: middleware.StateChanged, Concern: "throttle", From: "passing", To: "throttling", Probability: 0.5},
			`level=WARN msg="throttle state-changed" concern=throttle from=passing to=throttling probability=0.5`},
		{"passing again is Info", middleware.Event{Kind: middleware.StateChanged, Concern: "throttle", From: "throttling", To: "passing"},
			`level=INFO msg="throttle state-changed" concern=throttle from=throttling to=passing`},
		{"a soft limit crossing is Debug", middleware.Event{Kind: middleware.StateChanged, Concern: "backpressure", From: "normal", To: "over-soft-limit"}, ""},
		{"a rejection is Debug", middleware.Event{Kind: middleware.Rejected, Concern: "ratelimit", Reason: "rate", Delay: time.Second}, ""},
		{"a retry is Debug", middleware.Event{Kind: middleware.Retry, Concern: "retry", Attempt: 2}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: dropTime}))
			middleware.Log(l).Observe(ctx, tt.e)
			if got := strings.TrimSpace(buf.String()); got != tt.want {
				t.Errorf("logged %q, want %q", got, tt.want)
			}
		})
	}
	t.Run("every field at Debug", func(t *testing.T) {
		var buf bytes.Buffer
		l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: dropTime}))
		middleware.Log(l).Observe(ctx, middleware.Event{Kind: middleware.Rejected, Concern: "backpressure", Name: "n",
			Attempt: 2, Delay: time.Second, Wait: time.Millisecond, InFlight: 4, Limit: 5, Reason: "shed", Err: errors.New("full"),
			Priority: priority.Sheddable, Probability: 0.25})
		want := `level=DEBUG msg="backpressure rejected" concern=backpressure name=n attempt=2 delay=1s wait=1ms in_flight=4 limit=5 reason=shed priority=sheddable probability=0.25 error=full`
		if got := strings.TrimSpace(buf.String()); got != want {
			t.Errorf("logged\n%s\nwant\n%s", got, want)
		}
	})
	t.Run("nil logger uses slog.Default", func(t *testing.T) {
		buf := captureDefault(t)
		middleware.Log(nil).Observe(ctx, middleware.Event{Kind: middleware.StateChanged, Concern: "breaker", To: "open"})
		if !strings.Contains(buf.String(), "breaker state-changed") {
			t.Errorf("slog.Default got %q", buf.String())
		}
	})
}

func dropTime(_ []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// Emitting to a no-op observer allocates nothing, so an observer that does
// not need an event's details costs no garbage on a hot path.
func TestEmitAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	var n int
	obs := middleware.ObserverFunc(func(_ context.Context, e middleware.Event) {
		if e.Kind == middleware.Rejected {
			n++
		}
	})
	ctx := context.Background()
	err := errors.New("shed")
	if a := testing.AllocsPerRun(1000, func() {
		middleware.Emit(ctx, obs, middleware.Event{Kind: middleware.Rejected, Concern: "backpressure", Name: "db", InFlight: 3, Err: err})
	}); a != 0 {
		t.Errorf("Emit allocates %v times per event, want 0", a)
	}
	// Log at a disabled level allocates nothing either.
	quiet := middleware.Log(slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)))
	if a := testing.AllocsPerRun(1000, func() {
		middleware.Emit(ctx, quiet, middleware.Event{Kind: middleware.Rejected, Concern: "backpressure"})
	}); a != 0 {
		t.Errorf("Log at a disabled level allocates %v times per event, want 0", a)
	}
}

// Observers may be called from many goroutines at once.
func TestObserversConcurrent(t *testing.T) {
	var mu sync.Mutex
	n := 0
	count := middleware.ObserverFunc(func(context.Context, middleware.Event) { mu.Lock(); n++; mu.Unlock() })
	obs := middleware.Observers(count, count)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				middleware.Emit(context.Background(), obs, middleware.Event{Kind: middleware.Joined})
			}
		}()
	}
	wg.Wait()
	if n != 1600 {
		t.Fatalf("n = %d, want 1600", n)
	}
}
