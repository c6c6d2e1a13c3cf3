package blockstore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

var _ Store = (*File)(nil)

// fdatasync is unix.Fdatasync; tests replace it to inject failures.
var fdatasync = unix.Fdatasync

// Options configure [Open]. Offset and Length are in 512-byte sectors, like
// vblade's -o and -l.
type Options struct {
	// Offset is the first sector of the window within the file or device.
	Offset int64

	// Length is the number of sectors in the window; 0 means up to the end
	// of the file or device.
	Length int64

	// ReadOnly opens the file O_RDONLY; WriteAt then fails with ErrReadOnly.
	ReadOnly bool

	// Direct opens the file O_DIRECT, bypassing the page cache. Open fails if
	// the filesystem does not support O_DIRECT or needs alignment larger than
	// 512 bytes. Buffers of any alignment are accepted (unaligned ones go
	// through a pooled bounce buffer), but writes must start and end on
	// 512-byte boundaries (ErrUnaligned otherwise). Direct alone does not make
	// writes durable; see Sync.
	Direct bool

	// Sync opens the file O_DSYNC: every WriteAt has reached stable storage
	// (data, and the metadata needed to read it back, with the device's write
	// cache flushed) when it returns, and Durable reports true.
	//
	// O_DSYNC rather than O_SYNC: it is the per-write equivalent of
	// fdatasync, which is all a block export needs; O_SYNC would also commit
	// timestamp updates on every write to a regular file, costing an extra
	// journal commit per request for nothing an initiator can observe.
	Sync bool
}

// File is a regular file or block device opened as an export's backing disk,
// restricted to a window of whole sectors. It is Linux-only.
//
// ReadAt and WriteAt use pread and pwrite (no shared file offset) and are safe
// for concurrent use, also with Flush and Close; after Close they fail with an
// error wrapping ErrClosed.
type File struct {
	file  *os.File
	raw   syscall.RawConn
	path  string
	base  int64 // byte offset of the window in the file
	size  int64 // byte size of the window, a multiple of SectorSize
	ro    bool
	sync  bool
	blk   bool
	dio   bool
	align uintptr // O_DIRECT memory alignment of user buffers
	inRAM bool    // a tmpfs or ramfs file: reads never wait for a disk
	fd    int     // the descriptor, for io_uring (valid until Close)

	flushErr atomic.Pointer[error] // first Flush failure; sticky
}

// Open opens the regular file or block device at path as a store.
//
// Block devices are opened O_EXCL, so a device that is mounted, claimed by md
// or device-mapper, or held open exclusively by someone else (including
// another Open) is refused with an error wrapping EBUSY and ErrInUse. A
// regular file is locked with flock(2), exclusively when writable, shared
// when read-only: a file another writable Open (in any process) holds, or
// a file to open writable that another Open holds at all, is refused with
// ErrInUse. The size of a block
// device comes from the BLKGETSIZE64 ioctl, that of a regular file from
// fstat; either is rounded down to whole sectors. A file under one sector
// fails with ErrTooSmall; a negative Offset or Length, or a window past the
// end, fails with ErrWindow.
func Open(path string, opts Options) (*File, error) {
	if opts.Offset < 0 || opts.Length < 0 {
		return nil, fmt.Errorf("blockstore: %s: negative offset (%d) or length (%d): %w",
			path, opts.Offset, opts.Length, ErrWindow)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("blockstore: %w", err)
	}
	blk, err := kind(path, fi)
	if err != nil {
		return nil, err
	}

	flags := os.O_RDWR
	if opts.ReadOnly {
		flags = os.O_RDONLY
	}
	if opts.Direct {
		flags |= unix.O_DIRECT
	}
	if opts.Sync {
		flags |= unix.O_DSYNC
	}
	if blk {
		flags |= unix.O_EXCL
	}
	osf, err := os.OpenFile(path, flags, 0)
	if err != nil {
		switch {
		case blk && errors.Is(err, unix.EBUSY):
			return nil, fmt.Errorf("blockstore: %s is in use (mounted, an md/LVM/dm member, or opened exclusively by another process): %w: %w", path, ErrInUse, err)
		case opts.Direct && errors.Is(err, unix.EINVAL):
			return nil, fmt.Errorf("blockstore: %s: the filesystem does not support O_DIRECT (drop the direct option): %w: %w", path, ErrNoDirect, err)
		}
		return nil, fmt.Errorf("blockstore: %w", err)
	}
	if !blk {
		if err := lock(osf, path, opts.ReadOnly); err != nil {
			osf.Close()
			return nil, err
		}
	}
	f, err := setup(osf, path, fi, blk, opts)
	if err != nil {
		osf.Close()
		return nil, err
	}
	return f, nil
}

