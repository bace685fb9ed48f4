// Package soak holds redisstore's fault soak: two processes' chains —
// a breaker with its state in Redis, the global limiter and the
// cross-process dedup around a downstream that fails now and then — driven
// by many callers while Redis suffers one fault after another: a latency
// spike, a blackhole, replies cut mid-way, connection resets, a frozen
// server (SIGSTOP), CLIENT PAUSE, FLUSHALL, and a kill followed by an
// empty restart. The network faults come from an in-process toxiproxy
// (internal/toxitest).
//
// It runs in real time (a synctest bubble cannot fake a real network),
// for about ten seconds per cycle of faults. No call may wait beyond its
// bound, every call returns once with a known outcome, the calls in
// flight at the downstream stay within the limits, no lease is lost, and
// the shared breaker works again once Redis is back.
//
// The package has no API; everything is in its tests.
//
//	go test -count=1 ./middleware/redisstore/soak/
//	go test -count=1 ./middleware/redisstore/soak/ -run SoakRedis -soak.redis.cycles=5 -v
package soak
