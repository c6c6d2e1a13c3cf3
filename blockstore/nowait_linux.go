package blockstore

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrWouldBlock is returned by ReadAtNoWait when the data is not in the page
// cache, so that reading it would wait for the disk.
var ErrWouldBlock = errors.New("blockstore: data not cached; the read would block")

// noWaitUnsupported is set once the kernel or filesystem refused RWF_NOWAIT.
var noWaitUnsupported atomic.Bool

// pageSize is the unit of the page cache.
var pageSize = os.Getpagesize()

// cachestatUnsupported is set once the kernel refused cachestat(2).
var cachestatUnsupported atomic.Bool

// Cached's errors when it cannot tell, made once: callers ask often.
var (
	errCachedDirect = fmt.Errorf("blockstore: a direct store has no page cache: %w", errors.ErrUnsupported)
	errNoCachestat  = fmt.Errorf("blockstore: cachestat refused before: %w", errors.ErrUnsupported)
)

// nowaitOp is one preadv2 call. Its run method is bound once, so that
// passing it to RawConn.Read allocates nothing.
type nowaitOp struct {
	iov   [MaxVectors]unix.Iovec
	cnt   int
	off   int64
	flags int // RWF_NOWAIT, or 0 on tmpfs (which never waits for a disk)
	n     int
	err   error
	run   func(fd uintptr) bool
}

var nowaitOps = sync.Pool{New: func() any {
	op := new(nowaitOp)
	op.run = op.do
	return op
}}

func (op *nowaitOp) do(fd uintptr) bool {
	for {
		// A raw system call: it does not block (RWF_NOWAIT), so the
		// runtime need not hand the thread's P on, nor wake its monitor
		// thread to watch for that, which costs a context switch per call
		// on a target that goes idle between frames.
		r, _, e := unix.RawSyscall6(unix.SYS_PREADV2, fd, uintptr(unsafe.Pointer(&op.iov[0])), uintptr(op.cnt),
			uintptr(op.off), uintptr(uint64(op.off)>>32), uintptr(op.flags))
		if e == unix.EINTR {
			continue
		}
		op.n = int(r)
		op.err = nil
		if e != 0 {
			op.n, op.err = 0, e
		}
		return true
	}
}

// ReadAtNoWait reads len(p) bytes at byte offset off of the window, like
// ReadAt, but only if they are all in the page cache: otherwise it fails at
// once with ErrWouldBlock, without waiting for the disk (preadv2 with
// RWF_NOWAIT). A server uses it to answer cached reads inline and to hand
// the others to goroutines that may block. A Direct store, which bypasses
// the cache, always returns ErrWouldBlock; a file on tmpfs or ramfs, which
// has no disk to wait for (and where RWF_NOWAIT is not supported), is read
// with a plain pread.
func (f *File) ReadAtNoWait(p []byte, off int64) (int, error) {
	if err := checkRange("read", off, len(p), f.size); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	op, err := f.nowaitOp()
	if err != nil {
		return 0, err
	}
	op.iov[0].Base = &p[0]
	op.iov[0].SetLen(len(p))
	op.cnt = 1
	return f.nowaitRead(op, off, len(p))
}

// ReadvAtNoWait is ReadAtNoWait into each buffer of bufs in turn, as
// ReadvAt reads: one preadv2(2) for the whole range, which succeeds only
// if all of it is cached. More than MaxVectors buffers get ErrWouldBlock.
func (f *File) ReadvAtNoWait(bufs [][]byte, off int64) (int, error) {
	total := 0
	for _, b := range bufs {
		total += len(b)
	}
	if err := checkRange("read", off, total, f.size); err != nil {
		return 0, err
	}
	if total == 0 {
		return 0, nil
	}
	if len(bufs) > MaxVectors {
		return 0, ErrWouldBlock
	}
	op, err := f.nowaitOp()
	if err != nil {
		return 0, err
	}
	op.cnt = 0
	for _, b := range bufs {
		if len(b) > 0 {
			op.iov[op.cnt].Base = &b[0]
			op.iov[op.cnt].SetLen(len(b))
			op.cnt++
		}
	}
	return f.nowaitRead(op, off, total)
}

