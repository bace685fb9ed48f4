// Package xrand is a small, seedable random source safe for concurrent use,
// shared by the concerns that jitter (retry, hedge, the test kit).
package xrand

import "sync/atomic"

// Source is a seedable random source that is safe for concurrent use
// without a lock: each draw advances a shared counter by the golden-ratio
// increment and mixes the result with the SplitMix64 finaliser. The same
// seed yields the same sequence of draws.
type Source struct{ state atomic.Uint64 }

// New returns a Source that starts from seed.
func New(seed uint64) *Source {
	s := new(Source)
	s.state.Store(seed)
	return s
}

// Float64 returns a uniform number in [0, 1).
func (s *Source) Float64() float64 {
	z := s.state.Add(0x9e3779b97f4a7c15)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return float64(z>>11) / (1 << 53)
}
