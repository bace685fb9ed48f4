package ratelimit_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
	"golang.org/x/time/rate"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/ratelimit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func mustNew(t *testing.T, cfg ratelimit.Config) *ratelimit.Limiter {
	t.Helper()
	l, err := ratelimit.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestNewValidation(t *testing.T) {
	tests := []struct {
		name string
		cfg  ratelimit.Config
		want string
	}{
		{"zero rate", ratelimit.Config{}, "ratelimit: Rate must be positive (or rate.Inf), got 0"},
		{"negative rate", ratelimit.Config{Rate: -1}, "ratelimit: Rate must be positive (or rate.Inf), got -1"},
		{"NaN rate", ratelimit.Config{Rate: rate.Limit(math.NaN())}, "ratelimit: Rate must be positive (or rate.Inf), got NaN"},
		{"negative burst", ratelimit.Config{Rate: 1, Burst: -1}, "ratelimit: Burst must not be negative, got -1"},
		{"negative wait", ratelimit.Config{Rate: 1, MaxWait: -time.Second}, "ratelimit: MaxWait must not be negative, got -1s"},
		{"valid", ratelimit.Config{Rate: 1}, ""},
		{"inf", ratelimit.Config{Rate: rate.Inf}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ratelimit.New(tt.cfg)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("New() error = %q, want %q", got, tt.want)
			}
			_, err = ratelimit.NewKeyed(ratelimit.KeyedConfig[string]{Rate: tt.cfg.Rate, Burst: tt.cfg.Burst, MaxWait: tt.cfg.MaxWait})
			got = ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("NewKeyed() error = %q, want %q", got, tt.want)
			}
		})
	}
	_, err := ratelimit.NewKeyed(ratelimit.KeyedConfig[int]{Rate: 1, MaxKeys: -1})
	if want := "ratelimit: MaxKeys must not be negative, got -1"; err == nil || err.Error() != want {
		t.Errorf("NewKeyed(MaxKeys: -1) error = %v, want %q", err, want)
	}
	_, err = ratelimit.NewKeyed(ratelimit.KeyedConfig[int]{Rate: 1, IdleTimeout: -1})
	if want := "ratelimit: IdleTimeout must not be negative, got -1ns"; err == nil || err.Error() != want {
		t.Errorf("NewKeyed(IdleTimeout: -1) error = %v, want %q", err, want)
	}
}

func TestDefaultBurst(t *testing.T) {
	for _, tt := range []struct {
		rate rate.Limit
		want int
	}{{0.5, 1}, {1, 1}, {2.5, 3}, {100, 100}, {rate.Inf, 1}} {
		t.Run(fmt.Sprint(tt.rate), func(t *testing.T) {
			if got := mustNew(t, ratelimit.Config{Rate: tt.rate}).Burst(); got != tt.want {
				t.Errorf("Burst() = %d, want %d", got, tt.want)
			}
		})
	}
}

// In reject mode the burst is admitted, the next call is refused at once
// with the exact time until the next token, and that token arrives then.
func TestReject(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var hooked []time.Duration
		l := mustNew(t, ratelimit.Config{Rate: 10, Burst: 2, OnLimited: func(d time.Duration) { hooked = append(hooked, d) }})
		ctx := context.Background()
		var got []error
		for range 3 {
			got = append(got, l.Admit(ctx))
		}
		time.Sleep(40 * time.Millisecond)
		got = append(got, l.Admit(ctx))
		time.Sleep(60 * time.Millisecond)
		got = append(got, l.Admit(ctx))

		want := []error{nil, nil, &ratelimit.LimitedError{Delay: 100 * time.Millisecond}, &ratelimit.LimitedError{Delay: 60 * time.Millisecond}, nil}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Admit results (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]time.Duration{100 * time.Millisecond, 60 * time.Millisecond}, hooked); diff != "" {
			t.Errorf("OnLimited delays (-want +got):\n%s", diff)
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
	if got, want := err.Error(), "ratelimit: limited, retry after 1.5s"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// In wait mode a call waits for its token when the wait fits in MaxWait and
// the context deadline, and is refused at once otherwise, giving its
// reservation back.
func TestWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := mustNew(t, ratelimit.Config{Rate: 10, Burst: 1, MaxWait: 150 * time.Millisecond})
		ctx := context.Background()
		start := time.Now()
		if err := l.Admit(ctx); err != nil {
			t.Fatalf("first Admit: %v", err)
		}
		if err := l.Admit(ctx); err != nil || time.Since(start) != 100*time.Millisecond {
			t.Fatalf("second Admit = %v after %v; want nil after 100ms", err, time.Since(start))
		}
		// The next token is 100ms away, the one after 200ms: refused, and
		// the refusal must not consume the 100ms token.
		err1, err2 := make(chan error), make(chan error)
		go func() { err1 <- l.Admit(ctx) }()
		synctest.Wait() // goroutine 1 is waiting on its reservation
		go func() { err2 <- l.Admit(ctx) }()
		if diff := cmp.Diff(&ratelimit.LimitedError{Delay: 200 * time.Millisecond}, <-err2); diff != "" {
			t.Errorf("third waiter (-want +got):\n%s", diff)
		}
		if err := <-err1; err != nil || time.Since(start) != 200*time.Millisecond {
			t.Errorf("waiter = %v at %v, want nil at 200ms", err, time.Since(start))
		}
		// The refused reservation was cancelled: the next token is 100ms away.
		if err := l.Admit(ctx); err != nil || time.Since(start) != 300*time.Millisecond {
			t.Errorf("after refusal Admit = %v at %v, want nil at 300ms", err, time.Since(start))
		}
	})
}

func TestWaitDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := mustNew(t, ratelimit.Config{Rate: 10, Burst: 1, MaxWait: time.Second})
		_ = l.Admit(context.Background())
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := l.Admit(ctx)
		if diff := cmp.Diff(&ratelimit.LimitedError{Delay: 100 * time.Millisecond}, err); diff != "" {
			t.Errorf("Admit past the deadline (-want +got):\n%s", diff)
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
	return l.Admit(ctx)
}

// A waiter whose context ends returns ctx.Err() at once and gives its token
// back to the next caller.
func TestWaitCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := mustNew(t, ratelimit.Config{Rate: 10, Burst: 1, MaxWait: time.Second})
		_ = l.Admit(context.Background())
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- l.Admit(ctx) }()
		time.Sleep(30 * time.Millisecond)
		start := time.Now()
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) || time.Since(start) != 0 {
			t.Errorf("cancelled waiter = %v after %v, want context.Canceled at once", err, time.Since(start))
		}
		// The token reserved for the waiter (due at 100ms) is free again.
		start = time.Now()
		if err := l.Admit(context.Background()); err != nil || time.Since(start) != 70*time.Millisecond {
			t.Errorf("next Admit = %v after %v, want nil after 70ms", err, time.Since(start))
		}
	})
}

// An ended context fails even when a token is free, and takes no token.
func TestAdmitEndedContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := mustNew(t, ratelimit.Config{Rate: 1, Burst: 1})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := l.Admit(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("Admit(cancelled) = %v, want context.Canceled", err)
		}
		if err := l.Admit(context.Background()); err != nil {
			t.Errorf("the token was consumed by a cancelled caller: %v", err)
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

func TestNilLimiter(t *testing.T) {
	s := middleware.Apply(func(context.Context, int) (int, error) { return 1, nil }, ratelimit.Middleware[int, int](nil))
	if _, err := s(context.Background(), 1); err == nil || err.Error() != "ratelimit: nil limiter" {
		t.Errorf("call through nil limiter = %v, want ratelimit: nil limiter", err)
	}
	ks := middleware.Apply(func(context.Context, int) (int, error) { return 1, nil }, ratelimit.PerKey[int, int, int](nil, func(i int) int { return i }))
	if _, err := ks(context.Background(), 1); err == nil || err.Error() != "ratelimit: nil limiter" {
		t.Errorf("call through nil keyed limiter = %v, want ratelimit: nil limiter", err)
	}
	k, _ := ratelimit.NewKeyed(ratelimit.KeyedConfig[int]{Rate: 1})
	ks = middleware.Apply(func(context.Context, int) (int, error) { return 1, nil }, ratelimit.PerKey[int, int](k, nil))
	if _, err := ks(context.Background(), 1); err == nil || err.Error() != "ratelimit: nil key func" {
		t.Errorf("call with nil key func = %v, want ratelimit: nil key func", err)
	}
}

func TestInf(t *testing.T) {
	l := mustNew(t, ratelimit.Config{Rate: rate.Inf})
	k, _ := ratelimit.NewKeyed(ratelimit.KeyedConfig[int]{Rate: rate.Inf})
	for i := range 1000 {
		if err := l.Admit(context.Background()); err != nil {
			t.Fatalf("Inf limiter refused call %d: %v", i, err)
		}
		if err := k.Admit(context.Background(), i); err != nil {
			t.Fatalf("Inf keyed limiter refused call %d: %v", i, err)
		}
	}
	if k.Len() != 0 {
		t.Errorf("Inf keyed limiter holds %d keys, want 0", k.Len())
	}
}

func TestLogger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: dropTime}))
		l := mustNew(t, ratelimit.Config{Rate: 2, Burst: 1, Logger: logger})
		k, _ := ratelimit.NewKeyed(ratelimit.KeyedConfig[string]{Rate: 2, Burst: 1, Logger: logger})
		for range 2 {
			_ = l.Admit(context.Background())
			_ = k.Admit(context.Background(), "acme")
		}
		want := []string{
			`level=WARN msg="ratelimit: limited" delay=500ms`,
			`level=WARN msg="ratelimit: limited" key=acme delay=500ms`,
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
						err := l.Admit(context.Background())
						switch {
						case err == nil:
							mu.Lock()
							admittedAt = append(admittedAt, time.Since(start))
							mu.Unlock()
						case errors.Is(err, ratelimit.ErrLimited):
							refused.Add(1)
						default:
							t.Errorf("Admit: %v", err)
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

func TestAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	ctx := context.Background()
	l := mustNew(t, ratelimit.Config{Rate: 1e12, Burst: 1 << 30})
	k, err := ratelimit.NewKeyed(ratelimit.KeyedConfig[string]{Rate: 1e12, Burst: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	stage := func(_ context.Context, in string) (string, error) { return in, nil }
	guarded := middleware.Apply(stage, ratelimit.Middleware[string, string](l))
	perKey := middleware.Apply(stage, ratelimit.PerKey[string, string](k, func(s string) string { return s }))
	_, _ = perKey(ctx, "tenant") // the first call creates the key
	for _, tt := range []struct {
		name string
		f    func()
	}{
		{"Admit", func() { _ = l.Admit(ctx) }},
		{"Middleware", func() { _, _ = guarded(ctx, "x") }},
		{"PerKey", func() { _, _ = perKey(ctx, "tenant") }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(1000, tt.f); n != 0 {
				t.Errorf("%v allocs per admitted call, want 0", n)
			}
		})
	}
}
