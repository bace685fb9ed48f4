package breaker

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/brace-go/brace/internal/xtime"
)

// State is the state of a breaker.
type State uint8

const (
	// Closed admits every call and counts the results.
	Closed State = iota
	// Open rejects every call until its open delay has passed.
	Open
	// HalfOpen admits a fixed number of probe calls; their results decide
	// whether the breaker closes or opens again.
	HalfOpen
	// ForcedOpen rejects every call until the breaker is reset or forced
	// closed. Time does not move it.
	ForcedOpen
	// ForcedClosed admits every call and never trips, until the breaker is
	// reset or forced open. Results are still counted.
	ForcedClosed
)

// String returns "closed", "open", "half-open", "forced-open" or
// "forced-closed".
func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half-open"
	case ForcedOpen:
		return "forced-open"
	case ForcedClosed:
		return "forced-closed"
	}
	return "invalid"
}

// Outcome is what a call's result means for the breaker.
type Outcome uint8

const (
	// Success counts as a healthy call.
	Success Outcome = iota
	// Failure counts against the downstream.
	Failure
	// Ignore counts as nothing; an ignored probe gives its slot back.
	Ignore
)

// String returns "success", "failure" or "ignore".
func (o Outcome) String() string {
	switch o {
	case Success:
		return "success"
	case Failure:
		return "failure"
	case Ignore:
		return "ignore"
	}
	return "invalid"
}

// Counts are the counts of one generation of a breaker: they start at zero
// whenever the state changes. In rate mode, Successes, Failures and Slow
// cover only the rolling window.
type Counts struct {
	Successes           int // successful calls; in consecutive mode only those that ended a failure streak (the fast path counts nothing)
	Failures            int // failed calls
	Slow                int // calls slower than SlowCallDuration (successes and failures)
	ConsecutiveFailures int // failures since the last success (consecutive mode)
	Probes              int // half-open: probe slots taken
	ProbeSuccesses      int // half-open: probes that succeeded
}

// Policy holds the parameters of the state machine. The breaker derives it
// from its [Config] and gives it to its [Store] once, with [Store.Bind],
// before the first [Store.Update], so a store needs no configuration of
// its own and can apply the same rules atomically. All breakers sharing a
// store must use the same policy: a store refuses a different one.
type Policy struct {
	// Threshold > 0 selects consecutive mode: the breaker opens after
	// Threshold consecutive failures. Zero selects rate mode.
	Threshold int
	// Rate mode: the breaker opens when at least MinCalls results are in
	// the window and the failure rate reaches FailureRate or the slow-call
	// rate reaches SlowCallRate (0 = off). The window is Buckets buckets
	// of BucketWidth each.
	FailureRate  float64
	SlowCallRate float64
	MinCalls     int
	Buckets      int
	BucketWidth  time.Duration
	// OpenTimeout is how long the breaker stays open when the result that
	// opened it did not ask for another delay ([Op.OpenFor]).
	OpenTimeout time.Duration
	// Probes is the number of calls admitted in half-open state;
	// SuccessThreshold of them must succeed to close the breaker.
	Probes           int
	SuccessThreshold int
	// ProbeLease is how long a half-open probe slot is held for a probe
	// whose result has not arrived. Once the lease of the last slot taken
	// has run out and every slot is taken, the slots of probes that have
	// not succeeded are free again, so a probe whose result is lost (a
	// crashed process, a lost reply) cannot keep the breaker half-open
	// for ever. See the probe lease rule in docs/breaker.md.
	ProbeLease time.Duration
}

// OpKind is the kind of an [Op].
type OpKind uint8

const (
	// OpSync only applies time: an open breaker whose delay has passed
	// becomes half-open, and the rate window rolls.
	OpSync OpKind = iota
	// OpAcquire asks to admit one call. In closed and forced-closed state
	// it is admitted; in half-open state it takes a probe slot if one is
	// free; otherwise it is rejected.
	OpAcquire
	// OpResult records results of calls admitted under generation Gen.
	OpResult
	// OpForce moves the breaker to Op.State (Closed resets it).
	OpForce
)

// Op is one atomic operation on a breaker's shared state. See the Store
// contract in docs/breaker.md.
type Op struct {
	Kind OpKind
	// Gen is the generation the results belong to (OpResult).
	Gen uint64
	// Probe marks the result of a half-open probe (OpResult; then exactly
	// one of Successes, Failures, Ignored is 1).
	Probe bool
	// Successes, Failures, Ignored and Slow are the results to record
	// (OpResult). Slow calls are also counted as successes or failures.
	// A batch may carry several results in rate mode; in consecutive mode
	// successes are applied before failures.
	Successes, Failures, Ignored, Slow int
	// OpenFor, when positive, replaces Policy.OpenTimeout if this
	// operation opens the breaker (OpResult).
	OpenFor time.Duration
	// State is the target of OpForce: Closed, ForcedOpen or ForcedClosed.
	State State
}

