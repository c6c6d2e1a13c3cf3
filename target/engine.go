package target

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/mdlayher/packet"

	"github.com/aoetarget/aoetarget/aoe"
	"github.com/aoetarget/aoetarget/blockstore"
)

// minFrameBuf is the smallest frame buffer: room for MTU 9216 (the
// largest jumbo MTU in common use); a larger MTU at startup gets larger
// buffers.
const minFrameBuf = 9216 + aoe.EthernetHeaderLen

// jobBufLen is the size of the frame buffers at MTU mtu.
func jobBufLen(mtu int) int { return max(minFrameBuf, mtu+aoe.EthernetHeaderLen) }

// job is one frame buffer of the engine's pool and the request in it.
type job struct {
	req, resp []byte // each a whole frame buffer; data at byte 36 is page-aligned
	n         int    // length of the request in req
	conn      net.PacketConn
	info      Port
	dst       *packet.Addr

	gone    bool // handed to a worker: no longer in the reader's stash
	ordered bool
	io      bool  // staged: op holds the read or write, the reply is built
	op      ioOp  // the staged read or write
	next    *job  // the next job of a chain of adjacent staged I/Os
	nchain  int   // jobs in the chain this job heads
	ioErr   error // result of the staged I/O

	hit       bool        // a read that may be served from the cache (for a chain head: all its reads)
	id        int         // index in the pool (the ring's user data)
	sync      bool        // do the chain's I/O on a worker, not the ring
	unwritten bool        // a durable write chain handed to the committer before its write
	flushNow  bool        // a durable write chain the committer flushes with a blocking call
	answered  atomic.Bool // a reply was sent (by the worker, or by the watchdog)
	since     int64       // when a worker or the committer took it (watch.mu)
	overdue   bool        // the watchdog answered it (watch.mu)
	span      span
	deps      int    // conflicting earlier jobs not yet done
	waiters   []*job // later jobs waiting for this one

	recv int64 // when the receive loop got the request (mono)
	acct acct  // what the request did, recorded once its reply is sent
}

// engine runs the requests of one port: a fixed pool of frame buffers,
// which bounds memory and the requests in progress, and workers that run
// the requests that may block on the disk.
type engine struct {
	p       *port
	free    chan *job // buffers not in use
	work    chan *job // requests ready to run
	sched   scheduler
	pending sync.WaitGroup // admitted requests not done
	workers sync.WaitGroup
	nwork   int
	// commit carries durable writes from the workers to the committer.
	commit     chan *job
	commitDone sync.WaitGroup
	watch      watchdog
	// ring, if the store has io_uring, does the chains' I/O without a
	// thread each: the reader submits them in batches, the completer
	// reaps them. jobs maps its user data back to the chains.
	ring       *blockstore.Ring
	ringWrites bool // writes go to the ring too (O_DIRECT stores only)
	// ringFlush: durable writes are flushed on the ring (group commit
	// without a thread blocked in fdatasync): the completer and the
	// committer add the chains whose writes are in the store to next;
	// a free lane takes them all in a flush, and its completion
	// acknowledges them and starts the next flush if writes wait.
	ringFlush    bool
	ringFlushOff atomic.Bool // the ring cancelled a flush: the committer flushes from then on
	flushMu      sync.Mutex  // guards lanes, next, spare, nextSince, flushTime
	lanes        []flushLane
	writing      atomic.Int32  // durable writes submitted to the ring and not completed
	nextSince    time.Time     // when the chains in next started waiting
	flushTime    time.Duration // moving average of the ring's flush times
	next         []*job
	spare        []*job // the group being acknowledged's array goes back here
	jobs         []*job
	ringDone     sync.WaitGroup
	ringErrs     errLimiter
	errs         errLimiter
}

// maxFlushLanes is how many flushes of durable writes the engine keeps in
// flight at once, each on its own file description of the store
// (blockstore.FlushLane). A device flush takes long and little CPU: while
// one runs, the writes acknowledged by the last one come back, and a
// second flush lets them go to the device without waiting for the first.
const maxFlushLanes = 2

// flushLane is a flush lane of the engine and the group of chains whose
// flush is in flight on it, if busy.
type flushLane struct {
	lane    *blockstore.FlushLane
	busy    bool
	group   []*job
	started time.Time // of its flush in flight
}

func newEngine(p *port) *engine {
	h := p.s.h
	workers := p.s.cfg.Workers
	if workers <= 0 {
		workers = int(h.bufcnt)
	}
	workers = min(workers, 1024)
	pool := 2*int(h.bufcnt) + 2
	_, info := p.state()
	size := jobBufLen(info.MTU)
	e := &engine{
		p:      p,
		free:   make(chan *job, pool),
		work:   make(chan *job, pool),
		commit: make(chan *job, pool),
		nwork:  workers,
	}
	for i := range pool {
		j := &job{
			id:      i,
			req:     alignedFrame(size),
			resp:    alignedFrame(size),
			dst:     &packet.Addr{HardwareAddr: make(net.HardwareAddr, 6)},
			waiters: make([]*job, 0, 4),
		}
		e.jobs = append(e.jobs, j)
		e.free <- j
	}
	if rs, ok := h.store.(RingStore); ok && !p.s.cfg.NoRing {
		entries := uint32(1)
		for entries < uint32(pool+maxFlushLanes+1) { // room for every chain, the flushes and a wake-up
			entries <<= 1
		}
		r, err := rs.NewRing(entries)
		if err != nil {
			p.log.Info("io_uring unavailable; disk I/O on worker threads", "err", err)
		} else {
			e.ring = r
			// Buffered writes cannot be done without blocking
			// (ext4 refuses IOCB_NOWAIT for them), so io_uring hands
			// each to a kernel worker thread: slower than our
			// workers' pwritev. O_DIRECT writes go to the ring.
			d, ok := h.store.(interface{ Direct() bool })
			e.ringWrites = ok && d.Direct()
			if !e.ringWrites && h.groupCommit() && !p.s.cfg.CachedWrites {
				// Durable writes of a buffered store go straight to
				// the disk: the group's flush then has no pages to
				// write back, only the device's cache to flush.
				if err := r.WriteDirect(); err != nil {
					p.log.Info("durable writes go through the page cache", "err", err)
				} else {
					e.ringWrites = true
				}
			}
			if h.groupCommit() {
				e.openFlushLanes(pool)
			}
		}
	}
	return e
}

