package breaker_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/brace-go/brace/middleware/breaker"
)

// FuzzConfig checks the validator: any Config yields a working breaker or
// an error that starts with "breaker: " and names the field at fault, never
// a panic. A working breaker opens after enough failures, rejects while
// open, and admits exactly HalfOpenProbes probes once its open time has
// passed.
func FuzzConfig(f *testing.F) {
	f.Add(0, 0.0, int64(0), 0, 0, int64(0), 0.0, int64(0), 0, 0, int64(0))
	f.Add(3, 0.0, int64(0), 0, 0, int64(0), 0.0, int64(time.Second), 2, 1, int64(0))
	f.Add(0, 0.5, int64(10*time.Second), 10, 5, int64(time.Second), 0.5, int64(0), 0, 0, int64(0))
	f.Add(-1, 0.0, int64(0), 0, 0, int64(0), 0.0, int64(0), 0, 0, int64(0))
	f.Add(3, 0.5, int64(0), 0, 0, int64(0), 0.0, int64(0), 0, 0, int64(0))
	f.Add(0, math.NaN(), int64(0), 0, 0, int64(0), 0.0, int64(0), 0, 0, int64(0))
	f.Add(0, 1.5, int64(0), 0, 0, int64(0), 0.0, int64(0), 0, 0, int64(0))
	f.Add(0, 0.5, int64(time.Millisecond), 1000, 0, int64(0), 0.0, int64(0), 0, 0, int64(0))
	f.Add(0, 0.5, int64(0), 1001, 0, int64(0), 0.0, int64(0), 0, 0, int64(0))
	f.Add(0, 0.0, int64(0), 0, 0, int64(time.Second), 0.0, int64(0), 0, 0, int64(0))
	f.Add(0, 0.5, int64(0), 0, 0, int64(0), 0.5, int64(0), 0, 0, int64(0))
	f.Add(0, 0.0, int64(0), 0, 0, int64(0), 0.0, int64(-1), -1, 0, int64(0))
	f.Add(0, 0.0, int64(0), 0, 0, int64(0), 0.0, int64(0), 2, 3, int64(-1))
	f.Fuzz(func(t *testing.T, threshold int, rate float64, window int64, buckets, minCalls int,
		slowDur int64, slowRate float64, open int64, probes, successes int, storeSync int64) {
		cfg := breaker.Config{
			Threshold: threshold, FailureRate: rate, Window: time.Duration(window), Buckets: buckets,
			MinCalls: minCalls, SlowCallDuration: time.Duration(slowDur), SlowCallRate: slowRate,
			OpenTimeout: time.Duration(open), HalfOpenProbes: probes, SuccessThreshold: successes,
			StoreSync: time.Duration(storeSync),
		}
		synctest.Test(t, func(t *testing.T) {
			b, err := breaker.New(cfg)
			if err != nil {
				if b != nil {
					t.Fatalf("%+v: New returned a breaker and the error %v", cfg, err)
				}
				wantFieldError(t, err, "breaker: ", "Threshold", "FailureRate", "Window", "Buckets", "MinCalls",
					"SlowCallDuration", "SlowCallRate", "OpenTimeout", "HalfOpenProbes", "SuccessThreshold", "StoreSync")
				return
			}
			// Enough failures to open it in either mode (defaults: 5 in a
			// row, or 10 calls in the window); skip configurations that
			// need more.
			need := cmpOr(threshold, 5)
			if rate > 0 {
				need = cmpOr(minCalls, 10)
			}
			if need > 100 {
				return
			}
			ctx := context.Background()
			errDown := errors.New("down")
			for i := range need {
				tk, err := b.Acquire(ctx)
				if err != nil {
					t.Fatalf("%+v: failure %d rejected before the breaker could open: %v", cfg, i+1, err)
				}
				tk.Done(errDown)
			}
			if got := b.State(); got != breaker.Open {
				t.Fatalf("%+v: after %d failures the state is %v, want open", cfg, need, got)
			}
			if _, err := b.Acquire(ctx); !errors.Is(err, breaker.ErrOpen) {
				t.Fatalf("%+v: open breaker admitted a call (err %v)", cfg, err)
			}
			openFor := time.Duration(cmpOr(open, int64(30*time.Second)))
			if openFor > 1000*time.Hour {
				return
			}
			time.Sleep(openFor)
			want := cmpOr(probes, 1)
			if want > 100 {
				return
			}
			admitted := 0
			for range want + 1 {
				if _, err := b.Acquire(ctx); err == nil {
					admitted++
				}
			}
			if admitted != want {
				t.Fatalf("%+v: half-open breaker admitted %d probes, want %d", cfg, admitted, want)
			}
		})
	})
}

