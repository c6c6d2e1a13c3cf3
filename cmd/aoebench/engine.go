package main

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/aoetarget/aoetarget/aoe"
)

// link carries frames to and from the target. The engine calls it from one
// goroutine. The Linux implementation is an AF_PACKET socket with
// sendmmsg/recvmmsg; tests use an in-memory target.
type link interface {
	// send sends the frames, each a whole Ethernet frame. A frame the
	// kernel drops (queue full) counts in dropped; the engine's timeout
	// sends it again. An error means the link is unusable.
	send(frames [][]byte) (dropped int, err error)
	// recv waits a short while (a few milliseconds) for frames and
	// returns those that arrived, nil if none did. The slices are valid
	// until the next call.
	recv() ([][]byte, error)
}

// engineConfig is what the engine needs to know about the target and the
// workload.
type engineConfig struct {
	dst, src     aoe.MAC
	major        uint16
	minor        uint8
	window       int
	layout       layout
	mode         rwMode
	random       bool
	timeout      time.Duration
	seed         uint64
	frameBufLen  int  // bytes per request buffer: at least offData + frameSectors*512
	maxStampErrs int  // stamp mismatches kept with their description
	keepFrameLat bool // also record per-frame latency
}

// slot is one frame in flight, found by the low 16 bits of its tag.
type slot struct {
	buf     []byte // the request frame, built in place
	n       int    // its length
	tag     uint32 // the tag of its latest sending
	prevTag uint32 // the one before, whose late reply is accepted too
	gen     uint32
	sent    int64 // ns: latest sending
	first   int64 // ns: first sending
	io      int32 // the I/O it belongs to
	lba     uint64
	count   uint8
	write   bool
	live    bool
}

// ioState is one I/O in progress: a block, written or read frame by frame.
type ioState struct {
	lba     uint64
	start   int64 // ns: its first frame sent
	next    int   // next frame to issue in this phase
	frames  int   // frames per phase
	done    int   // frames answered in this phase
	write   bool  // the phase writes
	verify  bool  // write, then read back and check
	seq     uint32
	failed  bool // a frame came back with an error
	inReady bool
}

// counters are what a run measured.
type counters struct {
	ios, frames, bytes    uint64
	readFrames, wrFrames  uint64
	retransmits, dropped  uint64
	aoeErrors, ataErrors  uint64
	short, stale, ignored uint64
	verifyErrors          uint64
	failedIOs             uint64
	sendCalls, recvCalls  uint64 // link calls (batches), recvCalls counting empty ones
	recvFrames            uint64 // frames received, replies or not
	ioLat, frameLat       histogram
}

// engine is the measuring loop: a fixed window of frames in flight, each
// in a slot found by its tag, pre-built request buffers and no allocation
// per frame.
type engine struct {
	cfg  engineConfig
	link link
	now  func() int64 // monotonic ns

	slots   []slot
	free    []int32 // free slots, a stack
	ios     []ioState
	freeIOs []int32
	ready   []int32 // I/Os with frames left to issue, a ring
	rHead   int
	rLen    int
	pick    picker
	seq     uint32
	seed32  uint32
	outbuf  [][]byte // frames of the next send
	inUse   int      // I/Os in progress
	stop    atomic.Bool
	c       counters
	errs    []string // the first stamp mismatches and ATA errors, described
	noIssue bool     // stop issuing new I/Os (draining)
}

func newEngine(cfg engineConfig, l link, now func() int64) (*engine, error) {
	if cfg.window < 1 || cfg.window > 1<<16 {
		return nil, fmt.Errorf("window %d: must be from 1 to 65536", cfg.window)
	}
	need := offData + cfg.layout.frameSectors*aoe.SectorSize
	if cfg.frameBufLen < need {
		cfg.frameBufLen = need
	}
	e := &engine{
		cfg:    cfg,
		link:   l,
		now:    now,
		slots:  make([]slot, cfg.window),
		free:   make([]int32, 0, cfg.window),
		ios:    make([]ioState, cfg.window+1),
		ready:  make([]int32, cfg.window+1),
		pick:   newPicker(cfg.random, cfg.layout.blocks, cfg.seed),
		seed32: uint32(splitmix(cfg.seed ^ 0x5eed)),
		outbuf: make([][]byte, 0, cfg.window),
	}
	// Write data for plain writes: not zeros (some storage stacks detect
	// and skip those), and not compressible to nothing.
	fill := make([]byte, cfg.layout.frameSectors*aoe.SectorSize)
	x := splitmix(cfg.seed) | 1
	for i := 0; i+8 <= len(fill); i += 8 {
		x = xorshift(x)
		for j := range 8 {
			fill[i+j] = byte(x >> (8 * j))
		}
	}
	for i := range e.slots {
		b, err := newRequest(cfg.frameBufLen, cfg.dst, cfg.src, cfg.major, cfg.minor)
		if err != nil {
			return nil, err
		}
		copy(b[offData:], fill)
		e.slots[i].buf = b
	}
	for i := cfg.window - 1; i >= 0; i-- {
		e.free = append(e.free, int32(i))
	}
	e.freeIOs = make([]int32, 0, len(e.ios))
	for i := len(e.ios) - 1; i >= 0; i-- {
		e.freeIOs = append(e.freeIOs, int32(i))
	}
	return e, nil
}

