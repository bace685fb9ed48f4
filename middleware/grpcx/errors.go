package grpcx

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/brace-go/brace/middleware/ratelimit"
)

// PushbackKey is the trailer in which a server asks a client to wait
// before retrying, in milliseconds (gRFC A6): "grpc-retry-pushback-ms".
// A negative or malformed value asks it not to retry at all.
const PushbackKey = "grpc-retry-pushback-ms"

// DefaultRetryCode is the default of ClientConfig.RetryCode. It reports
// true for the codes that say the same call may succeed if sent again:
// Unavailable (the server or the connection is down or overloaded),
// ResourceExhausted (a quota or a limit, usually with a pushback),
// Aborted (a concurrency conflict) and DeadlineExceeded (an attempt's own
// deadline passed; the caller's deadline is checked apart, and a call
// whose deadline has passed is never retried). Every other code —
// InvalidArgument, PermissionDenied, NotFound, Unimplemented, Internal,
// ... — is final.
func DefaultRetryCode(c codes.Code) bool {
	switch c {
	case codes.Unavailable, codes.ResourceExhausted, codes.Aborted, codes.DeadlineExceeded:
		return true
	}
	return false
}

// DefaultFailure is the default of ClientConfig.Failure and
// ServerConfig.Failure: it reports true for the codes that say the
// server, not the request, is at fault — Unavailable, DeadlineExceeded,
// Internal, Unknown and DataLoss. Those count against a breaker and are
// not latency samples for an adaptive limit; every other code (a
// NotFound, an InvalidArgument) is an answer, and counts as a success.
func DefaultFailure(c codes.Code) bool {
	switch c {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Internal, codes.Unknown, codes.DataLoss:
		return true
	}
	return false
}

// Code returns the gRPC code under which err reaches a caller:
//
//   - nil: OK;
//   - an error holding a gRPC status (a GRPCStatus() method, found as
//     errors.As finds it): that status's code;
//   - context.Canceled: Canceled; context.DeadlineExceeded (and a
//     timeout middleware's error, which matches it): DeadlineExceeded;
//   - a rate limiter's refusal (ratelimit.ErrLimited): ResourceExhausted —
//     the caller went over a quota and should send less;
//   - any other local rejection (an error whose Rejected() reports true:
//     an open breaker, a shed, an adaptive limit, an empty budget):
//     Unavailable — the server cannot take the call now, and the same call
//     may succeed later or on another replica;
//   - anything else: Unknown, as grpc-go does for a plain error.
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	if st, ok := findStatus(err); ok {
		return st.Code()
	}
	switch {
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, ratelimit.ErrLimited):
		return codes.ResourceExhausted
	case isRejected(err):
		return codes.Unavailable
	}
	return codes.Unknown
}

func isRejected(err error) bool {
	var r interface{ Rejected() bool }
	return errors.As(err, &r) && r.Rejected()
}

// findStatus returns the status held by err, if any.
func findStatus(err error) (*status.Status, bool) {
	var gs interface{ GRPCStatus() *status.Status }
	if errors.As(err, &gs) {
		if st := gs.GRPCStatus(); st != nil {
			return st, true
		}
	}
	return nil, false
}

// Error is an error that is both a gRPC status and a Brace error: the
// status (code, message, details) is what status.FromError and
// status.Code return, and Unwrap gives the error Brace produced — a
// *retry.ExhaustedError, a *breaker.OpenError, a shed — for errors.Is and
// errors.As. The interceptors return one when the caller's error is not a
// single attempt's status, which comes back unchanged.
type Error struct {
	st  *status.Status
	err error
}

// Error returns the status's text, as a status error's:
// "rpc error: code = Unavailable desc = ...".
func (e *Error) Error() string {
	return fmt.Sprintf("rpc error: code = %s desc = %s", e.st.Code(), e.st.Message())
}

// GRPCStatus returns the status; status.FromError and status.Code use it.
func (e *Error) GRPCStatus() *status.Status { return e.st }

// Unwrap returns the Brace error.
func (e *Error) Unwrap() error { return e.err }

// StatusError is how a failed attempt's status travels through the Brace
// middlewares of a client: it keeps the status error grpc-go returned
// (Unwrap, GRPCStatus) and adds what retry reads — Retryable, from the
// code and the pushback, and RetryAfter, the server's pushback. Callers
// never receive one: the interceptors give back the status error itself,
// or an *Error whose chain holds it.
type StatusError struct {
	err       error // as grpc-go returned it
	st        *status.Status
	retryable bool
	after     time.Duration
}