// Snapshot is the shared state after an operation, as a [Store] returns it.
type Snapshot struct {
	State State
	// Gen is the generation: it starts at 1 and grows by one on every state
	// change, so results can be tied to the state they were admitted in.
	Gen uint64
	// Counts of the current generation.
	Counts Counts
	// RetryAfter, in Open state, is how long until probes may start,
	// measured on the store's clock at the time of the operation.
	RetryAfter time.Duration
	// Admitted and Probe answer an OpAcquire: whether the call may run
	// and whether it took a half-open probe slot.
	Admitted, Probe bool
	// Seq orders the snapshots of one store. If the store applied
	// operation A before operation B, A's Seq is at most B's, and smaller
	// when B (or an operation between them) changed the stored state; so
	// equal Seqs show the same stored state. Seq keeps growing across
	// whatever happens to the stored state — expiry, deletion, a restart —
	// so a breaker whose replies arrive out of order can tell which is
	// newer. A store that cannot order its snapshots leaves Seq zero, and
	// the breaker then adopts every snapshot it receives.
	Seq uint64
}

// transition is one state change made by step, with the counts as they
// were when it happened.
type transition struct {
	from, to State
	gen      uint64 // generation entered
	counts   Counts
}

// bucket is one slice of the rolling window. Its fields are atomic so that
// a breaker's own fast path can add successes without the lock; step
// itself runs under its owner's lock.
type bucket struct {
	num              atomic.Int64 // bucket number (time / width) it holds counts for
	succ, fail, slow atomic.Int64
}

// noBucket marks a bucket that holds no counts.
const noBucket = math.MinInt64

// machine is the breaker state machine: the data a store holds and the one
// place the rules live. Its owner serializes calls to step (a mutex in
// memory, a Lua script in Redis). Times are nanoseconds on the owner's
// monotonic clock.
type machine struct {
	state   State
	gen     uint64
	until   int64 // Open: when probes may start
	probes  int   // HalfOpen: slots taken
	probeOK int   // HalfOpen: probe successes
	lease   int64 // HalfOpen: when the slots taken so far expire
	consec  int   // consecutive failures
	succ    int   // consecutive mode and forced states: counts of this generation
	fail    int
	win     []bucket // rate mode
	// stripes, when set (a local breaker in rate mode), hold more success
	// counts of the window's buckets, by bucket index, added lock-free by
	// the breaker's fast path (see Breaker.addSuccess): one slice per
	// stripe, so that goroutines on different CPUs add to different cache
	// lines. A bucket's count is its succ plus its entry in every stripe.
	stripes [][]atomic.Int64
	trans   [2]transition
	ntrans  int
}

func newMachine(p *Policy) machine {
	m := machine{state: Closed, gen: 1}
	if p.Threshold == 0 {
		m.win = make([]bucket, p.Buckets)
		for i := range m.win {
			m.win[i].num.Store(noBucket)
		}
	}
	return m
}

// stripeCount is the number of stripes of a striped count: of a local
// rate-mode breaker's success counts and of Stats().Rejected (a power of
// two).
const (
	stripeBits  = 3
	stripeCount = 1 << stripeBits
)

// addStripes gives m the success stripes of a local breaker in rate mode.
// Each stripe is padded by a cache line at both ends, so that no two share
// one.
func (m *machine) addStripes() {
	const pad = 8 // atomic.Int64s per 64-byte cache line
	m.stripes = make([][]atomic.Int64, stripeCount)
	for s := range m.stripes {
		m.stripes[s] = make([]atomic.Int64, len(m.win)+2*pad)[pad : pad+len(m.win)]
	}
}

// counts reports the counts of the current generation at time now.
func (m *machine) counts(p *Policy, now int64) Counts {
	c := Counts{ConsecutiveFailures: m.consec, Probes: m.probes, ProbeSuccesses: m.probeOK}
	if m.win != nil && m.state == Closed {
		n := now / int64(p.BucketWidth)
		for i := range m.win {
			b := &m.win[i]
			if num := b.num.Load(); num > n-int64(len(m.win)) && num <= n {
				c.Successes += int(b.succ.Load())
				for _, st := range m.stripes {
					c.Successes += int(st[i].Load())
				}
				c.Failures += int(b.fail.Load())
				c.Slow += int(b.slow.Load())
			}
		}
		return c
	}
	c.Successes, c.Failures = m.succ, m.fail
	return c
}