// lock takes an advisory lock on a regular file (flock(2)): exclusive to
// write it, shared to read it, so that two writable exports of one file,
// or a writable and a read-only one, cannot run at once. The lock goes
// with the descriptor. (A block device is opened O_EXCL instead.)
func lock(osf *os.File, path string, readOnly bool) error {
	how := unix.LOCK_EX
	if readOnly {
		how = unix.LOCK_SH
	}
	raw, err := osf.SyscallConn()
	if err != nil {
		return fmt.Errorf("blockstore: %s: %w", path, err)
	}
	err = control(raw, func(fd int) error { return unix.Flock(fd, how|unix.LOCK_NB) })
	if errors.Is(err, unix.EWOULDBLOCK) {
		return fmt.Errorf("blockstore: %s is in use: another process holds a lock on it (another export?): %w", path, ErrInUse)
	}
	if err != nil && !errors.Is(err, unix.ENOLCK) && !errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("blockstore: %s: flock: %w", path, err)
	}
	return nil
}

// kind reports whether fi is a block device, and refuses anything that is
// neither a block device nor a regular file (before opening it, so a FIFO
// cannot block Open).
func kind(path string, fi fs.FileInfo) (blk bool, err error) {
	m := fi.Mode()
	switch {
	case m.IsRegular():
		return false, nil
	case m&fs.ModeDevice != 0 && m&fs.ModeCharDevice == 0:
		return true, nil
	}
	return false, fmt.Errorf("blockstore: %s is not a regular file or block device (mode %v)", path, m)
}

// setup checks what was opened and fills in a File.
func setup(osf *os.File, path string, before fs.FileInfo, blk bool, opts Options) (*File, error) {
	fi, err := osf.Stat()
	if err != nil {
		return nil, fmt.Errorf("blockstore: %w", err)
	}
	if !os.SameFile(before, fi) {
		return nil, fmt.Errorf("blockstore: %s was replaced while being opened", path)
	}
	if b, err := kind(path, fi); err != nil || b != blk {
		return nil, fmt.Errorf("blockstore: %s changed type while being opened", path)
	}
	raw, err := osf.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("blockstore: %s: %w", path, err)
	}

	var inRAM bool
	if !blk {
		var st unix.Statfs_t
		if control(raw, func(fd int) error { return unix.Fstatfs(fd, &st) }) == nil {
			inRAM = st.Type == unix.TMPFS_MAGIC || st.Type == unix.RAMFS_MAGIC
		}
	}
	var bytes int64
	if blk {
		var n uint64
		if err := control(raw, func(fd int) (err error) {
			n, err = unix.IoctlGetUint64(fd, unix.BLKGETSIZE64)
			return err
		}); err != nil {
			return nil, fmt.Errorf("blockstore: %s: BLKGETSIZE64: %w", path, err)
		}
		if n > math.MaxInt64 {
			return nil, fmt.Errorf("blockstore: %s: device size %d bytes is too large", path, n)
		}
		bytes = int64(n)
	} else {
		bytes = fi.Size()
	}
	if bytes < SectorSize {
		return nil, fmt.Errorf("blockstore: %s: %d bytes, need at least %d: %w", path, bytes, SectorSize, ErrTooSmall)
	}
	total := bytes / SectorSize
	if opts.Offset >= total {
		return nil, fmt.Errorf("blockstore: %s: offset %d sectors is not before the end (%d sectors): %w",
			path, opts.Offset, total, ErrWindow)
	}
	length := opts.Length
	if length == 0 {
		length = total - opts.Offset
	} else if length > total-opts.Offset {
		return nil, fmt.Errorf("blockstore: %s: window of %d sectors at offset %d ends at sector %d, past the end (%d sectors): %w",
			path, length, opts.Offset, uint64(opts.Offset)+uint64(length), total, ErrWindow)
	}

	f := &File{
		file:  osf,
		raw:   raw,
		path:  path,
		base:  opts.Offset * SectorSize,
		size:  length * SectorSize,
		ro:    opts.ReadOnly,
		sync:  opts.Sync,
		blk:   blk,
		dio:   opts.Direct,
		inRAM: inRAM,
	}
	_ = raw.Control(func(fd uintptr) { f.fd = int(fd) })
	if opts.Direct {
		if err := f.checkDirect(); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// control runs fn on the file descriptor, retrying on EINTR.
func control(raw syscall.RawConn, fn func(fd int) error) error {
	var err error
	if cerr := raw.Control(func(fd uintptr) {
		for {
			err = fn(int(fd))
			if err != unix.EINTR {
				return
			}
		}
	}); cerr != nil {
		// Control fails only once the file is closed (with the internal
		// poll.ErrFileClosing, which os.File methods report as ErrClosed).
		return ErrClosed
	}
	return err
}

// checkDirect finds the O_DIRECT alignment of f and refuses O_DIRECT when it
// needs more than 512-byte offsets and lengths.
func (f *File) checkDirect() error {
	lbs, memAlign := uint32(0), uint32(0)
	if f.blk {
		if err := control(f.raw, func(fd int) (err error) {
			lbs, err = unix.IoctlGetUint32(fd, unix.BLKSSZGET)
			return err
		}); err != nil {
			return fmt.Errorf("blockstore: %s: BLKSSZGET: %w", f.path, err)
		}
		memAlign = lbs
	}
	var stx unix.Statx_t
	if control(f.raw, func(fd int) error {
		return unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_DIOALIGN, &stx)
	}) == nil && stx.Mask&unix.STATX_DIOALIGN != 0 {
		if stx.Dio_offset_align == 0 {
			return fmt.Errorf("blockstore: %s: the filesystem does not support O_DIRECT (drop the direct option): %w", f.path, ErrNoDirect)
		}
		lbs = max(lbs, stx.Dio_offset_align)
		memAlign = stx.Dio_mem_align
	}
	if lbs > SectorSize {
		return fmt.Errorf("blockstore: %s: O_DIRECT needs %d-byte aligned I/O but AoE sectors are %d bytes (drop the direct option): %w",
			f.path, lbs, SectorSize, ErrNoDirect)
	}
	if memAlign == 0 {
		memAlign = SectorSize
	}
	if memAlign > bounceAlign {
		return fmt.Errorf("blockstore: %s: O_DIRECT needs %d-byte aligned buffers, more than a page (drop the direct option): %w",
			f.path, memAlign, ErrNoDirect)
	}
	// Confirm with a real read of the first sector, and find the memory
	// alignment if the kernel did not say.
	var err error
	tried := uintptr(0)
	for _, a := range [...]uintptr{uintptr(memAlign), SectorSize, bounceAlign} {
		if a <= tried {
			continue
		}
		tried = a
		if err = f.probe(a); err == nil {
			f.align = a
			return nil
		}
		if !errors.Is(err, unix.EINVAL) {
			break
		}
	}
	if errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("blockstore: %s: O_DIRECT read of sector %d refused (the filesystem needs alignment larger than %d bytes, or does not support O_DIRECT; drop the direct option): %w: %w",
			f.path, f.base/SectorSize, SectorSize, ErrNoDirect, err)
	}
	return fmt.Errorf("blockstore: %s: O_DIRECT probe read of sector %d: %w", f.path, f.base/SectorSize, err)
}

