package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/brace-go/brace/internal/testenv"
	"github.com/brace-go/brace/middleware"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// trace returns a middleware that records when a call enters and leaves it.
func trace(log *[]string, name string) middleware.Middleware[int, int] {
	return func(next middleware.Stage[int, int]) middleware.Stage[int, int] {
		return func(ctx context.Context, in int) (int, error) {
			*log = append(*log, "enter "+name)
			out, err := next(ctx, in)
			*log = append(*log, "exit "+name)
			return out, err
		}
	}
}

func double(_ context.Context, in int) (int, error) { return 2 * in, nil }

func TestChainOrder(t *testing.T) {
	tests := []struct {
		name string
		mws  []string
		want []string
	}{
		{"empty", nil, []string{"stage"}},
		{"one", []string{"a"}, []string{"enter a", "stage", "exit a"}},
		{"three", []string{"a", "b", "c"}, []string{"enter a", "enter b", "enter c", "stage", "exit c", "exit b", "exit a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log []string
			var mws []middleware.Middleware[int, int]
			for _, n := range tt.mws {
				mws = append(mws, trace(&log, n))
			}
			stage := func(ctx context.Context, in int) (int, error) {
				log = append(log, "stage")
				return in + 1, nil
			}
			for _, build := range []struct {
				how string
				s   middleware.Stage[int, int]
			}{
				{"Chain", middleware.Chain(mws...)(stage)},
				{"Apply", middleware.Apply(stage, mws...)},
			} {
				log = nil
				got, err := build.s(context.Background(), 1)
				if err != nil || got != 2 {
					t.Fatalf("%s: got (%d, %v), want (2, nil)", build.how, got, err)
				}
				if diff := cmp.Diff(tt.want, log); diff != "" {
					t.Errorf("%s: order (-want +got):\n%s", build.how, diff)
				}
			}
		})
	}
}

func TestChainIdentity(t *testing.T) {
	s := middleware.Chain[int, int]()(double)
	if got, _ := s(context.Background(), 21); got != 42 {
		t.Fatalf("Chain()(s)(21) = %d, want 42", got)
	}
}

func TestChainCopies(t *testing.T) {
	var log []string
	mws := []middleware.Middleware[int, int]{trace(&log, "a"), trace(&log, "b")}
	chain := middleware.Chain(mws...)
	// Reusing the caller's slice must not change a chain already built.
	mws[0] = trace(&log, "changed")
	mws[1] = nil
	if _, err := chain(double)(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	want := []string{"enter a", "enter b", "exit b", "exit a"}
	if diff := cmp.Diff(want, log); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}

// A nil middleware is most often a constructor's ignored error: it must not
// be skipped silently (the chain would lose its retry or its breaker), nor
// panic; every call reports it.
func TestNilMiddleware(t *testing.T) {
	var log []string
	a := trace(&log, "a")
	unit := func(next middleware.Stage[struct{}, struct{}]) middleware.Stage[struct{}, struct{}] { return next }
	ctx := context.Background()
	calls := map[string]func() error{
		"Chain": func() error {
			_, err := middleware.Chain(a, nil)(double)(ctx, 1)
			return err
		},
		"Chain of one nil": func() error {
			_, err := middleware.Chain[int, int](nil)(double)(ctx, 1)
			return err
		},
		"Apply": func() error {
			_, err := middleware.Apply(double, nil, a)(ctx, 1)
			return err
		},
		"Wrap": func() error {
			_, err := middleware.Wrap(double, a, nil)(ctx, 1)
			return err
		},
		"WrapErr": func() error {
			return middleware.WrapErr(func() error { return nil }, unit, nil)()
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			log = nil
			if err := call(); !errors.Is(err, middleware.ErrNilMiddleware) {
				t.Errorf("err = %v, want ErrNilMiddleware", err)
			}
			if len(log) != 0 {
				t.Errorf("the other middlewares or the stage ran: %v", log)
			}
		})
	}
}

