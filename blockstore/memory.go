package blockstore

import (
	"fmt"
	"math"
	"math/bits"
	"sync"
)

// Op names an operation on a [Memory], for [Memory.SetFault].
type Op uint8

// Operations passed to a fault hook. The zero value is invalid.
const (
	_ Op = iota
	OpRead
	OpWrite
	OpFlush
)

// String returns "read", "write" or "flush".
func (o Op) String() string {
	switch o {
	case OpRead:
		return "read"
	case OpWrite:
		return "write"
	case OpFlush:
		return "flush"
	}
	return fmt.Sprintf("Op(%d)", uint8(o))
}

// Memory is an in-memory [Store] for unit tests and fuzzing, with fault
// injection and a model of a volatile write cache.
//
// It keeps two images of the disk: the contents (what ReadAt returns, see
// [Memory.Bytes]) and the stable contents (what would survive a power
// failure, see [Memory.Stable]). WriteAt updates the contents; Flush copies
// the written sectors to the stable image, unless SetDurable(true), which
// makes every WriteAt stable at once (like Options.Sync). [Memory.Crash]
// throws away what was not yet stable.
//
// Range, read-only and closed checks behave as for [File]. Injected errors are
// checked after them, so they only affect requests that would otherwise
// succeed, and a failed operation changes nothing. All methods are safe for
// concurrent use.
type Memory struct {
	mu       sync.RWMutex
	data     []byte
	stable   []byte
	dirty    []uint64 // bitmap of sectors written since the last Flush
	size     int64
	readOnly bool
	durable  bool
	closed   bool
	readErr  error
	writeErr error
	flushErr error
	fault    func(op Op, off int64, n int) error
	flushes  int
	writes   int
}

// NewMemory returns a writable, non-durable, zero-filled Memory of the given
// number of 512-byte sectors. It panics if the size cannot be allocated.
func NewMemory(sectors uint64) *Memory {
	if sectors > math.MaxInt/(2*SectorSize) {
		panic(fmt.Sprintf("blockstore: NewMemory(%d): too large", sectors))
	}
	n := int(sectors) * SectorSize
	return &Memory{
		data:   make([]byte, n),
		stable: make([]byte, n),
		dirty:  make([]uint64, (sectors+63)/64),
		size:   int64(n),
	}
}

// Sectors returns the size in 512-byte sectors.
func (m *Memory) Sectors() uint64 { return uint64(m.size) / SectorSize }

// ReadAt copies len(p) bytes at byte offset off into p. It fails with
// ErrOutOfRange unless the whole range is inside the store, and then with the
// error set by SetReadErr or returned by the fault hook, if any.
func (m *Memory) ReadAt(p []byte, off int64) (int, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return 0, fmt.Errorf("blockstore: memory read: %w", ErrClosed)
	}
	if err := checkRange("read", off, len(p), m.size); err != nil {
		return 0, err
	}
	if err := m.injected(OpRead, m.readErr, off, len(p)); err != nil {
		return 0, err
	}
	return copy(p, m.data[off:]), nil
}

// WriteAt copies p to byte offset off. It fails with ErrReadOnly or
// ErrOutOfRange unless the store is writable and the whole range is inside
// it, and then with the error set by SetWriteErr or returned by the fault
// hook, if any; a failed WriteAt writes nothing.
func (m *Memory) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, fmt.Errorf("blockstore: memory write: %w", ErrClosed)
	}
	if m.readOnly {
		return 0, fmt.Errorf("blockstore: memory write: %w", ErrReadOnly)
	}
	if err := checkRange("write", off, len(p), m.size); err != nil {
		return 0, err
	}
	if err := m.injected(OpWrite, m.writeErr, off, len(p)); err != nil {
		return 0, err
	}
	m.writes++
	n := copy(m.data[off:], p)
	if m.durable {
		copy(m.stable[off:], p)
	} else if n > 0 {
		for s := off / SectorSize; s <= (off+int64(n)-1)/SectorSize; s++ {
			m.dirty[s/64] |= 1 << (s % 64)
		}
	}
	return n, nil
}

// Flush copies every sector written since the last Flush to the stable image
// and counts the call. It returns nil for a read-only store; otherwise it
// fails, without making anything stable, with the error set by SetFlushErr or
// returned by the fault hook, if any.
func (m *Memory) Flush() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.flush()
}

