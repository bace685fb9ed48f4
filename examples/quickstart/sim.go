package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// errUnavailable is what the simulated downstream returns when it fails.
var errUnavailable = errors.New("inventory: 503 service unavailable")

// downstream simulates a flaky inventory service: seeded randomness, a base
// failure rate, latency with occasional spikes, the odd panic, and an outage
// window during which every call fails.
type downstream struct {
	start       time.Time
	outageFrom  time.Duration // the outage starts this long after start
	outageUntil time.Duration // and ends here
	failRate    float64
	panicRate   float64
	spikeRate   float64

	mu     sync.Mutex // guards rng and the counts
	rng    *rand.Rand
	calls  int
	panics int
}

func newDownstream(seed uint64, outageFrom, outageUntil time.Duration) *downstream {
	return &downstream{
		start:       time.Now(),
		outageFrom:  outageFrom,
		outageUntil: outageUntil,
		failRate:    0.08,
		panicRate:   0.005,
		spikeRate:   0.03,
		rng:         rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
	}
}

// draw returns the fate of one call: its latency, whether it fails and
// whether it panics.
func (d *downstream) draw() (latency time.Duration, fail, panics bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	latency = time.Duration(1+d.rng.IntN(4)) * time.Millisecond
	if d.rng.Float64() < d.spikeRate {
		latency = 60 * time.Millisecond
	}
	since := time.Since(d.start)
	outage := since >= d.outageFrom && since < d.outageUntil
	fail = outage || d.rng.Float64() < d.failRate
	panics = !fail && d.rng.Float64() < d.panicRate
	if panics {
		d.panics++
	}
	return latency, fail, panics
}

// Counts reports how many calls reached the downstream and how many of
// them panicked.
func (d *downstream) Counts() (calls, panics int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls, d.panics
}

type stock struct {
	SKU      string
	Quantity int
	Price    int // in cents
}

// Lookup fetches the stock of one SKU. It honours its context.
func (d *downstream) Lookup(ctx context.Context, sku string) (stock, error) {
	latency, fail, panics := d.draw()
	t := time.NewTimer(latency)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return stock{}, ctx.Err()
	case <-t.C:
	}
	if panics {
		panic(fmt.Sprintf("inventory: nil map write for %s", sku))
	}
	if fail {
		return stock{}, errUnavailable
	}
	n := 0
	for _, c := range sku {
		n += int(c)
	}
	return stock{SKU: sku, Quantity: n % 17, Price: 100 + n%900}, nil
}
