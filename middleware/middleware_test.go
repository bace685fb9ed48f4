package middleware_test

import (
	"context"
	"errors"
	"fmt"
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

// mustPanic runs f and returns the text of its panic, failing the test if it
// did not panic.
func mustPanic(t *testing.T, f func()) (msg string) {
	t.Helper()
	defer func() {
		v := recover()
		if v == nil {
			t.Fatal("did not panic")
		}
		msg = fmt.Sprint(v)
	}()
	f()
	return ""
}

// A nil middleware is most often a constructor's ignored error. It is a
// programmer error, not a failure: it must never reach a call, where a retry
// would retry it and a fallback hide it, so building the chain panics with
// a message that names the mistake (as net/http does for a nil handler).
func TestNilMiddlewarePanicsAtBuild(t *testing.T) {
	var log []string
	a := trace(&log, "a")
	unit := func(next middleware.Stage[struct{}, struct{}]) middleware.Stage[struct{}, struct{}] { return next }
	builds := map[string]func(){
		"Chain":            func() { middleware.Chain(a, nil) },
		"Chain of one nil": func() { middleware.Chain[int, int](nil) },
		"Apply":            func() { middleware.Apply(double, nil, a) },
		"WrapErr":          func() { middleware.WrapErr(func(context.Context) error { return nil }, unit, nil) },
	}
	for name, build := range builds {
		t.Run(name, func(t *testing.T) {
			msg := mustPanic(t, build)
			if !strings.HasPrefix(msg, "middleware: nil middleware") {
				t.Errorf("panic %q, want it to start with %q", msg, "middleware: nil middleware")
			}
		})
	}
}

func TestNilStagePanicsAtBuild(t *testing.T) {
	passThrough := func(next middleware.Stage[int, int]) middleware.Stage[int, int] { return next }
	nilMaker := func(middleware.Stage[int, int]) middleware.Stage[int, int] { return nil }
	tests := []struct {
		name  string
		build func()
		want  string
	}{
		{"Apply nil", func() { middleware.Apply[int, int](nil) }, "middleware: nil stage"},
		{"Apply nil through middleware", func() { middleware.Apply(nil, passThrough) }, "middleware: nil stage"},
		{"Chain nil", func() { middleware.Chain[int, int]()(nil) }, "middleware: nil stage"},
		{"Chain of two, nil", func() { middleware.Chain(passThrough, passThrough)(nil) }, "middleware: nil stage"},
		{"middleware returning nil", func() { middleware.Apply(double, nilMaker) }, "middleware: middleware 1 of 1 returned a nil stage"},
		{"Chain of two, second returning nil", func() { middleware.Chain(passThrough, nilMaker)(double) }, "middleware: middleware 2 of 2 returned a nil stage"},
		{"Recover of nil", func() { middleware.Recover[int, int]()(nil) }, "middleware: nil stage"},
		{"WrapFunc nil", func() { middleware.WrapFunc[int](nil) }, "middleware: nil stage"},
		{"WrapErr nil", func() { middleware.WrapErr(nil) }, "middleware: nil stage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if msg := mustPanic(t, tt.build); msg != tt.want {
				t.Errorf("panic %q, want %q", msg, tt.want)
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

	t.Run("WrapFunc", func(t *testing.T) {
		f := middleware.WrapFunc(func(ctx context.Context) (string, error) {
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
	t.Run("WrapErr", func(t *testing.T) {
		log = nil
		var sawCtx bool
		f := middleware.WrapErr(func(ctx context.Context) error {
			sawCtx = ctx.Value(ctxKey{}) == "v"
			return boom
		}, unit, unit)
		if err := f(ctx); !errors.Is(err, boom) || !sawCtx {
			t.Fatalf("f(ctx) = %v, sawCtx=%v", err, sawCtx)
		}
		if diff := cmp.Diff([]string{"unit", "unit"}, log); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
}

// The adapters hand the caller's context to the func, so a middleware that
// bounds the call (a deadline) bounds the func too: the trap of the old
// context-less WrapFunc(client.Do), where a 100 ms timeout let a call run
// for a second, cannot be written any more.
func TestWrapAdaptersBoundByTheCallersContext(t *testing.T) {
	deadline := func(next middleware.Stage[struct{}, struct{}]) middleware.Stage[struct{}, struct{}] {
		return func(ctx context.Context, in struct{}) (struct{}, error) {
			ctx, cancel := context.WithCancel(ctx)
			cancel() // the deadline has passed
			return next(ctx, in)
		}
	}
	f := middleware.WrapErr(func(ctx context.Context) error {
		<-ctx.Done() // a func that honours its context returns when it ends
		return ctx.Err()
	}, deadline)
	if err := f(context.Background()); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled: the middleware's context did not reach the func", err)
	}
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