func (m *Memory) flush() error {
	if m.closed {
		return fmt.Errorf("blockstore: memory flush: %w", ErrClosed)
	}
	m.flushes++
	if m.readOnly {
		return nil
	}
	if err := m.injected(OpFlush, m.flushErr, 0, 0); err != nil {
		return err
	}
	for i, w := range m.dirty {
		for w != 0 {
			bit := bits.TrailingZeros64(w)
			w &^= 1 << bit
			off := (i*64 + bit) * SectorSize
			copy(m.stable[off:off+SectorSize], m.data[off:off+SectorSize])
		}
		m.dirty[i] = 0
	}
	return nil
}

// injected returns the injected error for op, if any.
func (m *Memory) injected(op Op, err error, off int64, n int) error {
	if err == nil && m.fault != nil {
		err = m.fault(op, off, n)
	}
	if err != nil {
		return fmt.Errorf("blockstore: memory %v of %d bytes at byte %d: %w", op, n, off, err)
	}
	return nil
}

// Durable reports whether WriteAt is stable at once (see SetDurable).
func (m *Memory) Durable() bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.durable
}

// ReadOnly reports whether WriteAt fails with ErrReadOnly (see SetReadOnly).
func (m *Memory) ReadOnly() bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.readOnly
}

// Close flushes (unless read-only; the call counts in Flushes) and closes the
// store; later calls fail with an error wrapping ErrClosed. The contents stay
// readable through Bytes and Stable.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("blockstore: memory close: %w", ErrClosed)
	}
	var err error
	if !m.readOnly {
		err = m.flush()
	}
	m.closed = true
	return err
}

// SetReadOnly makes WriteAt fail with ErrReadOnly (and Flush a no-op).
func (m *Memory) SetReadOnly(ro bool) {
	m.mu.Lock()
	m.readOnly = ro
	m.mu.Unlock()
}

// SetDurable makes every later WriteAt stable at once, and Durable report
// true, like a File opened with Options.Sync.
func (m *Memory) SetDurable(d bool) {
	m.mu.Lock()
	m.durable = d
	m.mu.Unlock()
}

// SetReadErr makes every later in-range ReadAt fail with an error wrapping
// err, until SetReadErr(nil).
func (m *Memory) SetReadErr(err error) {
	m.mu.Lock()
	m.readErr = err
	m.mu.Unlock()
}

// SetWriteErr makes every later in-range WriteAt fail with an error wrapping
// err, without writing, until SetWriteErr(nil).
func (m *Memory) SetWriteErr(err error) {
	m.mu.Lock()
	m.writeErr = err
	m.mu.Unlock()
}

// SetFlushErr makes every later Flush fail with an error wrapping err,
// without making anything stable, until SetFlushErr(nil).
func (m *Memory) SetFlushErr(err error) {
	m.mu.Lock()
	m.flushErr = err
	m.mu.Unlock()
}

// SetFault installs a hook consulted by every in-range operation that has no
// error set with SetReadErr, SetWriteErr or SetFlushErr; a non-nil result
// fails the operation as those would. off and n are the byte offset and
// length (0, 0 for a flush). fn is called with the store locked, so it must
// not call methods of m, and it may be called concurrently by ReadAt. SetFault(nil) removes the hook.
func (m *Memory) SetFault(fn func(op Op, off int64, n int) error) {
	m.mu.Lock()
	m.fault = fn
	m.mu.Unlock()
}

// Bytes returns a copy of the contents, as ReadAt sees them.
func (m *Memory) Bytes() []byte {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return append([]byte(nil), m.data...)
}

// Stable returns a copy of the contents that would survive a power failure:
// what has been flushed, or written while durable.
func (m *Memory) Stable() []byte {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return append([]byte(nil), m.stable...)
}

// Crash simulates a power failure: writes that were not yet stable are lost,
// and the contents revert to the stable image.
func (m *Memory) Crash() {
	m.mu.Lock()
	defer m.mu.Unlock()
	copy(m.data, m.stable)
	clear(m.dirty)
}

// Flushes returns the number of Flush calls so far (successful or not),
// including the one made by Close.
func (m *Memory) Flushes() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.flushes
}

// Writes returns the number of successful WriteAt calls so far.
func (m *Memory) Writes() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.writes
}

// ReadAtNoWait is ReadAt: memory never blocks.
func (m *Memory) ReadAtNoWait(p []byte, off int64) (int, error) { return m.ReadAt(p, off) }
