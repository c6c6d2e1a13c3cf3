package target

import "sync"

// committer batches flushes for concurrent writers (group commit): a
// writer that finished its write calls sync, which returns once a flush
// that started after the call has completed. While one flush runs, the
// writers that arrive wait together for the next one, so N concurrent
// writes cost about two flushes, not N.
type committer struct {
	mu       sync.Mutex
	cond     sync.Cond
	started  uint64 // flushes started
	finished uint64 // flushes finished, in order
	running  bool
	waiting  int   // writers waiting for a flush to finish
	err      error // result of the last finished flush
}

// sync waits for a flush that starts after the call, running it itself
// when no flush is running, and returns that flush's error (or a later
// one's: a store's flush errors are sticky).
func (c *committer) sync(flush func() error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cond.L == nil {
		c.cond.L = &c.mu
	}
	want := c.started + 1 // the first flush to start from now on
	for c.finished < want {
		if c.running {
			c.waiting++
			c.cond.Wait()
			c.waiting--
			continue
		}
		c.running = true
		c.started++
		gen := c.started
		c.mu.Unlock()
		err := flush()
		c.mu.Lock()
		c.running = false
		c.finished, c.err = gen, err
		c.cond.Broadcast()
	}
	return c.err
}