// Cached reports whether the n bytes at byte offset off of the window are
// all in the page cache, so that ReadAtNoWait of them would succeed (it
// could still fail if the kernel evicts them in between). It reads
// nothing and, unlike a ReadAtNoWait that misses, starts no read from the
// disk: it asks the kernel with cachestat(2). A file on tmpfs or ramfs is
// always cached. The error wraps errors.ErrUnsupported if Cached cannot
// tell: a Direct store (which bypasses the cache), or a kernel without
// cachestat (before Linux 6.5) or that refuses it.
func (f *File) Cached(off int64, n int) (bool, error) {
	if err := checkRange("read", off, n, f.size); err != nil {
		return false, err
	}
	switch {
	case f.dio:
		return false, errCachedDirect
	case f.inRAM, n == 0:
		return true, nil
	case cachestatUnsupported.Load():
		return false, errNoCachestat
	}
	start := f.base + off
	op := cachestatOps.Get().(*cachestatOp)
	op.rng = unix.CachestatRange{Off: uint64(start), Len: uint64(n)}
	// f.raw keeps the descriptor open during the call.
	cerr := f.raw.Control(op.run)
	cached, e := op.st.Cache, op.errno
	cachestatOps.Put(op)
	if cerr != nil {
		return false, ErrClosed
	}
	if e != 0 {
		// ENOSYS: before Linux 6.5; EPERM: a kernel that allows it only
		// to the file's owner or writers; EOPNOTSUPP: hugetlbfs.
		cachestatUnsupported.Store(true)
		return false, fmt.Errorf("blockstore: cachestat %s: %w (%w)", f.path, e, errors.ErrUnsupported)
	}
	// cachestat counts the pages that overlap the range.
	pages := uint64((start+int64(n)-1)/int64(pageSize) - start/int64(pageSize) + 1)
	return cached >= pages, nil
}

// cachestatOp is one cachestat call, bound once as nowaitOp is.
type cachestatOp struct {
	rng   unix.CachestatRange
	st    unix.Cachestat_t
	errno unix.Errno
	run   func(fd uintptr)
}

var cachestatOps = sync.Pool{New: func() any {
	op := new(cachestatOp)
	op.run = op.do
	return op
}}

func (op *cachestatOp) do(fd uintptr) {
	// A raw system call, as in nowaitOp: it never waits.
	_, _, op.errno = unix.RawSyscall6(unix.SYS_CACHESTAT, fd, uintptr(unsafe.Pointer(&op.rng)),
		uintptr(unsafe.Pointer(&op.st)), 0, 0, 0)
}

// nowaitOp returns an op for a read that must not wait, with its flags
// set, or ErrWouldBlock if no read of f can be done that way.
func (f *File) nowaitOp() (*nowaitOp, error) {
	flags := unix.RWF_NOWAIT
	if f.inRAM && !f.dio {
		flags = 0 // tmpfs or ramfs: nothing to wait for, and no RWF_NOWAIT
	} else if f.dio || noWaitUnsupported.Load() {
		return nil, ErrWouldBlock
	}
	op := nowaitOps.Get().(*nowaitOp)
	op.flags = flags
	return op, nil
}

// nowaitRead does op (total bytes at off), returns it to the pool, and
// reports the result as ReadAtNoWait does.
func (f *File) nowaitRead(op *nowaitOp, off int64, total int) (int, error) {
	op.off = f.base + off
	rerr := f.raw.Read(op.run)
	n, err := op.n, op.err
	clear(op.iov[:op.cnt])
	nowaitOps.Put(op)
	switch {
	case rerr != nil:
		return 0, ErrClosed
	case err == unix.EAGAIN:
		return 0, ErrWouldBlock
	case err == unix.EOPNOTSUPP || err == unix.EINVAL || err == unix.ENOSYS:
		noWaitUnsupported.Store(true)
		return 0, ErrWouldBlock
	case err != nil:
		return 0, f.ioError("read", off, total, 0, err)
	case n < total:
		// Partly cached, or the file shrank: let a blocking read decide.
		return 0, ErrWouldBlock
	}
	return n, nil
}
