package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/brace-go/brace/middleware/bracetest"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.uber.org/goleak"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/ratelimit"
)

// recorder is bracetest.Recorder, with the views these tests read.
type recorder struct{ bracetest.Recorder }

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// inf is rate.Inf (math.MaxFloat64), without importing x/time/rate.
const inf = math.MaxFloat64

func mustNew(t testing.TB, cfg ratelimit.Config) *ratelimit.Limiter {
	t.Helper()
	l, err := ratelimit.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// admit takes a permit from l's shared bucket and finishes it at once.
func admit(l *ratelimit.Limiter, ctx context.Context) error {
	p, err := l.Acquire(ctx)
	if err == nil {
		p.Done(nil)
	}
	return err
}

// keyed returns a func that admits a call with key k through a Keyed
// adapter of l.
func keyed[K comparable](l *ratelimit.Limiter) func(ctx context.Context, k K) error {
	s := middleware.Apply(func(context.Context, K) (struct{}, error) { return struct{}{}, nil },
		ratelimit.Keyed[K, struct{}](l, func(k K) K { return k }))
	return func(ctx context.Context, k K) error {
		_, err := s(ctx, k)
		return err
	}
}

func (r *recorder) get() []middleware.Event { return r.Events() }

// nan returns a NaN (a func, so that no constant is folded).
func nan() float64 { return math.NaN() }

// withRate returns cfg with Rate set to f, without naming Rate's type
// (rate.Limit) and so without importing x/time/rate.
func withRate(cfg ratelimit.Config, f float64) ratelimit.Config {
	setFloat(&cfg.Rate, f)
	return cfg
}

func setFloat[T ~float64](p *T, f float64) { *p = T(f) }

func TestNewValidation(t *testing.T) {
	tests := []struct {
		name string
		cfg  ratelimit.Config
		want string
	}{
		{"zero rate", ratelimit.Config{}, "ratelimit: Rate must be positive (or rate.Inf), got 0"},
		{"negative rate", ratelimit.Config{Rate: -1}, "ratelimit: Rate must be positive (or rate.Inf), got -1"},
		{"NaN rate", withRate(ratelimit.Config{}, nan()), "ratelimit: Rate must be positive (or rate.Inf), got NaN"},
		{"negative burst", ratelimit.Config{Rate: 1, Burst: -1}, "ratelimit: Burst must not be negative, got -1"},
		{"negative wait", ratelimit.Config{Rate: 1, MaxWait: -time.Second}, "ratelimit: MaxWait must not be negative, got -1s"},
		{"negative MaxKeys", ratelimit.Config{Rate: 1, MaxKeys: -1}, "ratelimit: MaxKeys must not be negative, got -1"},
		{"negative IdleTimeout", ratelimit.Config{Rate: 1, IdleTimeout: -1}, "ratelimit: IdleTimeout must not be negative, got -1ns"},
		{"valid", ratelimit.Config{Rate: 1}, ""},
		{"inf", ratelimit.Config{Rate: inf}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := ratelimit.New(tt.cfg)
			got := ""
			if err != nil {
				got = err.Error()
				if l != nil {
					t.Error("New returned a Limiter with its error")
				}
			}
			if got != tt.want {
				t.Errorf("New() error = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDefaultBurst(t *testing.T) {
	for _, tt := range []struct {
		cfg  ratelimit.Config
		want int
	}{{ratelimit.Config{Rate: 0.5}, 1}, {ratelimit.Config{Rate: 1}, 1}, {ratelimit.Config{Rate: 2.5}, 3}, {ratelimit.Config{Rate: 100}, 100}, {ratelimit.Config{Rate: inf}, 1}} {
		t.Run(fmt.Sprint(tt.cfg.Rate), func(t *testing.T) {
			if got := mustNew(t, tt.cfg).Burst(); got != tt.want {
				t.Errorf("Burst() = %d, want %d", got, tt.want)
			}
		})
	}
}

// sameLimited compares refusals by Delay.
func sameLimited(a, b *ratelimit.LimitedError) bool {
	return (a == nil) == (b == nil) && (a == nil || a.Delay == b.Delay)
}

// In reject mode the burst is admitted, the next call is refused at once
// with the exact time until the next token, and that token arrives then.
func TestReject(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec recorder
		l := mustNew(t, ratelimit.Config{Rate: 10, Burst: 2, Name: "api", Observer: &rec})
		ctx := context.Background()
		var got []error
		for range 3 {
			got = append(got, admit(l, ctx))
		}
		time.Sleep(40 * time.Millisecond)
		got = append(got, admit(l, ctx))
		time.Sleep(60 * time.Millisecond)
		got = append(got, admit(l, ctx))

		want := []error{nil, nil, &ratelimit.LimitedError{Delay: 100 * time.Millisecond}, &ratelimit.LimitedError{Delay: 60 * time.Millisecond}, nil}
		if diff := cmp.Diff(want, got, cmp.Comparer(sameLimited)); diff != "" {
			t.Errorf("Acquire results (-want +got):\n%s", diff)
		}
		wantEvents := []middleware.Event{
			{Kind: middleware.Rejected, Concern: "ratelimit", Name: "api", Reason: "rate", Delay: 100 * time.Millisecond, Limit: 2, Err: got[2]},
			{Kind: middleware.Rejected, Concern: "ratelimit", Name: "api", Reason: "rate", Delay: 60 * time.Millisecond, Limit: 2, Err: got[3]},
		}
		if diff := cmp.Diff(wantEvents, rec.get(), cmpopts.EquateErrors()); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(ratelimit.Stats{Rejected: 2}, l.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
}

// A retry-after is rounded up to its step (1ms, or 1/256 of the time one
// token takes), never down.
func TestRetryAfterRoundsUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, tt := range []struct {
			rate  float64
			sleep time.Duration
			want  time.Duration
		}{
			{10, 0, 100 * time.Millisecond},
			{10, 40*time.Millisecond + 500*time.Microsecond, 60 * time.Millisecond},
			{1, 0, time.Second},
			{1e6, 0, time.Millisecond}, // 1µs rounded up to the smallest step
			{0.001, 0, 1000 * time.Second},
			{0.001, 10 * time.Second, 992187500 * time.Microsecond}, // 990s rounded up to a step of 1000s/256
		} {
			l := mustNew(t, withRate(ratelimit.Config{Burst: 1}, tt.rate))
			_ = admit(l, context.Background())
			time.Sleep(tt.sleep)
			err := admit(l, context.Background())
			var le *ratelimit.LimitedError
			ok := errors.As(err, &le)
			if !ok || le.Delay != tt.want {
				t.Errorf("rate %v after %v: err = %v, want a retry-after of %v", tt.rate, tt.sleep, err, tt.want)
			}
		}
	})
}

func TestLimitedError(t *testing.T) {
	var err error = &ratelimit.LimitedError{Delay: 1500 * time.Millisecond}
	if !errors.Is(err, ratelimit.ErrLimited) {
		t.Errorf("errors.Is(%v, ErrLimited) = false", err)
	}
	wrapped := fmt.Errorf("call: %w", err)
	var hint interface{ RetryAfter() time.Duration }
	if !errors.As(wrapped, &hint) || hint.RetryAfter() != 1500*time.Millisecond {
		t.Errorf("RetryAfter hint = %v; want 1.5s", hint)
	}
	var rej interface{ Rejected() bool }
	if !errors.As(wrapped, &rej) || !rej.Rejected() {
		t.Errorf("Rejected() is not true")
	}
	if got, want := err.Error(), "ratelimit: limited, retry after 1.5s"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// In wait mode a call waits for its token when the wait fits in MaxWait and
// the context deadline, and is refused at once otherwise, giving its
// reservation back.
func TestWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec recorder
		l := mustNew(t, ratelimit.Config{Rate: 10, Burst: 1, MaxWait: 150 * time.Millisecond, Observer: &rec})
		ctx := context.Background()
		start := time.Now()
		if err := admit(l, ctx); err != nil {
			t.Fatalf("first Acquire: %v", err)
		}
		if err := admit(l, ctx); err != nil || time.Since(start) != 100*time.Millisecond {
			t.Fatalf("second Acquire = %v after %v; want nil after 100ms", err, time.Since(start))
		}
		// The next token is 100ms away, the one after 200ms: refused, and
		// the refusal must not consume the 100ms token.
		err1, err2 := make(chan error), make(chan error)
		go func() { err1 <- admit(l, ctx) }()
		synctest.Wait() // goroutine 1 is waiting on its reservation
		go func() { err2 <- admit(l, ctx) }()
		if diff := cmp.Diff(&ratelimit.LimitedError{Delay: 200 * time.Millisecond, Quota: 1, Window: 100 * time.Millisecond}, (<-err2).(*ratelimit.LimitedError)); diff != "" {
			t.Errorf("third waiter (-want +got):\n%s", diff)
		}
		if err := <-err1; err != nil || time.Since(start) != 200*time.Millisecond {
			t.Errorf("waiter = %v at %v, want nil at 200ms", err, time.Since(start))
		}
		// The refused reservation was cancelled: the next token is 100ms away.
		if err := admit(l, ctx); err != nil || time.Since(start) != 300*time.Millisecond {
			t.Errorf("after refusal Acquire = %v at %v, want nil at 300ms", err, time.Since(start))
		}
		var kinds []string
		for _, e := range rec.get() {
			kinds = append(kinds, fmt.Sprintf("%v %v %v", e.Kind, e.Wait, e.Delay))
		}
		want := []string{"waited 100ms 0s", "rejected 0s 200ms", "waited 100ms 0s", "waited 100ms 0s"}
		if diff := cmp.Diff(want, kinds); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(ratelimit.Stats{Rejected: 1, Waited: 3}, l.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
}

func TestWaitDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := mustNew(t, ratelimit.Config{Rate: 10, Burst: 1, MaxWait: time.Second})
		_ = admit(l, context.Background())
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := admit(l, ctx)
		if le, ok := err.(*ratelimit.LimitedError); !ok || le.Delay != 100*time.Millisecond {
			t.Errorf("Acquire past the deadline = %v, want a refusal with a retry-after of 100ms", err)
		}
		if waited := time.Since(start); waited != 0 {
			t.Errorf("refusal took %v, want at once", waited)
		}
		// The refused reservation was given back.
		time.Sleep(100 * time.Millisecond)
		if err := mustAllow(l); err != nil {
			t.Errorf("token after refusal: %v", err)
		}
	})
}

// mustAllow admits through l on a context whose deadline allows no wait.
func mustAllow(l *ratelimit.Limiter) error {
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(time.Nanosecond))
	defer cancel()
	return admit(l, ctx)
}

