package breaker_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/middleware/breaker"
)

// model is a plain reference implementation of consecutive mode with one
// probe, written from the rules in docs/breaker.md.
type model struct {
	state  breaker.State
	consec int
	until  time.Time
}

func (m *model) allow(now time.Time) bool {
	if m.state == breaker.Open && !now.Before(m.until) {
		m.state = breaker.HalfOpen
	}
	return m.state == breaker.Closed
}

func (m *model) done(now time.Time, o breaker.Outcome, threshold int, open time.Duration) {
	switch {
	case m.state == breaker.HalfOpen && o == breaker.Failure:
		m.state, m.until = breaker.Open, now.Add(open)
	case m.state == breaker.HalfOpen && o == breaker.Success:
		m.state, m.consec = breaker.Closed, 0
	case m.state == breaker.Closed && o == breaker.Success:
		m.consec = 0
	case m.state == breaker.Closed && o == breaker.Failure:
		if m.consec++; m.consec >= threshold {
			m.state, m.until, m.consec = breaker.Open, now.Add(open), 0
		}
	}
}

// TestAgainstModel drives a breaker and the model with the same random
// outcomes and time steps and compares them after every step.
func TestAgainstModel(t *testing.T) {
	for seed := range uint64(50) {
		synctest.Test(t, func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 1))
			const threshold, open = 3, 10 * time.Second
			b := mustNew(t, breaker.Config{Threshold: threshold, OpenTimeout: open})
			var m model
			ctx := context.Background()
			for step := range 500 {
				time.Sleep(time.Duration(r.IntN(4000)) * time.Millisecond)
				now := time.Now()
				probe := m.state == breaker.Open && !now.Before(m.until) || m.state == breaker.HalfOpen
				wantAdmit := m.allow(now) || (probe && m.state == breaker.HalfOpen)
				tk, err := b.Acquire(ctx)
				if (err == nil) != wantAdmit {
					t.Fatalf("seed %d step %d: admitted %v, model %v (model state %v)", seed, step, err == nil, wantAdmit, m.state)
				}
				if err != nil {
					continue
				}
				o := breaker.Outcome(r.IntN(3))
				tk.Done(errOf(o))
				if o == breaker.Ignore && m.state == breaker.HalfOpen {
					// the slot goes back; the model stays half-open
				} else {
					m.done(now, o, threshold, open)
				}
				if got := b.State(); got != m.state && !(m.state == breaker.Open && got == breaker.HalfOpen && !time.Now().Before(m.until)) {
					t.Fatalf("seed %d step %d: state %v, model %v", seed, step, got, m.state)
				}
				if m.state == breaker.Closed {
					if got := counts(b).ConsecutiveFailures; got != m.consec {
						t.Fatalf("seed %d step %d: consecutive failures %d, model %d", seed, step, got, m.consec)
					}
				}
			}
		})
	}
}
