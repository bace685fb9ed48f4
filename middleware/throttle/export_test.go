package throttle

import (
	"math"

	"github.com/brace-go/brace/middleware/priority"
)

// Cached returns the probability Acquire would use for level l, without
// refreshing it.
func (t *Throttler) Cached(l priority.Level) float64 {
	return math.Float64frombits(t.p[l.Index()].Load())
}
