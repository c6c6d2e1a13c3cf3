package blockstore

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestOpenSize(t *testing.T) {
	tests := []struct {
		name    string
		size    int
		opts    Options
		sectors uint64
		err     error
	}{
		{name: "one sector", size: 512, sectors: 1},
		{name: "floor", size: 1000, sectors: 1},
		{name: "floor many", size: 8*512 + 511, sectors: 8},
		{name: "empty", size: 0, err: ErrTooSmall},
		{name: "511 bytes", size: 511, err: ErrTooSmall},
		{name: "offset to end", size: 8 * 512, opts: Options{Offset: 2}, sectors: 6},
		{name: "offset and length", size: 8 * 512, opts: Options{Offset: 2, Length: 3}, sectors: 3},
		{name: "window to the end", size: 8 * 512, opts: Options{Offset: 2, Length: 6}, sectors: 6},
		{name: "window in floored tail", size: 8*512 + 100, opts: Options{Offset: 7, Length: 1}, sectors: 1},
		{name: "last sector", size: 8 * 512, opts: Options{Offset: 7}, sectors: 1},
		{name: "offset at end", size: 8 * 512, opts: Options{Offset: 8}, err: ErrWindow},
		{name: "offset past end", size: 8 * 512, opts: Options{Offset: 9}, err: ErrWindow},
		{name: "length past end", size: 8 * 512, opts: Options{Offset: 2, Length: 7}, err: ErrWindow},
		{name: "length into partial sector", size: 8*512 + 100, opts: Options{Length: 9}, err: ErrWindow},
		{name: "negative offset", size: 8 * 512, opts: Options{Offset: -1}, err: ErrWindow},
		{name: "negative length", size: 8 * 512, opts: Options{Length: -1}, err: ErrWindow},
		{name: "huge offset", size: 8 * 512, opts: Options{Offset: math.MaxInt64}, err: ErrWindow},
		{name: "huge length", size: 8 * 512, opts: Options{Offset: 1, Length: math.MaxInt64}, err: ErrWindow},
		{name: "huge both", size: 8 * 512, opts: Options{Offset: math.MaxInt64, Length: math.MaxInt64}, err: ErrWindow},
		{name: "read-only", size: 4 * 512, opts: Options{ReadOnly: true}, sectors: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tempFile(t, make([]byte, tt.size))
			f, err := Open(path, tt.opts)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("Open: got error %v, want %v", err, tt.err)
				}
				if !strings.Contains(err.Error(), path) {
					t.Errorf("error %q does not name the path", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer f.Close()
			if got := f.Sectors(); got != tt.sectors {
				t.Errorf("Sectors() = %d, want %d", got, tt.sectors)
			}
			if f.Path() != path || f.BlockDevice() || f.ReadOnly() != tt.opts.ReadOnly || f.Durable() || f.Direct() {
				t.Errorf("Path %q BlockDevice %v ReadOnly %v Durable %v Direct %v", f.Path(), f.BlockDevice(), f.ReadOnly(), f.Durable(), f.Direct())
			}
		})
	}
}

func TestOpenWindowMessage(t *testing.T) {
	path := tempFile(t, make([]byte, 8*512))
	_, err := Open(path, Options{Offset: 5, Length: 4})
	if !errors.Is(err, ErrWindow) {
		t.Fatalf("got %v, want ErrWindow", err)
	}
	for _, s := range []string{path, "4 sectors", "offset 5", "sector 9", "(8 sectors)"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}

func TestOpenKinds(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path string
		is         error
	}{
		{name: "missing", path: filepath.Join(dir, "missing"), is: fs.ErrNotExist},
		{name: "directory", path: dir},
		{name: "char device", path: "/dev/null"},
		{name: "fifo", path: fifo}, // must not block in open(2)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Open(tt.path, Options{})
			if err == nil {
				f.Close()
				t.Fatal("Open succeeded")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("got %v, want %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.path) {
				t.Errorf("error %q does not name the path", err)
			}
		})
	}
}