// phases of a run: the hooks are called when measuring starts and ends.
type phases struct {
	warmup, duration time.Duration
	count            int64 // I/Os to measure; 0: duration
	onStart, onEnd   func()
}

// result is what run returns: the counters of the measured phase and its
// length.
type runResult struct {
	c       counters
	elapsed time.Duration
	inDrain int // frames still unanswered when the run gave up waiting
	errs    []string
}

// run runs the warmup and the measured phase, then stops issuing and
// waits up to three timeouts for the frames in flight. Stop (from another
// goroutine) ends the run early; what was measured so far is returned.
func (e *engine) run(p phases) (runResult, error) {
	begin := e.now()
	measureAt := begin + int64(p.warmup)
	measuring := false
	var start, end int64
	if p.warmup == 0 {
		if p.onStart != nil {
			p.onStart()
		}
		measuring, start = true, e.now()
	}
	nextScan := begin + e.scanInterval()
	var drainUntil int64
	for {
		now := e.now()
		if !measuring && !e.noIssue && now >= measureAt {
			if p.onStart != nil {
				p.onStart()
			}
			now = e.now()
			measuring, start = true, now
			e.c = counters{}
		}
		if !e.noIssue && (e.stop.Load() || (measuring && ((p.count > 0 && int64(e.c.ios) >= p.count) ||
			(p.count == 0 && now-start >= int64(p.duration))))) {
			if !measuring { // stopped during the warmup
				start = now
			}
			end = now
			if p.onEnd != nil {
				p.onEnd()
			}
			e.noIssue = true
			// Long enough for a frame lost just before the end to be
			// sent again and answered.
			drainUntil = now + 3*int64(e.cfg.timeout)
			measuring = false
		}
		if e.noIssue && (len(e.free) == len(e.slots) || now >= drainUntil) {
			break
		}
		if err := e.issue(now); err != nil {
			return runResult{}, err
		}
		frames, err := e.link.recv()
		if err != nil {
			return runResult{}, err
		}
		e.c.recvCalls++
		e.c.recvFrames += uint64(len(frames))
		if len(frames) > 0 {
			now = e.now()
			for _, f := range frames {
				e.receive(f, now, measuring)
			}
		}
		if now >= nextScan {
			if err := e.resend(now); err != nil {
				return runResult{}, err
			}
			nextScan = now + e.scanInterval()
		}
	}
	return runResult{c: e.c, elapsed: time.Duration(end - start), inDrain: len(e.slots) - len(e.free), errs: e.errs}, nil
}

// Stop ends the run early; safe from any goroutine.
func (e *engine) Stop() { e.stop.Store(true) }

func (e *engine) scanInterval() int64 {
	return max(int64(e.cfg.timeout)/8, int64(time.Millisecond))
}

// issue fills every free slot with the next frame and sends them in one
// batch.
func (e *engine) issue(now int64) error {
	e.outbuf = e.outbuf[:0]
	for len(e.free) > 0 {
		ioi, ok := e.nextIO(now)
		if !ok {
			break
		}
		io := &e.ios[ioi]
		si := e.free[len(e.free)-1]
		e.free = e.free[:len(e.free)-1]
		s := &e.slots[si]
		lba, count := e.cfg.layout.frame(io.lba, io.next)
		io.next++
		if io.next == io.frames {
			e.popReady()
		}
		if io.write && io.verify {
			for k := range int(count) {
				stampSector(s.buf[offData+k*aoe.SectorSize:], lba+uint64(k), io.seq, e.seed32)
			}
		}
		s.gen++
		s.prevTag = 0
		s.tag = makeTag(int(si), s.gen)
		s.n = putATA(s.buf, s.tag, io.write, lba, count)
		s.sent, s.first = now, now
		s.io, s.lba, s.count, s.write, s.live = ioi, lba, count, io.write, true
		e.outbuf = append(e.outbuf, s.buf[:s.n])
	}
	return e.flush()
}

// flush sends the frames gathered in outbuf.
func (e *engine) flush() error {
	if len(e.outbuf) == 0 {
		return nil
	}
	dropped, err := e.link.send(e.outbuf)
	e.c.dropped += uint64(dropped)
	e.c.sendCalls++
	e.outbuf = e.outbuf[:0]
	return err
}

