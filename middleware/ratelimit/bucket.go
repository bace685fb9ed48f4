package ratelimit

import (
	"math"
	"time"
)

// bucket is a token bucket with the semantics of golang.org/x/time/rate's
// Limiter (the same refill, reservation and cancellation arithmetic), but
// without a lock of its own: the caller holds one, so that a refusal can
// compute its retry-after under the same lock that found the bucket empty.
// The zero bucket is full once advanced (last is zero: every token has
// refilled).
type bucket struct {
	tokens    float64
	last      time.Time // when tokens was last brought up to date
	lastEvent time.Time // when the latest reservation's token is due
	started   bool      // tokens has been set; before that the bucket is full
}

// advance returns the tokens the bucket holds at t.
func (b *bucket) advance(t time.Time, s *settings) float64 {
	if !b.started {
		return float64(s.burst)
	}
	last := b.last
	if t.Before(last) {
		last = t
	}
	tokens := b.tokens + t.Sub(last).Seconds()*s.rate
	if burst := float64(s.burst); tokens > burst {
		tokens = burst
	}
	return tokens
}

// take takes one token at now if there is one.
func (b *bucket) take(now time.Time, s *settings) bool {
	tokens := b.advance(now, s)
	if tokens < 1 {
		return false
	}
	b.tokens, b.last, b.started = tokens-1, now, true
	if b.lastEvent.Before(now) {
		b.lastEvent = now
	}
	return true
}

// delay returns how long from now until the bucket holds one whole token,
// rounded up to the nanosecond.
func (b *bucket) delay(now time.Time, s *settings) time.Duration {
	missing := 1 - b.advance(now, s)
	if missing <= 0 {
		return 0
	}
	return durationCeil(missing / s.rate * float64(time.Second))
}

// reserve reserves the next token at now, due after the returned wait,
// if that wait is at most maxWait and now+wait is not after deadline (when
// hasDeadline). Otherwise it changes nothing and returns the wait with ok
// false.
func (b *bucket) reserve(now time.Time, s *settings, maxWait time.Duration, deadline time.Time, hasDeadline bool) (wait time.Duration, ok bool) {
	tokens := b.advance(now, s) - 1
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

// cancel gives back, at now, the token of a reservation due at due, as
// far as later reservations have not counted on it (x/time/rate's
// Reservation.CancelAt).
func (b *bucket) cancel(now, due time.Time, s *settings) {
	if due.Before(now) {
		return
	}
	restore := 1 - b.lastEvent.Sub(due).Seconds()*s.rate
	if restore <= 0 {
		return
	}
	tokens := b.advance(now, s) + restore
	if burst := float64(s.burst); tokens > burst {
		tokens = burst
	}
	b.tokens, b.last, b.started = tokens, now, true
	if due.Equal(b.lastEvent) {
		if prev := due.Add(-durationFloor(1 / s.rate * float64(time.Second))); !prev.Before(now) {
			b.lastEvent = prev
		}
	}
}

// full reports whether the bucket holds its whole burst at now: it is then
// indistinguishable from a new one.
func (b *bucket) full(now time.Time, s *settings) bool {
	return b.advance(now, s) >= float64(s.burst)
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