// modes are the ways of opening a writable file that must behave the same.
var modes = []struct {
	name string
	opts Options
}{
	{"buffered", Options{}},
	{"sync", Options{Sync: true}},
	{"direct", Options{Direct: true}},
	{"direct sync", Options{Direct: true, Sync: true}},
}

func TestWindowMapping(t *testing.T) {
	const sectors, off, length = 16, 3, 5
	for _, m := range modes {
		for _, skew := range []int{0, 1} {
			name := m.name
			if skew != 0 {
				name += " unaligned buffer"
			}
			t.Run(name, func(t *testing.T) {
				orig := pattern(sectors*512, 0)
				path := tempFile(t, orig)
				opts := m.opts
				opts.Offset, opts.Length = off, length
				f := mustOpen(t, path, opts)

				// The window reads as the right bytes of the file.
				got := alignedBuf(length*512, skew)
				if n, err := f.ReadAt(got, 0); err != nil || n != len(got) {
					t.Fatalf("ReadAt: %d, %v", n, err)
				}
				if !bytes.Equal(got, orig[off*512:(off+length)*512]) {
					t.Fatal("window does not read as file bytes at the offset")
				}

				// Writes land at the right file offsets and nowhere else.
				win := pattern(length*512, 0x5a)
				for _, w := range []struct{ at, n int }{{0, 512}, {512, 2 * 512}, {3 * 512, 2 * 512}} {
					buf := alignedBuf(w.n, skew)
					copy(buf, win[w.at:])
					if n, err := f.WriteAt(buf, int64(w.at)); err != nil || n != w.n {
						t.Fatalf("WriteAt(%d bytes at %d): %d, %v", w.n, w.at, n, err)
					}
				}
				if err := f.Flush(); err != nil {
					t.Fatalf("Flush: %v", err)
				}
				checkWindow(t, readFile(t, path), orig, win, off*512)

				// And read back through the store.
				if n, err := f.ReadAt(got, 0); err != nil || n != len(got) || !bytes.Equal(got, win) {
					t.Fatalf("ReadAt after write: %d, %v, equal %v", n, err, bytes.Equal(got, win))
				}
				if err := f.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
				checkWindow(t, readFile(t, path), orig, win, off*512)
			})
		}
	}
}

// rangeCases are requests against a window of 4 sectors (2048 bytes).
var rangeCases = []struct {
	name string
	off  int64
	n    int
	ok   bool
}{
	{"first sector", 0, 512, true},
	{"whole window", 0, 2048, true},
	{"last sector", 1536, 512, true},
	{"last byte", 2047, 1, true},
	{"empty at end", 2048, 0, true},
	{"empty at start", 0, 0, true},
	{"one past end", 2048, 1, false},
	{"sector at end", 2048, 512, false},
	{"straddles end", 1536, 1024, false},
	{"larger than window", 0, 2560, false},
	{"past end", 4096, 512, false},
	{"empty past end", 2049, 0, false},
	{"negative", -512, 512, false},
	{"negative straddling", -1, 2, false},
	{"min int64", math.MinInt64, 512, false},
	{"max int64", math.MaxInt64, 1, false},
	{"overflow", math.MaxInt64 - 100, 512, false},
}

func TestOutOfRange(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			orig := pattern(8*512, 0)
			path := tempFile(t, orig)
			opts := m.opts
			opts.Offset, opts.Length = 2, 4
			f := mustOpen(t, path, opts)
			for _, tt := range rangeCases {
				buf := alignedBuf(tt.n, 0)
				rn, rerr := f.ReadAt(buf, tt.off)
				wn, werr := f.WriteAt(buf, tt.off)
				if tt.ok && m.opts.Direct && (tt.off%512 != 0 || tt.n%512 != 0) {
					if rerr != nil || rn != tt.n || !errors.Is(werr, ErrUnaligned) || wn != 0 {
						t.Errorf("%s: ReadAt %d, %v; WriteAt %d, %v; want %d, nil and 0, ErrUnaligned", tt.name, rn, rerr, wn, werr, tt.n)
					}
					continue
				}
				if tt.ok {
					if rerr != nil || rn != tt.n || werr != nil || wn != tt.n {
						t.Errorf("%s: ReadAt %d, %v; WriteAt %d, %v; want %d, nil", tt.name, rn, rerr, wn, werr, tt.n)
					}
					continue
				}
				if !errors.Is(rerr, ErrOutOfRange) || rn != 0 || !errors.Is(werr, ErrOutOfRange) || wn != 0 {
					t.Errorf("%s: ReadAt %d, %v; WriteAt %d, %v; want 0, ErrOutOfRange", tt.name, rn, rerr, wn, werr)
				}
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			// The in-range writes wrote back what they read; nothing else moved.
			if got := readFile(t, path); !bytes.Equal(got, orig) {
				t.Error("file contents changed")
			}
		})
	}
}

