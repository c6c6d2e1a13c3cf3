package blockstore

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestReadAtNoWait(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk")
	data := bytes.Repeat([]byte("0123456789abcdef"), 64*1024/16)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path, Options{Offset: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	// Just written: in the page cache.
	n, err := f.ReadAtNoWait(buf, 512)
	if errors.Is(err, ErrWouldBlock) && noWaitUnsupported.Load() {
		t.Skip("skipping: RWF_NOWAIT is not supported here")
	}
	if err != nil || n != len(buf) || !bytes.Equal(buf, data[8*512+512:8*512+512+4096]) {
		t.Fatalf("cached read: %d, %v", n, err)
	}
	// Out of range is checked first.
	if _, err := f.ReadAtNoWait(buf, int64(f.Sectors())*512-100); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("past the end: %v", err)
	}
	// Drop the file's pages: now the read would block.
	osf, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer osf.Close()
	// FADV_DONTNEED is advice: pages still in a per-CPU LRU batch or
	// under writeback stay cached, so try a few times.
	dropped := false
	for range 20 {
		if err := osf.Sync(); err != nil { // only clean pages can be dropped
			t.Fatal(err)
		}
		if err := unix.Fadvise(int(osf.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
			t.Fatal(err)
		}
		_, err := f.ReadAtNoWait(buf, 32*1024)
		if errors.Is(err, ErrWouldBlock) {
			dropped = true
			break
		}
		if err != nil {
			t.Fatalf("uncached read: %v, want ErrWouldBlock", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !dropped {
		t.Skip("skipping: the kernel kept the file's pages cached despite FADV_DONTNEED")
	}
	// A blocking read brings it in; then it is cached.
	if _, err := f.ReadAt(buf, 32*1024); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadAtNoWait(buf, 32*1024); err != nil {
		t.Fatalf("after ReadAt: %v", err)
	}
	if a := testing.AllocsPerRun(100, func() { f.ReadAtNoWait(buf, 512) }); a != 0 {
		t.Fatalf("%v allocations per ReadAtNoWait", a)
	}
	f.Close()
	if _, err := f.ReadAtNoWait(buf, 512); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func TestReadAtNoWaitDirect(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk")
	if err := os.WriteFile(path, make([]byte, 64*1024), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path, Options{Direct: true})
	if errors.Is(err, ErrNoDirect) {
		t.Skip("skipping: no O_DIRECT here")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAtNoWait(make([]byte, 512), 0); !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("direct: %v, want ErrWouldBlock", err)
	}
}

func TestReadAtNoWaitTmpfs(t *testing.T) {
	const dir = "/dev/shm"
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		t.Skipf("skipping: %s is not tmpfs", dir)
	}
	f0, err := os.CreateTemp(dir, "blockstore-test")
	if err != nil {
		t.Skip(err)
	}
	path := f0.Name()
	t.Cleanup(func() { os.Remove(path) })
	f0.Write(bytes.Repeat([]byte{7}, 8192))
	f0.Close()
	f, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !f.inRAM {
		t.Fatal("a tmpfs file is not recognised")
	}
	buf := make([]byte, 1024)
	if n, err := f.ReadAtNoWait(buf, 1024); err != nil || n != 1024 || buf[0] != 7 {
		t.Fatalf("tmpfs read: %d, %v", n, err)
	}
}

// TestReadvAtNoWait reads cached and uncached ranges into several buffers
// with one call, on a disk file and on tmpfs.
func TestReadvAtNoWait(t *testing.T) {
	dirs := []string{t.TempDir()}
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		dirs = append(dirs, "/dev/shm")
	}
	for _, dir := range dirs {
		t.Run(dir, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("aoetarget-readv-nowait-%d.img", os.Getpid()))
			data := pattern(256*1024, 3)
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Remove(path) })
			f := mustOpen(t, path, Options{Offset: 8})
			base := 8 * 512
			bufs := [][]byte{make([]byte, 1024), make([]byte, 512), make([]byte, 2048)}
			n, err := f.ReadvAtNoWait(bufs, 4096)
			if errors.Is(err, ErrWouldBlock) && noWaitUnsupported.Load() {
				t.Skip("skipping: RWF_NOWAIT is not supported here")
			}
			if err != nil || n != 3584 || !bytes.Equal(bytes.Join(bufs, nil), data[base+4096:base+4096+3584]) {
				t.Fatalf("cached read: %d, %v", n, err)
			}
			if _, err := f.ReadvAtNoWait(bufs, int64(f.Sectors())*512-1024); !errors.Is(err, ErrOutOfRange) {
				t.Fatalf("past the end: %v", err)
			}
			many := make([][]byte, MaxVectors+1)
			for i := range many {
				many[i] = make([]byte, 512)
			}
			if _, err := f.ReadvAtNoWait(many, 0); !errors.Is(err, ErrWouldBlock) {
				t.Fatalf("%d buffers: %v, want ErrWouldBlock", len(many), err)
			}
			if a := testing.AllocsPerRun(100, func() { f.ReadvAtNoWait(bufs, 512) }); a != 0 {
				t.Fatalf("%v allocations per ReadvAtNoWait", a)
			}
			if f.inRAM {
				return // tmpfs: always "cached"
			}
			// Drop the file's pages: the read would block; after a
			// blocking read of the range, it is served.
			osf, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer osf.Close()
			for range 20 {
				osf.Sync()
				unix.Fadvise(int(osf.Fd()), 0, 0, unix.FADV_DONTNEED)
				if _, err := f.ReadvAtNoWait(bufs, 64*1024); errors.Is(err, ErrWouldBlock) {
					if _, err := f.ReadvAt(bufs, 64*1024); err != nil {
						t.Fatal(err)
					}
					if n, err := f.ReadvAtNoWait(bufs, 64*1024); err != nil || n != 3584 ||
						!bytes.Equal(bytes.Join(bufs, nil), data[base+64*1024:base+64*1024+3584]) {
						t.Fatalf("after ReadvAt: %d, %v", n, err)
					}
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Skip("skipping: the kernel kept the file's pages cached despite FADV_DONTNEED")
		})
	}
}

// TestCached asks cachestat about cached, evicted and partly cached
// ranges of a disk file whose window starts mid-page, and checks that
// asking starts no read of the disk (a ReadAtNoWait that misses does).
func TestCached(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk")
	data := pattern(256*1024, 5)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f := mustOpen(t, path, Options{Offset: 1}) // the window starts 512 bytes into page 0
	if f.inRAM {
		t.Skip("skipping: the temporary directory is in RAM")
	}
	if _, err := f.Cached(0, 4096); errors.Is(err, errors.ErrUnsupported) {
		t.Skipf("skipping: %v", err)
	}
	// The file's readahead would cache more than what is read below.
	if err := unix.Fadvise(f.fd, 0, 0, unix.FADV_RANDOM); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Cached(int64(f.Sectors())*512-100, 200); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("past the end: %v", err)
	}
	evicted := false
	for range 20 {
		f.Flush()
		unix.Fadvise(f.fd, 0, 0, unix.FADV_DONTNEED)
		if ok, err := f.Cached(0, 255*1024); err == nil && !ok {
			if ok, err := f.Cached(60*1024, 4096); err != nil || ok {
				continue // some pages are still there
			}
			evicted = true
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !evicted {
		t.Skip("skipping: the kernel kept the file's pages cached despite FADV_DONTNEED")
	}
	// Asking reads nothing: the range stays uncached.
	time.Sleep(50 * time.Millisecond)
	if ok, err := f.Cached(60*1024, 4096); err != nil || ok {
		t.Fatalf("evicted range after Cached: %v, %v, want false", ok, err)
	}
	// A blocking read of window bytes 3584-4095 (file bytes 4096-4607)
	// caches page 1 only.
	buf := make([]byte, 512)
	if _, err := f.ReadAt(buf, 3584); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		off  int64
		n    int
		want bool
	}{
		{3584, 512, true},   // page 1
		{3584, 4096, true},  // file bytes 4096-8191: page 1
		{3584, 4097, false}, // and a byte of page 2
		{3583, 2, false},    // a byte of page 0
		{0, 4096, false},    // pages 0 and 1
		{0, 0, true},
	}
	for _, tt := range tests {
		if ok, err := f.Cached(tt.off, tt.n); err != nil || ok != tt.want {
			t.Errorf("Cached(%d, %d) = %v, %v; want %v", tt.off, tt.n, ok, err, tt.want)
		}
	}
	// A ReadAtNoWait that misses starts the read: the page arrives.
	if _, err := f.ReadAtNoWait(buf, 64*1024); !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("uncached ReadAtNoWait: %v", err)
	}
	arrived := false
	for range 100 {
		if ok, _ := f.Cached(64*1024, 512); ok {
			arrived = true
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !arrived {
		t.Error("the page a ReadAtNoWait missed never arrived: Cached does not see it")
	}
	if a := testing.AllocsPerRun(100, func() { f.Cached(3584, 512) }); a != 0 {
		t.Errorf("%v allocations per Cached", a)
	}
	f.Close()
	if _, err := f.Cached(3584, 512); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

func TestCachedDirectAndTmpfs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk")
	if err := os.WriteFile(path, make([]byte, 64*1024), 0o644); err != nil {
		t.Fatal(err)
	}
	if f, err := Open(path, Options{Direct: true}); err == nil {
		defer f.Close()
		if _, err := f.Cached(0, 4096); !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("direct: %v, want ErrUnsupported", err)
		}
	} else if !errors.Is(err, ErrNoDirect) {
		t.Fatal(err)
	}
	const dir = "/dev/shm"
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		t.Skipf("skipping: %s is not tmpfs", dir)
	}
	path = filepath.Join(dir, fmt.Sprintf("aoetarget-cached-%d.img", os.Getpid()))
	if err := os.WriteFile(path, make([]byte, 64*1024), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(path) })
	f := mustOpen(t, path, Options{})
	if ok, err := f.Cached(0, 64*1024); err != nil || !ok {
		t.Errorf("tmpfs: %v, %v; want true", ok, err)
	}
}
