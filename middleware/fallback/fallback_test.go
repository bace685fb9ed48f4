package fallback_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/brace-go/brace/middleware/fallback"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	errPrimary  = errors.New("primary down")
	errFallback = errors.New("fallback down")
	errNotFound = errors.New("not found")
)

// fails returns a stage that fails with err (or succeeds when err is nil)
// and counts its calls.
func fails(err error, calls *atomic.Int64) middleware.Stage[int, string] {
	return func(_ context.Context, in int) (string, error) {
		calls.Add(1)
		if err != nil {
			return "partial", err
		}
		return fmt.Sprint("primary ", in), nil
	}
}

func TestFallback(t *testing.T) {
	notNotFound := func(err error) bool { return !errors.Is(err, errNotFound) }
	type result struct {
		Out       string
		Err       error
		Fallbacks int64 // times the fallback ran
		Hooked    []error
	}
	tests := []struct {
		name    string
		primary error
		mw      func(cfg fallback.Config, calls *atomic.Int64) middleware.Middleware[int, string]
		when    func(error) bool
		want    result
	}{
		{
			name: "success passes through",
			mw:   valueMW,
			want: result{Out: "primary 7"},
		},
		{
			name:    "value on error",
			primary: errPrimary,
			mw:      valueMW,
			want:    result{Out: "default", Hooked: []error{errPrimary}},
		},
		{
			name:    "When declines: primary result and error unchanged",
			primary: errNotFound,
			when:    notNotFound,
			mw:      valueMW,
			want:    result{Out: "partial", Err: errNotFound},
		},
		{
			name:    "When accepts",
			primary: errPrimary,
			when:    notNotFound,
			mw:      valueMW,
			want:    result{Out: "default", Hooked: []error{errPrimary}},
		},
		{
			name:    "stage fallback gets context and input",
			primary: errPrimary,
			mw: func(cfg fallback.Config, calls *atomic.Int64) middleware.Middleware[int, string] {
				return fallback.Stage(func(_ context.Context, in int) (string, error) {
					calls.Add(1)
					return fmt.Sprint("secondary ", in), nil
				}, cfg)
			},
			want: result{Out: "secondary 7", Fallbacks: 1, Hooked: []error{errPrimary}},
		},
		{
			name:    "failing stage fallback keeps both errors",
			primary: errPrimary,
			mw: func(cfg fallback.Config, calls *atomic.Int64) middleware.Middleware[int, string] {
				return fallback.Stage(func(context.Context, int) (string, error) {
					calls.Add(1)
					return "ignored", errFallback
				}, cfg)
			},
			want: result{Err: &fallback.Error{Primary: errPrimary, Fallback: errFallback}, Fallbacks: 1, Hooked: []error{errPrimary}},
		},
		{
			name:    "nil stage fallback fails with ErrNilStage",
			primary: errPrimary,
			mw: func(cfg fallback.Config, _ *atomic.Int64) middleware.Middleware[int, string] {
				return fallback.Stage[int, string](nil, cfg)
			},
			want: result{Err: &fallback.Error{Primary: errPrimary, Fallback: middleware.ErrNilStage}, Hooked: []error{errPrimary}},
		},
		{
			name:    "func fallback sees the error",
			primary: errPrimary,
			mw: func(cfg fallback.Config, calls *atomic.Int64) middleware.Middleware[int, string] {
				return fallback.Func(func(_ context.Context, in int, err error) (string, error) {
					calls.Add(1)
					return fmt.Sprintf("%d after %v", in, err), nil
				}, cfg)
			},
			want: result{Out: "7 after primary down", Fallbacks: 1, Hooked: []error{errPrimary}},
		},
		{
			name:    "nil func fallback fails with ErrNilStage",
			primary: errPrimary,
			mw: func(cfg fallback.Config, _ *atomic.Int64) middleware.Middleware[int, string] {
				return fallback.Func[int, string](nil, cfg)
			},
			want: result{Err: &fallback.Error{Primary: errPrimary, Fallback: middleware.ErrNilStage}, Hooked: []error{errPrimary}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var primaryCalls, fallbacks atomic.Int64
			var got result
			cfg := fallback.Config{When: tt.when, OnFallback: func(err error) { got.Hooked = append(got.Hooked, err) }}
			s := middleware.Apply(fails(tt.primary, &primaryCalls), tt.mw(cfg, &fallbacks))
			got.Out, got.Err = s(context.Background(), 7)
			got.Fallbacks = fallbacks.Load()
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(equalErr)); diff != "" {
				t.Errorf("call (-want +got):\n%s", diff)
			}
			if n := primaryCalls.Load(); n != 1 {
				t.Errorf("primary ran %d times, want 1", n)
			}
		})
	}
}

// equalErr compares errors with errors.Is, and *fallback.Error values by
// the errors they hold.
func equalErr(a, b error) bool {
	fa, okA := a.(*fallback.Error)
	fb, okB := b.(*fallback.Error)
	if okA && okB {
		return errors.Is(fa.Primary, fb.Primary) && errors.Is(fa.Fallback, fb.Fallback)
	}
	return errors.Is(a, b) || errors.Is(b, a)
}

func valueMW(cfg fallback.Config, _ *atomic.Int64) middleware.Middleware[int, string] {
	return fallback.Value[int]("default", cfg)
}