// A waiter whose context ends returns ctx.Err() at once and gives its token
// back to the next caller.
func TestWaitCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := mustNew(t, ratelimit.Config{Rate: 10, Burst: 1, MaxWait: time.Second})
		_ = admit(l, context.Background())
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- admit(l, ctx) }()
		time.Sleep(30 * time.Millisecond)
		start := time.Now()
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) || time.Since(start) != 0 {
			t.Errorf("cancelled waiter = %v after %v, want context.Canceled at once", err, time.Since(start))
		}
		// The token reserved for the waiter (due at 100ms) is free again.
		start = time.Now()
		if err := admit(l, context.Background()); err != nil || time.Since(start) != 70*time.Millisecond {
			t.Errorf("next Acquire = %v after %v, want nil after 70ms", err, time.Since(start))
		}
		if diff := cmp.Diff(ratelimit.Stats{Waited: 1}, l.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
}

// Issue 14 item 9: an ended context fails even when a token is free,
// takes no token and runs nothing.
func TestEndedContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := mustNew(t, ratelimit.Config{Rate: 1, Burst: 1})
		var ran, keys atomic.Int64
		s := middleware.Apply(func(context.Context, int) (int, error) { ran.Add(1); return 0, nil }, ratelimit.Middleware[int, int](l))
		ks := middleware.Apply(func(context.Context, int) (int, error) { ran.Add(1); return 0, nil },
			ratelimit.Keyed[int, int](l, func(i int) int { keys.Add(1); return i }))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := l.Acquire(ctx); err != context.Canceled {
			t.Errorf("Acquire(cancelled) = %v, want context.Canceled", err)
		}
		if _, err := s(ctx, 1); err != context.Canceled {
			t.Errorf("Middleware(cancelled) = %v, want context.Canceled", err)
		}
		if _, err := ks(ctx, 1); err != context.Canceled {
			t.Errorf("Keyed(cancelled) = %v, want context.Canceled", err)
		}
		if ran.Load() != 0 || keys.Load() != 0 {
			t.Errorf("stage ran %d times, key func %d times; want neither", ran.Load(), keys.Load())
		}
		if err := admit(l, context.Background()); err != nil {
			t.Errorf("the token was consumed by a cancelled caller: %v", err)
		}
		if _, err := ks(context.Background(), 1); err != nil {
			t.Errorf("the key's token was consumed by a cancelled caller: %v", err)
		}
		if diff := cmp.Diff(ratelimit.Stats{Keys: 1}, l.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
}

