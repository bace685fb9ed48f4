package httpx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/brace-go/brace/middleware"
)

// drainLimit bounds how much of a body is read to release its connection:
// a body that ends within it lets the connection be reused; a longer
// body's connection is closed instead.
const drainLimit = 4 << 10

// result is a response an attempt received. Unless it is the one RoundTrip
// returns, it is discarded: drained (bounded) and closed, exactly once.
type result struct {
	t         *Transport
	resp      *http.Response
	drained   bool // drain ran: resp.Body is a *keptBody
	discarded atomic.Bool
	next      *result
}

// drain reads the start of a response the Retrier may retry, before the
// attempt returns, so that its connection goes back to the pool before any
// retry delay, and keeps what it read so that the response can still be
// the one the caller gets:
//
//   - a body that ends within drainLimit bytes and the drain timeout is
//     kept whole in memory and the original body closed (the connection
//     is reused);
//   - a longer body keeps its first bytes in memory and the rest on the
//     wire, until the caller or RoundTrip closes it;
//   - a body still arriving after the drain timeout (or when ctx ends) is
//     closed: a reader gets what had arrived and then a *cutError, which
//     matches io.ErrUnexpectedEOF (and the context's cause).
//
// It runs on the attempt's goroutine, before the *StatusError is returned,
// so nothing else touches the response meanwhile.
func (r *result) drain(ctx context.Context) {
	var buf bytes.Buffer
	body := r.resp.Body
	ended, cut, err := r.t.drainTo(ctx, &buf, body)
	kept := &keptBody{buf: buf.Bytes()}
	switch {
	case ended:
		if !cut {
			body.Close()
		}
	case err == nil: // longer than drainLimit: the rest stays on the wire
		kept.rest = body
	default:
		if !cut {
			body.Close()
		}
		kept.err = err
	}
	r.resp.Body = kept
	r.drained = true
}

// discard releases a response the caller will not get: drained (unless
// drain did it already), bounded in bytes and time, then closed.
func (r *result) discard(ctx context.Context) {
	if !r.discarded.CompareAndSwap(false, true) {
		return
	}
	cut := false
	if !r.drained && r.resp.StatusCode != http.StatusSwitchingProtocols {
		_, cut, _ = r.t.drainTo(ctx, io.Discard, r.resp.Body)
	}
	if !cut {
		r.resp.Body.Close()
	}
}

// drainTo copies up to drainLimit+1 bytes of body to w, for at most the
// Transport's drain timeout and while ctx lives. If either ends first, it
// closes body to end the read (cut reports that it did) and returns an
// error. ended reports that the body ended (io.EOF) within drainLimit
// bytes; err is nil when it ended or was longer than drainLimit.
func (t *Transport) drainTo(ctx context.Context, w io.Writer, body io.ReadCloser) (ended, cut bool, err error) {
	if body == http.NoBody {
		return true, false, nil
	}
	var (
		claimed  atomic.Bool
		done     = make(chan struct{})
		timedOut bool // written before done is closed
	)
	stopper := func(timeout bool) func() {
		return func() {
			if claimed.CompareAndSwap(false, true) {
				timedOut = timeout
				body.Close() // ends a Read blocked on a stalled body
				close(done)
			}
		}
	}
	timer := time.AfterFunc(t.drainTimeout, stopper(true))
	stopCtx := context.AfterFunc(ctx, stopper(false))
	n, err := io.CopyN(w, body, drainLimit+1)
	timer.Stop()
	stopCtx()
	if !claimed.CompareAndSwap(false, true) {
		<-done // the read was cut, or is about to be: wait for the Close
		cut = true
	}
	switch {
	case err == io.EOF:
		return true, cut, nil
	case err == nil && n > drainLimit:
		if cut { // the limit was reached as the read was cut: the rest is gone
			break
		}
		return false, false, nil
	}
	if cut {
		if timedOut {
			err = &cutError{after: t.drainTimeout}
			t.timedOut.Add(1)
			if t.obs != nil {
				middleware.Emit(ctx, t.obs, middleware.Event{
					Kind: middleware.TimedOut, Concern: "httpx", Name: t.name,
					Delay: t.drainTimeout, Err: err,
				})
			}
		} else {
			err = &cutError{cause: context.Cause(ctx)}
		}
	}
	return false, cut, err
}

// cutError is what reading a body the Transport cut off while draining it
// returns after the bytes that had arrived: the drain timeout passed
// (after), or the attempt's context ended (cause).
type cutError struct {
	after time.Duration
	cause error
}

func (e *cutError) Error() string {
	if e.cause != nil {
		return "httpx: response body cut off when the attempt ended: " + e.cause.Error()
	}
	return fmt.Sprintf("httpx: response body still arriving after the drain timeout (%v); closed", e.after)
}

// Unwrap returns io.ErrUnexpectedEOF, since the body ended early, and the
// context's cause, if that is what ended it.
func (e *cutError) Unwrap() []error {
	if e.cause != nil {
		return []error{io.ErrUnexpectedEOF, e.cause}
	}
	return []error{io.ErrUnexpectedEOF}
}

// Timeout reports whether the drain timeout cut the body, as net.Error
// does for timeouts.
func (e *cutError) Timeout() bool { return e.cause == nil }

// keptBody is the body of a drained response: the bytes read, then the
// rest of the original body (if it was longer than drainLimit) or the
// error that ended the read (if it was cut), else io.EOF.
type keptBody struct {
	buf  []byte
	rest io.ReadCloser // nil once closed, or if there is no rest
	err  error
}

func (b *keptBody) Read(p []byte) (int, error) {
	if len(b.buf) > 0 {
		n := copy(p, b.buf)
		b.buf = b.buf[n:]
		return n, nil
	}
	if b.rest != nil {
		return b.rest.Read(p)
	}
	if b.err != nil {
		return 0, b.err
	}
	return 0, io.EOF
}

func (b *keptBody) Close() error {
	b.buf = nil
	if b.err == nil {
		b.err = errClosedBody
	}
	if rest := b.rest; rest != nil {
		b.rest = nil
		return rest.Close()
	}
	return nil
}

var errClosedBody = errors.New("httpx: read on closed response body")

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
