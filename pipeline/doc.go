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
//     field is true and which names the stage that did not run. A context
//     that has ended before the call therefore runs no stage at all.
//   - Middleware can decorate each stage (the variadic arguments of From and
//     Then) and the whole pipeline ([Pipeline.Stage]). A pipeline's Stage is
//     an ordinary Stage, so pipelines nest; a failure in a nested pipeline
//     reads `pipeline: stage 1 "outer" / stage 0 "inner": boom`, naming
//     the package once.
//   - A pipeline never changes once built: Then returns a new pipeline, and
//     extending one pipeline twice yields two independent pipelines.
//   - [Empty] is a pipeline with no stages; it returns its input.
//   - [Pipeline.Names] reports the stages.
//
// # Mistakes
//
// A nil stage, a nil middleware or a nil *Pipeline is a programmer error:
// building panics at once (with the core's "middleware: nil stage" or
// "middleware: nil middleware", or "pipeline: nil *Pipeline"), as
// [middleware.Apply] does, so such a mistake never reaches a call.
//
// A stage name may come from data, so a bad one is an error instead: an
// empty name, or one that an earlier stage of the same pipeline already has
// (names identify stages in errors), is kept as a *[BuildError] and
// returned by [Pipeline.Stage] and [Pipeline.Run] (to check a pipeline at
// start-up, build its stage: s, err := p.Stage()). Stages of a nested
// pipeline, or of another branch, may reuse names.
//
// # Cost
//
// All composition happens when the pipeline is built. A call costs one
// context check and one or two indirect calls per stage and allocates
// nothing unless a stage fails, when it allocates one *StageError per
// level.
//
// # Concurrency
//
// A built pipeline is immutable and safe for concurrent use whenever its
// stages and middlewares are. A pipeline starts no goroutines.
package pipeline
