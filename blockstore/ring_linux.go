package blockstore

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The io_uring ABI (include/uapi/linux/io_uring.h), the parts a Ring uses.
const (
	ioringOffSQRing = 0
	ioringOffSQEs   = 0x10000000

	ioringFeatSingleMmap   = 1 << 0
	ioringFeatSubmitStable = 1 << 2

	ioringEnterGetEvents = 1 << 0

	ioringOpNop    = 0
	ioringOpReadv  = 1
	ioringOpWritev = 2
	ioringOpFsync  = 3

	ioringFsyncDatasync = 1 << 0
)

// WakeUser is the User of the completion a Wake makes.
const WakeUser = ^uint64(0)

type sqringOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqringOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type uringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFD uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqringOffsets
	cqOff                                                                  cqringOffsets
}

type uringSQE struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	rwFlags     uint32
	userData    uint64
	bufIndex    uint16
	personality uint16
	spliceFDIn  int32
	addr3       uint64
	pad         uint64
}

type uringCQE struct {
	userData uint64
	res      int32
	flags    uint32
}

// ErrRingFull reports a Ring.Prepare with every submission slot taken:
// submit, or wait for completions, first.
var ErrRingFull = errors.New("blockstore: io_uring submission queue full")

// Completion is the result of one read or write of a Ring.
type Completion struct {
	// User is the value given to Prepare, or WakeUser.
	User uint64
	// N is the number of bytes transferred; Err is set if the operation
	// failed. A short transfer (N below the total) is not an error here:
	// redo the rest with ReadvAt or WritevAt, which say why.
	N   int
	Err error
}

// Ring submits reads and writes of a File to the kernel in batches through
// an io_uring, and reaps their completions: many I/Os in flight without a
// thread each, and one system call (and one device notification) for a
// batch. One goroutine may call Wait while others Prepare and Submit.
type Ring struct {
	f   *File
	fd  int // the io_uring's
	mem []byte
	sqe []byte

	sqHead, sqTail, sqMask *uint32
	sqArray                unsafe.Pointer
	cqHead, cqTail, cqMask *uint32
	cqes                   unsafe.Pointer
	entries                uint32

	mu      sync.Mutex // guards submission: the SQ tail, iovs, queued
	iovs    [][MaxVectors]unix.Iovec
	queued  uint32 // prepared, not yet submitted
	pending atomic.Int64
	closed  bool

	// file registers the ring with the Go runtime's poller: Wait parks
	// the goroutine there (the thread goes on with other goroutines, and
	// one wait serves the ring and the sockets). nil: Wait blocks its
	// thread in io_uring_enter.
	file   *os.File
	raw    syscall.RawConn
	waitIn []Completion // Wait's, for waitFn
	waitN  int
	waitFn func(fd uintptr) bool

	lanes []*FlushLane // closed with the ring
	// direct, set by WriteDirect, is the window opened again O_DIRECT:
	// the ring's writes go through it.
	direct *File
}

