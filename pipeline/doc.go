// Package pipeline chains typed, named stages into one [middleware.Stage].
//
// A method cannot change a type parameter in Go, so a pipeline is built with
// free functions: [From] starts it, [Then] extends it, and the compiler
// checks that each stage takes what the one before it produces:
//
//	p := pipeline.From("parse", parse)              // string -> Order
//	q := pipeline.Then(p, "price", price, retryMW)  // Order -> Quote
//	r := pipeline.Then(q, "render", render)         // Quote -> []byte
//	stage, err := r.Stage(timeoutMW)                // string -> []byte
//
// # Semantics
//
//   - Stages run in the order they were added.
//   - The first error stops the pipeline and comes back as a *[StageError]
//     that names the stage (name and index) and unwraps to the original, so
//     errors.Is and errors.As see the cause.
//   - The context is checked before each stage: once it has ended, the
//     pipeline stops with ctx.Err() wrapped in a *StageError whose Skipped
//     field is true and which names the stage that did not run.
//   - Middleware can decorate each stage (the variadic arguments of From and
//     Then) and the whole pipeline ([Pipeline.Stage]). A pipeline's Stage is
//     an ordinary Stage, so pipelines nest.
//   - A pipeline never changes once built: Then returns a new pipeline, and
//     extending one pipeline twice yields two independent pipelines.
//   - [Empty] is a pipeline with no stages; it returns its input.
//   - [Pipeline.Names] and [Pipeline.Len] report the stages.
//
// # Build errors
//
// An empty stage name, a nil stage or a nil middleware never panics. The
// mistake is kept as a *[BuildError] and returned by [Pipeline.Err],
// [Pipeline.Stage] and [Pipeline.Run], so it surfaces where the pipeline is
// built, not as a nil-pointer panic in the middle of a call.
//
// # Cost
//
// All composition happens when the pipeline is built. A call costs one
// context check and one or two indirect calls per stage and allocates
// nothing unless a stage fails (see BenchmarkPipeline and TestAllocs).
//
// # Concurrency
//
// A built pipeline is immutable and safe for concurrent use whenever its
// stages and middlewares are.
package pipeline
