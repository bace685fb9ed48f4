package httpx

import (
	"context"
	"io"
)

// body is a response body whose request context is cancelled when the body
// is closed, not when the attempt that received it returned.
type body struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
}

func (b *body) Close() error {
	err := b.ReadCloser.Close()
	b.cancel(nil)
	return err
}

// rwBody keeps the io.Writer of a 101 Switching Protocols body.
type rwBody struct {
	*body
	w io.Writer
}

func (b rwBody) Write(p []byte) (int, error) { return b.w.Write(p) }

func detach(rc io.ReadCloser, cancel context.CancelCauseFunc) io.ReadCloser {
	b := &body{ReadCloser: rc, cancel: cancel}
	if w, ok := rc.(io.Writer); ok {
		return rwBody{body: b, w: w}
	}
	return b
}