func TestErrorReachesBoth(t *testing.T) {
	primary := &codeErr{errPrimary}
	s := middleware.Apply(fails(primary, new(atomic.Int64)),
		fallback.Stage(func(context.Context, int) (string, error) { return "", errFallback }, fallback.Config{}))
	_, err := s(context.Background(), 1)

	for _, target := range []error{errPrimary, errFallback} {
		if !errors.Is(err, target) {
			t.Errorf("errors.Is(%v, %v) = false, want true", err, target)
		}
	}
	if ce, ok := errors.AsType[*codeErr](err); !ok || ce != primary {
		t.Errorf("errors.AsType[*codeErr] = %v, %v; want the primary error", ce, ok)
	}
	fe, ok := errors.AsType[*fallback.Error](err)
	if !ok {
		t.Fatalf("errors.AsType[*fallback.Error](%v) failed", err)
	}
	want := "fallback: primary failed: primary down; fallback failed: fallback down"
	if got := fe.Error(); got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// A caller whose context has ended gets the primary failure, not a
// substitute, and the fallback never runs.
func TestCallerGone(t *testing.T) {
	for _, tt := range []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
	}{
		{"cancelled", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }},
		{"deadline", func() (context.Context, context.CancelFunc) { return context.WithTimeout(context.Background(), 0) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := tt.ctx()
			var ran atomic.Int64
			primary := func(ctx context.Context, _ int) (string, error) {
				cancel()
				return "", fmt.Errorf("primary: %w", ctx.Err())
			}
			s := middleware.Apply(primary, fallback.Func(func(context.Context, int, error) (string, error) {
				ran.Add(1)
				return "default", nil
			}, fallback.Config{}))
			out, err := s(ctx, 1)
			if !errors.Is(err, ctx.Err()) || out != "" {
				t.Errorf("call = %q, %v; want the caller's context error %v", out, err, ctx.Err())
			}
			if ran.Load() != 0 {
				t.Errorf("fallback ran for a caller that had gone")
			}
		})
	}
}

// A timeout inside the chain (not the caller's) is an ordinary failure.
func TestInnerTimeoutFallsBack(t *testing.T) {
	primary := func(ctx context.Context, _ int) (string, error) {
		inner, cancel := context.WithTimeout(ctx, 0)
		defer cancel()
		<-inner.Done()
		return "", inner.Err()
	}
	s := middleware.Apply(primary, fallback.Value[int]("default", fallback.Config{}))
	out, err := s(context.Background(), 1)
	if out != "default" || err != nil {
		t.Errorf("call = %q, %v; want \"default\", nil", out, err)
	}
}

func TestLogger(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	cfg := fallback.Config{Logger: logger}
	ok := middleware.Apply(fails(errPrimary, new(atomic.Int64)), fallback.Value[int]("v", cfg))
	bad := middleware.Apply(fails(errPrimary, new(atomic.Int64)),
		fallback.Stage(func(context.Context, int) (string, error) { return "", errFallback }, cfg))
	_, _ = ok(context.Background(), 1)
	_, _ = bad(context.Background(), 1)

	want := []string{
		`level=WARN msg="fallback: used" err="primary down"`,
		`level=WARN msg="fallback: used" err="primary down"`,
		`level=ERROR msg="fallback: failed" err="fallback down" primary="primary down"`,
	}
	got := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
}

// Under heavy concurrency every call gets exactly one answer, and the
// fallback runs exactly once per failed call.
func TestConcurrent(t *testing.T) {
	const goroutines, calls = 1000, 20
	var primaryRuns, fallbackRuns, hooks atomic.Int64
	primary := func(_ context.Context, in int) (int, error) {
		primaryRuns.Add(1)
		if in%2 == 1 {
			return 0, errPrimary
		}
		return in, nil
	}
	s := middleware.Apply(primary, fallback.Stage(func(_ context.Context, in int) (int, error) {
		fallbackRuns.Add(1)
		return -in, nil
	}, fallback.Config{OnFallback: func(error) { hooks.Add(1) }}))

	var wg sync.WaitGroup
	var wrong atomic.Int64
	for g := range goroutines {
		wg.Go(func() {
			for i := range calls {
				in := g*calls + i
				out, err := s(context.Background(), in)
				want := in
				if in%2 == 1 {
					want = -in
				}
				if err != nil || out != want {
					wrong.Add(1)
				}
			}
		})
	}
	wg.Wait()
	const total = goroutines * calls
	if wrong.Load() != 0 {
		t.Errorf("%d calls got a wrong answer", wrong.Load())
	}
	got := []int64{primaryRuns.Load(), fallbackRuns.Load(), hooks.Load()}
	if diff := cmp.Diff([]int64{total, total / 2, total / 2}, got); diff != "" {
		t.Errorf("[primary runs, fallback runs, hook calls] (-want +got):\n%s", diff)
	}
}

func TestAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	ctx := context.Background()
	okStage := func(_ context.Context, in int) (int, error) { return in, nil }
	badStage := func(context.Context, int) (int, error) { return 0, errPrimary }
	for _, tt := range []struct {
		name string
		s    middleware.Stage[int, int]
	}{
		{"success", middleware.Apply(okStage, fallback.Value[int](0, fallback.Config{}))},
		{"value fallback", middleware.Apply(badStage, fallback.Value[int](0, fallback.Config{}))},
		{"stage fallback", middleware.Apply(badStage, fallback.Stage(okStage, fallback.Config{}))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(1000, func() { _, _ = tt.s(ctx, 1) }); n != 0 {
				t.Errorf("%v allocs per call, want 0", n)
			}
		})
	}
}

type codeErr struct{ error }

func (e *codeErr) Unwrap() error { return e.error }
