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

func (e *engine) worker() {
	defer e.workers.Done()
	h := e.p.s.h
	var ready []*job
	for j := range e.work {
		rn, v := h.Handle(j.info, j.req[:j.n], j.resp)
		e.reply(j, rn, v)
		if j.ordered {
			ready = e.sched.done(j, ready[:0])
			for _, r := range ready {
				e.work <- r // never blocks: the channel holds the whole pool
			}
			clear(ready)
		}
		j.conn = nil
		e.free <- j
		e.pending.Done()
	}
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
}

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
	case kindRead:
		if !e.sched.busy(sp) {
			if rn, v, ok := h.TryHandle(j.info, req, j.resp); ok {
				r.reply(j, rn, v)
				return
			}
		}
		j.span = sp
		j.gone = true
		e.ordered(j)
	case kindWrite:
		j.span = sp
		j.gone = true
		e.ordered(j)
	case kindFlush:
		j.gone = true
		e.unordered(j)
	default:
		rn, v := h.Handle(j.info, req, j.resp)
		r.reply(j, rn, v)
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