// A Permit is a value; Done zeroes it, and a second Done is harmless.
func TestPermitDone(t *testing.T) {
	l := mustNew(t, ratelimit.Config{Rate: 1, Burst: 1})
	p, err := l.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if p == (ratelimit.Permit{}) {
		t.Error("an admitted Permit is the zero Permit")
	}
	p.Done(nil)
	if p != (ratelimit.Permit{}) {
		t.Error("Done did not zero the Permit")
	}
	p.Done(errors.New("again"))
	var zero ratelimit.Permit
	zero.Done(nil)
}

// A stage that panics: the panic reaches the caller, and the limiter goes
// on working.
func TestStagePanics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := mustNew(t, ratelimit.Config{Rate: 1, Burst: 2})
		s := middleware.Apply(func(context.Context, int) (int, error) { panic("stage") }, ratelimit.Middleware[int, int](l))
		func() {
			defer func() {
				if v := recover(); v != "stage" {
					t.Errorf("recovered %v, want the stage's panic", v)
				}
			}()
			s(context.Background(), 1)
		}()
		if err := admit(l, context.Background()); err != nil {
			t.Errorf("after a panicking stage Acquire = %v, want the second token", err)
		}
	})
}

// One limiter guards stages of different types: they share one bucket.
func TestMiddlewareSharedAcrossTypes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := mustNew(t, ratelimit.Config{Rate: 1, Burst: 2})
		var ran atomic.Int64
		ints := middleware.Apply(func(_ context.Context, in int) (int, error) { ran.Add(1); return in, nil }, ratelimit.Middleware[int, int](l))
		strs := middleware.Apply(func(_ context.Context, in string) (string, error) { ran.Add(1); return in, nil }, ratelimit.Middleware[string, string](l))
		ctx := context.Background()
		_, err1 := ints(ctx, 1)
		_, err2 := strs(ctx, "a")
		_, err3 := ints(ctx, 2)
		if diff := cmp.Diff([]error{nil, nil, ratelimit.ErrLimited}, []error{err1, err2, err3}, cmpopts.EquateErrors()); diff != "" {
			t.Errorf("calls (-want +got):\n%s", diff)
		}
		if ran.Load() != 2 {
			t.Errorf("stage ran %d times, want 2: a refused call must not run", ran.Load())
		}
	})
}

