package middleware_test

import (
	"context"
	"errors"
	"fmt"
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

// WrapFunc decorates a func(In) (Out, error), such as strconv.Atoi or
// (*http.Client).Do, and gives it back in its own shape.
func ExampleWrapFunc() {
	counted := 0
	count := func(next middleware.Stage[string, int]) middleware.Stage[string, int] {
		return func(ctx context.Context, in string) (int, error) {
			counted++
			return next(ctx, in)
		}
	}
	atoi := middleware.WrapFunc(strconv.Atoi, count)
	n, err := atoi("42")
	fmt.Println(n, err, counted)
	// Output: 42 <nil> 1
}

func ExampleWrapCtxErr() {
	ping := func(ctx context.Context) error { return ctx.Err() }
	tagged := func(next middleware.Stage[struct{}, struct{}]) middleware.Stage[struct{}, struct{}] {
		return func(ctx context.Context, in struct{}) (struct{}, error) {
			fmt.Println("pinging")
			return next(ctx, in)
		}
	}
	check := middleware.WrapCtxErr(ping, tagged)
	fmt.Println(check(context.Background()))
	// Output:
	// pinging
	// <nil>
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
