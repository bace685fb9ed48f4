package redisstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/redisstore/internal/redistest"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/redis/go-redis/v9"
)

// TestConformance runs the same random operation sequences against
// breaker.MemoryStore, the reference implementation of the Store contract
// (it runs breaker's machine.step), and against the Lua script on a real
// Redis, on the same fake clock, and requires the same snapshot after
// every operation. This is what proves that the script mirrors the Go
// state machine. Snapshot.Seq differs between the stores by design (a
// counter in memory, a number on the server's clock in Redis): each
// store's Seqs must instead order its own snapshots (see checkSeq).
func TestConformance(t *testing.T) {
	srv := redistest.Shared(t)
	policies := []struct {
		name string
		p    breaker.Policy
	}{
		{"consecutive", breaker.Policy{Threshold: 3, OpenTimeout: 50 * time.Millisecond, Probes: 1, SuccessThreshold: 1, ProbeLease: 20 * time.Millisecond}},
		{"consecutive, three probes, two to close", breaker.Policy{Threshold: 2, OpenTimeout: 30 * time.Millisecond, Probes: 3, SuccessThreshold: 2, ProbeLease: 5 * time.Millisecond}},
		{"rate", breaker.Policy{FailureRate: 0.5, MinCalls: 4, Buckets: 5, BucketWidth: 10 * time.Millisecond, OpenTimeout: 40 * time.Millisecond, Probes: 2, SuccessThreshold: 2, ProbeLease: 15 * time.Millisecond}},
		{"rate with slow calls", breaker.Policy{FailureRate: 0.75, SlowCallRate: 0.3, MinCalls: 3, Buckets: 3, BucketWidth: 7 * time.Millisecond, OpenTimeout: 25 * time.Millisecond, Probes: 1, SuccessThreshold: 1, ProbeLease: 10 * time.Millisecond}},
		{"rate, one bucket", breaker.Policy{FailureRate: 1, MinCalls: 1, Buckets: 1, BucketWidth: 20 * time.Millisecond, OpenTimeout: 10 * time.Millisecond, Probes: 2, SuccessThreshold: 1, ProbeLease: time.Hour}},
	}
	const seqs, ops = 8, 250
	for _, pc := range policies {
		t.Run(pc.name, func(t *testing.T) {
			for seed := range uint64(seqs) {
				t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
					synctest.Test(t, func(t *testing.T) {
						conform(t, srv, pc.p, seed, ops)
					})
				})
			}
		})
	}
}

func conform(t *testing.T, srv *redistest.Server, p breaker.Policy, seed uint64, ops int) {
	client := redis.NewClient(srv.Options())
	defer client.Close()
	mem := breaker.NewMemoryStore()
	base := time.Now() // the same fake instant as mem's origin
	rs, err := NewBreakerStore(BreakerStoreConfig{Client: client, Name: fmt.Sprintf("%s-%d-%d", t.Name(), seed, time.Now().UnixNano()), Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Bind(p); err != nil {
		t.Fatal(err)
	}
	if err := mem.Bind(p); err != nil {
		t.Fatal(err)
	}
	rs.now = func() int64 { return time.Since(base).Microseconds() }
	defer rs.Reset(context.Background())

	r := rand.New(rand.NewPCG(seed, 6))
	ctx := context.Background()
	var last, lastMem breaker.Snapshot
	var trace []string
	for i := range ops {
		slept := false
		if r.IntN(4) == 0 {
			// Advance time by a whole number of microseconds, the
			// resolution of the Redis clock.
			d := time.Duration(r.IntN(int(p.OpenTimeout/time.Microsecond)/2+1)) * time.Microsecond
			if p.BucketWidth > 0 && r.IntN(3) == 0 {
				// Whole buckets, so that counts land on bucket edges.
				d = p.BucketWidth * time.Duration(1+r.IntN(p.Buckets+1))
			}
			time.Sleep(d)
			slept = d > 0
			trace = append(trace, "sleep "+d.String())
		}
		op := randomOp(r, last)
		trace = append(trace, fmt.Sprintf("%+v", op))
		want, err := mem.Update(ctx, op)
		if err != nil {
			t.Fatal(err)
		}
		got, err := rs.Update(ctx, op)
		if err != nil {
			t.Fatalf("op %d: %v", i, err)
		}
		if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(breaker.Snapshot{}, "Seq")); diff != "" {
			t.Fatalf("op %d %+v: snapshot (-memory +redis):\n%s\nops so far:\n%v", i, op, diff, trace)
		}
		if i > 0 {
			checkSeq(t, "memory", i, lastMem, want, slept)
			checkSeq(t, "redis", i, last, got, slept)
		}
		last, lastMem = got, want
	}
}

// checkSeq checks the Store contract's order between two consecutive
// snapshots of one store: Seq never goes back, and it grows when the
// stored state visibly changed — a new generation, a probe slot taken or
// given back, a probe success, the consecutive count, or (with no time
// passing, which moves the window by itself) any count.
func checkSeq(t *testing.T, store string, i int, prev, cur breaker.Snapshot, slept bool) {
	t.Helper()
	changed := cur.Gen != prev.Gen ||
		cur.Counts.Probes != prev.Counts.Probes ||
		cur.Counts.ProbeSuccesses != prev.Counts.ProbeSuccesses ||
		cur.Counts.ConsecutiveFailures != prev.Counts.ConsecutiveFailures ||
		(!slept && cur.Counts != prev.Counts)
	switch {
	case cur.Seq < prev.Seq:
		t.Fatalf("op %d: %s: Seq went back from %d to %d", i, store, prev.Seq, cur.Seq)
	case changed && cur.Seq == prev.Seq:
		t.Fatalf("op %d: %s: the state changed (%+v -> %+v) but Seq stayed %d", i, store, prev, cur, cur.Seq)
	}
}

// randomOp returns an operation of any kind, mostly for the current
// generation, sometimes late (an older generation) or malformed in ways
// the contract allows (a probe result outside half-open).
func randomOp(r *rand.Rand, last breaker.Snapshot) breaker.Op {
	gen := last.Gen
	if gen > 1 && r.IntN(8) == 0 {
		gen -= uint64(1 + r.IntN(int(gen-1)))
	}
	switch k := r.IntN(20); {
	case k < 4:
		return breaker.Op{Kind: breaker.OpAcquire}
	case k < 5:
		return breaker.Op{Kind: breaker.OpSync}
	case k < 6:
		states := []breaker.State{breaker.Closed, breaker.ForcedOpen, breaker.ForcedClosed, breaker.Closed, breaker.Closed}
		return breaker.Op{Kind: breaker.OpForce, State: states[r.IntN(len(states))]}
	case k < 11 && last.State == breaker.HalfOpen:
		op := breaker.Op{Kind: breaker.OpResult, Gen: gen, Probe: true}
		switch r.IntN(3) {
		case 0:
			op.Successes = 1
		case 1:
			op.Failures = 1
			if r.IntN(2) == 0 {
				op.OpenFor = time.Duration(1+r.IntN(30000)) * time.Microsecond
			}
		default:
			op.Ignored = 1
		}
		return op
	}
	op := breaker.Op{Kind: breaker.OpResult, Gen: gen}
	switch r.IntN(4) {
	case 0:
		op.Successes = 1 + r.IntN(3) // a batch, as rate mode sends
	case 1, 2:
		op.Failures = 1
		if r.IntN(4) == 0 {
			op.OpenFor = time.Duration(1+r.IntN(30000)) * time.Microsecond
		}
	default:
		op.Ignored = 1
	}
	if r.IntN(3) == 0 {
		op.Slow = 1
	}
	return op
}
