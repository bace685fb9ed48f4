package middleware

import "context"

// The Wrap adapters decorate an ordinary func with middlewares and give it
// back in its own shape, so existing call sites do not change. Inputs and
// outputs a func does not have are struct{}: a func(context.Context) error is
// decorated with Middleware[struct{}, struct{}] values.
//
// Funcs without a context run their stage on [context.Background]; use a
// context-taking shape when calls must be cancellable.

// Wrap decorates a func with the Stage shape and returns it as a plain func,
// for example a method value such as client.Get(ctx, key).
func Wrap[In, Out any](f func(context.Context, In) (Out, error), mws ...Middleware[In, Out]) func(context.Context, In) (Out, error) {
	var s Stage[In, Out]
	if f != nil {
		s = f
	}
	return Apply(s, mws...)
}

// WrapFunc decorates a func(In) (Out, error), such as (*http.Client).Do.
// The stage runs on context.Background(); the input may carry its own
// context, as an *http.Request does.
func WrapFunc[In, Out any](f func(In) (Out, error), mws ...Middleware[In, Out]) func(In) (Out, error) {
	var s Stage[In, Out]
	if f != nil {
		s = func(_ context.Context, in In) (Out, error) { return f(in) }
	}
	st := Apply(s, mws...)
	return func(in In) (Out, error) { return st(context.Background(), in) }
}

// WrapCtx decorates a func(context.Context) (Out, error).
func WrapCtx[Out any](f func(context.Context) (Out, error), mws ...Middleware[struct{}, Out]) func(context.Context) (Out, error) {
	var s Stage[struct{}, Out]
	if f != nil {
		s = func(ctx context.Context, _ struct{}) (Out, error) { return f(ctx) }
	}
	st := Apply(s, mws...)
	return func(ctx context.Context) (Out, error) { return st(ctx, struct{}{}) }
}

// WrapCtxErr decorates a func(context.Context) error.
func WrapCtxErr(f func(context.Context) error, mws ...Middleware[struct{}, struct{}]) func(context.Context) error {
	var s Stage[struct{}, struct{}]
	if f != nil {
		s = func(ctx context.Context, _ struct{}) (struct{}, error) { return struct{}{}, f(ctx) }
	}
	st := Apply(s, mws...)
	return func(ctx context.Context) error {
		_, err := st(ctx, struct{}{})
		return err
	}
}

// WrapErr decorates a func() error. The stage runs on context.Background().
func WrapErr(f func() error, mws ...Middleware[struct{}, struct{}]) func() error {
	var s Stage[struct{}, struct{}]
	if f != nil {
		s = func(context.Context, struct{}) (struct{}, error) { return struct{}{}, f() }
	}
	st := Apply(s, mws...)
	return func() error {
		_, err := st(context.Background(), struct{}{})
		return err
	}
}
