package ratelimit

import (
	"math"
	"time"
)

// bucket is a token bucket with the semantics of golang.org/x/time/rate's
// Limiter (the same refill, reservation and cancellation arithmetic,
// ReserveN included), but without a lock of its own: the caller holds one,
// so that a refusal can compute its retry-after under the same lock that
// found the bucket empty, and so that several buckets (one per limit) can
// be checked and taken from atomically. The zero bucket is full once
// advanced. Tokens may be negative: a reservation made in wait mode, or a
// settlement that charged more than was taken, leaves a debt that refills
// before anything else is admitted.
type bucket struct {
	tokens    float64
	last      time.Time // when tokens was last brought up to date
	lastEvent time.Time // when the latest reservation's tokens are due
	started   bool      // tokens has been set; before that the bucket is full
}

// advance returns the tokens the bucket holds at t.
func (b *bucket) advance(t time.Time, s *limitSettings) float64 {
	if !b.started {
		return s.burst
	}
	last := b.last
	if t.Before(last) {
		last = t
	}
	tokens := b.tokens + t.Sub(last).Seconds()*s.rate
	if tokens > s.burst {
		tokens = s.burst
	}
	return tokens
}

// tolerance is the rounding error forgiven when n tokens are taken (a
// billionth of a token per token, at least a billionth): refilling for
// exactly the delay computed from the missing tokens must be enough
// (2.01 s at 100 per second refills 200.99999999999997 tokens).
func tolerance(n float64) float64 { return 1e-9 * max(1, n) }

// take takes n tokens at now; the caller has checked that they are there.
func (b *bucket) take(now time.Time, s *limitSettings, n float64) {
	b.tokens, b.last, b.started = b.advance(now, s)-n, now, true
	if b.lastEvent.Before(now) {
		b.lastEvent = now
	}
}

// reserve reserves n tokens at now, due after the returned wait, if that
// wait is at most maxWait and now+wait is not after deadline (when
// hasDeadline). Otherwise it changes nothing and returns the wait with ok
// false.
func (b *bucket) reserve(now time.Time, s *limitSettings, n float64, maxWait time.Duration, deadline time.Time, hasDeadline bool) (wait time.Duration, ok bool) {
	tokens := b.advance(now, s) - n
	if tokens < 0 {
		wait = durationFloor(-tokens / s.rate * float64(time.Second))
	}
	if wait > maxWait || (hasDeadline && now.Add(wait).After(deadline)) {
		return wait, false
	}
	b.tokens, b.last, b.started = tokens, now, true
	b.lastEvent = now.Add(wait)
	return wait, true
}

// cancel gives back, at now, the n tokens of a reservation due at due, as
// far as later reservations have not counted on them (x/time/rate's
// Reservation.CancelAt).
func (b *bucket) cancel(now, due time.Time, s *limitSettings, n float64) {
	if due.Before(now) {
		return
	}
	restore := n - b.lastEvent.Sub(due).Seconds()*s.rate
	if restore <= 0 {
		return
	}
	tokens := b.advance(now, s) + restore
	if tokens > s.burst {
		tokens = s.burst
	}
	b.tokens, b.last, b.started = tokens, now, true
	if due.Equal(b.lastEvent) {
		if prev := due.Add(-durationFloor(n / s.rate * float64(time.Second))); !prev.Before(now) {
			b.lastEvent = prev
		}
	}
}

// adjust charges delta more tokens at now (a settlement): a positive delta
// may leave the bucket in debt; a negative one refunds, never above the
// burst.
func (b *bucket) adjust(now time.Time, s *limitSettings, delta float64) {
	tokens := b.advance(now, s) - delta
	if tokens > s.burst {
		tokens = s.burst
	}
	last := now
	if b.started && b.last.After(now) {
		last = b.last // a reservation's time; keep it
	}
	b.tokens, b.last, b.started = tokens, last, true
}

// full reports whether the bucket holds its whole burst at now: it is then
// indistinguishable from a new one.
func (b *bucket) full(now time.Time, s *limitSettings) bool {
	return b.advance(now, s) >= s.burst
}

func durationCeil(ns float64) time.Duration {
	if ns >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(math.Ceil(ns))
}

func durationFloor(ns float64) time.Duration {
	if ns >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(ns)
}
