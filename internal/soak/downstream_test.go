package soak

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/brace-go/brace/middleware/retry"
)

// The downstream's errors.
var (
	errDown = errors.New("downstream: unavailable")   // retryable
	errBad  = errors.New("downstream: bad request")   // marked permanent
	errBoom = errors.New("downstream: panic in call") // the panic value
)

// fault is what the downstream does with one call.
type fault uint8

const (
	faultNone      fault = iota // answer after a latency
	faultError                  // fail with errDown after a latency
	faultPermanent              // fail with retry.Permanent(errBad) at once
	faultPanic                  // panic(errBoom)
	faultHang                   // block until the context ends
	faultStubborn               // answer after a short latency, ignoring the context
	numFaults
)

var faultNames = [numFaults]string{"none", "error", "permanent", "panic", "hang", "stubborn"}

// weather is the downstream's health for one period of fake time. The soak
// moves through healthy, degraded and outage periods so that the breaker
// opens, probes and closes many times.
type weather struct {
	name       string
	error      float64 // probabilities per call, checked in this order
	permanent  float64
	panic      float64
	hang       float64
	stubborn   float64
	maxLatency time.Duration // uniform in [0, maxLatency)
}

// maxStubborn bounds a stubborn call's latency. It is below the attempt
// timeout, so even a call that ignores its context ends within it.
const maxStubborn = 4 * time.Millisecond

var climates = []weather{
	{name: "healthy", error: 0.01, permanent: 0.005, panic: 0.005, hang: 0.005, stubborn: 0.05, maxLatency: 2 * time.Millisecond},
	{name: "degraded", error: 0.10, permanent: 0.01, panic: 0.02, hang: 0.03, stubborn: 0.10, maxLatency: 6 * time.Millisecond},
	{name: "outage", error: 0.90, permanent: 0.0, panic: 0.02, hang: 0.05, stubborn: 0.0, maxLatency: 8 * time.Millisecond},
}

// downstream is the fault-injecting service behind the chain. It counts
// what it injects and checks that the calls in flight never exceed the
// backpressure capacity.
type downstream struct {
	start    time.Time
	period   time.Duration
	seed     uint64
	fixed    *weather // if set, the weather at all times
	capacity int64
	v        *violations

	calls    atomic.Int64
	inFlight atomic.Int64
	maxIn    atomic.Int64
	injected [numFaults]atomic.Int64
	ok       atomic.Int64 // calls that returned a value
	cut      atomic.Int64 // latencies and hangs ended by the context
}

// climate returns the weather at time now. It depends only on the seed and
// the period number, so a run's weather is reproducible. Every fourth
// period, starting with the second, is an outage and every fourth,
// starting with the fourth, degraded, so that even a short run opens,
// probes and closes the breaker; the others are drawn at random.
func (d *downstream) climate(now time.Time) weather {
	if d.fixed != nil {
		return *d.fixed
	}
	n := uint64(now.Sub(d.start) / d.period)
	switch n % 4 {
	case 1:
		return climates[2]
	case 3:
		return climates[1]
	}
	r := rand.New(rand.NewPCG(d.seed, n))
	switch x := r.Float64(); {
	case x < 0.6:
		return climates[0]
	case x < 0.85:
		return climates[1]
	}
	return climates[2]
}

func pick(w weather) fault {
	x := rand.Float64()
	for _, f := range []struct {
		p float64
		f fault
	}{{w.error, faultError}, {w.permanent, faultPermanent}, {w.panic, faultPanic}, {w.hang, faultHang}, {w.stubborn, faultStubborn}} {
		if x < f.p {
			return f.f
		}
		x -= f.p
	}
	return faultNone
}

// lookup is the first pipeline stage: the downstream itself.
func (d *downstream) lookup(ctx context.Context, in request) (reply, error) {
	d.calls.Add(1)
	n := d.inFlight.Add(1)
	defer d.inFlight.Add(-1)
	for m := d.maxIn.Load(); n > m && !d.maxIn.CompareAndSwap(m, n); m = d.maxIn.Load() {
	}
	if n > d.capacity {
		d.v.addf("in flight at the downstream is %d, above the capacity %d", n, d.capacity)
	}

	w := d.climate(time.Now())
	f := pick(w)
	d.injected[f].Add(1)
	switch f {
	case faultPermanent:
		return reply{}, retry.Permanent(errBad)
	case faultPanic:
		panic(errBoom)
	case faultHang:
		<-ctx.Done()
		d.cut.Add(1)
		return reply{}, ctx.Err()
	case faultStubborn:
		time.Sleep(rand.N(maxStubborn))
		d.ok.Add(1)
		return reply{Key: in.Key, Value: in.Key * in.Key}, nil
	}
	if lat := rand.N(w.maxLatency); lat > 0 {
		t := time.NewTimer(lat)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			d.cut.Add(1)
			return reply{}, ctx.Err()
		}
	}
	if f == faultError {
		return reply{}, errDown
	}
	d.ok.Add(1)
	return reply{Key: in.Key, Value: in.Key * in.Key}, nil
}

// render is the second pipeline stage: a pure transformation whose result
// the callers check.
func render(_ context.Context, r reply) (reply, error) {
	r.Value++
	return r, nil
}

func want(key int) int { return key*key + 1 }
