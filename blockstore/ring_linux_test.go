package blockstore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func newTestRing(t *testing.T, f *File, entries uint32) *Ring {
	t.Helper()
	r, err := f.NewRing(entries)
	if err != nil {
		t.Skipf("no io_uring here: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// TestRing writes and reads through an io_uring in batches, in every
// mode, and checks the data, the window and the completions.
func TestRing(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			orig := pattern(300*512, 3)
			path := tempFile(t, orig)
			opts := m.opts
			opts.Offset, opts.Length = 8, 256
			f := mustOpen(t, path, opts)
			r := newTestRing(t, f, 16)
			// A batch of writes: 8 chains of four 1-KiB buffers.
			want := bytes.Clone(orig[8*512 : 264*512])
			for i := range 8 {
				data := pattern(4096, byte(i))
				bufs := split(data, []int{1024, 1024, 1024, 1024}, 0)
				off := int64(i) * 16 * 512
				if err := r.Prepare(true, bufs, off, uint64(i)); err != nil {
					t.Fatal(err)
				}
				copy(want[off:], data)
			}
			if n, err := r.Submit(); err != nil || n != 8 {
				t.Fatalf("Submit: %d, %v", n, err)
			}
			cs := make([]Completion, 16)
			seen := map[uint64]bool{}
			for len(seen) < 8 {
				n, err := r.Wait(cs)
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range cs[:n] {
					if c.Err != nil || c.N != 4096 || seen[c.User] {
						t.Fatalf("completion %+v", c)
					}
					seen[c.User] = true
				}
			}
			if err := f.Flush(); err != nil {
				t.Fatal(err)
			}
			file := readFile(t, path)
			if !bytes.Equal(file[8*512:264*512], want) || !bytes.Equal(file[:8*512], orig[:8*512]) || !bytes.Equal(file[264*512:], orig[264*512:]) {
				t.Fatal("file does not hold the writes inside the window only")
			}
			// Read it all back in one batch of 4 reads.
			got := make([][][]byte, 4)
			for i := range got {
				got[i] = split(make([]byte, 64*512), []int{32 * 512, 32 * 512}, 0)
				if err := r.Prepare(false, got[i], int64(i)*64*512, uint64(100+i)); err != nil {
					t.Fatal(err)
				}
			}
			r.Submit()
			for left := 4; left > 0; {
				n, _ := r.Wait(cs)
				for _, c := range cs[:n] {
					if c.Err != nil || c.N != 64*512 {
						t.Fatalf("read completion %+v", c)
					}
					left--
				}
			}
			for i := range got {
				if !bytes.Equal(bytes.Join(got[i], nil), want[i*64*512:(i+1)*64*512]) {
					t.Errorf("read %d differs", i)
				}
			}
			if r.Pending() != 0 {
				t.Errorf("%d pending after all completions", r.Pending())
			}
			// Refused: out of range, unaligned on Direct, too many.
			if err := r.Prepare(false, [][]byte{make([]byte, 1024)}, 255*512, 1); !errors.Is(err, ErrOutOfRange) {
				t.Errorf("Prepare past the end: %v", err)
			}
			if m.opts.Direct {
				if err := r.Prepare(false, split(make([]byte, 512), []int{512}, 1), 0, 1); err == nil {
					t.Error("Prepare accepted an unaligned buffer on a Direct store")
				}
			}
		})
	}
}

// TestRingFullAndWake fills the submission queue and stops a waiter.
func TestRingFullAndWake(t *testing.T) {
	f := mustOpen(t, tempFile(t, make([]byte, 64*512)), Options{})
	r := newTestRing(t, f, 4)
	buf := [][]byte{make([]byte, 512)}
	var err error
	for i := 0; i <= r.Entries(); i++ {
		if err = r.Prepare(false, buf, 0, uint64(i)); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrRingFull) {
		t.Fatalf("Prepare beyond %d slots: %v, want ErrRingFull", r.Entries(), err)
	}
	r.Submit()
	cs := make([]Completion, 8)
	for got := 0; got < r.Entries(); {
		n, _ := r.Wait(cs)
		got += n
	}
	done := make(chan uint64)
	go func() {
		n, _ := r.Wait(cs[:1])
		if n == 1 {
			done <- cs[0].User
		}
		close(done)
	}()
	if err := r.Wake(); err != nil {
		t.Fatal(err)
	}
	if u := <-done; u != WakeUser {
		t.Fatalf("Wake: completion %#x", u)
	}
}

