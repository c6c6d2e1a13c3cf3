package target

import (
	"context"
	"log/slog"

	"github.com/aoetarget/aoetarget/aoe"
)

// ata answers an Issue ATA Command request (AoEr11, Section 3.1). Errors
// of the command or the store are ATA errors (status ERR with ABRT, IDNF or
// UNC): the Linux initiator fails the I/O at once on those, while it keeps
// retransmitting requests answered with AoE errors until aoe_deadsecs.
func (h *Handler) ata(r *reply) int {
	q, err := aoe.ParseATA(r.req.Arg)
	if err != nil {
		return r.aoeError(aoe.ErrorBadArgument)
	}
	if q.CmdStatus != aoe.ATAIdentifyDevice && h.reserved(r.req.Src) {
		return r.aoeError(aoe.ErrorTargetReserved)
	}
	r.a.op = ataOpIndex(q.CmdStatus)
	a := aoe.ATA{
		Flags:       q.Flags,
		SectorCount: q.SectorCount,
		CmdStatus:   aoe.ATAStatusDRDY,
		LBA:         q.LBA,
	}
	b := r.headers(0)
	data := len(b) + aoe.ATAArgLen // where the reply's data starts
	n := 0                         // bytes of data in the reply
	switch q.CmdStatus {
	case aoe.ATAIdentifyDevice:
		if len(r.buf) < data+aoe.IdentifyLen {
			fail(&a, aoe.ATAErrorABRT)
			break
		}
		n = copy(r.buf[data:], h.identity[:])
	case aoe.ATACheckPowerMode:
		a.SectorCount = 0xff // active or idle
	case aoe.ATAFlushCache, aoe.ATAFlushCacheExt:
		if r.unavailable {
			fail(&a, aoe.ATAErrorABRT)
			break
		}
		if r.nowait {
			r.deferred = true
			return 0
		}
		if err := h.flush(); err != nil {
			fail(&a, aoe.ATAErrorABRT)
		}
	case aoe.ATAReadSectors, aoe.ATAReadSectorsExt:
		n = h.read(r, q, &a, r.buf[data:])
	case aoe.ATAWriteSectors, aoe.ATAWriteSectorsExt:
		if r.nowait && !r.stage {
			r.deferred = true
			return 0
		}
		h.write(r, q, &a)
	default:
		fail(&a, aoe.ATAErrorABRT)
	}
	if a.CmdStatus&aoe.ATAStatusERR != 0 {
		r.a.ataErr, r.a.bytes = true, 0
		n = 0
	}
	b, _ = a.AppendHeader(b) // the LBA came from 48 bits on the wire
	return len(b) + n
}

// fail turns a into a failed command with the given error register.
func fail(a *aoe.ATA, errbits uint8) {
	a.CmdStatus = aoe.ATAStatusDRDY | aoe.ATAStatusERR
	a.ErrFeature = errbits
}

// span checks the sector range of a read or write request against the
// export and the frame, and returns its byte offset and length. On failure
// it marks a failed: IDNF for a range past the end of the export, ABRT for
// a count that does not fit in a frame.
func (h *Handler) span(r *reply, q aoe.ATA, a *aoe.ATA) (off int64, n int, ok bool) {
	lba := q.LBA
	if q.CmdStatus == aoe.ATAReadSectors || q.CmdStatus == aoe.ATAWriteSectors {
		lba &= aoe.MaxLBA28 // the Linux initiator sets the top nibble of lba3
	}
	count := uint64(q.SectorCount)
	if count > uint64(MaxSectors(r.port.MTU)) {
		fail(a, aoe.ATAErrorABRT)
		return 0, 0, false
	}
	if lba > h.store.Sectors() || count > h.store.Sectors()-lba {
		fail(a, aoe.ATAErrorIDNF)
		return 0, 0, false
	}
	return int64(lba) * aoe.SectorSize, int(count) * aoe.SectorSize, true
}