// Programmer errors panic when the chain is built.
func TestNilArgumentsPanic(t *testing.T) {
	l := mustNew(t, ratelimit.Config{Rate: 1})
	for _, tt := range []struct {
		name  string
		build func()
		want  string
	}{
		{"Middleware nil Limiter", func() { ratelimit.Middleware[int, int](nil) }, "ratelimit: nil *Limiter (was New's error ignored?)"},
		{"Keyed nil Limiter", func() { ratelimit.Keyed[int, int](nil, func(i int) int { return i }) }, "ratelimit: nil *Limiter (was New's error ignored?)"},
		{"Keyed nil key", func() { ratelimit.Keyed[int, int, int](l, nil) }, "ratelimit: nil key func"},
		{"nil stage", func() { middleware.Apply(nil, ratelimit.Middleware[int, int](l)) }, "middleware: nil stage"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if got := fmt.Sprint(recover()); got != tt.want {
					t.Errorf("panic = %q, want %q", got, tt.want)
				}
			}()
			tt.build()
		})
	}
}

func TestInf(t *testing.T) {
	l := mustNew(t, ratelimit.Config{Rate: inf})
	k := keyed[int](l)
	for i := range 1000 {
		if err := admit(l, context.Background()); err != nil {
			t.Fatalf("Inf limiter refused call %d: %v", i, err)
		}
		if err := k(context.Background(), i); err != nil {
			t.Fatalf("Inf keyed limiter refused call %d: %v", i, err)
		}
	}
	if n := l.Stats().Keys; n != 0 {
		t.Errorf("Inf keyed limiter holds %d keys, want 0", n)
	}
}

