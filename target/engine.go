package target

import (
	"net"
	"sync"
	"unsafe"

	"github.com/mdlayher/packet"

	"github.com/aoetarget/aoetarget/aoe"
)

// minFrameBuf is the smallest frame buffer: room for MTU 9216 (the
// largest jumbo MTU in common use); a larger MTU at startup gets larger
// buffers.
const minFrameBuf = 9216 + aoe.EthernetHeaderLen

// job is one frame buffer of the engine's pool and the request in it.
type job struct {
	req, resp []byte // each a whole frame buffer; data at byte 36 is page-aligned
	n         int    // length of the request in req
	conn      net.PacketConn
	info      Port
	dst       *packet.Addr

	gone    bool // handed to a worker: no longer in the reader's stash
	ordered bool
	io      bool // staged: op holds the read or write, the reply is built
	op      ioOp // the staged read or write
	next    *job // the next job of a chain of adjacent staged I/Os
	nchain  int  // jobs in the chain this job heads
	span    span
	deps    int    // conflicting earlier jobs not yet done
	waiters []*job // later jobs waiting for this one
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
	errs    errLimiter
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
	size := max(minFrameBuf, info.MTU+aoe.EthernetHeaderLen)
	e := &engine{
		p:     p,
		free:  make(chan *job, pool),
		work:  make(chan *job, pool),
		nwork: workers,
	}
	for range pool {
		e.free <- &job{
			req:     alignedFrame(size),
			resp:    alignedFrame(size),
			dst:     &packet.Addr{HardwareAddr: make(net.HardwareAddr, 6)},
			waiters: make([]*job, 0, 4),
		}
	}
	return e
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
}

// stop waits for the requests in progress to finish and stops the
// workers.
func (e *engine) stop() {
	e.pending.Wait()
	close(e.work)
	e.workers.Wait()
}

// ordered runs j once the earlier requests it conflicts with are done.
func (e *engine) ordered(j *job) {
	e.pending.Add(1)
	j.ordered = true
	if e.sched.admit(j) {
		e.work <- j
	}
}

// unordered runs j on a worker now.
func (e *engine) unordered(j *job) {
	e.pending.Add(1)
	j.ordered = false
	e.work <- j
}

// workerState is what one worker reuses from request to request.
type workerState struct {
	ready []*job
	bufs  [][]byte // the buffers of a chain's I/O
	out   [][]byte // a chain's replies
	conn  net.PacketConn
	mm    *mmsgConn // sends a chain's replies in one call; nil for in-memory conns
}

func (e *engine) worker() {
	defer e.workers.Done()
	h := e.p.s.h
	w := &workerState{bufs: make([][]byte, 0, maxChain), out: make([][]byte, 0, maxChain)}
	for j := range e.work {
		if j.io {
			e.runChain(j, w)
		} else {
			rn, v := h.Handle(j.info, j.req[:j.n], j.resp)
			e.reply(j, rn, v)
		}
		if j.ordered {
			w.ready = e.sched.done(j, w.ready[:0])
			for _, r := range w.ready {
				e.work <- r // never blocks: the channel holds the whole pool
			}
			clear(w.ready)
		}
		for j != nil {
			next := j.next
			j.conn, j.next, j.io, j.nchain = nil, nil, false, 0
			j.op = ioOp{}
			e.free <- j
			j = next
		}
		e.pending.Done()
	}
}

// runChain does the I/O of a chain of staged requests for adjacent
// sectors, all reads or all writes, as one vectored read or write (for
// writes, then a flush shared with concurrent writers unless the export
// is writeback), and sends every reply. If the merged I/O fails, each
// request is retried alone, so that only those whose own sectors fail get
// an error.
func (e *engine) runChain(head *job, w *workerState) {
	h := e.p.s.h
	if w.conn != head.conn {
		w.conn, w.mm = head.conn, newMmsgConn(head.conn, maxChain)
	}
	w.bufs = w.bufs[:0]
	total := 0
	for m := head; m != nil; m = m.next {
		w.bufs = append(w.bufs, m.op.buf)
		total += len(m.op.buf)
	}
	err := h.vectorIO(head.op.write, w.bufs, head.op.off, total)
	if err != nil && head.next != nil {
		for m := head; m != nil; m = m.next {
			w.bufs = append(w.bufs[:0], m.op.buf)
			merr := h.vectorIO(m.op.write, w.bufs, m.op.off, len(m.op.buf))
			e.finishIO(m, merr, w)
		}
	} else {
		for m := head; m != nil; m = m.next {
			e.finishIO(m, err, w)
		}
	}
	clear(w.bufs)
	if len(w.out) > 0 {
		if err := w.mm.send(w.out); err != nil && e.errs.allow() {
			e.p.log.Warn("send failed", "err", err, "suppressed", e.errs.suppressed())
		}
	}
	clear(w.out)
	w.out = w.out[:0]
}

