package faults_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/brace-go/brace/middleware/breaker"
	"github.com/brace-go/brace/middleware/redisstore/internal/toxitest"
)

// TestProbeAdmissionReplyLost is issue 15 item 1: the reply to a half-open
// probe's admission is lost (the script ran in Redis and took the slot;
// the reply arrived after the store's Timeout), so the process that sent
// it admits its probe locally and records its result only locally. The
// slot in Redis is never given back by its holder: with HalfOpenProbes 1
// that slot, with 2 one of them (the other probe succeeds, but closing
// needs two successes). Before the fix, every process then rejected every
// call for ever (0 calls admitted in 6s, 4 of 4 runs). The slot is a lease
// on the server's clock: once the latency is gone, calls are admitted
// again, and the shared breaker closes, within ProbeTimeout.
func TestProbeAdmissionReplyLost(t *testing.T) {
	for _, probes := range []int{1, 2} {
		t.Run(fmt.Sprintf("probes=%d", probes), func(t *testing.T) { testProbeAdmissionReplyLost(t, probes) })
	}
}

func testProbeAdmissionReplyLost(t *testing.T, probes int) {
	const (
		openFor      = 100 * time.Millisecond
		probeLease   = time.Second            // breaker.Config.ProbeTimeout
		storeTimeout = 100 * time.Millisecond // as large as the default: a healthy result must not time out under load
		storeSync    = 20 * time.Millisecond
		// lost: replies arrive this late, long after the store's Timeout.
		lost = 300 * time.Millisecond
		// A slot's lease ends probeLease after it was taken; a healthy
		// process finds that out within one StoreSync. (If the reply of
		// the next probe's result were lost too, it would take another
		// lease: the store Timeout is large enough that it is not.)
		closeBound = probeLease + storeSync + slack
	)
	px := toxitest.Start(t)
	adm := admin(t, px)
	nm := name(t)
	cfg := procConfig{threshold: 1, openFor: openFor, probes: probes, probeLease: probeLease,
		storeSync: storeSync, timeout: storeTimeout}
	healthy := newProc(t, px.Server.Options(), nm, cfg) // bypasses the proxy
	ctx := context.Background()

	// One failure opens the shared breaker. (Polled: on a loaded machine
	// a store operation can overrun its Timeout, and the failure is then
	// recorded locally.)
	key := breakerKey(nm)
	if _, ok := toxitest.Eventually(recoveryBound, func() bool {
		if p, err := healthy.b.Acquire(ctx); err == nil {
			p.Done(errors.New("downstream failed"))
		}
		return hget(adm, key, "st") == "1"
	}); !ok {
		t.Fatalf("after failures with Threshold 1 the shared state is %q, want 1 (open)", hget(adm, key, "st"))
	}

	// Replies through the proxy now arrive after the store's Timeout.
	// Processes behind it ask the store for admission until one's script
	// has taken a half-open slot in Redis. Each is a new process, with a
	// fresh client and breaker, so none skips the store after a failure,
	// and each has a connection open before the latency starts: a new
	// connection's handshake would time out before any script is sent.
	var faulty []*proc
	for range 60 {
		f := newProc(t, px.Options(), nm, cfg)
		if err := f.client.Ping(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		faulty = append(faulty, f)
	}
	tox := px.Latency(t, toxitest.Downstream, lost, 0)
	var permits []breaker.Permit
	i := 0
	_, ok := toxitest.Eventually(openFor+3*time.Second, func() bool {
		if i < len(faulty) {
			if p, err := faulty[i].b.Acquire(ctx); err == nil {
				permits = append(permits, p) // admitted by its local fallback
			}
			i++
		}
		return hget(adm, key, "st") == "2" && hget(adm, key, "p") == "1"
	})
	if !ok {
		t.Fatalf("no half-open slot was taken by a lost reply after %d attempts: st=%q p=%q", i, hget(adm, key, "st"), hget(adm, key, "p"))
	}
	slotTaken := time.Now()
	tox.Remove(t)
	removed := time.Now()
	for i := range permits {
		permits[i].Done(nil) // recorded where it was admitted: locally
	}

	// The healthy process, and a new one behind the (now healthy) proxy,
	// must be admitted again and close the shared breaker.
	later := newProc(t, px.Options(), nm, cfg)
	admitted := 0
	took, ok := toxitest.Eventually(closeBound, func() bool {
		for _, pr := range []*proc{healthy, later} {
			if _, err := pr.call(ctx, "k"); err == nil {
				admitted++
			} else if !errors.Is(err, breaker.ErrOpen) {
				t.Errorf("call: %v, want success or breaker.ErrOpen", err)
			}
		}
		return hget(adm, key, "st") == "0"
	})
	t.Logf("HalfOpenProbes %d: a slot's reply was lost; shared breaker closed %v after the latency was removed (%v after the slot was seen taken), %d calls admitted meanwhile; ProbeTimeout %v",
		probes, took.Round(time.Millisecond), time.Since(slotTaken).Round(time.Millisecond), admitted, probeLease)
	if !ok {
		t.Fatalf("the shared breaker is still %q (probes taken %q, succeeded %q) %v after the latency was removed, want closed within ProbeTimeout (bound %v): a lost reply wedged it half-open",
			hget(adm, key, "st"), hget(adm, key, "p"), hget(adm, key, "k"), time.Since(removed).Round(time.Millisecond), closeBound)
	}
	for _, pr := range []*proc{healthy, later} {
		if _, err := pr.call(ctx, "after"); err != nil {
			t.Errorf("a call after the breaker closed: %v", err)
		}
	}
}
