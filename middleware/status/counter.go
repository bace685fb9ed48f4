package status

import (
	"time"

	"github.com/brace-go/brace/middleware"
)

// The counts of the last minute are kept in buckets of bucketWidth: a
// count leaves the minute one bucket at a time, so "the last minute" is
// between 55 and 60 seconds long.
const (
	bucketWidth = 5 * time.Second
	buckets     = int64(time.Minute / bucketWidth)
)

// counter counts the events of one kind and reason of an instance.
type counter struct {
	kind   middleware.Kind
	reason string
	total  uint64
	n      [buckets]uint32
	at     [buckets]int64 // the bucket number each n[i] counts
}

// count adds one event of kind and reason at now. in.mu is held.
func (in *instance) count(kind middleware.Kind, reason string, now time.Time) {
	reason = clip(reason)
	var c *counter
	for i := range in.counters {
		if in.counters[i].kind == kind && in.counters[i].reason == reason {
			c = &in.counters[i]
			break
		}
	}
	if c == nil {
		if len(in.counters) >= maxCounters {
			in.overflow++
			return
		}
		in.counters = append(in.counters, counter{kind: kind, reason: reason})
		c = &in.counters[len(in.counters)-1]
	}
	c.total++
	b := now.UnixNano() / int64(bucketWidth)
	i := b % buckets
	if i < 0 {
		i += buckets
	}
	if c.at[i] != b {
		c.at[i], c.n[i] = b, 0
	}
	c.n[i]++
}

// lastMinute returns the events counted in the last minute before now.
func (c *counter) lastMinute(now time.Time) uint64 {
	cur := now.UnixNano() / int64(bucketWidth)
	var sum uint64
	for i := range c.n {
		if d := cur - c.at[i]; d >= 0 && d < buckets {
			sum += uint64(c.n[i])
		}
	}
	return sum
}