func cmpOr[T int | int64](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// wantFieldError fails unless err's text starts with prefix and names one
// of fields.
func wantFieldError(t *testing.T, err error, prefix string, fields ...string) {
	t.Helper()
	msg := err.Error()
	if !strings.HasPrefix(msg, prefix) {
		t.Fatalf("error %q does not start with %q", msg, prefix)
	}
	for _, f := range fields {
		if strings.Contains(msg, f) {
			return
		}
	}
	t.Fatalf("error %q names none of the fields %v", msg, fields)
}

// refModel is a plain reference implementation of the breaker's rules
// (docs/breaker.md), in both modes, with any number of probes and calls
// outstanding. It keeps every result of the current closed generation and
// counts the window by scanning them, where the breaker keeps a ring of
// buckets updated partly without a lock.
type refModel struct {
	threshold        int // consecutive mode when > 0
	rate             float64
	minCalls         int
	buckets          int
	width            time.Duration
	open             time.Duration
	probes, succNeed int
	lease            time.Duration // ProbeTimeout
	base             time.Time

	state          breaker.State
	gen            uint64
	until          time.Time
	consec         int
	inHalf, halfOK int
	leaseUntil     time.Time
	results        []refResult // rate mode, closed: this generation's results
}

type refResult struct {
	bucket  int64
	failure bool
}

type refTicket struct {
	gen   uint64
	probe bool
}

func (m *refModel) set(s breaker.State) {
	m.state, m.gen = s, m.gen+1
	m.consec, m.inHalf, m.halfOK, m.results = 0, 0, 0, nil
}

// sync applies time: an open breaker whose time has passed is half-open.
func (m *refModel) sync(now time.Time) {
	if m.state == breaker.Open && !now.Before(m.until) {
		m.set(breaker.HalfOpen)
	}
}

func (m *refModel) allow(now time.Time) (refTicket, bool) {
	m.sync(now)
	switch {
	case m.state == breaker.Closed:
		return refTicket{gen: m.gen}, true
	case m.state == breaker.HalfOpen:
		// The probe lease rule: every slot taken and the last lease run
		// out: the slots of probes that have not succeeded are free.
		if m.inHalf >= m.probes && !now.Before(m.leaseUntil) {
			m.inHalf = m.halfOK
		}
		if m.inHalf < m.probes {
			m.inHalf++
			m.leaseUntil = now.Add(m.lease)
			return refTicket{gen: m.gen, probe: true}, true
		}
	}
	return refTicket{}, false
}

func (m *refModel) trip(now time.Time) {
	m.set(breaker.Open)
	m.until = now.Add(m.open)
}

func (m *refModel) window(now time.Time) (succ, fail int) {
	cur := int64(now.Sub(m.base) / m.width)
	for _, r := range m.results {
		if r.bucket > cur-int64(m.buckets) && r.bucket <= cur {
			if r.failure {
				fail++
			} else {
				succ++
			}
		}
	}
	return succ, fail
}

func (m *refModel) record(now time.Time, t refTicket, o breaker.Outcome) {
	m.sync(now)
	if t.gen != m.gen {
		return // admitted under an earlier state: not counted
	}
	switch m.state {
	case breaker.HalfOpen:
		switch {
		case !t.probe:
		case o == breaker.Failure:
			m.trip(now)
		case o == breaker.Success:
			if m.halfOK++; m.halfOK >= m.succNeed {
				m.set(breaker.Closed)
			}
		default:
			if m.inHalf > m.halfOK {
				m.inHalf-- // an ignored probe gives its slot back
			}
		}
	case breaker.Closed:
		if m.threshold > 0 {
			switch o {
			case breaker.Success:
				m.consec = 0
			case breaker.Failure:
				if m.consec++; m.consec >= m.threshold {
					m.trip(now)
				}
			}
			return
		}
		if o == breaker.Ignore {
			return
		}
		m.results = append(m.results, refResult{bucket: int64(now.Sub(m.base) / m.width), failure: o == breaker.Failure})
		if o != breaker.Failure {
			return
		}
		succ, fail := m.window(now)
		if calls := succ + fail; calls >= m.minCalls && float64(fail) >= m.rate*float64(calls) {
			m.trip(now)
		}
	}
}

// FuzzAgainstModel drives a breaker and refModel with the same program of
// admissions, results (in any order, with several calls outstanding) and
// time steps, and compares state and counts after every step. The first
// byte picks consecutive or rate mode; the parameters are folded into
// valid ranges, so every input tests the state machine.
func FuzzAgainstModel(f *testing.F) {
	f.Add(uint8(0), uint8(2), uint8(0), uint8(0), uint16(10), uint8(0), uint8(0), uint8(0), uint8(0),
		[]byte{0, 1, 5, 0, 1, 5, 0, 1, 5, 2, 40, 0, 0, 3, 7})
	f.Add(uint8(1), uint8(0), uint8(2), uint8(1), uint16(20), uint8(49), uint8(3), uint8(4), uint8(9),
		[]byte{0, 0, 0, 0, 3, 3, 7, 11, 2, 200, 0, 0, 0, 1, 0, 0, 1, 1, 4})
	f.Add(uint8(0), uint8(0), uint8(3), uint8(2), uint16(1), uint8(0), uint8(0), uint8(0), uint8(0),
		[]byte{0, 1, 1, 2, 4, 0, 0, 0, 0, 1, 0, 2, 1, 1, 0, 0, 1, 2, 0})
	f.Add(uint8(1), uint8(0), uint8(0), uint8(0), uint16(5), uint8(99), uint8(0), uint8(9), uint8(0),
		[]byte{0, 0, 3, 2, 255, 0, 7, 2, 255, 0, 3, 0, 3})
	f.Fuzz(func(t *testing.T, mode, threshold, probes, succ uint8, openMs uint16, rate, minCalls, buckets, widthMs uint8, prog []byte) {
		if len(prog) > 2000 {
			return
		}
		m := refModel{
			probes: 1 + int(probes%4),
			open:   time.Duration(1+int(openMs%500)) * time.Millisecond,
			// Leases from 1ms to 1s, so that lost probes are seen both
			// expiring and not.
			lease: time.Duration(1+int(openMs/500)%1000) * time.Millisecond,
		}
		m.succNeed = 1 + int(succ)%m.probes
		cfg := breaker.Config{OpenTimeout: m.open, HalfOpenProbes: m.probes, SuccessThreshold: m.succNeed, ProbeTimeout: m.lease}
		if mode%2 == 0 {
			m.threshold = 1 + int(threshold%8)
			cfg.Threshold = m.threshold
		} else {
			m.rate = float64(1+int(rate%100)) / 100
			m.minCalls = 1 + int(minCalls%10)
			m.buckets = 1 + int(buckets%10)
			m.width = time.Duration(1+int(widthMs%50)) * time.Millisecond
			cfg.FailureRate, cfg.MinCalls, cfg.Buckets = m.rate, m.minCalls, m.buckets
			cfg.Window = time.Duration(m.buckets) * m.width
		}
		synctest.Test(t, func(t *testing.T) {
			b, err := breaker.New(cfg)
			if err != nil {
				t.Fatalf("%+v: %v", cfg, err)
			}
			m.base, m.gen = time.Now(), 1
			ctx := context.Background()
			type pair struct {
				real breaker.Permit
				ref  refTicket
			}
			var out []pair // outstanding calls
			next := func(i *int) byte {
				if *i >= len(prog) {
					return 0
				}
				*i++
				return prog[*i-1]
			}
			for i := 0; i < len(prog); {
				op := next(&i)
				now := time.Now()
				switch op % 4 {
				case 0: // admit a call
					tk, err := b.Acquire(ctx)
					rt, ok := m.allow(now)
					if (err == nil) != ok {
						t.Fatalf("%+v step %d: admitted %v, model %v (model %v)", cfg, i, err == nil, ok, m.state)
					}
					if err != nil && !errors.Is(err, breaker.ErrOpen) {
						t.Fatalf("%+v step %d: rejection %v does not match ErrOpen", cfg, i, err)
					}
					if ok && len(out) < 32 {
						out = append(out, pair{tk, rt})
					} else if ok {
						tk.Done(errOf(breaker.Ignore))
						m.record(now, rt, breaker.Ignore)
					}
				case 1, 3: // end an outstanding call
					if len(out) == 0 {
						continue
					}
					k := 0
					if op%4 == 1 {
						k = int(next(&i)) % len(out)
					}
					o := breaker.Outcome((op >> 2) % 3)
					out[k].real.Done(errOf(o))
					m.record(now, out[k].ref, o)
					out = append(out[:k], out[k+1:]...)
				case 2: // let time pass
					time.Sleep(time.Duration(next(&i)) * 250 * time.Microsecond)
				}
				now = time.Now()
				m.sync(now)
				if got := b.State(); got != m.state {
					t.Fatalf("%+v step %d (op %d): state %v, model %v", cfg, i, op, got, m.state)
				}
				c := counts(b)
				switch {
				case m.state == breaker.HalfOpen && (c.Probes != m.inHalf || c.ProbeSuccesses != m.halfOK):
					t.Fatalf("%+v step %d: probes %d (%d succeeded), model %d (%d)", cfg, i, c.Probes, c.ProbeSuccesses, m.inHalf, m.halfOK)
				case m.state == breaker.Closed && m.threshold > 0 && c.ConsecutiveFailures != m.consec:
					t.Fatalf("%+v step %d: consecutive failures %d, model %d", cfg, i, c.ConsecutiveFailures, m.consec)
				case m.state == breaker.Closed && m.threshold == 0:
					if succ, fail := m.window(now); c.Successes != succ || c.Failures != fail {
						t.Fatalf("%+v step %d: window %d successes %d failures, model %d %d", cfg, i, c.Successes, c.Failures, succ, fail)
					}
				}
			}
			for _, p := range out {
				p.real.Done(errOf(breaker.Ignore))
			}
		})
	})
}

// errOf returns an error that DefaultClassify maps to o.
func errOf(o breaker.Outcome) error {
	switch o {
	case breaker.Success:
		return nil
	case breaker.Failure:
		return errBoom
	}
	return context.Canceled
}
