package grpcx

import (
	"context"
	"io"
	"slices"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// errBufferFull fails a stream attempt that would need messages the stream
// no longer keeps.
var errBufferFull = status.Error(codes.Unknown, "grpcx: stream sent more than StreamBuffer before its first response; not sent again")

// Stream is a grpc.StreamClientInterceptor. The stream it returns opens
// no attempt until its first RecvMsg: the request messages sent before
// then are kept (up to StreamBuffer bytes), and the first RecvMsg runs the
// retry loop and the hedge, each attempt opening a stream, sending the
// kept messages again and waiting for the first response message. The
// first attempt to receive one (or to end cleanly) wins and the stream is
// committed to it: from then on nothing is retried or hedged, because the
// caller has seen a response and a new attempt could not take it back.
//
// Header before the first RecvMsg, and a send beyond StreamBuffer, open
// the stream at once with a single attempt. A message passed to SendMsg
// must not be modified afterwards (grpc-go's rule too): it may be sent
// again.
func (c *Client) Stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if err := ctx.Err(); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	if c.sendPrio {
		ctx = withOutgoingPriority(ctx)
	}
	cs := &clientStream{c: c, ctx: ctx, desc: desc, cc: cc, method: method, streamer: streamer, opts: opts}
	cs.k = call{ctx: ctx, method: method, guards: c.guards.get(method), cs: cs}
	return cs, nil
}

type streamState uint8

const (
	buffering streamState = iota // no attempt yet
	running                      // the retry loop runs
	committed                    // one attempt won
	failed                       // the loop failed: err
)

type clientStream struct {
	c        *Client
	k        call
	ctx      context.Context // the caller's
	desc     *grpc.StreamDesc
	cc       *grpc.ClientConn
	method   string
	streamer grpc.Streamer
	opts     []grpc.CallOption

	mu       sync.Mutex
	state    streamState
	sent     []any // request messages, for attempts to send again
	size     int
	closed   bool       // CloseSend was called
	live     []*attempt // attempts that may still win, while running
	won      []*attempt // attempts that got their first response
	cur      *attempt   // committed
	err      error      // failed
	settled  chan struct{}
	firstMsg any // the message the first RecvMsg receives into
}

// attempt is one stream attempt.
type attempt struct {
	ctx    context.Context // the stream's: the caller's, cancelled by finish
	s      grpc.ClientStream
	cancel context.CancelFunc
	msg    any
	first  error // nil or io.EOF: how the first RecvMsg ended
	p      permits
	once   sync.Once
}

// finish finishes the attempt's permits once and cancels its stream. err
// is how the stream ended (see permits.done), failure the Client's.
func (a *attempt) finish(err error, failure func(codes.Code) bool) {
	a.once.Do(func() { defer a.cancel(); a.p.done(err, failure) })
}

func msgSize(m any) int {
	if pm, ok := m.(proto.Message); ok {
		return proto.Size(pm)
	}
	return 1 << 10
}

func (cs *clientStream) SendMsg(m any) error {
	cs.mu.Lock()
	switch cs.state {
	case committed:
		a := cs.cur
		cs.mu.Unlock()
		return a.s.SendMsg(m)
	case failed:
		cs.mu.Unlock()
		return io.EOF // the status comes from RecvMsg, as with grpc-go
	}
	defer cs.mu.Unlock()
	if !cs.k.noRetry.Load() {
		cs.size += msgSize(m)
		cs.sent = append(cs.sent, m)
		if cs.size > cs.c.buffer {
			// No further attempt could be sent everything: stop keeping.
			cs.k.noRetry.Store(true)
			if cs.state == buffering {
				// Open the stream now, with what was kept, m included.
				if cs.openOnce() != nil {
					return io.EOF // the status comes from RecvMsg
				}
				return nil
			}
			cs.sent = nil
		}
	}
	for _, a := range cs.live {
		_ = a.s.SendMsg(m) // a failure shows in the attempt's RecvMsg
	}
	return nil
}

