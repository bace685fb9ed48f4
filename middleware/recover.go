package middleware

import (
	"context"
	"fmt"
	"runtime/debug"
)

// PanicError is returned by a stage wrapped in [Recover] when the stage
// panics. It carries the recovered value and the stack of the panicking
// goroutine. When the value is an error, Unwrap returns it, so errors.Is
// and errors.As see through the panic.
type PanicError struct {
	Value any    // the value passed to panic
	Stack []byte // debug.Stack() at the point of recovery
}

func (e *PanicError) Error() string { return fmt.Sprintf("middleware: panic: %v", e.Value) }

// Unwrap returns the panic value if it is an error, and nil otherwise.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// Recover returns a middleware that turns a panic in the stages it wraps
// into a *[PanicError]. Without Recover a panic propagates to the caller,
// as it would for any Go call; put Recover outermost to protect a whole
// chain, or innermost so that Retry and Breaker see a panic as an ordinary
// failure. runtime.Goexit is not a panic and is not stopped.
//
// Recover adds one deferred call per call and allocates nothing unless the
// stage panics.
func Recover[In, Out any]() Middleware[In, Out] {
	return func(next Stage[In, Out]) Stage[In, Out] {
		if next == nil {
			panic("middleware: nil stage")
		}
		return func(ctx context.Context, in In) (out Out, err error) {
			defer func() {
				if v := recover(); v != nil {
					var zero Out
					out, err = zero, &PanicError{Value: v, Stack: debug.Stack()}
				}
			}()
			return next(ctx, in)
		}
	}
}