// RingStore is implemented by stores that can submit reads and writes in
// batches through an io_uring (blockstore.File). The engine then does
// the I/O of reads that miss the cache and of writes without a blocked
// thread each, and one system call submits a batch.
type RingStore interface {
	NewRing(entries uint32) (*blockstore.Ring, error)
}

// run starts the chain j heads, which may run now: on the ring (submitted
// with the next flushRing) if there is one and it can, else on a worker.
func (e *engine) run(j *job) {
	if j.io && j.op.write && !j.sync && !e.ringWrites && e.p.s.h.groupCommit() {
		// Buffered writes to one file serialize on its inode lock, and
		// they and the flush slow each other down: the committer writes
		// a whole batch from one thread, then flushes it once.
		j.unwritten = true
		e.commit <- j // never blocks: the channel holds the whole pool
		return
	}
	if e.ring == nil || !j.io || j.sync || (j.op.write && !e.ringWrites) {
		e.work <- j // never blocks: the channel holds the whole pool
		return
	}
	var arr [maxChain][]byte
	bufs := arr[:0]
	for m := j; m != nil; m = m.next {
		bufs = append(bufs, m.op.buf)
	}
	e.watch.track(j)
	// Counted before it can complete (and j be released).
	write := j.op.write
	if write {
		e.writing.Add(1)
	}
	if err := e.ring.Prepare(write, bufs, j.op.off, uint64(j.id)); err != nil {
		if write {
			e.writing.Add(-1)
		}
		e.watch.untrack(j)
		j.sync = true
		e.work <- j
	}
}

// flushRing submits the chains prepared on the ring.
func (e *engine) flushRing() {
	if e.ring == nil {
		return
	}
	if _, err := e.ring.Submit(); err != nil && e.ringErrs.allow() {
		e.p.log.Warn("io_uring submit failed", "err", err, "suppressed", e.ringErrs.suppressed())
	}
}