func TestReadOnly(t *testing.T) {
	for _, direct := range []bool{false, true} {
		t.Run("direct="+map[bool]string{false: "false", true: "true"}[direct], func(t *testing.T) {
			orig := pattern(4*512, 0)
			path := tempFile(t, orig)
			f := mustOpen(t, path, Options{ReadOnly: true, Direct: direct})
			if !f.ReadOnly() {
				t.Error("ReadOnly() = false")
			}
			if fl := openFlags(t, f); fl&unix.O_ACCMODE != unix.O_RDONLY {
				t.Errorf("open flags %#x, want O_RDONLY", fl)
			}
			buf := alignedBuf(512, 0)
			if n, err := f.WriteAt(buf, 0); !errors.Is(err, ErrReadOnly) || n != 0 {
				t.Errorf("WriteAt: %d, %v; want 0, ErrReadOnly", n, err)
			}
			if n, err := f.WriteAt(buf, 1<<40); !errors.Is(err, ErrReadOnly) || n != 0 {
				t.Errorf("WriteAt out of range: %d, %v; want 0, ErrReadOnly", n, err)
			}
			if n, err := f.ReadAt(buf, 512); err != nil || n != 512 || !bytes.Equal(buf, orig[512:1024]) {
				t.Errorf("ReadAt: %d, %v", n, err)
			}
			if err := f.Flush(); err != nil {
				t.Errorf("Flush: %v", err)
			}
			if err := f.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if !bytes.Equal(readFile(t, path), orig) {
				t.Error("file changed")
			}
		})
	}
}

func TestFlags(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		set     int
		clear   int
		durable bool
	}{
		{name: "buffered", set: unix.O_RDWR, clear: unix.O_DIRECT | unix.O_DSYNC},
		{name: "sync", opts: Options{Sync: true}, set: unix.O_RDWR | unix.O_DSYNC, clear: unix.O_DIRECT, durable: true},
		{name: "direct", opts: Options{Direct: true}, set: unix.O_RDWR | unix.O_DIRECT, clear: unix.O_DSYNC},
		{name: "direct sync", opts: Options{Direct: true, Sync: true}, set: unix.O_RDWR | unix.O_DIRECT | unix.O_DSYNC, durable: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustOpen(t, tempFile(t, make([]byte, 4096)), tt.opts)
			fl := openFlags(t, f)
			if fl&tt.set != tt.set || fl&tt.clear != 0 {
				t.Errorf("open flags %#x, want %#x set and %#x clear", fl, tt.set, tt.clear)
			}
			if f.Durable() != tt.durable || f.Direct() != tt.opts.Direct {
				t.Errorf("Durable() = %v, Direct() = %v", f.Durable(), f.Direct())
			}
		})
	}
}