// WriteDirect makes the ring's writes of a store opened without Direct
// go to the disk directly: through a file description of the same file
// opened O_DIRECT, so that they need no write-back when the store is
// flushed, and a group of writes is on the disk (if not yet stable) as
// soon as its last one completes. Reads still use the page cache, which
// the kernel keeps coherent: a direct write drops the cached pages it
// overwrites (and writes back any dirty ones first). Writes that O_DIRECT
// cannot take as they are (buffers, offsets or lengths not aligned as the
// file needs) are refused by Prepare, to be done with WritevAt. It fails,
// and nothing changes, if the file cannot be opened O_DIRECT at sector
// granularity (tmpfs before Linux 6.6, a filesystem or device that needs
// larger blocks), if the store is read-only, or if it is Direct already.
// Call it before the first Prepare.
func (r *Ring) WriteDirect() error {
	f := r.f
	if f.ro || f.dio {
		return fmt.Errorf("blockstore: %s: direct writes are for writable stores opened without Direct", f.path)
	}
	fd, err := f.reopen("O_DIRECT", unix.O_RDWR|unix.O_DIRECT)
	if err != nil {
		return err
	}
	osf := os.NewFile(uintptr(fd), f.path)
	raw, err := osf.SyscallConn()
	if err != nil {
		osf.Close()
		return fmt.Errorf("blockstore: %s: %w", f.path, err)
	}
	d := &File{file: osf, raw: raw, path: f.path, base: f.base, size: f.size, sync: f.sync, blk: f.blk, dio: true, fd: fd}
	if err := d.checkDirect(); err != nil {
		osf.Close()
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.direct != nil {
		osf.Close()
		return fmt.Errorf("blockstore: %s: direct writes: ring closed, or direct already", f.path)
	}
	r.direct = d
	return nil
}

// NewRing returns a Ring of at least entries slots for f's I/O, or an
// error if the kernel has no usable io_uring (it is too old, or io_uring
// is disabled: kernel.io_uring_disabled, seccomp); callers then use
// ReadvAt and WritevAt.
func (f *File) NewRing(entries uint32) (*Ring, error) {
	var p uringParams
	fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if e != 0 {
		return nil, fmt.Errorf("blockstore: io_uring_setup: %w", e)
	}
	r := &Ring{f: f, fd: int(fd), entries: p.sqEntries}
	fail := func(err error) (*Ring, error) {
		r.unmap()
		unix.Close(r.fd)
		return nil, err
	}
	if p.features&ioringFeatSingleMmap == 0 || p.features&ioringFeatSubmitStable == 0 {
		return fail(errors.New("blockstore: io_uring lacks single mmap or stable submission (kernel before 5.5)"))
	}
	size := max(p.sqOff.array+p.sqEntries*4, p.cqOff.cqes+p.cqEntries*uint32(unsafe.Sizeof(uringCQE{})))
	mem, err := unix.Mmap(r.fd, ioringOffSQRing, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fail(fmt.Errorf("blockstore: mmap io_uring rings: %w", err))
	}
	r.mem = mem
	sqe, err := unix.Mmap(r.fd, ioringOffSQEs, int(p.sqEntries)*int(unsafe.Sizeof(uringSQE{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fail(fmt.Errorf("blockstore: mmap io_uring entries: %w", err))
	}
	r.sqe = sqe
	base := unsafe.Pointer(&mem[0])
	at := func(off uint32) *uint32 { return (*uint32)(unsafe.Add(base, off)) }
	r.sqHead, r.sqTail, r.sqMask = at(p.sqOff.head), at(p.sqOff.tail), at(p.sqOff.ringMask)
	r.sqArray = unsafe.Add(base, p.sqOff.array)
	r.cqHead, r.cqTail, r.cqMask = at(p.cqOff.head), at(p.cqOff.tail), at(p.cqOff.ringMask)
	r.cqes = unsafe.Add(base, p.cqOff.cqes)
	r.iovs = make([][MaxVectors]unix.Iovec, p.sqEntries)
	// An io_uring is readable while completions wait in it.
	if unix.SetNonblock(r.fd, true) == nil {
		r.file = os.NewFile(uintptr(r.fd), "io_uring")
		if raw, err := r.file.SyscallConn(); err == nil {
			r.raw = raw
			r.waitFn = func(uintptr) bool {
				r.waitN = r.reap(r.waitIn)
				return r.waitN > 0
			}
		}
	}
	return r, nil
}

func (r *Ring) unmap() {
	if r.sqe != nil {
		unix.Munmap(r.sqe)
		r.sqe = nil
	}
	if r.mem != nil {
		unix.Munmap(r.mem)
		r.mem = nil
	}
}

// Entries is the number of submission slots.
func (r *Ring) Entries() int { return int(r.entries) }

// Pending is the number of reads and writes prepared and not yet reaped.
func (r *Ring) Pending() int { return int(r.pending.Load()) }

// Prepare queues a read into (or a write from) bufs at byte offset off of
// the window, to be sent by the next Submit; Wait returns its Completion
// with user. It checks the range as ReadvAt and WritevAt do, and refuses
// what the ring cannot do as is (more than MaxVectors buffers, or buffers
// a Direct store cannot take without a bounce buffer) with an error: do
// those with ReadvAt or WritevAt. bufs must stay untouched until the
// completion; the slice itself may be reused once Submit returns.
func (r *Ring) Prepare(write bool, bufs [][]byte, off int64, user uint64) error {
	f := r.f
	op := "read"
	if write {
		op = "write"
		if f.ro {
			return fmt.Errorf("blockstore: write %s: %w", f.path, ErrReadOnly)
		}
		if r.direct != nil {
			f = r.direct
		}
	}
	_, aligned, err := f.vecSpan(op, bufs, off)
	if err != nil {
		return err
	}
	if len(bufs) > MaxVectors || len(bufs) == 0 || !aligned {
		return fmt.Errorf("blockstore: %d buffers (aligned %v) cannot go to the ring as they are", len(bufs), aligned)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	idx, err := r.reserve()
	if err != nil {
		return err
	}
	iov := &r.iovs[idx]
	n := 0
	for _, b := range bufs {
		if len(b) > 0 {
			iov[n].Base = &b[0]
			iov[n].SetLen(len(b))
			n++
		}
	}
	e := uringSQE{opcode: ioringOpReadv, fd: int32(f.fd), off: uint64(f.base + off),
		addr: uint64(uintptr(unsafe.Pointer(&iov[0]))), len: uint32(n), userData: user}
	if write {
		e.opcode = ioringOpWritev
		if f.sync {
			e.rwFlags = unix.RWF_DSYNC
		}
	}
	r.queue(idx, e)
	r.pending.Add(1)
	return nil
}

// PrepareFlush queues an fdatasync(2) of the file, to be sent by the next
// Submit: it covers every write that completed before the Submit. It runs
// on one of the kernel's worker threads, so no thread of the caller
// blocks in it; Wait returns its Completion with user, whose Err is to be
// passed to FlushResult.
func (r *Ring) PrepareFlush(user uint64) error {
	return r.prepareFlush(r.f.fd, user)
}

func (r *Ring) prepareFlush(fd int, user uint64) error {
	if r.f.ro {
		return fmt.Errorf("blockstore: flush %s: %w", r.f.path, ErrReadOnly)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	idx, err := r.reserve()
	if err != nil {
		return err
	}
	r.queue(idx, uringSQE{opcode: ioringOpFsync, fd: int32(fd), rwFlags: ioringFsyncDatasync, userData: user})
	r.pending.Add(1)
	return nil
}

// reopen opens the file of f again, as a new open file description with
// flags (the same file even if its path was renamed or removed since),
// close-on-exec; why names it in the error.
func (f *File) reopen(why string, flags int) (int, error) {
	fd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", f.fd), flags|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("blockstore: open %s again %s: %w", f.path, why, err)
	}
	return fd, nil
}

// A FlushLane flushes a Ring's file through a file description of its
// own, so that flushes on different lanes may be in flight together
// safely. The kernel reports a write-back error once per file
// description, to the first fdatasync on it that looks: two flushes in
// flight on one description could hand the error of a page to the one
// that does not cover it, and the other would succeed although a write it
// covers was lost. Each lane's description sees every error that happens
// after it was opened once, so a lane whose flushes are one at a time
// misses none: a flush on a lane reports the failure of any write that
// completed before it was submitted (or its lane's previous flush did).
type FlushLane struct {
	r  *Ring
	fd int
}

// NewFlushLane opens a file description of the ring's file for flushes
// (closed with the ring), or fails if the store is read-only or the file
// cannot be opened again (through /proc/self/fd).
func (r *Ring) NewFlushLane() (*FlushLane, error) {
	if r.f.ro {
		return nil, fmt.Errorf("blockstore: flush %s: %w", r.f.path, ErrReadOnly)
	}
	// O_RDONLY: fdatasync needs no write access, and a block device
	// opened without O_EXCL takes no new claim.
	fd, err := r.f.reopen("for flushes", unix.O_RDONLY)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		unix.Close(fd)
		return nil, fmt.Errorf("blockstore: flush lane: %w", ErrClosed)
	}
	l := &FlushLane{r: r, fd: fd}
	r.lanes = append(r.lanes, l)
	return l, nil
}

// PrepareFlush queues an fdatasync(2) of the file on the lane, as
// Ring.PrepareFlush does on the store's own description. Flush each lane
// one flush at a time: prepare the next only once Wait has returned the
// last.
func (l *FlushLane) PrepareFlush(user uint64) error {
	return l.r.prepareFlush(l.fd, user)
}

// FlushResult returns what Flush would have returned for a flush done
// with PrepareFlush that completed with err: like Flush, the first
// failure is sticky (once a flush failed, the kernel may have dropped the
// data it could not write, and a later flush that succeeds proves
// nothing), so every later flush reports it too.
func (r *Ring) FlushResult(err error) error {
	f := r.f
	if p := f.flushErr.Load(); p != nil {
		return *p
	}
	if err == nil {
		return nil
	}
	err = fmt.Errorf("blockstore: flush %s: fdatasync: %w", f.path, err)
	f.flushErr.CompareAndSwap(nil, &err)
	return *f.flushErr.Load()
}

// slot returns the index of the next free submission entry, with r.mu
// held; ok is false if the queue is full.
func (r *Ring) slot() (idx uint32, ok bool) {
	tail := atomic.LoadUint32(r.sqTail) + r.queued
	if tail-atomic.LoadUint32(r.sqHead) >= r.entries {
		return 0, false
	}
	return tail & *r.sqMask, true
}

// reserve returns the index of the next free submission entry for an
// operation, with r.mu held: ErrClosed once the ring is closed,
// ErrRingFull if the queue is full.
func (r *Ring) reserve() (uint32, error) {
	if r.closed {
		return 0, ErrClosed
	}
	idx, ok := r.slot()
	if !ok {
		return 0, ErrRingFull
	}
	return idx, nil
}

// queue fills entry idx (from slot) with e and queues it for the next
// submission, with r.mu held.
func (r *Ring) queue(idx uint32, e uringSQE) {
	*(*uringSQE)(unsafe.Pointer(&r.sqe[uintptr(idx)*unsafe.Sizeof(uringSQE{})])) = e
	*(*uint32)(unsafe.Add(r.sqArray, uintptr(idx)*4)) = idx
	r.queued++
}

// Submit sends every prepared operation to the kernel with one system
// call, and returns how many it took.
func (r *Ring) Submit() (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.submitLocked()
}

func (r *Ring) submitLocked() (int, error) {
	if r.queued == 0 {
		return 0, nil
	}
	atomic.StoreUint32(r.sqTail, atomic.LoadUint32(r.sqTail)+r.queued)
	want := r.queued
	r.queued = 0
	done := uint32(0)
	for done < want {
		// Submission does not wait for the I/O (reads and O_DIRECT
		// writes are attempted without blocking, else handed to the
		// kernel's workers): a raw system call, as in ReadAtNoWait.
		n, _, e := unix.RawSyscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(want-done), 0, 0, 0, 0)
		if e == unix.EINTR || e == unix.EAGAIN || e == unix.EBUSY {
			if e != unix.EINTR {
				// Completions must be reaped first; they will be.
				runtime.Gosched()
			}
			continue
		}
		if e != 0 {
			return int(done), fmt.Errorf("blockstore: io_uring_enter: %w", e)
		}
		done += uint32(n)
	}
	// The kernel has copied the iovecs (IORING_FEAT_SUBMIT_STABLE): the
	// slots may be reused.
	return int(done), nil
}

// Wake makes a Wait that blocks return (with a Completion whose User is
// WakeUser), e.g. to stop the goroutine that waits.
func (r *Ring) Wake() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	idx, ok := r.slot()
	if !ok {
		return ErrRingFull
	}
	r.queue(idx, uringSQE{opcode: ioringOpNop, fd: -1, userData: WakeUser})
	_, err := r.submitLocked()
	return err
}

// Wait reaps completions into out, waiting until at least one is there
// if none is, and returns how many it reaped. It waits in the Go
// runtime's poller, as a socket read does: the thread goes on running
// other goroutines, and one wake-up serves the ring and the sockets
// (blocking the thread in io_uring_enter, and the hand-offs between
// threads that follow, cost several times the disk's own CPU time per
// read on one core). What the caller did before
// the Prepare and Submit of an operation happens before Wait returns its
// completion (in the Go memory model too, not only in the kernel's).
func (r *Ring) Wait(out []Completion) (int, error) {
	if r.raw != nil && len(out) > 0 {
		r.waitIn = out
		err := r.raw.Read(r.waitFn)
		n := r.waitN
		r.waitIn, r.waitN = nil, 0
		if n > 0 {
			r.mu.Lock()
			r.mu.Unlock() //nolint:staticcheck // an empty critical section, for the happens-before edge
			return n, nil
		}
		r.mu.Lock()
		closed := r.closed
		r.mu.Unlock()
		if closed {
			return 0, ErrClosed
		}
		return 0, fmt.Errorf("blockstore: wait for io_uring: %w", err)
	}
	for {
		n := r.reap(out)
		if n > 0 {
			// The Submit that sent these ran under r.mu: taking it makes
			// the submitters' writes visible to the caller.
			r.mu.Lock()
			r.mu.Unlock() //nolint:staticcheck // an empty critical section, for the happens-before edge
			return n, nil
		}
		if len(out) == 0 {
			return 0, nil
		}
		_, _, e := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), 0, 1, ioringEnterGetEvents, 0, 0)
		if e != 0 && e != unix.EINTR && e != unix.EAGAIN && e != unix.EBUSY {
			return 0, fmt.Errorf("blockstore: io_uring_enter: %w", e)
		}
	}
}

