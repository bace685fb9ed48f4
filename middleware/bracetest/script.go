package bracetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// ErrScriptEnded is returned (wrapped, with the call number) by a
// [Script] called more times than it has steps, so that an unexpected
// extra call fails the test instead of passing unnoticed.
var ErrScriptEnded = errors.New("bracetest: script ended")

// Step is what one call of a [Script] does: it waits Delay (returning
// ctx.Err() if the context ends first), then hangs until the context ends
// if Hang is set, panics with Panic if it is not nil, and otherwise
// returns Out and Err.
type Step[Out any] struct {
	Out   Out
	Err   error
	Delay time.Duration
	Panic any
	Hang  bool
}

// Return is a Step that returns out and a nil error.
func Return[Out any](out Out) Step[Out] { return Step[Out]{Out: out} }

// Fail is a Step that returns the zero Out and err.
func Fail[Out any](err error) Step[Out] { return Step[Out]{Err: err} }

// Script is a fake stage that plays back a sequence of steps, one per
// call, in the order the calls arrive, and remembers the inputs it was
// called with. Its zero value has no steps. It is safe for concurrent use.
type Script[In, Out any] struct {
	mu     sync.Mutex
	steps  []Step[Out]
	inputs []In
}

// NewScript returns a Script that plays steps.
func NewScript[In, Out any](steps ...Step[Out]) *Script[In, Out] {
	return &Script[In, Out]{steps: slices.Clone(steps)}
}

// Stage is the script as a stage: use the method value s.Stage wherever a
// middleware.Stage[In, Out] is expected.
func (s *Script[In, Out]) Stage(ctx context.Context, in In) (Out, error) {
	s.mu.Lock()
	n := len(s.inputs)
	s.inputs = append(s.inputs, in)
	var st Step[Out]
	ok := n < len(s.steps)
	if ok {
		st = s.steps[n]
	}
	s.mu.Unlock()

	var zero Out
	if !ok {
		return zero, fmt.Errorf("%w: call %d of %d scripted", ErrScriptEnded, n+1, len(s.steps))
	}
	if err := sleep(ctx, st.Delay); err != nil {
		return zero, err
	}
	if st.Hang {
		<-ctx.Done()
		return zero, ctx.Err()
	}
	if st.Panic != nil {
		panic(st.Panic)
	}
	return st.Out, st.Err
}

// Inputs returns a copy of the inputs of the calls so far, in arrival
// order.
func (s *Script[In, Out]) Inputs() []In {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.inputs)
}
