package benchcmp

import (
	"context"
	"errors"
)

// Stage is the shape every implementation decorates. It is the underlying
// type of middleware.Stage[int, int].
type Stage = func(ctx context.Context, in int) (int, error)

// Work is the trivial stage all benchmarks decorate: it returns its input
// plus one. It is not inlined, so that every implementation pays the same
// real call and the compiler cannot fold the stage into the benchmark.
//
//go:noinline
func Work(_ context.Context, in int) (int, error) { return in + 1, nil }

// errBusy is never returned in practice: it makes Busy's result depend on
// its loop, so that the compiler cannot drop the loop.
var errBusy = errors.New("benchcmp: busy stage hit its unlikely value")

// Busy is a stage that does about 150 ns of arithmetic (on the machine of
// docs/performance.md) before returning its input plus one, touching no
// shared memory. It stands for a call that does real work: under
// b.RunParallel its throughput doubles with two CPUs unless the middleware
// around it serialises the calls.
//
//go:noinline
func Busy(_ context.Context, in int) (int, error) {
	x := uint64(in)
	for range 128 {
		x = x*6364136223846793005 + 1442695040888963407 // a linear congruential step
	}
	if x == 42 {
		return 0, errBusy
	}
	return in + 1, nil
}

// ErrFlaky is the error of the failed attempts of a [Flaky] stage.
var ErrFlaky = errors.New("benchcmp: flaky attempt")

// ErrFail is the error of [Fail], used to trip breakers.
var ErrFail = errors.New("benchcmp: failure")

// Fail is a stage that always fails with [ErrFail].
//
//go:noinline
func Fail(context.Context, int) (int, error) { return 0, ErrFail }

// Flaky is a stage whose attempts fail twice with [ErrFlaky] and then
// succeed, in a cycle of three: a call retried twice succeeds on its third
// attempt. Its zero value is ready. It is not safe for concurrent use, so
// benchmarks that use it run on one goroutine.
type Flaky struct{ n int }

// Call is the stage.
//
//go:noinline
func (f *Flaky) Call(_ context.Context, in int) (int, error) {
	f.n++
	if f.n%3 != 0 {
		return 0, ErrFlaky
	}
	return in + 1, nil
}