// bucketAt returns the window bucket for time now, clearing it first if it
// still holds an older bucket's counts.
func (m *machine) bucketAt(p *Policy, now int64) *bucket {
	n := now / int64(p.BucketWidth)
	i := n % int64(len(m.win))
	b := &m.win[i]
	if b.num.Load() != n {
		for _, st := range m.stripes {
			st[i].Store(0)
		}
		b.succ.Store(0)
		b.fail.Store(0)
		b.slow.Store(0)
		b.num.Store(n) // last: a lock-free adder that sees n sees cleared counts
	}
	return b
}

func (m *machine) setState(p *Policy, to State, now int64) {
	m.trans[m.ntrans] = transition{from: m.state, to: to, gen: m.gen + 1, counts: m.counts(p, now)}
	m.ntrans++
	m.state = to
	m.gen++
	m.probes, m.probeOK, m.consec, m.succ, m.fail, m.lease = 0, 0, 0, 0, 0, 0
	for i := range m.win {
		m.win[i].num.Store(noBucket)
	}
}

// step applies op to m at time now (the owner's clock) and returns the
// resulting snapshot. It is the whole state machine; see docs/breaker.md.
func (m *machine) step(p *Policy, op *Op, now int64) Snapshot {
	m.ntrans = 0
	if m.state == Open && now >= m.until {
		m.setState(p, HalfOpen, now)
	}
	var s Snapshot
	switch op.Kind {
	case OpAcquire:
		switch m.state {
		case Closed, ForcedClosed:
			s.Admitted = true
		case HalfOpen:
			// The probe lease rule: when every slot is taken and the
			// lease of the last one has run out, the probes that have
			// not succeeded are presumed lost and their slots are free.
			// A late result of such a probe still counts (same
			// generation).
			if m.probes >= p.Probes && now >= m.lease {
				m.probes = m.probeOK
			}
			if m.probes < p.Probes {
				m.probes++
				m.lease = xtime.Add(now, int64(p.ProbeLease))
				s.Admitted, s.Probe = true, true
			}
		}
	case OpResult:
		if op.Gen == m.gen {
			m.record(p, op, now)
		}
	case OpForce:
		switch op.State {
		case Closed, ForcedOpen, ForcedClosed:
			m.setState(p, op.State, now)
		}
	}
	s.State, s.Gen, s.Counts = m.state, m.gen, m.counts(p, now)
	if m.state == Open {
		s.RetryAfter = time.Duration(xtime.Add(m.until, -now))
	}
	return s
}

// record applies results of the current generation.
func (m *machine) record(p *Policy, op *Op, now int64) {
	switch m.state {
	case HalfOpen:
		if !op.Probe {
			return
		}
		switch {
		case op.Failures > 0:
			// Counted so that the transition's counts show the probe
			// failure that reopened the breaker; the new generation
			// starts from zero, so no snapshot ever shows it.
			m.fail += op.Failures
			m.open(p, op, now)
		case op.Successes > 0:
			m.probeOK++
			if m.probeOK >= p.SuccessThreshold {
				m.setState(p, Closed, now)
			}
		case op.Ignored > 0:
			// The slot goes back, unless the probe lease rule already
			// took it back (probes is never below the successes).
			if m.probes > m.probeOK {
				m.probes--
			}
		}
	case ForcedClosed:
		m.succ += op.Successes
		m.fail += op.Failures
	case Closed:
		if m.win == nil {
			m.succ += op.Successes
			m.fail += op.Failures
			if op.Successes > 0 {
				m.consec = 0
			}
			m.consec += op.Failures
			if m.consec >= p.Threshold {
				m.open(p, op, now)
			}
			return
		}
		b := m.bucketAt(p, now)
		b.succ.Add(int64(op.Successes))
		b.fail.Add(int64(op.Failures))
		b.slow.Add(int64(op.Slow))
		if op.Failures == 0 && op.Slow == 0 {
			return // only a failure or a slow call can trip
		}
		c := m.counts(p, now)
		calls := c.Successes + c.Failures
		if calls < p.MinCalls || calls == 0 {
			return
		}
		if float64(c.Failures) >= p.FailureRate*float64(calls) ||
			(p.SlowCallRate > 0 && float64(c.Slow) >= p.SlowCallRate*float64(calls)) {
			m.open(p, op, now)
		}
	}
}

func (m *machine) open(p *Policy, op *Op, now int64) {
	d := p.OpenTimeout
	if op.OpenFor > 0 {
		d = op.OpenFor
	}
	m.setState(p, Open, now)
	m.until = xtime.Add(now, int64(d)) // a huge delay stays huge
}
