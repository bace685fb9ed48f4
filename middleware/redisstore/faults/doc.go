// Package faults holds redisstore's network-fault tests: the breaker
// store, the global limiter and the cross-process dedup driven through
// real faults between go-redis clients and a real redis-server — added
// latency, bandwidth limits, replies cut mid-way, connection resets,
// blackholes, slow closes, FLUSHALL, a server killed and restarted empty,
// a port that refuses connections — injected by an in-process toxiproxy
// (internal/toxitest). They check the recovery bounds docs/distributed.md
// states (issue 15).
//
// The package has no API; everything is in its tests. They run in real
// time on a real network stack (testing/synctest cannot fake it), so
// every time bound is a generous constant with a comment, and a test that
// must wait for real time to pass polls a condition with a deadline.
//
//	go test -count=1 ./middleware/redisstore/faults/
//	go test -count=1 -race ./middleware/redisstore/faults/
//
// redis-server must be installed (apt-get install -y redis-server); the
// tests skip without it, and fail when the environment variable CI is set.
package faults
