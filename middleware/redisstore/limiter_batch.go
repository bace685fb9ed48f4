package redisstore

import (
	"context"
	"time"
)

// acquireBatched takes a slot of the process's block, growing the block by
// one round trip when every slot it holds is in use (one caller grows it
// for every caller waiting; a call waits for at most maxFillWaits other
// callers' round trips before it takes a lease of its own, and falls back
// to the local limit when the round trip it waited for failed).
func (l *Limiter) acquireBatched(ctx context.Context) (Permit, error) {
	b := &l.blk
	waits := 0
	for {
		now := mono()
		b.mu.Lock()
		if b.inUse < b.held && now < b.until {
			b.inUse++
			b.peak = max(b.peak, b.inUse)
			b.mu.Unlock()
			return Permit{l: l, b: true}, nil
		}
		if waits > 0 && b.lastFail {
			b.mu.Unlock()
			return l.acquireLocal(ctx)
		}
		if waits > 0 && b.refused {
			// The growth this call waited for was refused: the limit was
			// full as this call arrived, and it is refused with it.
			depth := b.depth
			b.mu.Unlock()
			return Permit{}, l.reject(ctx, &LimitError{InFlight: depth, Capacity: l.capacity})
		}
		if ch := b.filling; ch != nil && waits < maxFillWaits {
			b.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return Permit{}, ctx.Err()
			}
			waits++
			continue
		} else if ch != nil {
			// Waited for other callers' round trips enough: a lease of
			// its own, in one round trip.
			b.mu.Unlock()
			return l.acquireLease(ctx)
		}
		held := b.held
		if now >= b.until {
			held = 0 // the lease may have expired in Redis
		}
		want := min(max(held, b.inUse)+b.batch, l.capacity)
		ch := make(chan struct{})
		b.filling = ch
		b.mu.Unlock()
		sent := mono()
		got, depth, err := l.setBlock(ctx, want)
		b.mu.Lock()
		b.filling = nil
		close(ch)
		if err != nil {
			b.lastFail = true
			b.mu.Unlock()
			if ctx.Err() != nil {
				return Permit{}, ctx.Err()
			}
			return l.acquireLocal(ctx)
		}
		b.lastFail = false
		b.refused, b.depth = got <= b.inUse, depth
		b.held, b.until = got, sent+int64(l.lease)
		if got >= want {
			b.batch = min(b.batch*2, l.maxBatch)
		} else {
			b.batch = max(b.batch/2, 1)
		}
		l.startRenewal(b)
		if b.inUse < b.held {
			b.inUse++
			b.peak = max(b.peak, b.inUse)
			b.mu.Unlock()
			return Permit{l: l, b: true}, nil
		}
		b.mu.Unlock()
		return Permit{}, l.reject(ctx, &LimitError{InFlight: depth, Capacity: l.capacity})
	}
}

// setBlock asks Redis for a block of want slots: one round trip, bounded
// by Timeout. It returns the slots granted and the depth after.
func (l *Limiter) setBlock(ctx context.Context, want int64) (got, depth int64, err error) {
	rctx, cancel := context.WithTimeout(ctx, l.timeout)
	v, err := blockScript.run(rctx, l.client, []string{l.key, l.blocksKey, l.sizesKey}, l.id, want, l.capacity, micros(l.lease))
	cancel()
	if err != nil {
		err = l.errorf("block: %w", err)
		l.done(ctx, err)
		return 0, 0, err
	}
	l.done(ctx, nil)
	r, ok := v.([]any)
	if !ok || len(r) != 3 {
		err = l.errorf("%w: unexpected script reply %v", ErrCorrupt, v)
		l.report(ctx, err)
		return 0, 0, err
	}
	got, _ = r[0].(int64)
	depth, _ = r[1].(int64)
	if repaired, _ := r[2].(string); repaired != "" {
		l.report(ctx, l.errorf("%w: key %s: %s; repaired", ErrCorrupt, l.key, repaired))
	}
	return got, depth, nil
}

// doneBatched gives a slot back to the block. When the block holds more
// than twice its batch beyond the slots in use, it shrinks it to the slots
// in use plus one batch: the local view first (never more than Redis
// records), then Redis, in one round trip.
func (l *Limiter) doneBatched() {
	b := &l.blk
	b.mu.Lock()
	b.inUse--
	if b.filling != nil || b.held-b.inUse <= 2*b.batch || l.health.isDown() {
		b.mu.Unlock()
		return
	}
	want := b.inUse + b.batch
	b.held = want
	ch := make(chan struct{})
	b.filling = ch
	b.mu.Unlock()
	got, _, err := l.setBlock(context.Background(), want)
	b.mu.Lock()
	if err == nil {
		b.held = min(b.held, got)
	}
	b.filling = nil
	close(ch)
	b.mu.Unlock()
}

// startRenewal starts the block's renewal timer if it is not running.
// Called with b.mu held.
func (l *Limiter) startRenewal(b *block) {
	if b.timer != nil || b.held == 0 {
		return
	}
	b.timer = time.AfterFunc(l.lease/3, func() { l.renewBlock(b) })
}

// renewBlock runs every Lease/3 while the block holds slots: it renews the
// block at the slots in use at the peak since the last renewal plus one
// batch (shrinking it when the calls have slowed down), and releases it
// and stops when no slot was used in the period, or when the block's
// lease has run out while Redis failed.
func (l *Limiter) renewBlock(b *block) {
	b.mu.Lock()
	if b.filling != nil {
		// A fill or a shrink is under way; it renews the block.
		b.timer.Reset(l.lease / 3)
		b.mu.Unlock()
		return
	}
	var want int64
	if b.peak > 0 || b.inUse > 0 {
		want = min(max(b.peak, b.inUse)+b.batch, b.held)
	}
	b.held = min(b.held, want)
	b.peak = b.inUse
	ch := make(chan struct{})
	b.filling = ch
	b.mu.Unlock()
	sent := mono()
	ctx := context.Background()
	var got int64
	err := ErrStoreDown
	if !l.skip(ctx) {
		got, _, err = l.setBlock(ctx, want)
	}
	b.mu.Lock()
	b.filling = nil
	close(ch)
	if err == nil {
		b.held, b.until = min(b.held, got), sent+int64(l.lease)
	} else if mono() >= b.until {
		b.held = 0 // the lease has run out in Redis too
	}
	if b.held == 0 {
		b.timer = nil
	} else {
		b.timer.Reset(l.lease / 3)
	}
	b.mu.Unlock()
}
