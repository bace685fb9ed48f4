package dedup

import "time"

// cache is a bounded TTL cache. Every entry lives for the same TTL, so
// insertion order is expiry order: entries form a list from oldest to
// newest, expired entries are dropped from its head when a new one is
// stored, and a full cache drops its head, the entry closest to expiry.
// An expired entry that is looked up is dropped too. Nothing runs in the
// background. The cache is guarded by its table's mutex.
type cache[K comparable, Out any] struct {
	ttl        time.Duration
	max        int
	m          map[K]*entry[K, Out]
	head, tail *entry[K, Out] // oldest, newest
	size       *int           // the table's count of entries, for Stats
}

type entry[K comparable, Out any] struct {
	key        K
	out        Out
	err        error
	expires    time.Time
	prev, next *entry[K, Out]
}

// get returns the live entry for k, or nil.
func (c *cache[K, Out]) get(k K, now time.Time) *entry[K, Out] {
	e := c.m[k]
	if e == nil {
		return nil
	}
	if !now.Before(e.expires) {
		c.remove(e)
		return nil
	}
	return e
}

func (c *cache[K, Out]) put(k K, out Out, err error, now time.Time) {
	if old := c.m[k]; old != nil {
		c.remove(old)
	}
	for c.head != nil && !now.Before(c.head.expires) {
		c.remove(c.head)
	}
	if len(c.m) >= c.max {
		c.remove(c.head)
	}
	e := &entry[K, Out]{key: k, out: out, err: err, expires: now.Add(c.ttl), prev: c.tail}
	if c.tail != nil {
		c.tail.next = e
	} else {
		c.head = e
	}
	c.tail = e
	c.m[k] = e
	*c.size++
}

func (c *cache[K, Out]) remove(e *entry[K, Out]) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		c.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		c.tail = e.prev
	}
	e.prev, e.next = nil, nil
	delete(c.m, e.key)
	*c.size--
}
