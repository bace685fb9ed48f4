package middleware

import "context"

// The adapters below decorate funcs that are not Stages and give them back
// in their own shape. Each takes the call's context: a func that cannot be
// cancelled cannot be bounded by a timeout or abandoned by a caller who
// left, so there is no adapter for a func without one. Close over the
// context instead, and for HTTP use middleware/httpx, whose transport
// rewinds request bodies and gives each attempt the request's context;
// decorating (*http.Client).Do with a generic adapter would retry a POST
// whose body was already consumed.

// WrapFunc decorates f with mws and returns it in its own shape. The input
// of the Stage the middlewares see is struct{}. It panics, as [Apply]
// does, if f or a middleware is nil.
func WrapFunc[Out any](f func(context.Context) (Out, error), mws ...Middleware[struct{}, Out]) func(context.Context) (Out, error) {
	var s Stage[struct{}, Out]
	if f != nil {
		s = func(ctx context.Context, _ struct{}) (Out, error) { return f(ctx) }
	}
	st := Apply(s, mws...)
	return func(ctx context.Context) (Out, error) { return st(ctx, struct{}{}) }
}

// WrapErr decorates f, a func that returns only an error, with mws. It
// panics, as [Apply] does, if f or a middleware is nil.
func WrapErr(f func(context.Context) error, mws ...Middleware[struct{}, struct{}]) func(context.Context) error {
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