// Error returns the status error's text.
func (e *StatusError) Error() string { return e.err.Error() }

// Unwrap returns the error grpc-go returned for the attempt.
func (e *StatusError) Unwrap() error { return e.err }

// GRPCStatus returns the attempt's status.
func (e *StatusError) GRPCStatus() *status.Status { return e.st }

// Retryable reports whether the attempt may be retried: its code is one
// ClientConfig.RetryCode accepts for the method, the server's pushback does
// not say "do not retry", and the caller's context has not ended. It is
// the contract retry.DefaultRetryable follows.
func (e *StatusError) Retryable() bool { return e.retryable }

// RetryAfter returns the server's pushback: a Retrier never starts the next
// attempt before it.
func (e *StatusError) RetryAfter() time.Duration { return e.after }

// ParsePushback reads a grpc-retry-pushback-ms value as gRFC A6 defines it.
// It returns the delay and retry true for a valid non-negative decimal
// integer of milliseconds (a value too large for a Duration gives the
// largest one), and retry false for a negative or malformed value, which
// asks the client not to retry. No value is no pushback (0, true); more
// than one value is malformed (0, false), as grpc-go treats it.
func ParsePushback(values []string) (d time.Duration, retry bool) {
	if len(values) == 0 {
		return 0, true
	}
	if len(values) > 1 {
		return 0, false
	}
	ms, err := strconv.ParseInt(values[0], 10, 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && ne.Err == strconv.ErrRange && len(values[0]) > 0 && values[0][0] != '-' {
			return math.MaxInt64, true
		}
		return 0, false
	}
	if ms < 0 {
		return 0, false
	}
	if ms > math.MaxInt64/int64(time.Millisecond) {
		return math.MaxInt64, true
	}
	return time.Duration(ms) * time.Millisecond, true
}

// pushbackOf returns the pushback of a failed attempt: the trailer, and a
// google.rpc.RetryInfo detail of the status (the only way a server can send
// one before a stream exists, from a tap handle). The longer one wins; a
// trailer that says "do not retry" wins over everything.
func pushbackOf(st *status.Status, md metadata.MD) (d time.Duration, retry bool) {
	if v := md.Get(PushbackKey); len(v) > 0 {
		if d, retry = ParsePushback(v); !retry {
			return 0, false
		}
	}
	if st.Proto() != nil && len(st.Proto().GetDetails()) > 0 {
		for _, x := range st.Details() {
			if ri, ok := x.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
				if rd := ri.GetRetryDelay().AsDuration(); rd > d {
					d = rd
				}
			}
		}
	}
	return d, true
}

// pushbackMillis is d as a grpc-retry-pushback-ms value: rounded up to a
// whole millisecond.
func pushbackMillis(d time.Duration) string {
	ms := d / time.Millisecond
	if d%time.Millisecond != 0 {
		ms++
	}
	return strconv.FormatInt(int64(ms), 10)
}

// refusalStatus is the status of a local refusal err, with a RetryInfo
// detail of d when d > 0.
func refusalStatus(err error, d time.Duration) *status.Status {
	st := status.New(Code(err), err.Error())
	if d > 0 {
		if withInfo, derr := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)}); derr == nil {
			st = withInfo
		}
	}
	return st
}

// retryAfter returns the RetryAfter() of err's chain, or 0.
func retryAfter(err error) time.Duration {
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) {
		return ra.RetryAfter()
	}
	return 0
}

// callerError turns what the chain returned into what a client's caller
// gets: always nil or an error that status.FromError understands with
// ok true.
func callerError(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if se, ok := err.(*StatusError); ok {
		if _, isStatus := se.err.(interface{ GRPCStatus() *status.Status }); isStatus {
			return se.err // one attempt's status, unchanged
		}
		return &Error{st: se.st, err: se.err}
	}
	if cerr := ctx.Err(); cerr != nil && errors.Is(err, cerr) {
		// The caller left (during a retry's delay, say): Canceled or
		// DeadlineExceeded, as grpc-go reports it, whatever the last
		// attempt's status was.
		return &Error{st: status.FromContextError(cerr), err: err}
	}
	if st, ok := findStatus(err); ok {
		return &Error{st: st, err: err}
	}
	return &Error{st: refusalStatus(err, retryAfter(err)), err: err}
}