// probe reads the first sector of the window with O_DIRECT into a buffer
// aligned to a but not to 2*a (unless a is the page size).
func (f *File) probe(a uintptr) error {
	buf := make([]byte, 4*bounceAlign)
	p := uintptr(unsafe.Pointer(&buf[0]))
	skip := (a - p%a) % a
	if a < bounceAlign && (p+skip)%(2*a) == 0 {
		skip += a
	}
	b := buf[skip : skip+SectorSize]
	n, err := f.file.ReadAt(b, f.base)
	if err == nil && n != len(b) {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// Sectors returns the size of the window in 512-byte sectors.
func (f *File) Sectors() uint64 { return uint64(f.size) / SectorSize }

// ReadAt reads len(p) bytes at byte offset off of the window. It fails with
// ErrOutOfRange, without reading, unless the whole range lies inside the
// window, and returns an error whenever fewer than len(p) bytes were read
// (wrapping io.ErrUnexpectedEOF if the file ended early, for example because
// it was truncated while open). It does not allocate, except through the
// bounce buffer pool for unaligned buffers on a Direct store.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	if err := checkRange("read", off, len(p), f.size); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if f.dio && !f.aligned(p, off) {
		return f.readBounce(p, off)
	}
	n, err := f.file.ReadAt(p, f.base+off)
	if err != nil {
		return n, f.ioError("read", off, len(p), n, err)
	}
	return n, nil
}

