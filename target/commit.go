package target

import (
	"sync"
	"time"
)

// maxGather bounds how long a flush waits for the writes in progress to
// join it.
const maxGather = time.Millisecond

// committer batches flushes for concurrent writers (group commit): a
// writer calls begin before its write and sync after it; sync returns once
// a flush that started after the write has completed. The writer that
// starts a flush first waits (at most maxGather) for the writes in
// progress, so that they join it; writers that arrive while a flush runs
// wait together for the next one. N concurrent writes cost about one or
// two flushes, not N.
type committer struct {
	mu        sync.Mutex
	cond      sync.Cond
	writing   int           // writes between begin and sync
	started   uint64        // flushes started
	finished  uint64        // flushes finished, in order
	running   bool          // a flush is gathering or running
	waiting   int           // writers waiting for a flush to finish
	err       error         // result of the last finished flush
	gatherMax time.Duration // 0 means maxGather
	joined    int           // writers in sync since the last flush started: the next one's

	// The group-commit histogram: flushes by the writes they acknowledged
	// (buckets commitBounds), and the sum of those writes. The engine's
	// committer, which does not use sync, counts here too (observe).
	sizes [len(commitBounds) + 1]uint64
	sized uint64
}

func (c *committer) lock() {
	c.mu.Lock()
	if c.cond.L == nil {
		c.cond.L = &c.mu
	}
}

// begin announces a write that will call sync (or abort).
func (c *committer) begin() {
	c.lock()
	c.writing++
	c.mu.Unlock()
}

// abort withdraws a write announced with begin that failed.
func (c *committer) abort() {
	c.lock()
	c.writing--
	c.cond.Broadcast()
	c.mu.Unlock()
}

// sync waits for a flush that starts after the call, running it itself
// when no flush is running, and returns that flush's error (or a later
// one's: a store's flush errors are sticky).
func (c *committer) sync(flush func() error) error {
	c.lock()
	defer c.mu.Unlock()
	c.writing--
	c.joined++
	c.cond.Broadcast()    // a gathering leader may be waiting for us
	want := c.started + 1 // the first flush to start from now on
	for c.finished < want {
		if c.running {
			c.waiting++
			c.cond.Wait()
			c.waiting--
			continue
		}
		c.running = true
		c.gather()
		c.started++
		gen := c.started
		n := c.joined
		c.joined = 0
		c.mu.Unlock()
		err := flush()
		c.mu.Lock()
		c.observeLocked(n)
		c.running = false
		c.finished, c.err = gen, err
		c.cond.Broadcast()
	}
	return c.err
}

// gather waits, with c.mu held, until no write is in progress or
// maxGather has passed.
func (c *committer) gather() {
	if c.writing <= 0 {
		return
	}
	d := c.gatherMax
	if d == 0 {
		d = maxGather
	}
	deadline := time.Now().Add(d)
	t := time.AfterFunc(d, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	for c.writing > 0 && time.Now().Before(deadline) {
		c.cond.Wait()
	}
	t.Stop()
}

// observe counts a group commit that acknowledged n writes.
func (c *committer) observe(n int) {
	c.lock()
	c.observeLocked(n)
	c.mu.Unlock()
}

func (c *committer) observeLocked(n int) {
	v := uint64(max(n, 0))
	i := 0
	for i < len(commitBounds) && v > commitBounds[i] {
		i++
	}
	c.sizes[i]++
	c.sized += v
}

// commitSizes returns the group-commit histogram.
func (c *committer) commitSizes() Histogram {
	c.lock()
	defer c.mu.Unlock()
	h := Histogram{Bounds: commitFloats, Counts: make([]uint64, len(c.sizes)), Sum: float64(c.sized)}
	for i, n := range c.sizes {
		h.Counts[i] = n
		h.Count += n
	}
	return h
}
