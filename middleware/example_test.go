package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"

	"github.com/brace-go/brace/middleware"
)

// logged returns a middleware that prints when a call enters and leaves it.
func logged(name string) middleware.Middleware[string, string] {
	return func(next middleware.Stage[string, string]) middleware.Stage[string, string] {
		return func(ctx context.Context, in string) (string, error) {
			fmt.Println("enter", name)
			defer fmt.Println("exit", name)
			return next(ctx, in)
		}
	}
}

// The first middleware given to Chain is the outermost: a call enters them
// in order and leaves them in reverse.
func ExampleChain() {
	hello := func(_ context.Context, name string) (string, error) {
		fmt.Println("stage")
		return "hello, " + name, nil
	}
	stage := middleware.Chain(logged("outer"), logged("middle"), logged("inner"))(hello)
	out, err := stage(context.Background(), "gopher")
	fmt.Println(out, err)
	// Output:
	// enter outer
	// enter middle
	// enter inner
	// stage
	// exit inner
	// exit middle
	// exit outer
	// hello, gopher <nil>
}

func ExampleApply() {
	upper := func(_ context.Context, s string) (string, error) { return s + "!", nil }
	stage := middleware.Apply(upper, logged("only"))
	out, _ := stage(context.Background(), "hi")
	fmt.Println(out)
	// Output:
	// enter only
	// exit only
	// hi!
}

// WrapFunc decorates a func that takes a context and returns a value and an
// error, and gives it back in its own shape. The func gets the context the
// middlewares pass down, so a deadline set by one of them bounds it.
func ExampleWrapFunc() {
	counted := 0
	count := func(next middleware.Stage[struct{}, int]) middleware.Stage[struct{}, int] {
		return func(ctx context.Context, in struct{}) (int, error) {
			counted++
			return next(ctx, in)
		}
	}
	answer := middleware.WrapFunc(func(ctx context.Context) (int, error) { return strconv.Atoi("42") }, count)
	n, err := answer(context.Background())
	fmt.Println(n, err, counted)
	// Output: 42 <nil> 1
}

func ExampleWrapErr() {
	ping := func(ctx context.Context) error { return ctx.Err() }
	tagged := func(next middleware.Stage[struct{}, struct{}]) middleware.Stage[struct{}, struct{}] {
		return func(ctx context.Context, in struct{}) (struct{}, error) {
			fmt.Println("pinging")
			return next(ctx, in)
		}
	}
	check := middleware.WrapErr(ping, tagged)
	fmt.Println(check(context.Background()))
	// Output:
	// pinging
	// <nil>
}

// Log turns every concern's events into log records with one set of
// message and attribute names. Per-call events are logged at Debug, changes
// of state at Info or Warn.
func ExampleLog() {
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{} // keep the output stable
			}
			return a
		},
	}))
	obs := middleware.Log(logger)
	ctx := context.Background()
	obs.Observe(ctx, middleware.Event{Kind: middleware.StateChanged, Concern: "breaker", Name: "payments",
		From: "closed", To: "open", Failures: 5, Err: errors.New("503")})
	obs.Observe(ctx, middleware.Event{Kind: middleware.Retry, Concern: "retry", Attempt: 1}) // Debug: not shown
	// Output:
	// level=WARN msg="breaker state-changed" concern=breaker name=payments from=closed to=open failures=5 error=503
}

// An Observer receives the events of every concern it is given to, with the
// call's context. Observers fans one event out to several.
func ExampleObserverFunc() {
	var rejected int
	count := middleware.ObserverFunc(func(_ context.Context, e middleware.Event) {
		if e.Kind == middleware.Rejected {
			rejected++
		}
	})
	print := middleware.ObserverFunc(func(_ context.Context, e middleware.Event) {
		fmt.Println(e.Concern, e.Kind, e.Reason)
	})
	obs := middleware.Observers(count, print, nil)
	middleware.Emit(context.Background(), obs, middleware.Event{Kind: middleware.Rejected, Concern: "backpressure", Reason: "shed"})
	fmt.Println(rejected)
	// Output:
	// backpressure rejected shed
	// 1
}

func ExampleRecover() {
	crash := func(context.Context, int) (int, error) { panic("index out of range") }
	stage := middleware.Apply(crash, middleware.Recover[int, int]())
	_, err := stage(context.Background(), 1)
	var pe *middleware.PanicError
	fmt.Println(errors.As(err, &pe), pe.Value)
	fmt.Println(err)
	// Output:
	// true index out of range
	// middleware: panic: index out of range
}