func TestDirectUnaligned(t *testing.T) {
	const sectors = 300 // more than one bounce buffer
	orig := pattern(sectors*512, 0)
	path := tempFile(t, orig)
	f := mustOpen(t, path, Options{Direct: true, Offset: 1})
	want := orig[512:]

	// Reads at any offset, length and buffer alignment.
	reads := []struct {
		off  int64
		n    int
		skew int
	}{
		{0, 512, 0}, {0, 512, 1}, {0, 512, 8}, {512, 1024, 3},
		{100, 1000, 0}, {511, 2, 7}, {1, 0, 0}, {0, 1, 0},
		{int64(len(want)) - 1, 1, 5}, {0, len(want), 1}, {77, len(want) - 77 - 300, 2},
		{bounceSize - 10, 100, 0}, {bounceSize, bounceSize + 512, 9},
	}
	for _, r := range reads {
		buf := alignedBuf(r.n, r.skew)
		n, err := f.ReadAt(buf, r.off)
		if err != nil || n != r.n || !bytes.Equal(buf, want[r.off:r.off+int64(r.n)]) {
			t.Errorf("ReadAt(%d bytes skew %d at %d): %d, %v, equal %v", r.n, r.skew, r.off, n, err,
				bytes.Equal(buf, want[r.off:r.off+int64(r.n)]))
		}
	}

	// Writes of whole sectors from unaligned buffers, including multi-chunk.
	win := bytes.Clone(want)
	writes := []struct {
		off  int64
		n    int
		skew int
	}{
		{0, 512, 1}, {1024, 1536, 100}, {512 * 10, bounceSize + 3*512, 7}, {512 * 200, 512 * 99, 4095},
	}
	for i, w := range writes {
		buf := alignedBuf(w.n, w.skew)
		copy(buf, pattern(w.n, byte(i+1)))
		if n, err := f.WriteAt(buf, w.off); err != nil || n != w.n {
			t.Fatalf("WriteAt(%d bytes skew %d at %d): %d, %v", w.n, w.skew, w.off, n, err)
		}
		copy(win[w.off:], buf)
	}

	// Unaligned offsets or lengths are refused without writing.
	for _, w := range []struct {
		off int64
		n   int
	}{{1, 512}, {0, 511}, {512, 513}, {100, 100}} {
		if n, err := f.WriteAt(alignedBuf(w.n, 0), w.off); !errors.Is(err, ErrUnaligned) || n != 0 {
			t.Errorf("WriteAt(%d bytes at %d): %d, %v; want ErrUnaligned", w.n, w.off, n, err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	checkWindow(t, readFile(t, path), orig, win, 512)
}

func TestDirectRefused(t *testing.T) {
	// /dev/shm is tmpfs; new kernels accept O_DIRECT there, old ones refuse
	// it. Either way Open must not fail with anything but ErrNoDirect.
	dir, err := os.MkdirTemp("/dev/shm", "blockstore")
	if err != nil {
		t.Skipf("skipping: no /dev/shm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "disk")
	if err := os.WriteFile(path, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path, Options{Direct: true})
	if err != nil {
		if !errors.Is(err, ErrNoDirect) || !strings.Contains(err.Error(), path) {
			t.Fatalf("got %v, want ErrNoDirect naming the path", err)
		}
		t.Logf("refused as expected: %v", err)
		return
	}
	defer f.Close()
	buf := alignedBuf(512, 1)
	if _, err := f.ReadAt(buf, 0); err != nil {
		t.Fatalf("tmpfs accepted O_DIRECT but ReadAt failed: %v", err)
	}
}

func TestTruncatedUnderStore(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			orig := pattern(16*512, 0)
			path := tempFile(t, orig)
			opts := m.opts
			opts.Offset = 2
			f := mustOpen(t, path, opts)
			if err := os.Truncate(path, 6*512+100); err != nil { // window now holds 4 sectors and a bit
				t.Fatal(err)
			}
			for _, skew := range []int{0, 1} {
				tests := []struct {
					off  int64
					n    int
					want int // bytes read before the error; -1 for success
				}{
					{0, 512, -1},
					{3 * 512, 512, -1},
					{4 * 512, 512, 100},
					{3 * 512, 1024, 512 + 100},
					{8 * 512, 512, 0},
					{12 * 512, 1024, 0},
				}
				for _, tt := range tests {
					buf := alignedBuf(tt.n, skew)
					n, err := f.ReadAt(buf, tt.off)
					if tt.want < 0 {
						if err != nil || n != tt.n {
							t.Errorf("ReadAt(%d at %d, skew %d): %d, %v", tt.n, tt.off, skew, n, err)
						}
						continue
					}
					if !errors.Is(err, io.ErrUnexpectedEOF) {
						t.Errorf("ReadAt(%d at %d, skew %d): %d, %v; want io.ErrUnexpectedEOF", tt.n, tt.off, skew, n, err)
					}
					// O_DIRECT transfers whole sectors, so it may stop short of the last partial one.
					if n > tt.want || (!m.opts.Direct && n != tt.want) {
						t.Errorf("ReadAt(%d at %d, skew %d): read %d bytes, want %d", tt.n, tt.off, skew, n, tt.want)
					}
				}
			}
			// Truncated to nothing: every read fails, nothing panics.
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
			for off := int64(0); off < int64(f.Sectors())*512; off += 512 {
				if _, err := f.ReadAt(make([]byte, 512), off); !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("ReadAt(512 at %d) after truncate to 0: %v", off, err)
				}
			}
			// A write inside the window extends the file again (pwrite
			// semantics); it never lands outside the window.
			if _, err := f.WriteAt(alignedBuf(512, 0), 5*512); err != nil {
				t.Errorf("WriteAt after truncate: %v", err)
			}
			if fi, err := os.Stat(path); err != nil || fi.Size() != 8*512 {
				t.Errorf("file size after write: %v, %v; want %d", fi.Size(), err, 8*512)
			}
		})
	}
}

func TestConcurrent(t *testing.T) {
	const workers, rounds = 8, 50
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			f := mustOpen(t, tempFile(t, make([]byte, workers*4*512+512)), Options{Offset: 1, Direct: m.opts.Direct, Sync: m.opts.Sync})
			runConcurrent(t, f, workers, rounds)
		})
	}
	t.Run("memory", func(t *testing.T) {
		runConcurrent(t, NewMemory(workers*4), workers, rounds)
	})
}