// TestRingWaitParks checks the wait in the runtime's poller: on one P, a
// goroutine waiting for completions lets the others run (they submit what
// it waits for), and Close ends a wait with ErrClosed.
func TestRingWaitParks(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	f := mustOpen(t, tempFile(t, pattern(64*512, 7)), Options{})
	r, err := f.NewRing(8)
	if err != nil {
		t.Skipf("no io_uring here: %v", err)
	}
	if r.raw == nil {
		t.Fatal("the ring is not in the runtime's poller")
	}
	type result struct {
		n   int
		c   Completion
		err error
	}
	results := make(chan result)
	wait := func() {
		cs := make([]Completion, 4)
		n, err := r.Wait(cs)
		results <- result{n, cs[0], err}
	}
	go wait()
	runtime.Gosched() // let it park
	buf := make([]byte, 1024)
	if err := r.Prepare(false, [][]byte{buf}, 512, 42); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Submit(); err != nil {
		t.Fatal(err)
	}
	res := <-results
	if res.err != nil || res.n != 1 || res.c.User != 42 || res.c.N != 1024 || r.Pending() != 0 {
		t.Fatalf("Wait: %+v, pending %d", res, r.Pending())
	}
	if !bytes.Equal(buf, pattern(64*512, 7)[512:1536]) {
		t.Fatal("read the wrong data")
	}
	go wait()
	runtime.Gosched()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-results:
		if res.n != 0 || !errors.Is(res.err, ErrClosed) {
			t.Fatalf("Wait across Close: %+v", res)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end the wait")
	}
}

// TestRingFlush flushes through the ring, and checks that a failed flush
// is sticky, as File.Flush's are.
func TestRingFlush(t *testing.T) {
	path := tempFile(t, make([]byte, 64*512))
	f := mustOpen(t, path, Options{})
	r := newTestRing(t, f, 4)
	if _, err := f.WriteAt(pattern(512, 1), 0); err != nil {
		t.Fatal(err)
	}
	if err := r.PrepareFlush(7); err != nil {
		t.Fatal(err)
	}
	if n, err := r.Submit(); err != nil || n != 1 {
		t.Fatalf("Submit: %d, %v", n, err)
	}
	cs := make([]Completion, 2)
	n, err := r.Wait(cs)
	if err != nil || n != 1 || cs[0].User != 7 || cs[0].Err != nil || r.Pending() != 0 {
		t.Fatalf("flush: %d %+v %v, pending %d", n, cs[0], err, r.Pending())
	}
	if err := r.FlushResult(cs[0].Err); err != nil {
		t.Fatal(err)
	}
	eio := r.FlushResult(syscall.EIO)
	if !errors.Is(eio, syscall.EIO) {
		t.Fatalf("failed flush: %v", eio)
	}
	if err := r.FlushResult(nil); !errors.Is(err, syscall.EIO) {
		t.Fatalf("flush after a failure: %v, want the failure again", err)
	}
	if err := f.Flush(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("File.Flush after a failed ring flush: %v", err)
	}

	ro := mustOpen(t, tempFile(t, make([]byte, 64*512)), Options{ReadOnly: true})
	rr := newTestRing(t, ro, 4)
	if err := rr.PrepareFlush(1); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("flush of a read-only store: %v", err)
	}
}