func (cs *clientStream) CloseSend() error {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	switch cs.state {
	case committed:
		return cs.cur.s.CloseSend()
	case failed:
		return nil
	}
	cs.closed = true
	for _, a := range cs.live {
		_ = a.s.CloseSend()
	}
	return nil
}

// openOnce commits the stream to a single attempt, with no retry, the
// guards taken on the caller's context. Called with mu held in state
// buffering; the stream is committed or failed when it returns.
func (cs *clientStream) openOnce() error {
	a := &attempt{}
	err := cs.k.guards.acquire(cs.ctx, &a.p)
	if err == nil {
		a.ctx, a.cancel = context.WithCancel(cs.ctx)
		if a.s, err = cs.streamer(a.ctx, cs.desc, cs.cc, cs.method, cs.opts...); err != nil {
			a.finish(err, cs.c.failure)
		}
	}
	if err != nil {
		cs.state, cs.err, cs.sent = failed, callerError(cs.ctx, err), nil
		return err
	}
	for _, m := range cs.sent {
		_ = a.s.SendMsg(m)
	}
	if cs.closed {
		_ = a.s.CloseSend()
	}
	cs.commit(a)
	return nil
}

// commit makes a the stream's attempt. Called with mu held.
func (cs *clientStream) commit(a *attempt) {
	cs.state, cs.cur, cs.sent, cs.live = committed, a, nil, nil
	// A caller who cancels instead of reading to the end still finishes
	// the permits (grpc-go's rule for releasing a stream).
	// (Not grpc-go's own stream context: grpc-go cancels it as the stream
	// ends, before RecvMsg returns the outcome to be recorded.)
	context.AfterFunc(a.ctx, func() { a.finish(context.Canceled, nil) })
}

func (cs *clientStream) Header() (metadata.MD, error) {
	cs.mu.Lock()
	if cs.state == buffering {
		cs.openOnce()
	}
	for cs.state == running {
		ch := cs.settled
		cs.mu.Unlock()
		<-ch
		cs.mu.Lock()
	}
	a, err := cs.cur, cs.err
	cs.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return a.s.Header()
}

func (cs *clientStream) Trailer() metadata.MD {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.cur != nil {
		return cs.cur.s.Trailer()
	}
	return nil
}

func (cs *clientStream) Context() context.Context {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.cur != nil {
		return cs.cur.s.Context()
	}
	return cs.ctx
}

func (cs *clientStream) RecvMsg(m any) error {
	cs.mu.Lock()
	for cs.state == running {
		ch := cs.settled
		cs.mu.Unlock()
		<-ch
		cs.mu.Lock()
	}
	switch cs.state {
	case failed:
		err := cs.err
		cs.mu.Unlock()
		return err
	case committed:
		a := cs.cur
		cs.mu.Unlock()
		return cs.recv(a, m)
	}
	// buffering: this call runs the retry loop.
	if cs.ctx.Err() != nil {
		cs.state, cs.err, cs.sent = failed, status.FromContextError(cs.ctx.Err()).Err(), nil
		cs.mu.Unlock()
		return cs.err
	}
	cs.state, cs.settled, cs.firstMsg = running, make(chan struct{}), m
	hedged := cs.c.hedged != nil && canCopy(m) && cs.c.idem(cs.method)
	cs.k.hedged = hedged
	cs.mu.Unlock()

	st := cs.c.retrying
	if hedged {
		st = cs.c.hedged
	}
	out, err := st(cs.ctx, &cs.k)

	cs.mu.Lock()
	won := cs.won
	cs.won = nil
	var a *attempt
	if err == nil {
		a = out.(*attempt)
		cs.commit(a)
	} else {
		cs.state, cs.err, cs.sent, cs.live = failed, callerError(cs.ctx, err), nil, nil
	}
	close(cs.settled)
	cs.mu.Unlock()
	for _, w := range won {
		if w != a {
			w.finish(context.Canceled, nil) // a hedge that answered too late
		}
	}
	if err != nil {
		return cs.err
	}
	if a.msg != m {
		copyMessage(m, a.msg)
	}
	if a.first != nil {
		a.finish(nil, nil) // the stream ended cleanly without a message
		return a.first
	}
	return nil
}