// runConcurrent has workers write and read back their own 4 sectors of s.
func runConcurrent(t *testing.T, s Store, workers, rounds int) {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			off := int64(w) * 4 * 512
			for r := range rounds {
				want := pattern(4*512, byte(w*rounds+r))
				buf := alignedBuf(len(want), r%2) // alternate aligned and bounced
				copy(buf, want)
				if _, err := s.WriteAt(buf, off); err != nil {
					t.Errorf("worker %d: WriteAt: %v", w, err)
					return
				}
				if r%10 == 0 {
					if err := s.Flush(); err != nil {
						t.Errorf("worker %d: Flush: %v", w, err)
						return
					}
				}
				clear(buf)
				if _, err := s.ReadAt(buf, off); err != nil || !bytes.Equal(buf, want) {
					t.Errorf("worker %d: ReadAt: %v, equal %v", w, err, bytes.Equal(buf, want))
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestAllocs(t *testing.T) {
	for _, m := range modes {
		for _, skew := range []int{0, 1} {
			name := m.name
			if skew != 0 {
				if !m.opts.Direct {
					continue
				}
				if raceEnabled {
					continue // sync.Pool drops items at random under -race
				}
				name += " unaligned"
			}
			t.Run(name, func(t *testing.T) {
				f := mustOpen(t, tempFile(t, make([]byte, 64*512)), m.opts)
				buf := alignedBuf(4096, skew)
				f.WriteAt(buf, 0) // warm the bounce pool
				if a := testing.AllocsPerRun(100, func() {
					if _, err := f.ReadAt(buf, 4096); err != nil {
						t.Fatal(err)
					}
				}); a != 0 {
					t.Errorf("ReadAt: %v allocations per call, want 0", a)
				}
				if a := testing.AllocsPerRun(100, func() {
					if _, err := f.WriteAt(buf, 8192); err != nil {
						t.Fatal(err)
					}
				}); a != 0 {
					t.Errorf("WriteAt: %v allocations per call, want 0", a)
				}
			})
		}
	}
	t.Run("memory", func(t *testing.T) {
		m := NewMemory(64)
		buf := make([]byte, 4096)
		if a := testing.AllocsPerRun(100, func() {
			m.ReadAt(buf, 4096)
			m.WriteAt(buf, 8192)
		}); a != 0 {
			t.Errorf("Memory ReadAt+WriteAt: %v allocations, want 0", a)
		}
	})
}

func TestFlushClose(t *testing.T) {
	path := tempFile(t, make([]byte, 4096))
	f, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	buf := make([]byte, 512)
	if _, err := f.ReadAt(buf, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadAt after Close: %v, want ErrClosed", err)
	}
	if _, err := f.WriteAt(buf, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteAt after Close: %v, want ErrClosed", err)
	}
	if err := f.Flush(); !errors.Is(err, ErrClosed) {
		t.Errorf("Flush after Close: %v, want ErrClosed", err)
	}
	if err := f.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close: %v, want ErrClosed", err)
	}
	// A flush failure after Close is not sticky-remembered as an I/O error.
	if f.flushErr.Load() != nil {
		t.Error("ErrClosed was made sticky")
	}
}

func TestFlushSticky(t *testing.T) {
	f := mustOpen(t, tempFile(t, make([]byte, 4096)), Options{})
	calls := 0
	fdatasync = func(fd int) error {
		calls++
		if calls == 1 {
			return unix.EIO
		}
		return nil // the kernel forgets a reported write-back error
	}
	t.Cleanup(func() { fdatasync = unix.Fdatasync })
	for i := range 3 {
		if err := f.Flush(); !errors.Is(err, unix.EIO) {
			t.Errorf("Flush #%d: %v, want EIO", i+1, err)
		}
	}
	if err := f.Close(); !errors.Is(err, unix.EIO) {
		t.Errorf("Close: %v, want EIO", err)
	}
	if calls != 1 {
		t.Errorf("fdatasync called %d times, want 1", calls)
	}
}

func TestBlockDevice(t *testing.T) {
	const sectors = 2048 + 3
	orig := pattern(sectors*512+100, 0) // the loop device rounds down to 512
	dev, backing := loopDevice(t, orig)

	f, err := Open(dev, Options{})
	if err != nil {
		t.Fatalf("Open(%s): %v", dev, err)
	}
	if !f.BlockDevice() {
		t.Error("BlockDevice() = false")
	}
	if got := f.Sectors(); got != sectors {
		t.Errorf("Sectors() = %d, want %d (BLKGETSIZE64)", got, sectors)
	}
	// (F_GETFL does not report O_EXCL; the refusal below shows it.)

	// A second exclusive open is refused while the first is open.
	for _, opts := range []Options{{}, {ReadOnly: true}, {Offset: 1, Length: 1}} {
		g, err := Open(dev, opts)
		if err == nil {
			g.Close()
			t.Fatalf("second Open(%s, %+v) succeeded while the first holds it", dev, opts)
		}
		if !errors.Is(err, unix.EBUSY) || !strings.Contains(err.Error(), dev) || !strings.Contains(err.Error(), "in use") {
			t.Errorf("second Open: %v; want EBUSY naming the device", err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	// Once released it opens again; windows and O_DIRECT work on devices.
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			opts := m.opts
			opts.Offset, opts.Length = 1000, 24
			f := mustOpen(t, dev, opts)
			if f.Sectors() != 24 {
				t.Fatalf("Sectors() = %d, want 24", f.Sectors())
			}
			got := alignedBuf(24*512, 1)
			if _, err := f.ReadAt(got, 0); err != nil || !bytes.Equal(got, orig[1000*512:1024*512]) {
				t.Fatalf("ReadAt: %v, equal %v", err, bytes.Equal(got, orig[1000*512:1024*512]))
			}
			win := pattern(24*512, byte(len(m.name)))
			for _, skew := range []int{0, 3} {
				buf := alignedBuf(len(win), skew)
				copy(buf, win)
				if _, err := f.WriteAt(buf, 0); err != nil {
					t.Fatalf("WriteAt: %v", err)
				}
			}
			if _, err := f.WriteAt(got[:512], 24*512); !errors.Is(err, ErrOutOfRange) {
				t.Errorf("WriteAt past the window: %v, want ErrOutOfRange", err)
			}
			if err := f.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			checkWindow(t, readFile(t, backing), orig, win, 1000*512)
			copy(orig[1000*512:], win)
		})
	}

	t.Run("window past end", func(t *testing.T) {
		_, err := Open(dev, Options{Offset: sectors - 1, Length: 2})
		if !errors.Is(err, ErrWindow) {
			t.Errorf("got %v, want ErrWindow", err)
		}
	})
}

func TestBlockDevice4K(t *testing.T) {
	dev, _ := loopDevice(t, make([]byte, 1<<20), "--sector-size", "4096")
	_, err := Open(dev, Options{Direct: true})
	if !errors.Is(err, ErrNoDirect) || !strings.Contains(err.Error(), "4096") {
		t.Fatalf("Open(%s, Direct) on a 4Kn device: %v; want ErrNoDirect mentioning 4096", dev, err)
	}
	// Buffered I/O on 512-byte sectors still works.
	f := mustOpen(t, dev, Options{})
	buf := pattern(512, 1)
	if _, err := f.WriteAt(buf, 512); err != nil {
		t.Fatalf("WriteAt: %v", err)
	}
	got := make([]byte, 512)
	if _, err := f.ReadAt(got, 512); err != nil || !bytes.Equal(got, buf) {
		t.Fatalf("ReadAt: %v", err)
	}
}

func BenchmarkReadAt4K(b *testing.B) {
	for _, bm := range []struct {
		name string
		opts Options
		skew int
	}{
		{"buffered", Options{}, 0},
		{"direct", Options{Direct: true}, 0},
		{"direct unaligned", Options{Direct: true}, 1},
	} {
		b.Run(bm.name, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "disk")
			if err := os.WriteFile(path, make([]byte, 1<<20), 0o600); err != nil {
				b.Fatal(err)
			}
			f, err := Open(path, bm.opts)
			if errors.Is(err, ErrNoDirect) {
				b.Skip(err)
			}
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			buf := alignedBuf(4096, bm.skew)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if _, err := f.ReadAt(buf, int64(i%256)*4096); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("memory", func(b *testing.B) {
		m := NewMemory(2048)
		buf := make([]byte, 4096)
		b.SetBytes(int64(len(buf)))
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, err := m.ReadAt(buf, int64(i%256)*4096); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestExclusive checks that a regular file cannot be exported writable
// twice, nor writable and read-only at once, by this process or another;
// read-only exports may share it, and closing releases it.
func TestExclusive(t *testing.T) {
	path := tempFile(t, make([]byte, 8*512))
	tests := []struct {
		first, second bool // read-only
		ok            bool
	}{
		{false, false, false},
		{false, true, false},
		{true, false, false},
		{true, true, true},
	}
	for _, tt := range tests {
		a, err := Open(path, Options{ReadOnly: tt.first})
		if err != nil {
			t.Fatal(err)
		}
		b, err := Open(path, Options{ReadOnly: tt.second})
		if tt.ok != (err == nil) || (err != nil && !errors.Is(err, ErrInUse)) {
			t.Errorf("read-only %v then %v: second Open: %v, want ok %v (or ErrInUse)", tt.first, tt.second, err, tt.ok)
		}
		if err == nil {
			b.Close()
		}
		a.Close()
	}
	// Another process (flock(1) from util-linux) holding the lock.
	if _, err := exec.LookPath("flock"); err != nil {
		t.Skip("flock(1) not installed")
	}
	cmd := exec.Command("flock", "--exclusive", path, "sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for i := 0; ; i++ {
		f, err := Open(path, Options{ReadOnly: true})
		if errors.Is(err, ErrInUse) {
			break
		}
		if err == nil {
			f.Close()
		}
		if i == 500 {
			t.Fatal("Open never saw the other process's lock")
		}
		time.Sleep(10 * time.Millisecond) // until flock(1) has its lock
	}
}