// read serves READ SECTORS (EXT) into dst, the reply's data area, and
// returns the number of bytes read.
func (h *Handler) read(r *reply, q aoe.ATA, a *aoe.ATA, dst []byte) int {
	off, n, ok := h.span(r, q, a)
	if !ok {
		return 0
	}
	if n > len(dst) {
		fail(a, aoe.ATAErrorABRT)
		return 0
	}
	if r.unavailable {
		fail(a, aoe.ATAErrorUNC|aoe.ATAErrorABRT)
		return 0
	}
	if r.stage {
		if r.cache && h.nowait != nil {
			if _, err := h.nowait.ReadAtNoWait(dst[:n], off); err == nil {
				r.a.bytes = uint32(n)
				return n
			}
		}
		r.op = ioOp{off: off, buf: dst[:n]}
		r.staged = true
		r.a.bytes = uint32(n) // if it succeeds (see complete)
		return n
	}
	if r.nowait {
		if h.nowait == nil {
			r.deferred = true
			return 0
		}
		if _, err := h.nowait.ReadAtNoWait(dst[:n], off); err != nil {
			// Not cached, or a failure that a blocking read will report.
			r.deferred = true
			return 0
		}
	} else if _, err := h.store.ReadAt(dst[:n], off); err != nil {
		h.ioError("read", off, n, err)
		fail(a, aoe.ATAErrorUNC|aoe.ATAErrorABRT)
		return 0
	}
	r.a.bytes = uint32(n)
	return n
}

// write serves WRITE SECTORS (EXT). Unless the export is writeback, the
// data is durable before the reply is built.
func (h *Handler) write(r *reply, q aoe.ATA, a *aoe.ATA) {
	off, n, ok := h.span(r, q, a)
	if !ok {
		return
	}
	if len(q.Data) < n {
		// The frame does not carry the sectors it announces.
		fail(a, aoe.ATAErrorABRT)
		return
	}
	if h.store.ReadOnly() || r.unavailable {
		fail(a, aoe.ATAErrorABRT)
		return
	}
	if r.stage {
		r.op = ioOp{write: true, off: off, buf: q.Data[:n]}
		r.staged = true
		r.a.bytes = uint32(n) // if it succeeds (see complete)
		return
	}
	group := h.groupCommit()
	if group {
		h.commits.begin()
	}
	if _, err := h.store.WriteAt(q.Data[:n], off); err != nil {
		if group {
			h.commits.abort()
		}
		h.ioError("write", off, n, err)
		fail(a, aoe.ATAErrorABRT)
		return
	}
	if group {
		// Group commit: one fdatasync covers every write completed
		// before it started, so concurrent writes share it.
		if err := h.commits.sync(h.flush); err != nil {
			fail(a, aoe.ATAErrorABRT)
			return
		}
	}
	r.a.bytes = uint32(n)
}

// flush makes completed writes durable.
func (h *Handler) flush() error {
	if h.store.ReadOnly() {
		return nil
	}
	h.stats.Flushes.Add(1)
	if err := h.store.Flush(); err != nil {
		h.ioError("flush", 0, 0, err)
		return err
	}
	return nil
}

func (h *Handler) ioError(op string, off int64, n int, err error) {
	h.stats.IOErrors.Add(1)
	h.log.LogAttrs(context.Background(), slog.LevelWarn, "store error", slog.String("op", op),
		slog.Int64("offset", off), slog.Int("bytes", n), slog.Any("err", err))
}

// groupCommit reports whether writes need a flush before they are
// acknowledged: the export is not writeback and the store is not durable
// by itself (O_DSYNC).
func (h *Handler) groupCommit() bool { return !h.wback && !h.store.Durable() }

// ioOp is a read or write request that the handler validated and built
// the reply for, as if it succeeds, leaving the I/O to the engine, which
// may merge it with the I/O of adjacent requests.
type ioOp struct {
	write bool
	off   int64  // byte offset in the export
	buf   []byte // a read's data area in the reply; a write's sectors
	n     int    // length of the reply frame when the I/O succeeds
}

// stageResult says what stage did with a request.
type stageResult uint8

