package retry

import "sync/atomic"

// source is a seedable random source that is safe for concurrent use
// without a lock: each draw advances a shared counter by the golden-ratio
// increment and mixes the result with the SplitMix64 finaliser. The same
// seed yields the same sequence of draws.
type source struct{ state atomic.Uint64 }

func newSource(seed uint64) *source {
	s := new(source)
	s.state.Store(seed)
	return s
}

// float64 returns a uniform number in [0, 1).
func (s *source) float64() float64 {
	z := s.state.Add(0x9e3779b97f4a7c15)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return float64(z>>11) / (1 << 53)
}
