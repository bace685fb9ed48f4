package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/brace-go/brace/middleware"
)

// Pipeline is a chain of named stages that turns an In into an Out. It is
// built with [From] or [Empty] and extended with [Then]; a built Pipeline
// never changes, so extending one twice yields two independent pipelines.
//
// A nil *Pipeline is not valid; use [Empty] for a pipeline with no stages.
type Pipeline[In, Out any] struct {
	run   middleware.Stage[In, Out] // all stages composed; nil when err != nil
	names []string                  // stage names, in order; never appended to in place
	err   error                     // the first build error, if any
}

// StageError reports the stage at which a pipeline stopped. Err is the
// stage's own error, or the context's error when the pipeline was cancelled
// before the stage started (Skipped is then true). errors.Is and errors.As
// see through it.
type StageError struct {
	Name    string // the stage's name
	Index   int    // the stage's position, from 0
	Skipped bool   // the stage did not run: the context ended before it
	Err     error  // what stopped the pipeline
}

func (e *StageError) Error() string {
	if e.Skipped {
		return "pipeline: before stage " + strconv.Itoa(e.Index) + " " + strconv.Quote(e.Name) + ": " + e.Err.Error()
	}
	return "pipeline: stage " + strconv.Itoa(e.Index) + " " + strconv.Quote(e.Name) + ": " + e.Err.Error()
}

func (e *StageError) Unwrap() error { return e.Err }

// BuildError reports a mistake in building a pipeline: an empty stage name,
// a nil stage or a nil middleware. It is returned by [Pipeline.Stage] and
// [Pipeline.Err]; building itself never panics.
type BuildError struct {
	Index  int    // the position of the offending stage, or -1 for pipeline-wide middleware
	Name   string // the stage's name, possibly empty
	Reason string // what is wrong
}

func (e *BuildError) Error() string {
	if e.Index < 0 {
		return "pipeline: " + e.Reason
	}
	return fmt.Sprintf("pipeline: stage %d %q: %s", e.Index, e.Name, e.Reason)
}

// ErrNilPipeline is returned when a nil *Pipeline is used.
var ErrNilPipeline = errors.New("pipeline: nil pipeline")

// Empty returns a pipeline with no stages: it returns its input unchanged.
func Empty[T any]() *Pipeline[T, T] {
	return &Pipeline[T, T]{run: func(_ context.Context, in T) (T, error) { return in, nil }}
}

// From starts a pipeline with one named stage, decorated by mws (the first
// being the outermost).
func From[In, Out any](name string, s middleware.Stage[In, Out], mws ...middleware.Middleware[In, Out]) *Pipeline[In, Out] {
	cur, names, err := build(nil, name, s, mws)
	return &Pipeline[In, Out]{run: cur, names: names, err: err}
}

// Then returns a new pipeline that runs p and then the named stage s,
// decorated by mws. p is not changed. The types are checked at compile time:
// s must take what p produces. A build error in p or in this stage is kept
// and reported by [Pipeline.Err], [Pipeline.Stage] and [Pipeline.Run].
func Then[In, Mid, Out any](p *Pipeline[In, Mid], name string, s middleware.Stage[Mid, Out], mws ...middleware.Middleware[Mid, Out]) *Pipeline[In, Out] {
	if err := p.Err(); err != nil {
		return &Pipeline[In, Out]{names: p.Names(), err: err}
	}
	cur, names, err := build(p.names, name, s, mws)
	if err != nil {
		return &Pipeline[In, Out]{names: names, err: err}
	}
	prev := p.run
	return &Pipeline[In, Out]{names: names, run: func(ctx context.Context, in In) (Out, error) {
		mid, err := prev(ctx, in)
		if err != nil {
			var zero Out
			return zero, err
		}
		return cur(ctx, mid)
	}}
}

// build validates one stage and decorates it. It returns the stage guarded
// by its name and position, and the names of the pipeline it ends.
func build[In, Out any](names []string, name string, s middleware.Stage[In, Out], mws []middleware.Middleware[In, Out]) (middleware.Stage[In, Out], []string, error) {
	index := len(names)
	// Clip before appending so two pipelines extended from one never share
	// a backing array.
	all := append(slices.Clip(names), name)
	var reason string
	switch {
	case name == "":
		reason = "empty stage name"
	case s == nil:
		reason = "nil stage"
	case hasNil(mws):
		reason = "nil middleware"
	default:
		return guard(index, name, middleware.Apply(s, mws...)), all, nil
	}
	return nil, all, &BuildError{Index: index, Name: name, Reason: reason}
}

// guard runs s unless the context has already ended, and wraps any error in
// a *StageError naming the stage.
func guard[In, Out any](index int, name string, s middleware.Stage[In, Out]) middleware.Stage[In, Out] {
	return func(ctx context.Context, in In) (Out, error) {
		if err := ctx.Err(); err != nil {
			var zero Out
			return zero, &StageError{Name: name, Index: index, Skipped: true, Err: err}
		}
		out, err := s(ctx, in)
		if err != nil {
			var zero Out
			return zero, &StageError{Name: name, Index: index, Err: err}
		}
		return out, nil
	}
}

// Stage returns the whole pipeline as one Stage, decorated by mws (the first
// being the outermost), so middleware can wrap a whole pipeline and a
// pipeline can be a stage of another. It returns the first build error, if
// any, instead.
func (p *Pipeline[In, Out]) Stage(mws ...middleware.Middleware[In, Out]) (middleware.Stage[In, Out], error) {
	if err := p.Err(); err != nil {
		return nil, err
	}
	if hasNil(mws) {
		return nil, &BuildError{Index: -1, Reason: "nil pipeline middleware"}
	}
	return middleware.Apply(p.run, mws...), nil
}

// Run runs the pipeline once with no pipeline-wide middleware. It returns
// the build error, if any.
func (p *Pipeline[In, Out]) Run(ctx context.Context, in In) (Out, error) {
	if err := p.Err(); err != nil {
		var zero Out
		return zero, err
	}
	return p.run(ctx, in)
}

// Err returns the first mistake made while building the pipeline, or nil.
func (p *Pipeline[In, Out]) Err() error {
	if p == nil {
		return ErrNilPipeline
	}
	return p.err
}

// Names returns the stage names in order. The slice is a copy.
func (p *Pipeline[In, Out]) Names() []string {
	if p == nil {
		return nil
	}
	return slices.Clone(p.names)
}

// Len returns the number of stages.
func (p *Pipeline[In, Out]) Len() int {
	if p == nil {
		return 0
	}
	return len(p.names)
}

func hasNil[In, Out any](mws []middleware.Middleware[In, Out]) bool {
	return slices.ContainsFunc(mws, func(m middleware.Middleware[In, Out]) bool { return m == nil })
}