const (
	stageDone     stageResult = iota // answered or dropped: send the reply, if any
	stageIO                          // do op's I/O, then complete
	stageDeferred                    // needs Handle on a goroutine that may block
)

// stage answers req like TryHandle, except that a read or write that
// needs the store is validated, its reply built in resp as if it succeeds,
// and returned in op for the caller to do (then complete). With cache set,
// a read of cached data is served at once instead.
//
// stage describes the request in a, for the caller to record once it sent
// the reply (or dropped the request); for stageIO, after complete.
// For stageDeferred, a means nothing: the request is yet to be handled.
func (h *Handler) stage(p Port, req, resp []byte, cache bool, op *ioOp, a *acct) (int, Verdict, stageResult) {
	n, v := h.handleOp(p, req, resp, true, op, cache, false, a)
	switch v {
	case deferred:
		return 0, 0, stageDeferred
	case staged:
		return n, Reply, stageIO
	}
	n, v = h.finish(resp, n, v, a)
	return n, v, stageDone
}

// readCached reads total bytes at off into bufs, as a chain of staged
// reads would, if they are all cached, without waiting for the disk, and
// reports whether it did.
func (h *Handler) readCached(bufs [][]byte, off int64, total int) bool {
	if h.nowaitv != nil {
		n, err := h.nowaitv.ReadvAtNoWait(bufs, off)
		return err == nil && n == total
	}
	if h.nowait == nil {
		return false
	}
	for _, b := range bufs {
		if _, err := h.nowait.ReadAtNoWait(b, off); err != nil {
			return false
		}
		off += int64(len(b))
	}
	return true
}

// mayBeCached reports whether total bytes at off may all be in the cache:
// false only if the store says, without reading, that they are not.
func (h *Handler) mayBeCached(off int64, total int) bool {
	if h.prober == nil {
		return true
	}
	cached, err := h.prober.Cached(off, total)
	return cached || err != nil
}

// complete finishes the reply in resp to a request that stage returned in
// op, given the result of its I/O (for a write, of its flush too): on
// failure, the reply becomes the ATA error Handle would give. It returns
// the reply's length and verdict, and notes the outcome in a, which stage
// filled in. The caller logs err, and records a once it sent the reply.
func (h *Handler) complete(resp []byte, op *ioOp, err error, a *acct) (int, Verdict) {
	n := op.n
	if err != nil {
		bits := uint8(aoe.ATAErrorABRT)
		if !op.write {
			bits |= aoe.ATAErrorUNC
		}
		resp[aoe.FrameHeaderLen+1] = bits
		resp[aoe.FrameHeaderLen+3] = aoe.ATAStatusDRDY | aoe.ATAStatusERR
		n = aoe.FrameHeaderLen + aoe.ATAArgLen
		a.ataErr, a.bytes = true, 0
	}
	return h.finish(resp, n, Reply, a)
}

// vectorIO reads into or writes from bufs, total bytes from byte offset
// off, with one vectored call when the store has it; with sync, a write is
// then made durable (group commit) unless the export is writeback or the
// store is durable by itself. It logs a failure and returns it.
func (h *Handler) vectorIO(write bool, bufs [][]byte, off int64, total int, sync bool) error {
	group := sync && write && h.groupCommit()
	if group {
		h.commits.begin()
	}
	var err error
	switch {
	case h.vector != nil && write:
		_, err = h.vector.WritevAt(bufs, off)
	case h.vector != nil:
		_, err = h.vector.ReadvAt(bufs, off)
	default:
		pos := off
		for _, b := range bufs {
			if write {
				_, err = h.store.WriteAt(b, pos)
			} else {
				_, err = h.store.ReadAt(b, pos)
			}
			if err != nil {
				break
			}
			pos += int64(len(b))
		}
	}
	op := "read"
	if write {
		op = "write"
	}
	if err != nil {
		if group {
			h.commits.abort()
		}
		h.ioError(op, off, total, err)
		return err
	}
	if group {
		return h.commits.sync(h.flush)
	}
	return nil
}
