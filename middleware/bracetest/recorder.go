package bracetest

import (
	"context"
	"slices"
	"sync"

	"github.com/brace-go/brace/middleware"
)

// Recorder is a [middleware.Observer] that records every event it is
// given, from any concern, in the order they arrive, for assertions with
// go-cmp. Give it as the Config.Observer of the concerns under test (one
// Recorder per concern, or one for the whole chain). Its zero value is
// ready to use, and it is safe for concurrent use.
//
// To see the events as log records too, combine it with the log
// observer: middleware.Observers(rec, middleware.Log(logger)).
type Recorder struct {
	mu     sync.Mutex
	events []middleware.Event
}

var _ middleware.Observer = (*Recorder)(nil)

// Observe records e. It never blocks for long and calls nothing, so it
// may be called from any goroutine, including from inside another
// observer.
func (r *Recorder) Observe(_ context.Context, e middleware.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

// Events returns a copy of the events recorded so far, oldest first; nil
// if there are none.
func (r *Recorder) Events() []middleware.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// Kinds returns the kinds of the events recorded so far, oldest first: a
// quick check of what happened, in order. Nil if there are none.
func (r *Recorder) Kinds() []middleware.Kind {
	r.mu.Lock()
	defer r.mu.Unlock()
	var kinds []middleware.Kind
	for _, e := range r.events {
		kinds = append(kinds, e.Kind)
	}
	return kinds
}

// Reset forgets every event recorded so far.
func (r *Recorder) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = nil
}