// WriteAt writes p at byte offset off of the window. It fails with
// ErrReadOnly or ErrOutOfRange without writing unless the store is writable
// and the whole range lies inside the window, and with ErrUnaligned on a
// Direct store unless off and len(p) are multiples of SectorSize. It returns
// an error whenever fewer than len(p) bytes were written. With Sync the data
// is stable when WriteAt returns nil; otherwise call Flush.
func (f *File) WriteAt(p []byte, off int64) (int, error) {
	if f.ro {
		return 0, fmt.Errorf("blockstore: write %s: %w", f.path, ErrReadOnly)
	}
	if err := checkRange("write", off, len(p), f.size); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if f.dio && !f.aligned(p, off) {
		if off%SectorSize != 0 || len(p)%SectorSize != 0 {
			return 0, fmt.Errorf("blockstore: write of %d bytes at byte %d: %w", len(p), off, ErrUnaligned)
		}
		return f.writeBounce(p, off)
	}
	n, err := f.file.WriteAt(p, f.base+off)
	if err != nil {
		return n, f.ioError("write", off, len(p), n, err)
	}
	return n, nil
}

// aligned reports whether p and off can go to O_DIRECT as they are.
func (f *File) aligned(p []byte, off int64) bool {
	return off%SectorSize == 0 && len(p)%SectorSize == 0 &&
		uintptr(unsafe.Pointer(unsafe.SliceData(p)))%f.align == 0
}

// readBounce serves a Direct read whose buffer, offset or length is not
// aligned by reading the enclosing whole sectors into bounce buffers.
func (f *File) readBounce(p []byte, off int64) (int, error) {
	bb := getBounce()
	defer putBounce(bb)
	b := bb.buf
	end := off + int64(len(p))
	pos := off &^ (SectorSize - 1)
	last := (end + SectorSize - 1) &^ (SectorSize - 1) // <= f.size: the window is whole sectors
	done := 0
	for pos < last {
		chunk := b[:min(int64(len(b)), last-pos)]
		m, err := f.file.ReadAt(chunk, f.base+pos)
		lo, hi := max(pos, off), min(pos+int64(m), end)
		if hi > lo {
			copy(p[lo-off:hi-off], chunk[lo-pos:hi-pos])
			done = int(hi - off)
		}
		if err != nil {
			return done, f.ioError("read", off, len(p), done, err)
		}
		pos += int64(len(chunk))
	}
	return done, nil
}

// writeBounce serves a Direct write of whole sectors from an unaligned
// buffer by copying it through bounce buffers.
func (f *File) writeBounce(p []byte, off int64) (int, error) {
	bb := getBounce()
	defer putBounce(bb)
	b := bb.buf
	done := 0
	for done < len(p) {
		chunk := b[:copy(b, p[done:])]
		m, err := f.file.WriteAt(chunk, f.base+off+int64(done))
		done += m
		if err != nil {
			return done, f.ioError("write", off, len(p), done, err)
		}
	}
	return done, nil
}

// ioError describes a failed or short pread/pwrite.
func (f *File) ioError(op string, off int64, n, done int, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("blockstore: short %s of %s at window byte %d: %d of %d bytes (file shrank?): %w",
			op, f.path, off, done, n, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("blockstore: %s of %d bytes at window byte %d: %w", op, n, off, err)
}

// Flush makes every completed WriteAt stable with fdatasync(2), which for a
// block device also flushes the device's volatile write cache. It returns nil
// for a read-only store. A failure is sticky: later calls return the same
// error, because the kernel reports a lost write-back only once.
func (f *File) Flush() error {
	if f.ro {
		return nil
	}
	if p := f.flushErr.Load(); p != nil {
		return *p
	}
	err := control(f.raw, fdatasync)
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrClosed) {
		return fmt.Errorf("blockstore: flush %s: %w", f.path, err)
	}
	err = fmt.Errorf("blockstore: flush %s: fdatasync: %w", f.path, err)
	f.flushErr.CompareAndSwap(nil, &err)
	return *f.flushErr.Load()
}

// Durable reports whether every successful WriteAt is stable when it returns
// (the store was opened with Options.Sync).
func (f *File) Durable() bool { return f.sync }

// ReadOnly reports whether the store was opened read-only.
func (f *File) ReadOnly() bool { return f.ro }

// BlockDevice reports whether the store is a block device rather than a
// regular file.
func (f *File) BlockDevice() bool { return f.blk }

// Direct reports whether the store was opened O_DIRECT.
func (f *File) Direct() bool { return f.dio }

// Path returns the path the store was opened with.
func (f *File) Path() string { return f.path }

// Close flushes the store (unless it is read-only) and closes it. The file is
// closed even if the flush fails; the flush error is returned then.
func (f *File) Close() error {
	ferr := f.Flush()
	if err := f.file.Close(); err != nil {
		return fmt.Errorf("blockstore: close: %w", err)
	}
	return ferr
}