// middleware.Log turns the events into Debug records.
func TestLog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf strings.Builder
		logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: dropTime}))
		l := mustNew(t, ratelimit.Config{Rate: 2, Burst: 1, Name: "api", Observer: middleware.Log(logger)})
		k := keyed[string](l)
		for range 2 {
			_ = admit(l, context.Background())
			_ = k(context.Background(), "acme")
		}
		want := []string{
			`level=DEBUG msg="ratelimit rejected" concern=ratelimit name=api delay=500ms limit=1 reason=rate error="ratelimit: limited by \"api\", retry after 500ms"`,
			`level=DEBUG msg="ratelimit rejected" concern=ratelimit name=api delay=500ms limit=1 reason=rate error="ratelimit: limited by \"api\", retry after 500ms"`,
		}
		if diff := cmp.Diff(want, strings.Split(strings.TrimSpace(buf.String()), "\n")); diff != "" {
			t.Errorf("log (-want +got):\n%s", diff)
		}
	})
}

func dropTime(_ []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// quiet discards slog.Default's output (where recovered observer panics
// are reported) for the test.
func quiet(t *testing.T) {
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(func() { slog.SetDefault(old) })
}

// A panicking observer leaves the limiter consistent: refusals are still
// refusals, counted, and tokens come back on time.
func TestPanickingObserver(t *testing.T) {
	quiet(t)
	synctest.Test(t, func(t *testing.T) {
		l := mustNew(t, ratelimit.Config{Rate: 10, Burst: 1, Observer: middleware.ObserverFunc(func(context.Context, middleware.Event) {
			panic("observer")
		})})
		k := keyed[string](l)
		ctx := context.Background()
		got := []error{admit(l, ctx), admit(l, ctx), k(ctx, "a"), k(ctx, "a")}
		time.Sleep(100 * time.Millisecond)
		got = append(got, admit(l, ctx), k(ctx, "a"))
		want := []error{nil, ratelimit.ErrLimited, nil, ratelimit.ErrLimited, nil, nil}
		if diff := cmp.Diff(want, got, cmpopts.EquateErrors()); diff != "" {
			t.Errorf("calls (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(ratelimit.Stats{Rejected: 2, Keys: 1}, l.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
}

// An observer that calls back into the limiter (Stats, Acquire, a keyed
// call) does not deadlock.
func TestReentrantObserver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var l *ratelimit.Limiter
		var k func(context.Context, string) error
		var nested []error
		var depth atomic.Int64
		l = mustNew(t, ratelimit.Config{Rate: 10, Burst: 1, Observer: middleware.ObserverFunc(func(ctx context.Context, e middleware.Event) {
			_ = l.Stats()
			if depth.Add(1) == 1 {
				nested = append(nested, admit(l, ctx), k(ctx, "a"))
			}
		})})
		k = keyed[string](l)
		ctx := context.Background()
		_ = admit(l, ctx)
		_ = k(ctx, "a")
		if err := admit(l, ctx); !errors.Is(err, ratelimit.ErrLimited) {
			t.Errorf("Acquire = %v, want ErrLimited", err)
		}
		if diff := cmp.Diff([]error{ratelimit.ErrLimited, ratelimit.ErrLimited}, nested, cmpopts.EquateErrors()); diff != "" {
			t.Errorf("nested calls (-want +got):\n%s", diff)
		}
	})
}

// Thousands of concurrent callers never get more than the bucket allows:
// at any time t, admitted <= Burst + Rate*t.
func TestConcurrentNeverExceedsRate(t *testing.T) {
	for _, maxWait := range []time.Duration{0, time.Second} {
		t.Run(fmt.Sprint("MaxWait=", maxWait), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const callers, rps, burst = 2000, 100, 10
				l := mustNew(t, ratelimit.Config{Rate: rps, Burst: burst, MaxWait: maxWait})
				start := time.Now()
				var mu sync.Mutex
				var admittedAt []time.Duration
				var refused atomic.Int64
				var wg sync.WaitGroup
				for range callers {
					wg.Go(func() {
						err := admit(l, context.Background())
						switch {
						case err == nil:
							mu.Lock()
							admittedAt = append(admittedAt, time.Since(start))
							mu.Unlock()
						case errors.Is(err, ratelimit.ErrLimited):
							refused.Add(1)
						default:
							t.Errorf("Acquire: %v", err)
						}
					})
				}
				wg.Wait()
				for i, at := range sortedDurations(admittedAt) {
					if allowed := burst + int(at.Seconds()*rps+1e-9); i+1 > allowed {
						t.Fatalf("%d calls admitted by %v, at most %d allowed", i+1, at, allowed)
					}
				}
				wantAdmitted := burst + int(maxWait.Seconds()*rps)
				if got := []int{len(admittedAt), int(refused.Load())}; !cmp.Equal(got, []int{wantAdmitted, callers - wantAdmitted}) {
					t.Errorf("[admitted, refused] = %v, want [%d %d]", got, wantAdmitted, callers-wantAdmitted)
				}
				if got := l.Stats().Rejected; got != uint64(refused.Load()) {
					t.Errorf("Stats().Rejected = %d, want %d", got, refused.Load())
				}
			})
		})
	}
}

