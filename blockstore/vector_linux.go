package blockstore

import (
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// MaxVectors is the most buffers one ReadvAt or WritevAt passes to a
// single preadv(2) or pwritev(2); longer lists are split.
const MaxVectors = 64

// vecOp is one preadv or pwritev call. Its run method is bound once, so
// that passing it to RawConn.Control allocates nothing; RawConn.Control only
// holds a reference on the descriptor, so concurrent calls do not serialize
// (as they would under RawConn.Read).
type vecOp struct {
	iov  [MaxVectors]unix.Iovec
	trap uintptr
	cnt  int
	off  int64
	n    int
	err  error
	run  func(fd uintptr)
}

var vecOps = sync.Pool{New: func() any {
	op := new(vecOp)
	op.run = op.do
	return op
}}

func (op *vecOp) do(fd uintptr) {
	for {
		r, _, e := unix.Syscall6(op.trap, fd, uintptr(unsafe.Pointer(&op.iov[0])), uintptr(op.cnt),
			uintptr(op.off), uintptr(uint64(op.off)>>32), 0)
		if e == unix.EINTR {
			continue
		}
		op.n, op.err = int(r), nil
		if e != 0 {
			op.n, op.err = 0, e
		}
		return
	}
}

// ReadvAt reads into each buffer of bufs in turn, starting at byte offset
// off of the window, as ReadAt would read into their concatenation: one
// preadv(2) for the whole range instead of one pread per buffer. It fails
// with ErrOutOfRange, without reading, unless the whole range lies inside
// the window. It returns the bytes read and an error whenever that is
// fewer than the total. On a Direct store, buffers that are not aligned are
// read one by one through bounce buffers.
func (f *File) ReadvAt(bufs [][]byte, off int64) (int, error) {
	return f.vector(unix.SYS_PREADV, bufs, off)
}

// WritevAt writes each buffer of bufs in turn, starting at byte offset off
// of the window, as WriteAt would write their concatenation, with one
// pwritev(2). Its errors are those of WriteAt; with Sync the data is stable
// when it returns nil.
func (f *File) WritevAt(bufs [][]byte, off int64) (int, error) {
	if f.ro {
		return f.WriteAt(nil, off) // ErrReadOnly
	}
	return f.vector(unix.SYS_PWRITEV, bufs, off)
}

func (f *File) vector(trap uintptr, bufs [][]byte, off int64) (int, error) {
	op := "read"
	if trap == unix.SYS_PWRITEV {
		op = "write"
	}
	total, aligned, err := f.vecSpan(op, bufs, off)
	if err != nil {
		return 0, err
	}
	if f.dio && !aligned {
		return f.each(trap, bufs, off)
	}
	done := 0
	for len(bufs) > 0 {
		k := min(len(bufs), MaxVectors)
		grp := bufs[:k]
		bufs = bufs[k:]
		want := 0
		v := vecOps.Get().(*vecOp)
		v.trap, v.cnt, v.off = trap, 0, f.base+off+int64(done)
		for _, b := range grp {
			if len(b) > 0 {
				v.iov[v.cnt].Base = &b[0]
				v.iov[v.cnt].SetLen(len(b))
				v.cnt++
				want += len(b)
			}
		}
		var n int
		var err error
		if v.cnt > 0 {
			if cerr := f.raw.Control(v.run); cerr != nil {
				err = ErrClosed
			} else {
				n, err = v.n, v.err
			}
		}
		clear(v.iov[:v.cnt])
		vecOps.Put(v)
		if err != nil {
			return done, f.ioError(op, off, total, done, err)
		}
		done += n
		if n < want {
			// Short (the file shrank, or the kernel split the
			// transfer): go on buffer by buffer, which completes the
			// group or reports why it cannot.
			m, err := f.each(trap, skip(grp, n), off+int64(done))
			done += m
			if err != nil {
				return done, err
			}
		}
	}
	return done, nil
}

// skip returns bufs without their first n bytes (it may reslice the first
// remaining buffer, but never modifies bufs).
func skip(bufs [][]byte, n int) [][]byte {
	for len(bufs) > 0 && n >= len(bufs[0]) {
		n -= len(bufs[0])
		bufs = bufs[1:]
	}
	if n == 0 || len(bufs) == 0 {
		return bufs
	}
	rest := make([][]byte, len(bufs))
	copy(rest, bufs)
	rest[0] = rest[0][n:]
	return rest
}

// each transfers bufs one by one with ReadAt or WriteAt from byte off.
func (f *File) each(trap uintptr, bufs [][]byte, off int64) (int, error) {
	done := 0
	for _, b := range bufs {
		var n int
		var err error
		if trap == unix.SYS_PWRITEV {
			n, err = f.WriteAt(b, off+int64(done))
		} else {
			n, err = f.ReadAt(b, off+int64(done))
		}
		done += n
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// vecSpan checks that the concatenation of bufs at byte off lies inside
// the window and returns its length, and whether a Direct store can take
// the buffers as they are (true when not Direct).
func (f *File) vecSpan(op string, bufs [][]byte, off int64) (total int, aligned bool, err error) {
	aligned = off%SectorSize == 0
	for _, b := range bufs {
		total += len(b)
		aligned = aligned && (!f.dio || f.aligned(b, 0))
	}
	return total, aligned, checkRange(op, off, total, f.size)
}