// completer reaps the ring's completions: it finishes each chain as a
// worker would after its I/O (replies, or the committer for durable
// writes), and hands the chains that failed or came up short to a worker,
// which redoes them with blocking calls that say why (and retries each
// request of a failed chain alone).
func (e *engine) completer() {
	defer e.ringDone.Done()
	h := e.p.s.h
	w := newWorkerState()
	cs := make([]blockstore.Completion, len(e.jobs)+maxFlushLanes+1)
	// The chains answered in this round: their replies go out in one
	// batch, then their buffers back to the pool.
	done := make([]*job, 0, len(e.jobs))
	// The durable writes of this round, for the next flush.
	durable := make([]*job, 0, len(e.jobs))
	for {
		n, err := e.ring.Wait(cs)
		if err != nil {
			if e.ringErrs.allow() {
				e.p.log.Error("io_uring wait failed", "err", err, "suppressed", e.ringErrs.suppressed())
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		stop := false
		for _, c := range cs[:n] {
			if c.User == blockstore.WakeUser {
				stop = true
				continue
			}
			if i, ok := e.flushLaneOf(c.User); ok {
				err := c.Err
				if testRingFlushResult != nil {
					err = testRingFlushResult(err)
				}
				done = e.flushed(i, err, w, done)
				continue
			}
			j := e.jobs[c.User]
			e.watch.untrack(j)
			if j.op.write {
				e.writing.Add(-1)
			}
			total := 0
			for m := j; m != nil; m = m.next {
				total += len(m.op.buf)
			}
			if c.Err != nil || c.N < total {
				j.sync = true
				e.work <- j
				continue
			}
			if j.op.write {
				h.stats.WriteIOs.Add(1)
			} else {
				h.stats.ReadIOs.Add(1)
			}
			commit := j.op.write && h.groupCommit()
			if !commit {
				for m := j; m != nil; m = m.next {
					w.queue(e, m, nil)
				}
			}
			w.ready = e.sched.done(j, w.ready[:0])
			for _, r := range w.ready {
				e.run(r)
			}
			clear(w.ready)
			switch {
			case commit && e.ringFlush:
				e.watch.track(j)
				durable = append(durable, j)
			case commit:
				e.commit <- j
			default:
				done = append(done, j)
			}
		}
		if len(durable) > 0 {
			e.toFlush(durable)
			clear(durable)
			durable = durable[:0]
		}
		e.flushRing()
		w.send(e)
		for _, j := range done {
			e.release(j)
		}
		clear(done)
		done = done[:0]
		if stop {
			return
		}
	}
}

// openFlushLanes opens the flush lanes of the ring and turns ring
// flushes on if it has at least one; groups hold at most pool chains.
func (e *engine) openFlushLanes(pool int) {
	for range maxFlushLanes {
		l, err := e.ring.NewFlushLane()
		if err != nil {
			e.p.log.Info("flush lane unavailable", "err", err, "lanes", len(e.lanes))
			break
		}
		e.lanes = append(e.lanes, flushLane{lane: l, group: make([]*job, 0, pool)})
	}
	if len(e.lanes) == 0 {
		return // the committer flushes with fdatasync
	}
	e.ringFlush = true
	e.next = make([]*job, 0, pool)
	e.spare = make([]*job, 0, pool)
}

// flushUser is the ring's user data of a flush on lane i (the jobs' are
// their indexes).
func (e *engine) flushUser(i int) uint64 { return uint64(len(e.jobs) + i) }

// flushLaneOf returns the lane whose flush has the user data u, if it is
// a flush's.
func (e *engine) flushLaneOf(u uint64) (int, bool) {
	i := int(u - uint64(len(e.jobs)))
	return i, u >= uint64(len(e.jobs)) && i < len(e.lanes)
}

// toFlush adds chains, whose writes are in the store (or failed), to the
// next flush on the ring, and prepares that flush if a lane is free; the
// caller submits it (flushRing). If the ring refuses it, the
// committer flushes the chains with a blocking call.
func (e *engine) toFlush(chains []*job) {
	e.flushMu.Lock()
	if len(e.next) == 0 {
		e.nextSince = time.Now()
	}
	e.next = append(e.next, chains...)
	err := e.startFlushLocked()
	e.flushMu.Unlock()
	if err != nil {
		e.blockingFlush(err)
	}
}

// startFlushLocked prepares a flush of the chains in next on a free lane,
// if there is one, with flushMu held. While durable writes are still at the
// disk, and the chains in next have waited less than half a flush, it
// leaves them: the group gathers the writes the initiator sent together
// (a flush started at the first of them would leave the others waiting for
// it, then for their own), without holding up a lone write.
func (e *engine) startFlushLocked() error {
	if len(e.next) == 0 {
		return nil
	}
	if gatherMore(int(e.writing.Load()), time.Since(e.nextSince), e.flushTime) {
		return nil
	}
	i := 0
	for i < len(e.lanes) && e.lanes[i].busy {
		i++
	}
	if i == len(e.lanes) {
		return nil // the first lane to finish takes them
	}
	if e.ringFlushOff.Load() {
		return errRingFlushOff
	}
	l := &e.lanes[i]
	if err := l.lane.PrepareFlush(e.flushUser(i)); err != nil {
		return err
	}
	e.p.s.h.stats.Flushes.Add(1)
	l.started = time.Now()
	l.busy = true
	l.group, e.next = e.next, l.group[:0]
	return nil
}

// gatherMore reports whether a group whose first chain has waited waited
// should wait for more while writing durable writes are still at the disk,
// when flushes take flushTime: for half a flush at most (and maxGather). The
// completions of those writes come back to startFlushLocked, and the group
// grows to take them, so it needs no timer.
func gatherMore(writing int, waited, flushTime time.Duration) bool {
	return writing > 0 && waited < min(flushTime/2, maxGather)
}

// testRingFlushResult, set by tests, replaces the result of each flush
// on the ring.
var testRingFlushResult func(error) error

// errRingFlushOff refuses ring flushes once the ring cancelled one.
var errRingFlushOff = errors.New("flushes on the io_uring are off")

// blockingFlush hands the chains waiting for a flush to the committer,
// which flushes them with a blocking call, when the ring refused the
// flush (it is full, or closed).
func (e *engine) blockingFlush(err error) {
	if err != errRingFlushOff && e.ringErrs.allow() {
		e.p.log.Warn("io_uring flush refused; flushing with fdatasync", "err", err, "suppressed", e.ringErrs.suppressed())
	}
	e.flushMu.Lock()
	chains := e.next
	e.next = nil
	e.flushMu.Unlock()
	for _, j := range chains {
		j.flushNow = true
		e.commit <- j // never blocks: the channel holds the whole pool
	}
}

// flushed acknowledges the writes of the flush on lane i that completed
// with err (their replies queued on w, the chains appended to done, to be
// released once the replies are sent), and starts the next flush if
// writes wait for one. Its result alone says whether they are safe: the
// lane's file description reports every write-back error once, and a
// failure is sticky (FlushResult), so a flush in flight on the other lane
// cannot take an error that belongs to this one's writes.
func (e *engine) flushed(i int, err error, w *workerState, done []*job) []*job {
	// ECANCELED: io_uring cancelled the flush before it ran (seen on Linux
	// 6.1 when it could not start a kernel worker), not a failure of the
	// store. The committer flushes this group, and every later one, with a
	// blocking fdatasync, which says whether the data is safe. Any other
	// error did come from the flush: the kernel reports a write-back error
	// once per open file, so it must not be retried.
	cancelled := errors.Is(err, syscall.ECANCELED)
	if cancelled && !e.ringFlushOff.Swap(true) {
		e.p.log.Warn("io_uring cancelled a flush; flushing with fdatasync from now on", "err", err)
	}
	e.flushMu.Lock()
	l := &e.lanes[i]
	group := l.group
	e.flushTime = (3*e.flushTime + time.Since(l.started)) / 4
	l.group, e.spare = e.spare[:0], nil
	l.busy = false
	if cancelled {
		e.next = append(e.next, group...)
		clear(group)
		group = group[:0]
	}
	serr := e.startFlushLocked() // refused once cancelled: errRingFlushOff
	e.flushMu.Unlock()
	if serr != nil {
		e.blockingFlush(serr)
	}
	if !cancelled {
		if err = e.ring.FlushResult(err); err != nil {
			e.p.s.h.ioError("flush", 0, 0, err)
		}
		e.acknowledge(group, err, w)
		done = append(done, group...)
		clear(group)
	}
	e.flushMu.Lock()
	e.spare = group[:0]
	e.flushMu.Unlock()
	return done
}

// acknowledge queues on w the replies to the writes of chains, whose
// flush ended with err (a write that failed keeps its own error), and
// counts the group commit.
func (e *engine) acknowledge(chains []*job, err error, w *workerState) {
	writes := 0
	for _, c := range chains {
		e.watch.untrack(c)
		for m := c; m != nil; m = m.next {
			if m.ioErr == nil {
				writes++
			}
		}
	}
	if writes > 0 {
		e.p.s.h.commits.observe(writes)
	}
	for _, c := range chains {
		for m := c; m != nil; m = m.next {
			merr := m.ioErr
			if merr == nil {
				merr = err
			}
			w.queue(e, m, merr)
		}
	}
}

// alignedFrame returns a frame buffer whose byte 36, where the sectors of
// an ATA request or reply start, is page-aligned, so that O_DIRECT I/O
// needs no bounce buffer.
func alignedFrame(size int) []byte {
	const page = 4096
	const hdr = aoe.FrameHeaderLen + aoe.ATAArgLen
	b := make([]byte, size+page)
	addr := uintptr(unsafe.Pointer(&b[0]))
	off := (page - int((addr+hdr)%page)) % page
	return b[off : off+size : off+size]
}

func (e *engine) start() {
	for range e.nwork {
		e.workers.Add(1)
		go e.worker()
	}
	e.commitDone.Add(1)
	go e.committer()
	if e.ring != nil {
		e.ringDone.Add(1)
		go e.completer()
	}
	e.watch.start(e, e.p.s.cfg.IOTimeout)
}

// stop waits for the requests in progress to finish and stops the
// workers.
func (e *engine) stop() {
	if !e.drain() {
		return
	}
	close(e.work)
	e.workers.Wait()
	close(e.commit)
	e.commitDone.Wait()
	if e.ring != nil {
		if err := e.ring.Wake(); err == nil {
			e.ringDone.Wait()
		}
		e.ring.Close()
	}
	e.watch.stop()
}

// drain waits for the requests in progress, at most the I/O deadline if
// there is one, and reports whether they all finished. If the store
// stalls, stopping must not wait for it forever: the requests still
// waiting were not acknowledged, and their goroutines are left blocked in
// the store (the process is about to exit).
func (e *engine) drain() bool {
	t := e.p.s.cfg.IOTimeout
	if t <= 0 {
		e.pending.Wait()
		return true
	}
	done := make(chan struct{})
	go func() { e.pending.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(t):
		e.p.log.Error("stopping without waiting any longer for requests stuck in the store (not acknowledged)",
			"waited", t)
		e.watch.stop()
		return false
	}
}

// ordered runs j once the earlier requests it conflicts with are done.
func (e *engine) ordered(j *job) {
	e.pending.Add(1)
	j.ordered = true
	if e.sched.admit(j) {
		e.run(j)
	}
}

// unordered runs j on a worker now.
func (e *engine) unordered(j *job) {
	e.pending.Add(1)
	j.ordered = false
	e.work <- j
}

// workerState is what a worker (or the committer) reuses from request to
// request.
type workerState struct {
	ready []*job
	bufs  [][]byte // the buffers of a chain's I/O
	out   [][]byte // replies to send
	sent  []*job   // the requests of out, to record once sent
	conn  net.PacketConn
	mm    *mmsgConn // sends replies in one call; nil for in-memory conns
}

func newWorkerState() *workerState {
	return &workerState{bufs: make([][]byte, 0, maxChain), out: make([][]byte, 0, maxBatch), sent: make([]*job, 0, maxBatch)}
}

// queue completes the reply of m, a staged request whose I/O (and flush)
// ended with err, and queues it to be sent.
func (w *workerState) queue(e *engine, m *job, err error) {
	if !m.answered.CompareAndSwap(false, true) {
		return // the watchdog answered it: the store was too slow
	}
	n, v := e.p.s.h.complete(m.resp, &m.op, err, &m.acct)
	if w.conn != m.conn {
		w.send(e)
		w.conn, w.mm = m.conn, newMmsgConn(m.conn, maxBatch)
	}
	if w.mm == nil {
		e.reply(m, n, v)
		return
	}
	if len(w.out) == cap(w.out) {
		w.send(e)
	}
	w.out = append(w.out, m.resp[:n])
	w.sent = append(w.sent, m)
}

// send sends the queued replies and counts their requests.
func (w *workerState) send(e *engine) {
	if len(w.out) == 0 {
		return
	}
	if err := w.mm.send(w.out); err != nil && e.errs.allow() {
		e.p.log.Warn("send failed", "err", err, "suppressed", e.errs.suppressed())
	}
	e.sent(w.sent, 0)
	clear(w.out)
	w.out = w.out[:0]
	clear(w.sent)
	w.sent = w.sent[:0]
}

// sent counts the requests of jobs, whose replies were just handed to the
// socket, and takes them, and dropped more requests (counted already),
// out of the requests in flight.
func (e *engine) sent(jobs []*job, dropped int) {
	h := e.p.s.h
	if len(jobs) > 0 {
		now := mono()
		for _, j := range jobs {
			h.record(&j.acct, j.recv, now)
		}
	}
	if n := len(jobs) + dropped; n > 0 {
		h.inflight.Add(-int64(n))
	}
}

func (e *engine) worker() {
	defer e.workers.Done()
	h := e.p.s.h
	w := newWorkerState()
	for j := range e.work {
		commit := false
		e.watch.track(j)
		if j.io {
			commit = e.runChain(j, w)
		} else {
			rn, v := h.handleAcct(j.info, j.req[:j.n], j.resp, &j.acct)
			if j.answered.CompareAndSwap(false, true) {
				e.reply(j, rn, v) // else the watchdog answered and counted it
			}
		}
		e.watch.untrack(j)
		if j.ordered {
			// A write is done, for the requests that wait for it, once
			// it is in the store: they can no longer overtake it.
			w.ready = e.sched.done(j, w.ready[:0])
			for _, r := range w.ready {
				e.run(r)
			}
			clear(w.ready)
			e.flushRing()
		}
		if commit {
			e.commit <- j // never blocks: the channel holds the whole pool
			continue
		}
		e.release(j)
	}
}

// release returns the jobs of the chain j heads to the pool.
func (e *engine) release(j *job) {
	for j != nil {
		next := j.next
		j.conn, j.next, j.io, j.nchain, j.ioErr, j.sync, j.flushNow = nil, nil, false, 0, nil, false, false
		j.answered.Store(false)
		j.op = ioOp{}
		e.free <- j
		j = next
	}
	e.pending.Done()
}

// runChain does the I/O of a chain of staged requests for adjacent
// sectors, all reads or all writes, as one vectored read or write, and
// sends the replies; or, for writes that must be durable before they are
// acknowledged, reports true: the chain goes to the committer, which
// flushes and replies. If the merged I/O fails, each request is retried
// alone, so that only those whose own sectors fail get an error.
func (e *engine) runChain(head *job, w *workerState) (commit bool) {
	h := e.p.s.h
	commit = head.op.write && h.groupCommit()
	e.chainIO(head, w, commit)
	if commit {
		return true
	}
	for m := head; m != nil; m = m.next {
		w.queue(e, m, m.ioErr)
	}
	w.send(e)
	return false
}

// chainIO does the I/O of the chain head heads with one vectored call and
// records each request's result; if it fails, each request is retried
// alone. Writes that the committer will flush are not synced here.
func (e *engine) chainIO(head *job, w *workerState, commit bool) {
	h := e.p.s.h
	w.bufs = w.bufs[:0]
	total := 0
	for m := head; m != nil; m = m.next {
		w.bufs = append(w.bufs, m.op.buf)
		total += len(m.op.buf)
	}
	err := h.vectorIO(head.op.write, w.bufs, head.op.off, total, !commit)
	for m := head; m != nil; m = m.next {
		m.ioErr = err
		if err != nil && head.next != nil {
			w.bufs = append(w.bufs[:0], m.op.buf)
			m.ioErr = h.vectorIO(m.op.write, w.bufs, m.op.off, len(m.op.buf), !commit)
		}
	}
	clear(w.bufs)
}

// committer makes the writes that workers hand it durable and acknowledges
// them: it takes every chain queued, flushes the store once for all of
// them, and sends their replies. While a flush runs, the next writes queue
// up, so that under load one flush covers many writes (group commit)
// without ever waiting for a timer.
func (e *engine) committer() {
	defer e.commitDone.Done()
	h := e.p.s.h
	w := newWorkerState()
	batch := make([]*job, 0, cap(e.commit))
	ringBatch := make([]*job, 0, cap(e.commit))
	for head := range e.commit {
		batch = append(batch[:0], head)
	drain:
		for {
			select {
			case j, ok := <-e.commit:
				if !ok {
					break drain
				}
				batch = append(batch, j)
			default:
				break drain
			}
		}
		for _, c := range batch {
			e.watch.track(c)
		}
		for _, c := range batch {
			if !c.unwritten {
				continue
			}
			c.unwritten = false
			e.chainIO(c, w, true)
			// In the store now: later requests for the same sectors
			// may run (a read sees the data, a write lands after it).
			if c.ordered {
				w.ready = e.sched.done(c, w.ready[:0])
				for _, r := range w.ready {
					e.run(r)
				}
				clear(w.ready)
			}
		}
		if e.ringFlush && !e.ringFlushOff.Load() {
			// Flushed on the ring: the completer acknowledges them.
			ring := ringBatch[:0]
			n := 0
			for _, c := range batch {
				if c.flushNow {
					batch[n] = c
					n++
					continue
				}
				ring = append(ring, c)
			}
			clear(batch[n:])
			batch = batch[:n]
			e.toFlush(ring)
			clear(ring)
			e.flushRing()
			if len(batch) == 0 {
				continue
			}
		}
		e.flushRing()
		e.acknowledge(batch, h.flush(), w)
		w.send(e)
		for _, c := range batch {
			e.release(c)
		}
		clear(batch)
	}
}

// reply sends the reply the handler built for j, if any, and counts the
// request.
func (e *engine) reply(j *job, n int, v Verdict) {
	h := e.p.s.h
	sent := int64(0)
	if v == Reply {
		copy(j.dst.HardwareAddr, j.resp[0:6])
		if _, err := j.conn.WriteTo(j.resp[:n], j.dst); err != nil && e.errs.allow() {
			e.p.log.Warn("send failed", "err", err, "suppressed", e.errs.suppressed())
		}
		sent = mono()
	}
	h.record(&j.acct, j.recv, sent)
	h.inflight.Add(-1)
}

// maxBatch is the most frames one recvmmsg or sendmmsg call carries.
const maxBatch = 32

// reader is the state of a port's receive loop: a stash of free buffers
// it receives into, and the replies it answered itself, sent in one batch.
type reader struct {
	e     *engine
	mm    *mmsgConn // nil: one frame per call
	conn  net.PacketConn
	batch int

	stash   []*job   // free buffers owned by the reader; stash[:n] just received
	out     [][]byte // replies to send
	sent    []*job   // the requests of out, to record once sent
	dropped int      // requests of this round dropped (and recorded)
	bufs    [][]byte // receive buffers for recvmmsg
	lens    []int    // received lengths
	errs    errLimiter

	guess    cacheGuess
	vbufs    [][]byte // the buffers of a chain read from the cache
	answered []*job   // requests answered from the cache out of a chain: freed once their replies are sent

	// The chain being built: staged I/Os of this batch for adjacent
	// sectors, admitted as one job when the next request cannot join it.
	head, tail *job

	// busySince is when the loop last left its blocking receive
	// (UnixNano), 0 while it waits there: a loop that stays busy for
	// long is stuck (see Server.Stuck).
	busySince atomic.Int64
}

// maxChain bounds the requests merged into one I/O.
const maxChain = 32

// newReader returns the state of one of the port's queues receive loops:
// together their batches take at most half the pool.
func newReader(e *engine, queues int) *reader {
	batch := max(1, min(maxBatch, cap(e.free)/(2*queues)))
	r := &reader{
		e:     e,
		batch: batch,
		stash: make([]*job, 0, batch),
		out:   make([][]byte, 0, batch),
		sent:  make([]*job, 0, batch),
		bufs:  make([][]byte, batch),
		lens:  make([]int, batch),
		vbufs: make([][]byte, 0, maxChain),
		// what one round answers, and a chain from the round before
		answered: make([]*job, 0, batch+maxChain),
	}
	r.busySince.Store(time.Now().UnixNano())
	e.p.addReader(r)
	return r
}

// recv tops up the stash with free buffers and receives frames into them:
// as many as are queued (up to a batch) when the socket can batch, else
// one. Unless wait is set, it returns 0 at once when no frame is queued
// (and always, on a socket that cannot batch). It returns how many
// arrived; they are r.stash[:n].
func (r *reader) recv(conn net.PacketConn, wait bool) (int, error) {
	if conn != r.conn {
		r.conn = conn
		r.detachRing()
		r.mm = newMmsgConn(conn, r.batch)
		if rc, ok := conn.(*ringConn); ok && r.mm != nil && rc.ring.attach() {
			r.mm.ring = rc.ring
		}
	}
	if r.mm == nil && !wait {
		return 0, nil
	}
	if len(r.stash) == 0 {
		var j *job
		select {
		case j = <-r.e.free:
		default:
			// Wait for a buffer, but first let the chain being built
			// go: its buffers may be the ones missing.
			r.closeChain()
			r.flush()
			j = <-r.e.free
		}
		j.gone = false
		r.stash = append(r.stash, j)
	}
	if r.mm == nil {
		j := r.stash[0]
		r.busySince.Store(0)
		n, _, err := conn.ReadFrom(j.req)
		r.busySince.Store(time.Now().UnixNano())
		if err != nil {
			return 0, err
		}
		j.n = n
		return 1, nil
	}
fill:
	for len(r.stash) < r.batch {
		select {
		case j := <-r.e.free:
			j.gone = false
			r.stash = append(r.stash, j)
		default:
			break fill
		}
	}
	for i, j := range r.stash {
		r.bufs[i] = j.req
	}
	if wait {
		r.busySince.Store(0)
	}
	n, err := r.mm.recv(r.bufs[:len(r.stash)], r.lens, wait)
	if wait {
		r.busySince.Store(time.Now().UnixNano())
	}
	clear(r.bufs)
	for i := range n {
		r.stash[i].n = r.lens[i]
	}
	return n, err
}

// round is one turn of a receive loop on conn: it receives a batch and
// dispatches it, sending the replies the loop built itself. With a chain
// of adjacent I/Os open it looks for more frames without waiting (the
// rest of a 4-KiB block may be queued); when none is, or the receive
// fails, it admits the chain. It returns the receive error.
func (r *reader) round(conn net.PacketConn, info Port) error {
	n, err := r.recv(conn, r.head == nil)
	if err != nil || n == 0 {
		r.closeChain()
		r.flush()
		return err
	}
	now := mono() // one clock read per batch
	r.e.p.s.h.inflight.Add(int64(n))
	for _, j := range r.stash[:n] {
		j.conn, j.info, j.recv = conn, info, now
		r.dispatch(j)
	}
	r.flush()
	return nil
}

// dispatch starts the request in j: the reader answers it at once, or a
// worker gets it (and j.gone is set: the buffer left the stash).
func (r *reader) dispatch(j *job) {
	e := r.e
	h := e.p.s.h
	req := j.req[:j.n]
	k, sp := classify(req)
	if k != kindInline && e.watch.stalled.Load() {
		// The store is stalled: fail at once what needs it, so that
		// the initiator (and md above it) sees the failure.
		rn, v := h.handleUnavailable(j.info, req, j.resp, &j.acct)
		h.stats.StalledIO.Add(1)
		r.reply(j, rn, v)
		return
	}
	switch k {
	case kindRead, kindWrite:
		// Every read or write is staged and chained with the adjacent
		// ones. A read may be served from the cache unless it must wait
		// for an earlier write (in flight, or in the chain being built):
		// when its chain closes, one read that does not wait tries the
		// cache for the whole chain (closeChain).
		rn, v, res := h.stage(j.info, req, j.resp, false, &j.op, &j.acct)
		switch res {
		case stageDone:
			r.reply(j, rn, v)
		case stageIO:
			j.span = sp
			j.io = true
			j.gone = true
			j.hit = k == kindRead && !e.sched.busy(sp) && !(r.head != nil && r.head.span.conflicts(sp))
			r.chain(j)
		default:
			j.span = sp
			j.gone = true
			r.closeChain()
			e.ordered(j)
		}
	case kindFlush:
		j.gone = true
		e.unordered(j)
	default:
		rn, v := h.handleAcct(j.info, req, j.resp, &j.acct)
		r.reply(j, rn, v)
	}
}

// chain adds the staged I/O j to the chain being built if it continues
// it (same direction, the next sectors); otherwise it admits that chain
// and starts a new one with j.
func (r *reader) chain(j *job) {
	if t := r.tail; t != nil && t.op.write == j.op.write && r.head.nchain < maxChain &&
		t.op.off+int64(len(t.op.buf)) == j.op.off && j.info == r.head.info && j.conn == r.head.conn {
		t.next = j
		r.tail = j
		r.head.nchain++
		r.head.span.n += j.span.n
		r.head.hit = r.head.hit && j.hit
		r.e.p.s.h.stats.Merged.Add(1)
		return
	}
	r.closeChain()
	j.nchain = 1
	r.head, r.tail = j, j
}

// closeChain ends the chain being built, if any: a chain of reads that
// may be served from the cache is, if it is all cached, with one read
// that does not wait, and answered here; any other chain is admitted to
// the engine.
func (r *reader) closeChain() {
	head := r.head
	if head == nil {
		return
	}
	r.head, r.tail = nil, nil
	if head.hit && !head.op.write && r.guess.try() {
		hit := r.readCached(head, r.guess.probe())
		r.guess.note(hit)
		if hit {
			return
		}
	}
	r.e.ordered(head)
}

// cacheGuess decides whether a chain of reads is worth trying in the
// cache, and how. A read that does not wait and misses costs a system
// call, and it starts the disk read on its own, which then costs a device
// notification of its own (with a virtual disk, a trap to the hypervisor
// that costs more CPU than the rest of the read); reads handed to the ring
// untried are submitted together, and the kernel tries the cache for each
// in that one call. So:
//   - while the cache serves (at most guessHot misses in the last window
//     of attempts), a chain is read at once;
//   - else it is first probed (Handler.mayBeCached: cachestat(2), which
//     reads nothing and starts nothing), and read only if it is cached;
//   - after a window of mostly misses (a cold cache: random reads of a
//     large disk), only one chain in guessSample is tried, until the
//     samples show the cache serving again.
type cacheGuess struct {
	tries, misses int
	last          int // misses in the last window
	skip          int // chains left in the current skipping period
}

const (
	guessWindow = 32 // attempts judged together
	guessHot    = 1  // misses in a window after which attempts probe first
	guessMisses = 24 // misses in a window that start a skipping period
	guessSample = 16 // one chain in this many is tried while skipping
	// guessSkip is the chains in a skipping period: its samples make
	// one window.
	guessSkip = guessWindow * guessSample
)

// try reports whether to try the next chain in the cache.
func (g *cacheGuess) try() bool {
	if g.skip == 0 {
		return true
	}
	g.skip--
	return g.skip%guessSample == 0
}

// note records the outcome of an attempt.
func (g *cacheGuess) note(hit bool) {
	g.tries++
	if !hit {
		g.misses++
	}
	if g.tries == guessWindow {
		if g.misses >= guessMisses {
			g.skip = guessSkip
		}
		g.last = g.misses
		g.tries, g.misses = 0, 0
	}
}

// probe reports whether the chain that try allowed is to be probed before
// it is read.
func (g *cacheGuess) probe() bool { return g.last > guessHot }

// readCached serves the chain of reads head heads from the cache if it is
// all there, and reports whether it did: the replies are queued, and the
// buffers go back to the pool once they are sent (flush). With probe, it
// first asks the store whether the range is cached, and reads only if it
// may be.
func (r *reader) readCached(head *job, probe bool) bool {
	h := r.e.p.s.h
	total := 0
	for m := head; m != nil; m = m.next {
		total += len(m.op.buf)
	}
	if probe && !h.mayBeCached(head.op.off, total) {
		return false
	}
	for m := head; m != nil; m = m.next {
		r.vbufs = append(r.vbufs, m.op.buf)
	}
	ok := h.readCached(r.vbufs, head.op.off, total)
	clear(r.vbufs)
	r.vbufs = r.vbufs[:0]
	if !ok {
		return false
	}
	for m := head; m != nil; {
		next := m.next
		m.next, m.io, m.nchain, m.hit = nil, false, 0, false
		n, v := h.complete(m.resp, &m.op, nil, &m.acct)
		m.op = ioOp{}
		r.reply(m, n, v)
		r.answered = append(r.answered, m)
		m = next
	}
	return true
}

// reply queues the reply the handler built in j, or counts the request
// it dropped.
func (r *reader) reply(j *job, n int, v Verdict) {
	if v != Reply {
		r.e.p.s.h.record(&j.acct, j.recv, 0)
		r.dropped++
		return
	}
	if r.mm == nil {
		r.e.reply(j, n, v)
		return
	}
	r.out = append(r.out, j.resp[:n])
	r.sent = append(r.sent, j)
}

// flush sends the queued replies and drops the buffers handed to workers
// from the stash. The chain being built stays open: the next frames,
// if already queued, may continue it.
func (r *reader) flush() {
	r.e.flushRing()
	if len(r.out) > 0 {
		if err := r.mm.send(r.out); err != nil && r.errs.allow() {
			r.e.p.log.Warn("send failed", "err", err, "suppressed", r.errs.suppressed())
		}
		clear(r.out)
		r.out = r.out[:0]
	}
	r.e.sent(r.sent, r.dropped)
	clear(r.sent)
	r.sent, r.dropped = r.sent[:0], 0
	n := 0
	for _, j := range r.stash {
		if !j.gone {
			j.n = 0
			r.stash[n] = j
			n++
		}
	}
	clear(r.stash[n:])
	r.stash = r.stash[:n]
	// Out of the stash now, the requests answered from the cache out of
	// a chain go back to the pool (where another queue's loop may take
	// them at once).
	for _, j := range r.answered {
		j.conn = nil
		r.e.free <- j // never blocks: the channel holds the whole pool
	}
	clear(r.answered)
	r.answered = r.answered[:0]
}

// release gives the stash back to the pool, when the loop stops.
func (r *reader) release() {
	r.e.p.removeReader(r)
	r.closeChain()
	r.flush()
	for _, j := range r.stash {
		r.e.free <- j
	}
	r.stash = r.stash[:0]
	r.detachRing()
}

// detachRing lets go of the receive ring of the socket the loop received
// from, if it had one.
func (r *reader) detachRing() {
	if r.mm != nil && r.mm.ring != nil {
		r.mm.ring.detach()
		r.mm.ring = nil
	}
}

// watchdog answers requests whose I/O takes longer than a deadline with
// the ATA error a failed I/O gets, so that the initiator fails them at
// once (and md fails the leg) instead of retransmitting until it gives up
// on the whole device; while such an I/O is outstanding the store counts
// as stalled, and the reader fails new requests that need it at once. The
// I/O itself cannot be cancelled: its buffers stay in use until it
// returns, and its late result is dropped.
type watchdog struct {
	mu      sync.Mutex
	busy    map[*job]struct{} // chains a worker or the committer is on
	stalled atomic.Bool
	timeout time.Duration
	done    chan struct{}
	wg      sync.WaitGroup
}

func (w *watchdog) start(e *engine, timeout time.Duration) {
	if timeout <= 0 {
		return
	}
	w.timeout = timeout
	w.busy = make(map[*job]struct{})
	w.done = make(chan struct{})
	w.wg.Add(1)
	go w.run(e)
}

func (w *watchdog) stop() {
	if w.done != nil {
		close(w.done)
		w.wg.Wait()
	}
}

// track notes that the I/O of the chain j heads starts now.
func (w *watchdog) track(j *job) {
	if w.busy == nil {
		return
	}
	w.mu.Lock()
	j.since = time.Now().UnixNano()
	j.overdue = false
	w.busy[j] = struct{}{}
	w.mu.Unlock()
}

// untrack notes that the I/O of the chain j heads is over.
func (w *watchdog) untrack(j *job) {
	if w.busy == nil {
		return
	}
	w.mu.Lock()
	delete(w.busy, j)
	w.mu.Unlock()
}

func (w *watchdog) run(e *engine) {
	defer w.wg.Done()
	tick := min(max(w.timeout/4, 10*time.Millisecond), time.Second)
	t := time.NewTicker(tick)
	defer t.Stop()
	h := e.p.s.h
	buf := make([]byte, minFrameBuf)
	for {
		select {
		case <-w.done:
			return
		case <-t.C:
		}
		now := time.Now().UnixNano()
		was, stalled := w.stalled.Load(), false
		answered := 0
		w.mu.Lock()
		for j := range w.busy {
			if now-j.since < int64(w.timeout) {
				continue
			}
			if !stalled {
				// Before answering: a retry must fail at once.
				stalled = true
				w.stalled.Store(true)
			}
			if j.overdue {
				continue
			}
			j.overdue = true
			// The chain's requests are stable while tracked: answer
			// them from their requests, into our own buffer.
			for m := j; m != nil; m = m.next {
				if !m.answered.CompareAndSwap(false, true) {
					continue
				}
				var a acct
				n, v := h.handleUnavailable(m.info, m.req[:m.n], buf[:cap(buf)], &a)
				h.stats.StalledIO.Add(1)
				sent := int64(0)
				if v == Reply {
					copy(m.dst.HardwareAddr, buf[0:6])
					if _, err := m.conn.WriteTo(buf[:n], m.dst); err != nil && e.errs.allow() {
						e.p.log.Warn("send failed", "err", err, "suppressed", e.errs.suppressed())
					}
					sent = mono()
				}
				// The worker's late result is dropped: this is the
				// request's one count.
				h.record(&a, m.recv, sent)
				h.inflight.Add(-1)
				answered++
			}
		}
		w.mu.Unlock()
		w.stalled.Store(stalled)
		if was != stalled {
			if stalled {
				e.p.log.Error("store stalled: an I/O has taken longer than the deadline; failing requests that need the store until it returns",
					"deadline", w.timeout)
			} else {
				e.p.log.Warn("store answers again; serving requests")
			}
		}
		if answered > 0 {
			e.p.log.Warn("answered requests whose I/O passed the deadline with an error", "requests", answered, "deadline", w.timeout)
		}
	}
}