func sortedDurations(ds []time.Duration) []time.Duration {
	out := append([]time.Duration(nil), ds...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// Issue 20: neither an admitted call nor a plain refusal (reject mode, no
// observer) allocates; with an observer the refusal allocates nothing
// either.
func TestAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	ctx := context.Background()
	var n atomic.Int64
	obs := middleware.ObserverFunc(func(context.Context, middleware.Event) { n.Add(1) })
	l := mustNew(t, ratelimit.Config{Rate: 1e12, Burst: 1 << 30})
	stage := func(_ context.Context, in string) (string, error) { return in, nil }
	guarded := middleware.Apply(stage, ratelimit.Middleware[string, string](l))
	perKey := middleware.Apply(stage, ratelimit.Keyed[string, string](l, func(s string) string { return s }))
	_, _ = perKey(ctx, "tenant") // the first call creates the key
	refuser := mustNew(t, ratelimit.Config{Rate: 1e-9, Burst: 1})
	refused := middleware.Apply(stage, ratelimit.Middleware[string, string](refuser))
	refusedKey := middleware.Apply(stage, ratelimit.Keyed[string, string](refuser, func(s string) string { return s }))
	fast := mustNew(t, ratelimit.Config{Rate: 1e6, Burst: 1})
	refusedFast := middleware.Apply(stage, ratelimit.Middleware[string, string](fast))
	observed := mustNew(t, ratelimit.Config{Rate: 10, Burst: 1, Observer: obs})
	refusedObserved := middleware.Apply(stage, ratelimit.Middleware[string, string](observed))
	nanKey := middleware.Apply(func(_ context.Context, f float64) (float64, error) { return f, nil },
		ratelimit.Keyed[float64, float64](l, func(f float64) float64 { return f }))
	_, _ = refused(ctx, "x")
	_, _ = refusedKey(ctx, "tenant")
	_, _ = refusedObserved(ctx, "x")
	for _, tt := range []struct {
		name string
		f    func()
	}{
		{"Acquire", func() { p, _ := l.Acquire(ctx); p.Done(nil) }},
		{"Middleware", func() { _, _ = guarded(ctx, "x") }},
		{"Keyed", func() { _, _ = perKey(ctx, "tenant") }},
		{"Middleware refused", func() { _, _ = refused(ctx, "x") }},
		{"Keyed refused", func() { _, _ = refusedKey(ctx, "tenant") }},
		{"Middleware refused, fast rate", func() { _, _ = refusedFast(ctx, "x"); _, _ = refusedFast(ctx, "x") }},
		{"Middleware refused observed", func() { _, _ = refusedObserved(ctx, "x") }},
		{"Keyed NaN refused", func() { _, _ = nanKey(ctx, nan()) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(1000, tt.f); n != 0 {
				t.Errorf("%v allocs per call, want 0", n)
			}
		})
	}
}

// A retry-after near the largest duration saturates rather than wrapping
// to a negative one (found by FuzzNew: a step rounded up past MaxInt64).
func TestRetryAfterSaturates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, maxWait := range []time.Duration{0, time.Hour} {
			l := mustNew(t, withRate(ratelimit.Config{Burst: 1, MaxWait: maxWait}, 2.0833333333333336e-11))
			_ = admit(l, context.Background())
			err := admit(l, context.Background())
			var le *ratelimit.LimitedError
			ok := errors.As(err, &le)
			if !ok || le.RetryAfter() <= 0 {
				t.Errorf("MaxWait %v: err = %v, want a refusal with a positive retry-after", maxWait, err)
			}
		}
	})
}