// TestFlushLane flushes on two lanes at once, each on a file description
// of its own, and checks what lanes refuse and that the ring's Close
// closes them.
func TestFlushLane(t *testing.T) {
	f := mustOpen(t, tempFile(t, make([]byte, 64*512)), Options{})
	r := newTestRing(t, f, 8)
	a, err := r.NewFlushLane()
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.NewFlushLane()
	if err != nil {
		t.Fatal(err)
	}
	if a.fd == b.fd || a.fd == f.fd || b.fd == f.fd {
		t.Fatalf("lanes share descriptors: %d, %d, store %d", a.fd, b.fd, f.fd)
	}
	// Its own open file description: its offset is not the store's.
	if _, err := unix.Seek(a.fd, 4096, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if off, _ := unix.Seek(b.fd, 0, io.SeekCurrent); off != 0 {
		t.Fatalf("lane b's offset moved with lane a's: %d", off)
	}
	if _, err := f.WriteAt(pattern(1024, 2), 0); err != nil {
		t.Fatal(err)
	}
	if err := a.PrepareFlush(1); err != nil {
		t.Fatal(err)
	}
	if err := b.PrepareFlush(2); err != nil {
		t.Fatal(err)
	}
	if n, err := r.Submit(); err != nil || n != 2 {
		t.Fatalf("Submit: %d, %v", n, err)
	}
	cs := make([]Completion, 4)
	seen := map[uint64]bool{}
	for len(seen) < 2 {
		n, err := r.Wait(cs)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs[:n] {
			if c.Err != nil || seen[c.User] || (c.User != 1 && c.User != 2) {
				t.Fatalf("flush completion %+v (seen %v)", c, seen)
			}
			seen[c.User] = true
		}
	}
	fds := []int{a.fd, b.fd}
	r.Close()
	for _, fd := range fds {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
			t.Errorf("lane descriptor %d open after the ring's Close: %v", fd, err)
		}
	}
	if _, err := r.NewFlushLane(); !errors.Is(err, ErrClosed) {
		t.Errorf("lane of a closed ring: %v", err)
	}

	ro := mustOpen(t, tempFile(t, make([]byte, 64*512)), Options{ReadOnly: true})
	if _, err := newTestRing(t, ro, 4).NewFlushLane(); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("lane of a read-only store: %v", err)
	}
}