func (r *Ring) reap(out []Completion) int {
	head := atomic.LoadUint32(r.cqHead)
	tail := atomic.LoadUint32(r.cqTail)
	n := 0
	for head != tail && n < len(out) {
		c := (*uringCQE)(unsafe.Add(r.cqes, uintptr(head&*r.cqMask)*unsafe.Sizeof(uringCQE{})))
		out[n] = Completion{User: c.userData}
		if c.res < 0 {
			out[n].Err = syscall.Errno(-c.res)
		} else {
			out[n].N = int(c.res)
		}
		if c.userData != WakeUser {
			r.pending.Add(-1)
		}
		head++
		n++
	}
	atomic.StoreUint32(r.cqHead, head)
	return n
}

// Close releases the ring. Operations in flight complete in the kernel
// (it waits for them); their completions are lost. A Wait parked for
// completions returns an error wrapping ErrClosed.
func (r *Ring) Close() error {
	r.mu.Lock()
	r.closed = true
	lanes, direct := r.lanes, r.direct
	r.lanes = nil
	r.mu.Unlock()
	// A flush in flight holds its own reference to the file: closing
	// the lane's descriptor does not cut it short.
	for _, l := range lanes {
		unix.Close(l.fd)
	}
	if direct != nil {
		// Not File.Close, which flushes: the store's Close does.
		direct.file.Close()
	}
	if r.file != nil {
		// Close waits for a Wait inside its reap to return, and makes
		// Wait fail from then on: the rings can then be unmapped.
		err := r.file.Close()
		r.unmap()
		return err
	}
	r.unmap()
	return unix.Close(r.fd)
}
