// Package benchcmp measures Brace against its peers, in one run and with
// the same trivial stage, so that the cost of each middleware can be read
// as a difference (or a ratio) to a direct call and to the equivalent
// construct of another library.
//
// # Why a module of its own
//
// The package lives in a Go module of its own (internal/benchcmp/go.mod,
// with a replace directive pointing at the repository root), so that
// Brace's go.mod never depends on the libraries it is compared with, and
// `go test ./...` at the root does not build them.
//
// # What is measured
//
// Every benchmark is named Benchmark<Concern>/path=<path>/mode=<mode>/impl=<impl>:
//
//   - concern: Retry, Breaker, Backpressure, Dedup, Timeout, Composed,
//     Throttle (adaptive throttling, beside failsafe-go's
//     adaptivethrottler), GRPC (a unary call through a client
//     interceptor, over bufconn, beside grpc-go's own retry and
//     failsafe-go's failsafegrpc, and the interceptors alone),
//     Ratelimit (a shared token bucket beside x/time/rate's Allow and
//     failsafe-go's ratelimiter), Budget (a retry budget refusing an
//     extra attempt, beside a mutex and a clock read), Hedge (a call
//     whose first attempt wins before any hedge is sent, beside
//     failsafe-go's hedgepolicy);
//   - path: the success path, or a failure path (an open breaker
//     rejecting, a limiter shedding at capacity, a call that fails twice
//     and succeeds on its third attempt with all delays set to zero, an
//     empty rate limiter or budget refusing, a cache hit);
//     path=busy decorates [Busy], a stage that does real work, instead of
//     [Work];
//   - mode: seq (one goroutine) or par (b.RunParallel, GOMAXPROCS
//     goroutines sharing one middleware instance);
//   - impl: brace, a peer (gobreaker, eapache, backoff, failsafe), or a
//     baseline (direct, a hand-written loop, x/sync's semaphore or
//     singleflight, a bare atomic counter, an atomic flag with or without
//     a count of its refusals, context.WithTimeout, grpc-go's
//     service-config retry, x/time/rate's Allow, a mutex and a clock
//     read).
//
// Every implementation decorates the same stage, [Work], and is built once
// before the timer starts; only calls are timed. The tests of this package
// check that each benchmark measures what its name says (the error it
// returns, how many times it calls the stage) and that Brace's success
// and rejection paths do not allocate.
//
// # Running it
//
// `task bench:compare` at the repository root runs compare.sh in this
// directory: every benchmark six times, interleaved, and the parallel
// success paths with -cpu 1,2; it records the machine, the Go version and
// the load average, and summarises the runs with benchstat and
// cmd/benchtab, which prints the confidence intervals, marks noisy
// figures and checks the performance targets. The result is published in
// docs/performance.md. To run a part by hand:
//
//	cd internal/benchcmp
//	go test -run '^$' -bench 'Breaker/path=closed' -benchmem -count 6
package benchcmp
