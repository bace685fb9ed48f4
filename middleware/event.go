package middleware

import (
	"context"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/brace-go/brace/middleware/priority"
)

// Kind says what happened in an [Event]. Every concern uses the same kinds
// for the same things: a refusal is [Rejected] whether a breaker, a limiter
// or a budget refused, and a change of state is [StateChanged].
type Kind uint8

// The kinds of [Event], one vocabulary for every concern. docs/observability.md
// lists which concern emits which kind, and with which fields set.
const (
	// Rejected: a call was refused without running the stage. Err is the
	// error the caller gets; Reason says why ("open", "shed", "weight",
	// "rate", "budget", "limit", "key", "throttle", "cost", "codel");
	// Priority, the call's level when the concern sheds by priority;
	// Probability, for a throttler, the rejection probability; Delay, when known, is how long
	// until capacity returns (the retry-after); InFlight and Limit, for a
	// concurrency limit, the calls in flight and the limit; Wait, for a
	// call that queued before it was refused, how long it waited. A refusal inside a call that goes
	// on (a hedge the budget did not allow) sets Attempt, and Err is the
	// refusal, which the caller does not receive.
	Rejected Kind = iota + 1
	// Retry: attempt Attempt failed with Err and attempt Attempt+1 starts
	// after Delay.
	Retry
	// GaveUp: a retry loop stopped after Attempt attempts; Err is what the
	// caller gets, Reason why it stopped ("attempts", "elapsed",
	// "deadline", "hint", "permanent", "budget", "canceled").
	GaveUp
	// TimedOut: a call's deadline of Delay passed before the stage returned.
	TimedOut
	// StateChanged: a state machine moved From → To (a breaker's closed,
	// open, half-open; a store's up, down; a backpressure limiter's normal,
	// over-soft-limit, with InFlight and Limit the soft limit). Reason is
	// "adopted" when the change was made by another process and read from
	// a shared store.
	StateChanged
	// Joined: a call shared another call's execution instead of running
	// its own (dedup). Reason is "cache" when the result came from a cache.
	Joined
	// Waited: a call was admitted after waiting Wait in a queue.
	Waited
	// LimitChanged: a concurrency limit moved to Limit (adaptive).
	LimitChanged
	// Hedged: a hedged attempt Attempt started Delay after the call.
	Hedged
	// FellBack: a fallback answered for a call that failed with Err.
	FellBack
	// StoreFailed: a shared store failed with Err; the concern used its
	// local state instead.
	StoreFailed
)

var kindNames = [...]string{
	Rejected:     "rejected",
	Retry:        "retry",
	GaveUp:       "gave-up",
	TimedOut:     "timed-out",
	StateChanged: "state-changed",
	Joined:       "joined",
	Waited:       "waited",
	LimitChanged: "limit-changed",
	Hedged:       "hedged",
	FellBack:     "fell-back",
	StoreFailed:  "store-failed",
}

// String returns the kind's name as it appears in logs and metrics:
// "rejected", "state-changed", ...
func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "unknown"
}

// Event is one thing a concern did. It is a plain value: building and
// delivering one allocates nothing. Fields that do not apply to the Kind
// are zero; the kinds' docs say which are set.
type Event struct {
	Kind    Kind
	Concern string // the package that emitted it: "retry", "breaker", ...
	Name    string // the instance's Config.Name; "" if none was given

	Attempt  int           // Retry, GaveUp, Hedged: the 1-based attempt number
	Delay    time.Duration // Retry: backoff; Rejected: retry-after; TimedOut: the limit; Hedged: delay
	Wait     time.Duration // Waited: time spent queued
	InFlight int64         // Rejected, Waited (backpressure, adaptive): calls in flight
	Limit    int64         // Rejected, LimitChanged: the capacity or limit in force
	From     string        // StateChanged: the state left
	To       string        // StateChanged: the state entered
	Failures int64         // StateChanged (breaker): failures counted when it changed
	Reason   string        // Rejected, GaveUp, StateChanged, Joined: why, in one word
	Err      error         // the error the event is about, if any

	Priority    priority.Level // Rejected, Waited: the call's level, when the concern uses priorities
	Probability float64        // Rejected, StateChanged (throttle): the rejection probability in force
}

// Observer receives the events of the concerns it is given to, with the
// context of the call that caused each one (for trace and request IDs).
// It is modelled on grpc-go's stats.Handler: one interface, typed events,
// ctx first.
//
// Observe is called synchronously on the caller's goroutine (or, for work
// a concern runs in its own goroutine, on that goroutine), never while the
// concern holds a lock, and never between an admission and the code that
// guarantees its release. It must be safe for concurrent use and should
// return quickly. A panic in Observe is recovered and reported through
// slog.Default at level Error: an observer can never break a concern or
// its caller.
type Observer interface {
	Observe(ctx context.Context, e Event)
}

// ObserverFunc adapts a func to an [Observer].
type ObserverFunc func(ctx context.Context, e Event)

// Observe calls f(ctx, e).
func (f ObserverFunc) Observe(ctx context.Context, e Event) { f(ctx, e) }

// Observers returns an Observer that gives each event to every non-nil
// observer in order. A panic in one does not keep the event from the
// others. Observers() and Observers(nil) return nil.
func Observers(obs ...Observer) Observer {
	var list []Observer
	for _, o := range obs {
		if o != nil {
			list = append(list, o)
		}
	}
	switch len(list) {
	case 0:
		return nil
	case 1:
		return list[0]
	}
	return fanout(list)
}

type fanout []Observer

func (f fanout) Observe(ctx context.Context, e Event) {
	for _, o := range f {
		Emit(ctx, o, e)
	}
}

// Emit gives e to o, if o is not nil, recovering a panic in o (reported
// through slog.Default at level Error, with the event and the stack).
// Concerns call it for every event; a concern written outside Brace
// should too, so that its observers keep the same guarantees.
//
// Building an Event costs nothing worth measuring, but a hot path should
// still test o != nil before building one.
func Emit(ctx context.Context, o Observer, e Event) {
	if o != nil {
		defer recoverObserver(e.Concern, e.Name, e.Kind)
		o.Observe(ctx, e)
	}
}

// recoverObserver is deferred around every delivery: it must call recover
// itself for recover to work.
func recoverObserver(concern, name string, kind Kind) {
	if v := recover(); v != nil {
		slog.Default().Error("middleware: observer panicked; the event is dropped",
			slog.String("concern", concern), slog.String("name", name),
			slog.String("event", kind.String()), slog.Any("panic", v),
			slog.String("stack", string(debug.Stack())))
	}
}
