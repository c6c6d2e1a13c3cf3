package blockstore

import (
	"errors"
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

// nowaitOp is one preadv2 call. Its run method is bound once, so that
// passing it to RawConn.Read allocates nothing.
type nowaitOp struct {
	iov   unix.Iovec
	off   int64
	flags int // RWF_NOWAIT, or 0 on tmpfs (which never waits for a disk)
	n     int
	err error
	run func(fd uintptr) bool
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
		r, _, e := unix.RawSyscall6(unix.SYS_PREADV2, fd, uintptr(unsafe.Pointer(&op.iov)), 1,
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
	flags := unix.RWF_NOWAIT
	if f.inRAM && !f.dio {
		flags = 0
	} else if f.dio || noWaitUnsupported.Load() {
		return 0, ErrWouldBlock
	}
	op := nowaitOps.Get().(*nowaitOp)
	op.flags = flags
	op.iov.Base = &p[0]
	op.iov.SetLen(len(p))
	op.off = f.base + off
	rerr := f.raw.Read(op.run)
	n, err := op.n, op.err
	op.iov.Base = nil
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
		return 0, f.ioError("read", off, len(p), 0, err)
	case n < len(p):
		// Partly cached, or the file shrank: let a blocking read decide.
		return 0, ErrWouldBlock
	}
	return n, nil
}
