// Package soak holds Brace's chaos soak test: the whole recommended chain,
// Dedup → Retry → Breaker → Backpressure → Timeout → Recover, around a
// two-stage pipeline whose first stage injects faults (errors, permanent
// errors, latency, panics, hangs), driven by many goroutines whose callers
// cancel and time out at random, while every layer is instrumented and its
// invariants are checked on every call.
//
// The package has no API; everything is in its tests. The test runs inside
// a testing/synctest bubble, so time is fake: latencies, timeouts, backoff
// delays and the breaker's open time cost no wall-clock time, and a run is
// limited only by CPU. It also means that "nothing blocks beyond its
// bound" can be checked exactly: a caller whose context ends must get its
// answer at that same instant of fake time.
//
// # Running it
//
//	go test ./internal/soak/                              # short mode (default)
//	go test ./internal/soak/ -run Soak -soak.calls=1000000 -v  # long mode
//	BRACE_SOAK_CALLS=1000000 go test ./internal/soak/ -run Soak -v
//
// What is checked, and the last numbers, are in docs/reliability.md.
package soak
