package pipeline

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/brace-go/brace/middleware"
)

// Pipeline is a chain of named stages that turns an In into an Out. It is
// built with [From] or [Empty] and extended with [Then]; a built Pipeline
// never changes, so extending one twice yields two independent pipelines.
//
// A nil *Pipeline is a programmer error: [Then], [Pipeline.Stage] and
// [Pipeline.Run] panic on one. Use [Empty] for a pipeline with no stages.
type Pipeline[In, Out any] struct {
	run   middleware.Stage[In, Out] // all stages composed; nil when err != nil
	names []string                  // stage names, in order; never appended to in place
	err   *BuildError               // the first build error, if any
}

// StageError reports the stage at which a pipeline stopped. Err is the
// stage's own error, or the context's error when the pipeline was cancelled
// before the stage started (Skipped is then true). errors.Is and errors.As
// see through it.
//
// When a pipeline runs as a stage of another (nested pipelines), the outer
// StageError's Err is the inner one, and the text names the path once:
//
//	pipeline: stage 1 "outer" / stage 0 "inner": boom
type StageError struct {
	Name    string // the stage's name
	Index   int    // the stage's position, from 0
	Skipped bool   // the stage did not run: the context ended before it
	Err     error  // what stopped the pipeline
}

// Error returns "pipeline: stage INDEX "NAME": ERR", with "before stage"
// for a stage that was skipped. When Err is itself a *StageError, its stage
// follows after " / " instead of repeating the "pipeline:" prefix.
func (e *StageError) Error() string {
	var b strings.Builder
	b.WriteString("pipeline: ")
	for {
		if e.Skipped {
			b.WriteString("before ")
		}
		b.WriteString("stage ")
		b.WriteString(strconv.Itoa(e.Index))
		b.WriteByte(' ')
		b.WriteString(strconv.Quote(e.Name))
		inner, ok := e.Err.(*StageError)
		if !ok || inner == nil {
			break
		}
		b.WriteString(" / ")
		e = inner
	}
	b.WriteString(": ")
	if e.Err == nil {
		b.WriteString("<nil>")
	} else {
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *StageError) Unwrap() error { return e.Err }

// BuildError reports a stage whose name is unusable: empty, or already
// used by an earlier stage of the same pipeline. Names may come from data
// (a pipeline assembled from configuration), so a bad one is an error, not
// a panic; it is returned by [Pipeline.Stage] and [Pipeline.Run]. A nil stage or middleware is a programmer error and
// panics instead.
type BuildError struct {
	Index  int    // the position of the offending stage
	Name   string // the stage's name, possibly empty
	Reason string // what is wrong
}

func (e *BuildError) Error() string {
	return fmt.Sprintf("pipeline: stage %d %q: %s", e.Index, e.Name, e.Reason)
}

// errNil is the panic message for a nil *Pipeline.
const errNil = "pipeline: nil *Pipeline (use Empty for a pipeline with no stages)"

// Empty returns a pipeline with no stages: it returns its input unchanged.
func Empty[T any]() *Pipeline[T, T] {
	return &Pipeline[T, T]{run: func(_ context.Context, in T) (T, error) { return in, nil }}
}

// From starts a pipeline with one named stage, decorated by mws (the first
// being the outermost). A nil s or a nil middleware panics, as
// [middleware.Apply] does; an empty name is a *[BuildError].
func From[In, Out any](name string, s middleware.Stage[In, Out], mws ...middleware.Middleware[In, Out]) *Pipeline[In, Out] {
	cur, names, err := build(nil, name, s, mws)
	if err != nil {
		return &Pipeline[In, Out]{names: names, err: err}
	}
	return &Pipeline[In, Out]{run: cur, names: names}
}

// Then returns a new pipeline that runs p and then the named stage s,
// decorated by mws. p is not changed. The types are checked at compile time:
// s must take what p produces.
//
// A nil p, a nil s or a nil middleware panics. An empty name, or a name an
// earlier stage of p already has, is a *[BuildError]; a build error in p or
// in this stage is kept and returned by [Pipeline.Stage] and
// [Pipeline.Run].
func Then[In, Mid, Out any](p *Pipeline[In, Mid], name string, s middleware.Stage[Mid, Out], mws ...middleware.Middleware[Mid, Out]) *Pipeline[In, Out] {
	if p == nil {
		panic(errNil)
	}
	cur, names, err := build(p.names, name, s, mws)
	switch {
	case p.err != nil:
		return &Pipeline[In, Out]{names: p.names, err: p.err} // a broken pipeline is not extended
	case err != nil:
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

// build decorates one stage and checks its name. It returns the stage
// guarded by its name and position, and the names of the pipeline it ends.
// middleware.Apply panics on a nil stage or middleware, before the name is
// looked at, so a nil is found even in a pipeline that is already broken.
func build[In, Out any](names []string, name string, s middleware.Stage[In, Out], mws []middleware.Middleware[In, Out]) (middleware.Stage[In, Out], []string, *BuildError) {
	s = middleware.Apply(s, mws...)
	index := len(names)
	// Clip before appending so two pipelines extended from one never share
	// a backing array.
	all := append(slices.Clip(names), name)
	switch prev := slices.Index(names, name); {
	case name == "":
		return nil, all, &BuildError{Index: index, Name: name, Reason: "empty stage name"}
	case prev >= 0:
		return nil, all, &BuildError{Index: index, Name: name, Reason: "duplicate stage name (also stage " + strconv.Itoa(prev) + ")"}
	}
	return guard(index, name, s), all, nil
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
// pipeline can be a stage of another. It returns the pipeline's build
// error, if any, instead. A nil middleware panics, as [middleware.Apply]
// does.
func (p *Pipeline[In, Out]) Stage(mws ...middleware.Middleware[In, Out]) (middleware.Stage[In, Out], error) {
	if err := p.buildErr(); err != nil {
		return nil, err
	}
	return middleware.Apply(p.run, mws...), nil
}

// Run runs the pipeline once with no pipeline-wide middleware. It returns
// the build error, if any.
func (p *Pipeline[In, Out]) Run(ctx context.Context, in In) (Out, error) {
	if err := p.buildErr(); err != nil {
		var zero Out
		return zero, err
	}
	return p.run(ctx, in)
}

// buildErr returns the first *[BuildError] made while building the
// pipeline, or nil. It panics on a nil pipeline.
func (p *Pipeline[In, Out]) buildErr() error {
	if p == nil {
		panic(errNil)
	}
	if p.err == nil {
		return nil // not a typed nil
	}
	return p.err
}

// Names returns the stage names in order. The slice is a copy. A nil
// pipeline has none.
func (p *Pipeline[In, Out]) Names() []string {
	if p == nil {
		return nil
	}
	return slices.Clone(p.names)
}