// nextIO returns the I/O whose frame goes out next: the oldest with frames
// left to issue, else a new one (unless the run is draining).
func (e *engine) nextIO(now int64) (int32, bool) {
	if e.rLen > 0 {
		return e.ready[e.rHead], true
	}
	if e.noIssue || len(e.freeIOs) == 0 {
		return 0, false
	}
	ioi := e.freeIOs[len(e.freeIOs)-1]
	e.freeIOs = e.freeIOs[:len(e.freeIOs)-1]
	e.inUse++
	e.seq++
	io := &e.ios[ioi]
	*io = ioState{
		lba:    e.pickBlock(),
		start:  now,
		frames: e.cfg.layout.framesPerBlock(),
		write:  e.cfg.mode != modeRead,
		verify: e.cfg.mode == modeVerify,
		seq:    e.seq,
	}
	e.pushReady(ioi)
	return ioi, true
}

// pickBlock returns the first sector of the next block. With verify, a
// block that another I/O in progress uses is skipped, so that what a read
// returns is what the same I/O wrote.
func (e *engine) pickBlock() uint64 {
	for tries := 0; ; tries++ {
		lba := e.cfg.layout.blockLBA(e.pick.pick())
		if e.cfg.mode != modeVerify || tries > 64 || !e.blockBusy(lba) {
			return lba
		}
	}
}

func (e *engine) blockBusy(lba uint64) bool {
	for i := range e.ios {
		if e.ios[i].frames > 0 && e.ios[i].lba == lba {
			return true
		}
	}
	return false
}

func (e *engine) pushReady(ioi int32) {
	e.ready[(e.rHead+e.rLen)%len(e.ready)] = ioi
	e.rLen++
	e.ios[ioi].inReady = true
}

func (e *engine) popReady() {
	e.ios[e.ready[e.rHead]].inReady = false
	e.rHead = (e.rHead + 1) % len(e.ready)
	e.rLen--
}

// receive handles one frame from the link.
func (e *engine) receive(b []byte, now int64, counting bool) {
	tag, st := checkReply(b, e.cfg.major, e.cfg.minor)
	if st == replyIgnore {
		e.c.ignored++
		return
	}
	si := tagSlot(tag)
	if si >= len(e.slots) {
		e.c.stale++
		return
	}
	s := &e.slots[si]
	if !s.live || (tag != s.tag && tag != s.prevTag) {
		e.c.stale++ // a late reply to a frame already answered
		return
	}
	io := &e.ios[s.io]
	switch st {
	case replyAoEError:
		e.c.aoeErrors++
		io.failed = true
		e.note(fmt.Sprintf("sectors %d+%d: AoE error %d (%v)", s.lba, s.count, b[offError], aoe.Error(b[offError])))
	case replyATAError:
		e.c.ataErrors++
		io.failed = true
		e.note(fmt.Sprintf("sectors %d+%d: ATA status %#02x, error %#02x", s.lba, s.count, b[offStatus], b[offErrFeat]))
	default:
		if !s.write {
			if !readComplete(b, s.count) {
				e.c.short++
				io.failed = true
				e.note(fmt.Sprintf("sectors %d+%d: read reply of %d bytes", s.lba, s.count, len(b)))
			} else if io.verify {
				for k := range int(s.count) {
					if err := checkSector(b[offData+k*aoe.SectorSize:], s.lba+uint64(k), io.seq, e.seed32); err != nil {
						e.c.verifyErrors++
						io.failed = true
						e.note(err.Error())
					}
				}
			}
		}
	}
	if counting {
		e.c.frames++
		e.c.bytes += uint64(s.count) * aoe.SectorSize
		if s.write {
			e.c.wrFrames++
		} else {
			e.c.readFrames++
		}
		if e.cfg.keepFrameLat {
			e.c.frameLat.record(uint64(max(now-s.sent, 0)))
		}
	}
	s.live = false
	e.free = append(e.free, int32(si))
	io.done++
	if io.done < io.frames {
		return
	}
	if io.verify && io.write && !io.failed {
		// Read back what was just acknowledged.
		io.write, io.next, io.done = false, 0, 0
		e.pushReady(s.io)
		return
	}
	if counting {
		e.c.ios++
		if io.failed {
			e.c.failedIOs++
		}
		e.c.ioLat.record(uint64(max(now-io.start, 0)))
	}
	io.frames = 0
	e.inUse--
	e.freeIOs = append(e.freeIOs, s.io)
}

// note keeps the description of an error, up to a bound.
func (e *engine) note(s string) {
	if len(e.errs) < max(e.cfg.maxStampErrs, 1) {
		e.errs = append(e.errs, s)
	}
}

// resend sends again, with a new tag, every frame unanswered for longer
// than the timeout.
func (e *engine) resend(now int64) error {
	e.outbuf = e.outbuf[:0]
	for i := range e.slots {
		s := &e.slots[i]
		if !s.live || now-s.sent < int64(e.cfg.timeout) {
			continue
		}
		s.gen++
		s.prevTag, s.tag = s.tag, makeTag(i, s.gen)
		putTag(s.buf, s.tag)
		s.sent = now
		e.c.retransmits++
		e.outbuf = append(e.outbuf, s.buf[:s.n])
	}
	return e.flush()
}