// finishIO completes the reply of m and queues it (or sends it, when the
// conn cannot batch).
func (e *engine) finishIO(m *job, err error, w *workerState) {
	n, v := e.p.s.h.complete(m.resp, &m.op, err)
	if w.mm != nil {
		w.out = append(w.out, m.resp[:n]) // runChain sends them
		return
	}
	e.reply(m, n, v)
}

// reply sends the reply the handler built for j, if any.
func (e *engine) reply(j *job, n int, v Verdict) {
	if v != Reply {
		return
	}
	copy(j.dst.HardwareAddr, j.resp[0:6])
	if _, err := j.conn.WriteTo(j.resp[:n], j.dst); err != nil && e.errs.allow() {
		e.p.log.Warn("send failed", "err", err, "suppressed", e.errs.suppressed())
	}
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

	stash []*job   // free buffers owned by the reader; stash[:n] just received
	out   [][]byte // replies to send
	bufs  [][]byte // receive buffers for recvmmsg
	lens  []int    // received lengths
	errs  errLimiter

	// The chain being built: staged I/Os of this batch for adjacent
	// sectors, admitted as one job when the next request cannot join it.
	head, tail *job
}

// maxChain bounds the requests merged into one I/O.
const maxChain = 32

func newReader(e *engine) *reader {
	batch := max(1, min(maxBatch, cap(e.free)/2))
	return &reader{
		e:     e,
		batch: batch,
		stash: make([]*job, 0, batch),
		out:   make([][]byte, 0, batch),
		bufs:  make([][]byte, batch),
		lens:  make([]int, batch),
	}
}

// recv tops up the stash with free buffers and receives frames into them:
// as many as are queued (up to a batch) when the socket can batch, else
// one. It returns how many arrived; they are r.stash[:n].
func (r *reader) recv(conn net.PacketConn) (int, error) {
	if conn != r.conn {
		r.conn = conn
		r.mm = newMmsgConn(conn, r.batch)
	}
	if len(r.stash) == 0 {
		j := <-r.e.free // wait for a buffer
		j.gone = false
		r.stash = append(r.stash, j)
	}
	if r.mm == nil {
		j := r.stash[0]
		n, _, err := conn.ReadFrom(j.req)
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
	n, err := r.mm.recv(r.bufs[:len(r.stash)], r.lens)
	clear(r.bufs)
	for i := range n {
		r.stash[i].n = r.lens[i]
	}
	return n, err
}

// dispatch starts the request in j: the reader answers it at once, or a
// worker gets it (and j.gone is set: the buffer left the stash).
func (r *reader) dispatch(j *job) {
	e := r.e
	h := e.p.s.h
	req := j.req[:j.n]
	k, sp := classify(req)
	switch k {
	case kindRead, kindWrite:
		// A read may be served from the cache unless it must wait for
		// an earlier write (in flight, or in the chain being built).
		cache := k == kindRead && !e.sched.busy(sp) && !(r.head != nil && r.head.span.conflicts(sp))
		rn, v, res := h.stage(j.info, req, j.resp, cache, &j.op)
		switch res {
		case stageDone:
			r.reply(j, rn, v)
		case stageIO:
			j.span = sp
			j.io = true
			j.gone = true
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
		rn, v := h.Handle(j.info, req, j.resp)
		r.reply(j, rn, v)
	}
}

// chain adds the staged I/O j to the chain being built if it continues
// it (same direction, the next sectors); otherwise it admits that chain
// and starts a new one with j.
func (r *reader) chain(j *job) {
	if t := r.tail; t != nil && t.op.write == j.op.write && r.head.nchain < maxChain &&
		t.op.off+int64(len(t.op.buf)) == j.op.off && j.info == r.head.info {
		t.next = j
		r.tail = j
		r.head.nchain++
		r.head.span.n += j.span.n
		return
	}
	r.closeChain()
	j.nchain = 1
	r.head, r.tail = j, j
}

// closeChain admits the chain being built, if any, to the engine.
func (r *reader) closeChain() {
	if r.head != nil {
		r.e.ordered(r.head)
		r.head, r.tail = nil, nil
	}
}

// reply queues the reply the handler built in j.
func (r *reader) reply(j *job, n int, v Verdict) {
	if v != Reply {
		return
	}
	if r.mm == nil {
		r.e.reply(j, n, v)
		return
	}
	r.out = append(r.out, j.resp[:n])
}

// flush sends the queued replies and drops the buffers handed to workers
// from the stash.
func (r *reader) flush() {
	r.closeChain()
	if len(r.out) > 0 {
		if err := r.mm.send(r.out); err != nil && r.errs.allow() {
			r.e.p.log.Warn("send failed", "err", err, "suppressed", r.errs.suppressed())
		}
		clear(r.out)
		r.out = r.out[:0]
	}
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
}

// release gives the stash back to the pool, when the loop stops.
func (r *reader) release() {
	for _, j := range r.stash {
		r.e.free <- j
	}
	r.stash = r.stash[:0]
}