// TestWriteDirect sends a buffered store's ring writes through O_DIRECT:
// the written page leaves the page cache (where the kernel can say), reads
// see the new data, the rest of the window is untouched, unaligned buffers
// are refused, and stores that cannot or need not are refused.
func TestWriteDirect(t *testing.T) {
	orig := pattern(256*512, 6)
	path := tempFile(t, orig)
	f := mustOpen(t, path, Options{Offset: 8, Length: 128})
	r := newTestRing(t, f, 8)
	// Cache the window.
	if _, err := f.ReadAt(make([]byte, 128*512), 0); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteDirect(); errors.Is(err, ErrNoDirect) {
		t.Skipf("skipping: %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
	if err := r.WriteDirect(); err == nil {
		t.Error("a second WriteDirect succeeded")
	}
	data := alignedBuf(4096, 0)
	copy(data, pattern(4096, 9))
	const off = 4096 - 8*512 // page 1 of the file
	if err := r.Prepare(true, [][]byte{data[:1024], data[1024:]}, off, 5); err != nil {
		t.Fatal(err)
	}
	if err := r.Prepare(true, [][]byte{alignedBuf(512, 1)}, 0, 6); err == nil {
		t.Error("a misaligned buffer was taken for a direct write")
	}
	if _, err := r.Submit(); err != nil {
		t.Fatal(err)
	}
	cs := make([]Completion, 2)
	if n, err := r.Wait(cs); err != nil || n != 1 || cs[0].User != 5 || cs[0].Err != nil || cs[0].N != 4096 {
		t.Fatalf("direct write: %d %+v %v", n, cs[0], err)
	}
	if ok, err := f.Cached(off, 4096); err == nil && ok && !f.inRAM {
		t.Error("the page a direct write covered is still cached")
	} else if err != nil {
		t.Logf("cachestat: %v", err)
	}
	got := make([]byte, 4096)
	if _, err := f.ReadAt(got, off); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read after the direct write: %v, data equal %v", err, bytes.Equal(got, data))
	}
	want := bytes.Clone(orig[8*512 : 136*512])
	copy(want[off:], data)
	checkWindow(t, readFile(t, path), orig, want, 8*512)
	r.Close()

	for _, opts := range []Options{{ReadOnly: true}, {Direct: true}} {
		g, err := Open(tempFile(t, make([]byte, 64*512)), opts)
		if errors.Is(err, ErrNoDirect) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := newTestRing(t, g, 4).WriteDirect(); err == nil {
			t.Errorf("WriteDirect on a store opened %+v succeeded", opts)
		}
		g.Close()
	}
}

// BenchmarkRingGroupCommit measures what the disk allows a durable group
// commit that acknowledges a write only after a flush that started once it
// completed: each iteration writes a group of random 4-KiB blocks at once
// (through the ring, or into the page cache), waits for them, then flushes
// on a lane and waits for that. With n writes in flight at most (an
// initiator's window of 8 writes is 32 frames at MTU 1500), no target can
// acknowledge more than n writes per group time, plus the network's share;
// "streams=2" runs two such loops of n/2 writes at once, each with its own
// ring and lane (two groups in flight, as two flush lanes allow). The file
// is $AOETARGET_BENCH_FILE (an existing file on the disk to measure, left as
// it is but for the blocks written) or a 256-MiB file in the test's
// temporary directory.
func BenchmarkRingGroupCommit(b *testing.B) {
	path := os.Getenv("AOETARGET_BENCH_FILE")
	if path == "" {
		path = filepath.Join(b.TempDir(), "disk")
		if err := os.WriteFile(path, pattern(256<<20, 1), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	for _, bm := range []struct{ n, streams int }{{1, 1}, {4, 1}, {8, 1}, {8, 2}, {16, 1}} {
		for _, direct := range []bool{true, false} {
			name := fmt.Sprintf("writes=%d/streams=%d/%s", bm.n, bm.streams, map[bool]string{true: "O_DIRECT", false: "buffered"}[direct])
			b.Run(name, func(b *testing.B) {
				f, err := Open(path, Options{Direct: direct})
				if err != nil {
					b.Skip(err)
				}
				defer f.Close()
				var wg sync.WaitGroup
				errs := make(chan error, bm.streams)
				b.ResetTimer()
				for s := range bm.streams {
					wg.Go(func() {
						if err := groupCommits(f, direct, bm.n/bm.streams, b.N/bm.streams, uint64(s)); err != nil {
							errs <- err
						}
					})
				}
				wg.Wait()
				close(errs)
				if err := <-errs; err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(bm.n*(b.N/bm.streams))/b.Elapsed().Seconds(), "writes/s")
			})
		}
	}
}

// groupCommits runs groups rounds of: n random 4-KiB writes at once, then
// a flush on a lane of its own ring, waiting for each.
func groupCommits(f *File, direct bool, n, groups int, seed uint64) error {
	r, err := f.NewRing(64)
	if err != nil {
		return err
	}
	defer r.Close()
	lane, err := r.NewFlushLane()
	if err != nil {
		return err
	}
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = alignedBuf(4096, 0)
		copy(bufs[i], pattern(4096, byte(i)))
	}
	blocks := f.Sectors() / 8
	rng := rand.New(rand.NewPCG(seed, 2))
	cs := make([]Completion, n+1)
	wait := func(k int) error {
		for k > 0 {
			got, err := r.Wait(cs)
			if err != nil {
				return err
			}
			for _, c := range cs[:got] {
				if c.Err != nil {
					return c.Err
				}
			}
			k -= got
		}
		return nil
	}
	for range groups {
		for i := range n {
			off := int64(rng.Uint64N(blocks)) * 4096
			if direct {
				err = r.Prepare(true, bufs[i:i+1], off, uint64(i))
			} else {
				_, err = f.WriteAt(bufs[i], off)
			}
			if err != nil {
				return err
			}
		}
		if direct {
			if _, err := r.Submit(); err != nil {
				return err
			}
			if err := wait(n); err != nil {
				return err
			}
		}
		if err := lane.PrepareFlush(uint64(n)); err != nil {
			return err
		}
		if _, err := r.Submit(); err != nil {
			return err
		}
		if err := wait(1); err != nil {
			return err
		}
	}
	return nil
}
