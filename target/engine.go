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