func TestNilStage(t *testing.T) {
	passThrough := func(next middleware.Stage[int, int]) middleware.Stage[int, int] { return next }
	nilMaker := func(middleware.Stage[int, int]) middleware.Stage[int, int] { return nil }
	tests := []struct {
		name string
		s    middleware.Stage[int, int]
	}{
		{"Apply nil", middleware.Apply[int, int](nil)},
		{"Apply nil through middleware", middleware.Apply(nil, passThrough)},
		{"Chain nil", middleware.Chain[int, int]()(nil)},
		{"Chain of one, nil", middleware.Chain(passThrough)(nil)},
		{"Chain of two, nil", middleware.Chain(passThrough, passThrough)(nil)},
		{"middleware returning nil", middleware.Apply(double, nilMaker)},
		{"Chain of one returning nil", middleware.Chain(nilMaker)(double)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.s(context.Background(), 1)
			if !errors.Is(err, middleware.ErrNilStage) {
				t.Fatalf("err = %v, want ErrNilStage", err)
			}
		})
	}
}

func TestWrapAdapters(t *testing.T) {
	var log []string
	unit := func(next middleware.Stage[struct{}, struct{}]) middleware.Stage[struct{}, struct{}] {
		return func(ctx context.Context, in struct{}) (struct{}, error) {
			log = append(log, "unit")
			return next(ctx, in)
		}
	}
	boom := errors.New("boom")
	type ctxKey struct{}
	ctx := context.WithValue(context.Background(), ctxKey{}, "v")

	t.Run("Wrap", func(t *testing.T) {
		log = nil
		var f func(context.Context, int) (int, error) = middleware.Wrap(double, trace(&log, "a"))
		if got, err := f(ctx, 4); err != nil || got != 8 {
			t.Fatalf("f(4) = (%d, %v), want (8, nil)", got, err)
		}
		if diff := cmp.Diff([]string{"enter a", "exit a"}, log); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("WrapFunc", func(t *testing.T) {
		log = nil
		f := middleware.WrapFunc(strconv.Atoi, func(next middleware.Stage[string, int]) middleware.Stage[string, int] {
			return func(ctx context.Context, in string) (int, error) {
				log = append(log, "wrapped "+in)
				return next(ctx, in)
			}
		})
		got, err := f("42")
		if err != nil || got != 42 {
			t.Fatalf("f(42) = (%d, %v)", got, err)
		}
		if _, err := f("x"); err == nil {
			t.Fatal("f(x): want the func's own error")
		}
		if diff := cmp.Diff([]string{"wrapped 42", "wrapped x"}, log); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("WrapCtx", func(t *testing.T) {
		log = nil
		f := middleware.WrapCtx(func(ctx context.Context) (string, error) {
			return ctx.Value(ctxKey{}).(string), nil
		}, func(next middleware.Stage[struct{}, string]) middleware.Stage[struct{}, string] {
			return func(ctx context.Context, in struct{}) (string, error) {
				out, err := next(ctx, in)
				return out + "!", err
			}
		})
		if got, err := f(ctx); err != nil || got != "v!" {
			t.Fatalf("f(ctx) = (%q, %v), want (v!, nil)", got, err)
		}
	})
	t.Run("WrapCtxErr", func(t *testing.T) {
		log = nil
		var sawCtx bool
		f := middleware.WrapCtxErr(func(ctx context.Context) error {
			sawCtx = ctx.Value(ctxKey{}) == "v"
			return boom
		}, unit)
		if err := f(ctx); !errors.Is(err, boom) || !sawCtx {
			t.Fatalf("f(ctx) = %v, sawCtx=%v", err, sawCtx)
		}
		if diff := cmp.Diff([]string{"unit"}, log); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("WrapErr", func(t *testing.T) {
		log = nil
		calls := 0
		f := middleware.WrapErr(func() error { calls++; return nil }, unit, unit)
		if err := f(); err != nil || calls != 1 {
			t.Fatalf("f() = %v after %d calls", err, calls)
		}
		if diff := cmp.Diff([]string{"unit", "unit"}, log); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("nil funcs", func(t *testing.T) {
		errs := []error{
			func() error { _, err := middleware.Wrap[int, int](nil)(ctx, 1); return err }(),
			func() error { _, err := middleware.WrapFunc[int, int](nil)(1); return err }(),
			func() error { _, err := middleware.WrapCtx[int](nil)(ctx); return err }(),
			middleware.WrapCtxErr(nil)(ctx),
			middleware.WrapErr(nil)(),
		}
		for i, err := range errs {
			if !errors.Is(err, middleware.ErrNilStage) {
				t.Errorf("adapter %d: err = %v, want ErrNilStage", i, err)
			}
		}
	})
}

func TestRecover(t *testing.T) {
	sentinel := errors.New("sentinel")
	tests := []struct {
		name      string
		value     any
		wantText  string
		wantCause error
	}{
		{"string", "oops", "middleware: panic: oops", nil},
		{"error", sentinel, "middleware: panic: sentinel", sentinel},
		{"wrapped error", fmt.Errorf("ctx: %w", sentinel), "middleware: panic: ctx: sentinel", sentinel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := middleware.Apply(func(context.Context, int) (int, error) { panic(tt.value) }, middleware.Recover[int, int]())
			out, err := s(context.Background(), 1)
			if out != 0 {
				t.Errorf("out = %d, want the zero value", out)
			}
			var pe *middleware.PanicError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a *PanicError", err)
			}
			if diff := cmp.Diff(tt.value, pe.Value, cmpopts.EquateErrors()); diff != "" {
				t.Errorf("Value (-want +got):\n%s", diff)
			}
			if got := err.Error(); got != tt.wantText {
				t.Errorf("Error() = %q, want %q", got, tt.wantText)
			}
			if tt.wantCause != nil && !errors.Is(err, tt.wantCause) {
				t.Errorf("errors.Is(err, %v) = false", tt.wantCause)
			}
			if !strings.Contains(string(pe.Stack), "TestRecover") {
				t.Errorf("Stack does not show the panicking test:\n%s", pe.Stack)
			}
		})
	}
	t.Run("panic(nil)", func(t *testing.T) {
		s := middleware.Apply(func(context.Context, int) (int, error) { panic(nil) }, middleware.Recover[int, int]())
		_, err := s(context.Background(), 1)
		var pe *middleware.PanicError
		if !errors.As(err, &pe) {
			t.Fatalf("err = %v, want a *PanicError", err)
		}
	})
	t.Run("no panic passes through", func(t *testing.T) {
		s := middleware.Apply(func(context.Context, int) (int, error) { return 7, sentinel }, middleware.Recover[int, int]())
		out, err := s(context.Background(), 1)
		if out != 7 || err != sentinel {
			t.Fatalf("got (%d, %v), want (7, sentinel)", out, err)
		}
	})
}

func TestWithoutRecoverPanicPropagates(t *testing.T) {
	defer func() {
		if v := recover(); v != "oops" {
			t.Fatalf("recovered %v, want oops", v)
		}
	}()
	s := middleware.Apply(func(context.Context, int) (int, error) { panic("oops") }, trace(new([]string), "a"))
	_, _ = s(context.Background(), 1)
	t.Fatal("the panic did not propagate")
}

func TestAllocs(t *testing.T) {
	if testenv.RaceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	pass := func(next middleware.Stage[int, int]) middleware.Stage[int, int] {
		return func(ctx context.Context, in int) (int, error) { return next(ctx, in) }
	}
	ctx := context.Background()
	tests := []struct {
		name string
		s    middleware.Stage[int, int]
	}{
		{"Chain of 5", middleware.Chain(pass, pass, pass, pass, pass)(double)},
		{"Apply of 5", middleware.Apply(double, pass, pass, pass, pass, pass)},
		{"Recover", middleware.Apply(double, middleware.Recover[int, int]())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(1000, func() { _, _ = tt.s(ctx, 1) }); n != 0 {
				t.Errorf("%v allocs per call, want 0", n)
			}
		})
	}
}
