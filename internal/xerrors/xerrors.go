// Package xerrors holds the error helpers the concerns share.
package xerrors

// Find is errors.As for a type T without reflection or allocation (unless
// an error in the chain has an As method): the first error in err's chain
// that is a T.
func Find[T any](err error) (T, bool) {
	var zero T
	for err != nil {
		if t, ok := err.(T); ok {
			return t, true
		}
		if x, ok := err.(interface{ As(any) bool }); ok {
			var t T
			if x.As(&t) {
				return t, true
			}
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if t, ok := Find[T](e); ok {
					return t, true
				}
			}
			return zero, false
		default:
			return zero, false
		}
	}
	return zero, false
}

// Rejected reports whether err's chain holds a local rejection: an error
// with a Rejected() bool method that reports true. It is the contract by
// which Brace's concerns mark "the downstream was not called" without
// importing each other. The chain is walked by hand: errors.As would move
// its target to the heap and allocate on every failure.
func Rejected(err error) bool {
	for err != nil {
		if r, ok := err.(interface{ Rejected() bool }); ok && r.Rejected() {
			return true
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if Rejected(e) {
					return true
				}
			}
			return false
		default:
			return false
		}
	}
	return false
}
