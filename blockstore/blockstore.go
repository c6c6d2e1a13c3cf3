package blockstore

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// SectorSize is the size in bytes of an AoE sector, the unit of
// [Options.Offset], [Options.Length] and Sectors.
const SectorSize = 512

// Errors returned by this package, wrapped with %w and context; test for them
// with errors.Is.
var (
	// ErrOutOfRange reports a ReadAt or WriteAt that does not lie entirely
	// inside the window (negative offset, or past the end).
	ErrOutOfRange = errors.New("outside the export window")

	// ErrReadOnly reports a WriteAt on a store opened read-only.
	ErrReadOnly = errors.New("store is read-only")

	// ErrWindow reports an Offset or Length that is negative or lies past the
	// end of the file or device.
	ErrWindow = errors.New("invalid window")

	// ErrTooSmall reports a file or device smaller than one sector.
	ErrTooSmall = errors.New("smaller than one sector")

	// ErrUnaligned reports a WriteAt on a store opened with Options.Direct
	// whose offset or length is not a multiple of SectorSize. (AoE requests
	// are always whole sectors; unaligned reads are served through a bounce
	// buffer.)
	ErrUnaligned = errors.New("O_DIRECT write not aligned to 512-byte sectors")

	// ErrNoDirect reports that Options.Direct was asked for but the file
	// cannot do O_DIRECT I/O on 512-byte sectors: the filesystem does not
	// support O_DIRECT, or needs larger alignment (a 4096-byte logical block
	// size). Open the file without Direct instead.
	ErrNoDirect = errors.New("O_DIRECT on 512-byte sectors is not supported")

	// ErrInUse reports that Open found the file locked by another
	// process (see Open) or the block device in use.
	ErrInUse = errors.New("in use")

	// ErrClosed reports an operation on a closed store. It is os.ErrClosed.
	ErrClosed = os.ErrClosed
)

// Store is the backing disk of an export, as the target uses it. [File] and
// [Memory] implement it.
//
// ReadAt and WriteAt follow io.ReaderAt and io.WriterAt, with byte offsets
// relative to the start of the export window; they are safe for concurrent
// use and return an error whenever fewer than len(p) bytes were transferred.
type Store interface {
	io.ReaderAt
	io.WriterAt

	// Flush makes all completed writes stable (fdatasync). It returns nil
	// for a read-only store.
	Flush() error

	// Sectors is the size of the window in 512-byte sectors.
	Sectors() uint64

	// ReadOnly reports whether WriteAt always fails with ErrReadOnly.
	ReadOnly() bool

	// Durable reports whether every successful WriteAt is already stable
	// when it returns, so no Flush is needed before acknowledging it.
	Durable() bool

	// Close flushes (if writable) and releases the store.
	Close() error
}

var _ Store = (*Memory)(nil)

// checkRange reports whether [off, off+n) lies inside a window of size bytes,
// without overflowing.
func checkRange(op string, off int64, n int, size int64) error {
	if off < 0 || off > size || int64(n) > size-off {
		return fmt.Errorf("blockstore: %s of %d bytes at byte %d, window is %d bytes: %w",
			op, n, off, size, ErrOutOfRange)
	}
	return nil
}