// recv receives on the committed attempt and finishes it at the end.
func (cs *clientStream) recv(a *attempt, m any) error {
	err := a.s.RecvMsg(m)
	if err == io.EOF {
		a.finish(nil, nil)
	} else if err != nil {
		a.finish(err, cs.c.failure)
	}
	return err
}

// streamAttempt is one attempt of a stream, under the retry loop and the
// hedge: it opens a stream, sends the kept messages again and waits for
// the first response. It returns the *attempt when one arrived, or when
// the stream ended cleanly.
func (c *Client) streamAttempt(ctx context.Context, k *call) (any, error) {
	cs := k.cs
	m := cs.firstMsg
	if k.started.Add(1) > 1 && k.hedged {
		m = newMessage(m)
	}
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	if k.noRetry.Load() && k.started.Load() > 1 {
		return nil, &StatusError{err: errBufferFull, st: status.Convert(errBufferFull)}
	}
	a := &attempt{msg: m}
	if err := k.guards.acquire(ctx, &a.p); err != nil {
		return nil, err
	}
	// The stream lives on the caller's context, and follows the attempt's
	// only until its first response: a hedge or a per-attempt timeout
	// that ends the attempt's context after it won must not end the
	// stream the caller reads.
	a.ctx, a.cancel = context.WithCancel(cs.ctx)
	stop := context.AfterFunc(ctx, a.cancel)
	committedOK := false
	defer func() {
		if !committedOK {
			stop()
			a.finish(errPanicked, nil) // a no-op after a finish below
		}
	}()
	s, err := cs.streamer(a.ctx, cs.desc, cs.cc, cs.method, cs.opts...)
	if err != nil {
		a.finish(err, c.failure)
		return nil, c.attemptError(k, attemptCtxError(ctx, err), nil)
	}
	a.s = s
	cs.mu.Lock()
	for _, msg := range cs.sent {
		if s.SendMsg(msg) != nil {
			break // the failure shows in RecvMsg
		}
	}
	if cs.closed {
		_ = s.CloseSend()
	}
	cs.live = append(cs.live, a)
	cs.mu.Unlock()

	err = s.RecvMsg(m)
	if err != nil && err != io.EOF {
		cs.mu.Lock()
		cs.live = slices.DeleteFunc(cs.live, func(x *attempt) bool { return x == a })
		cs.mu.Unlock()
		a.finish(err, c.failure)
		return nil, c.attemptError(k, attemptCtxError(ctx, err), s.Trailer())
	}
	if !stop() {
		// The attempt's context ended first: its message is never
		// delivered (a hedge already won, or the caller left).
		cs.mu.Lock()
		cs.live = slices.DeleteFunc(cs.live, func(x *attempt) bool { return x == a })
		cs.mu.Unlock()
		a.finish(context.Canceled, nil)
		// A per-attempt deadline is retried like any other attempt's
		// (while the caller's context lives); a hedge's loser is dropped.
		return nil, c.attemptError(k, status.FromContextError(ctx.Err()).Err(), nil)
	}
	committedOK = true
	a.first = err
	cs.mu.Lock()
	cs.won = append(cs.won, a)
	cs.mu.Unlock()
	return a, nil
}

// attemptCtxError is err, or, when the attempt's own context ended (its
// deadline, which cancels the stream and so reads as Canceled), that
// context's status: DeadlineExceeded, retried while the caller waits.
func attemptCtxError(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return status.FromContextError(cerr).Err()
	}
	return err
}
