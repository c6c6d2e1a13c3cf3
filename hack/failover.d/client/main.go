// fo-client: the NFS client workload of hack/failover.
//
// For each mount point given with -mount LABEL=DIR it creates a directory
// fo-LABEL holding -files workload files and -cached small files, keeps them
// all open, and then, until it gets SIGUSR1, writes records: record SEQ of
// file I is a block of -record bytes at offset SEQ*record, carrying its
// label, file, sequence number and a SHA-256 over the whole block. Each
// record is written, fsynced (only then is it "acknowledged") and read back.
// About once a second it also uses the handles it cached before the
// failover: fstat of every open file, a read of every open cached file, an
// openat() through a directory descriptor opened at the start, and stat()
// of the cached paths.
//
// Every failed system call is counted by operation and errno. A workload
// file whose descriptor returns ESTALE is reopened by its path (as an
// application would) and the writes go on, so that one stale handle does
// not stop the run; the reopen is counted.
//
// On SIGUSR1 the writers stop, the page cache is dropped, and every
// acknowledged record is read back from the server, through the original
// descriptor and, where that fails, through a fresh open of the path; the
// report counts the records missing (not there, or another record's) and
// those present whose checksum does not match, and the longest time between
// two successful fsyncs (the client's view of the failover).
//
// Output (stdout, one line each, for the host to parse):
//
//	REPORT label=L acked=N ops=N errors=N estale=N reopened=N missing=N mismatch=N verified=N unreadable=N gap=SECS gap_from=UNIXNS gap_to=UNIXNS
//	ERRNO label=L op=OP errno=NAME count=N first=UNIXNS
//	GAP label=L secs=S from=UNIXNS to=UNIXNS
//	FIRSTBAD label=L f00:SEQ:missing|mismatch ...
//
// and, every half second while it runs, a status line per mount in the
// -status file:
//
//	label=L t=UNIXNS ops=N acked=N errors=N estale=N reopened=N last_ok=UNIXNS
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const magic = "FOREC001"

type mountFlag []string

func (m *mountFlag) String() string     { return strings.Join(*m, ",") }
func (m *mountFlag) Set(v string) error { *m = append(*m, v); return nil }

var (
	mounts     mountFlag
	nFiles     = flag.Int("files", 4, "workload files per mount, kept open")
	nCached    = flag.Int("cached", 8, "small files per mount whose handles are cached")
	recordSize = flag.Int("record", 4096, "record size in bytes (at least 128)")
	pace       = flag.Duration("pace", 0, "pause after each record")
	statusFile = flag.String("status", "", "file to rewrite with a status line every 0.5 s")
	gapMin     = flag.Duration("gap", 500*time.Millisecond, "shortest pause without a successful operation that is reported as a gap")
)

type errKey struct{ op, errno string }

type errStat struct {
	count int
	first time.Time
}

// worker runs the workload on one mount.
type worker struct {
	label, dir string

	mu       sync.Mutex
	errs     map[errKey]*errStat
	lastOK   time.Time
	gaps     []gap // pauses of at least -gap between successful operations
	acked    []map[uint64]bool
	ops      int64
	nerrs    int64
	estale   int64
	reopened int64
	ackedN   int64

	files   []*os.File
	cached  []*os.File
	dirFD   int
	stopped atomic.Bool
}

type gap struct{ from, to time.Time }

func errnoName(err error) string {
	var en syscall.Errno
	if errors.As(err, &en) {
		switch en {
		case syscall.ESTALE:
			return "ESTALE"
		case syscall.EIO:
			return "EIO"
		case syscall.ENOENT:
			return "ENOENT"
		case syscall.EAGAIN:
			return "EAGAIN"
		case syscall.EINTR:
			return "EINTR"
		case syscall.ETIMEDOUT:
			return "ETIMEDOUT"
		case syscall.EACCES:
			return "EACCES"
		case syscall.EPERM:
			return "EPERM"
		case syscall.ENOSPC:
			return "ENOSPC"
		case syscall.EBADF:
			return "EBADF"
		}
		return fmt.Sprintf("errno%d", int(en))
	}
	if errors.Is(err, errShort) {
		return "SHORT"
	}
	if errors.Is(err, errContent) {
		return "CONTENT"
	}
	return "OTHER"
}

var (
	errShort   = errors.New("short read or write")
	errContent = errors.New("unexpected content")
)

// result records the outcome of one operation.
func (w *worker) result(op string, err error) bool {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ops++
	if err == nil {
		// The stall is measured between fsyncs, which always wait for the
		// server (a buffered write or read-back may not).
		if op == "fsync" {
			if !w.lastOK.IsZero() && now.Sub(w.lastOK) >= *gapMin {
				w.gaps = append(w.gaps, gap{w.lastOK, now})
			}
			w.lastOK = now
		}
		return true
	}
	name := errnoName(err)
	k := errKey{op, name}
	s := w.errs[k]
	if s == nil {
		s = &errStat{first: now}
		w.errs[k] = s
		fmt.Fprintf(os.Stderr, "%s %s: %s: %v\n", now.Format("15:04:05.000"), w.label, op, err)
	}
	s.count++
	w.nerrs++
	if name == "ESTALE" {
		w.estale++
	}
	return false
}

func isStale(err error) bool { return errors.Is(err, syscall.ESTALE) }

// record builds record seq of file i.
func (w *worker) record(i int, seq uint64) []byte {
	b := make([]byte, *recordSize)
	copy(b, magic)
	binary.LittleEndian.PutUint64(b[8:], seq)
	binary.LittleEndian.PutUint32(b[16:], uint32(i))
	copy(b[24:32], w.label)
	binary.LittleEndian.PutUint64(b[32:], uint64(time.Now().UnixNano()))
	r := rand.New(rand.NewSource(int64(seq)*1000003 + int64(i)))
	r.Read(b[72:])
	sum := checksum(b)
	copy(b[40:72], sum[:])
	return b
}

func checksum(b []byte) [32]byte {
	h := sha256.New()
	h.Write(b[:40])
	h.Write(b[72:])
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

// check classifies a block read back for record seq of file i: "" when it
// is the record, "missing" when it is not there (zeros, short, another
// record), "mismatch" when the header is right but the checksum is not.
func (w *worker) check(b []byte, n int, i int, seq uint64) string {
	if n < len(b) || !bytes.Equal(b[:8], []byte(magic)) ||
		binary.LittleEndian.Uint64(b[8:]) != seq ||
		binary.LittleEndian.Uint32(b[16:]) != uint32(i) ||
		!bytes.Equal(bytes.TrimRight(b[24:32], "\x00"), []byte(w.label)) {
		return "missing"
	}
	sum := checksum(b)
	if !bytes.Equal(sum[:], b[40:72]) {
		return "mismatch"
	}
	return ""
}

func cachedContent(label string, c int) []byte {
	b := make([]byte, 8192)
	r := rand.New(rand.NewSource(int64(c)*7919 + int64(len(label))))
	r.Read(b)
	copy(b, fmt.Sprintf("cached %s %d\n", label, c))
	return b
}

func (w *worker) path(i int) string { return filepath.Join(w.dir, fmt.Sprintf("f%02d", i)) }
func (w *worker) cpath(c int) string {
	return filepath.Join(w.dir, "cached", fmt.Sprintf("c%02d", c))
}

func (w *worker) setup() error {
	if err := os.RemoveAll(w.dir); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(w.dir, "cached"), 0o755); err != nil {
		return err
	}
	for c := 0; c < *nCached; c++ {
		if err := os.WriteFile(w.cpath(c), cachedContent(w.label, c), 0o644); err != nil {
			return err
		}
		f, err := os.Open(w.cpath(c))
		if err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		w.cached = append(w.cached, f)
	}
	for i := 0; i < *nFiles; i++ {
		f, err := os.OpenFile(w.path(i), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		w.files = append(w.files, f)
		w.acked = append(w.acked, map[uint64]bool{})
	}
	d, err := os.Open(filepath.Join(w.dir, "cached"))
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		return err
	}
	// Keep the directory open: openat() through it after the failover uses
	// the directory's cached filehandle.
	fd, err := syscall.Dup(int(d.Fd()))
	if err != nil {
		return err
	}
	d.Close()
	w.dirFD = fd
	pd, err := os.Open(w.dir)
	if err == nil {
		pd.Sync()
		pd.Close()
	}
	w.lastOK = time.Now()
	return nil
}

// reopen replaces workload file i's descriptor after ESTALE.
func (w *worker) reopen(i int) {
	f, err := os.OpenFile(w.path(i), os.O_RDWR|os.O_CREATE, 0o644)
	if !w.result("reopen", err) {
		return
	}
	w.files[i].Close()
	w.files[i] = f
	w.mu.Lock()
	w.reopened++
	w.mu.Unlock()
}

func (w *worker) writeOne(i int, seq uint64) {
	rec := w.record(i, seq)
	off := int64(seq) * int64(*recordSize)
	f := w.files[i]
	n, err := f.WriteAt(rec, off)
	if err == nil && n != len(rec) {
		err = errShort
	}
	if !w.result("write", err) {
		if isStale(err) {
			w.reopen(i)
		}
		return
	}
	err = f.Sync()
	if !w.result("fsync", err) {
		if isStale(err) {
			w.reopen(i)
		}
		return
	}
	w.mu.Lock()
	w.acked[i][seq] = true
	w.ackedN++
	w.mu.Unlock()
	buf := make([]byte, len(rec))
	n, err = f.ReadAt(buf, off)
	if err == nil {
		if n != len(buf) {
			err = errShort
		} else if !bytes.Equal(buf, rec) {
			err = errContent
		}
	}
	if !w.result("readback", err) && isStale(err) {
		w.reopen(i)
	}
}

// probe uses the handles cached before the failover.
func (w *worker) probe() {
	for i, f := range w.files {
		_, err := f.Stat()
		if !w.result("fstat", err) && isStale(err) {
			w.reopen(i)
		}
	}
	for c, f := range w.cached {
		want := cachedContent(w.label, c)
		buf := make([]byte, len(want))
		n, err := f.ReadAt(buf, 0)
		if err == nil && (n != len(want) || !bytes.Equal(buf, want)) {
			err = errContent
		}
		w.result("read-cached-fd", err)
		if w.stopped.Load() {
			return
		}
	}
	for c := 0; c < *nCached; c++ {
		fd, err := syscall.Openat(w.dirFD, fmt.Sprintf("c%02d", c), syscall.O_RDONLY, 0)
		if w.result("openat-cached-dir", err) {
			syscall.Close(fd)
		}
		var st syscall.Stat_t
		w.result("stat-cached-path", syscall.Stat(w.cpath(c), &st))
		if w.stopped.Load() {
			return
		}
	}
}

func (w *worker) run(done *sync.WaitGroup) {
	defer done.Done()
	nextProbe := time.Now().Add(time.Second)
	for seq := uint64(0); !w.stopped.Load(); seq++ {
		for i := range w.files {
			if w.stopped.Load() {
				return
			}
			w.writeOne(i, seq)
			if *pace > 0 {
				time.Sleep(*pace)
			}
		}
		if time.Now().After(nextProbe) {
			w.probe()
			nextProbe = time.Now().Add(time.Second)
		}
	}
}

// verify reads back every acknowledged record and prints the report.
func (w *worker) verify() {
	var missing, mismatch, verified, unreadable int
	var firstBad []string
	for i := range w.files {
		seqs := make([]uint64, 0, len(w.acked[i]))
		for s := range w.acked[i] {
			seqs = append(seqs, s)
		}
		sort.Slice(seqs, func(a, b int) bool { return seqs[a] < seqs[b] })
		f := w.files[i]
		var fresh *os.File
		for _, seq := range seqs {
			buf := make([]byte, *recordSize)
			off := int64(seq) * int64(*recordSize)
			n, err := f.ReadAt(buf, off)
			if err != nil && n < len(buf) && !errors.Is(err, io.EOF) {
				w.result("verify-fd", err)
				if fresh == nil {
					fresh, err = os.Open(w.path(i))
					if !w.result("verify-open", err) {
						fresh = nil
					}
				}
				if fresh == nil {
					unreadable++
					continue
				}
				n, err = fresh.ReadAt(buf, off)
				if err != nil && n < len(buf) && !errors.Is(err, io.EOF) {
					w.result("verify-path", err)
					unreadable++
					continue
				}
			}
			switch w.check(buf, n, i, seq) {
			case "":
				verified++
			case "missing":
				missing++
				if len(firstBad) < 5 {
					firstBad = append(firstBad, fmt.Sprintf("f%02d:%d:missing", i, seq))
				}
			case "mismatch":
				mismatch++
				if len(firstBad) < 5 {
					firstBad = append(firstBad, fmt.Sprintf("f%02d:%d:mismatch", i, seq))
				}
			}
		}
		if fresh != nil {
			fresh.Close()
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var g gap
	for _, x := range w.gaps {
		if x.to.Sub(x.from) > g.to.Sub(g.from) {
			g = x
		}
	}
	fmt.Printf("REPORT label=%s acked=%d ops=%d errors=%d estale=%d reopened=%d missing=%d mismatch=%d verified=%d unreadable=%d gap=%.3f gap_from=%d gap_to=%d gaps=%d\n",
		w.label, w.ackedN, w.ops, w.nerrs, w.estale, w.reopened, missing, mismatch, verified, unreadable,
		g.to.Sub(g.from).Seconds(), unixNano(g.from), unixNano(g.to), len(w.gaps))
	keys := make([]errKey, 0, len(w.errs))
	for k := range w.errs {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(a, b int) bool {
		if keys[a].op != keys[b].op {
			return keys[a].op < keys[b].op
		}
		return keys[a].errno < keys[b].errno
	})
	for _, k := range keys {
		s := w.errs[k]
		fmt.Printf("ERRNO label=%s op=%s errno=%s count=%d first=%d\n", w.label, k.op, k.errno, s.count, s.first.UnixNano())
	}
	for _, x := range w.gaps {
		fmt.Printf("GAP label=%s secs=%.3f from=%d to=%d\n", w.label, x.to.Sub(x.from).Seconds(), x.from.UnixNano(), x.to.UnixNano())
	}
	if len(firstBad) > 0 {
		fmt.Printf("FIRSTBAD label=%s %s\n", w.label, strings.Join(firstBad, " "))
	}
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func main() {
	flag.Var(&mounts, "mount", "LABEL=DIR: a mount point to run the workload on (repeatable)")
	flag.Parse()
	if len(mounts) == 0 || *recordSize < 128 || *nFiles < 1 {
		fmt.Fprintln(os.Stderr, "usage: fo-client -mount LABEL=DIR [-mount LABEL=DIR...] [-files N] [-cached N] [-record BYTES] [-status FILE]")
		os.Exit(2)
	}
	var workers []*worker
	for _, m := range mounts {
		label, dir, ok := strings.Cut(m, "=")
		if !ok || label == "" || len(label) > 8 {
			fmt.Fprintf(os.Stderr, "fo-client: bad -mount %q (LABEL=DIR, label at most 8 bytes)\n", m)
			os.Exit(2)
		}
		w := &worker{label: label, dir: filepath.Join(dir, "fo-"+label), errs: map[errKey]*errStat{}}
		if err := w.setup(); err != nil {
			fmt.Fprintf(os.Stderr, "fo-client: setup of %s: %v\n", w.dir, err)
			os.Exit(1)
		}
		workers = append(workers, w)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGTERM, syscall.SIGINT)
	var done sync.WaitGroup
	for _, w := range workers {
		done.Add(1)
		go w.run(&done)
	}
	fmt.Fprintf(os.Stderr, "fo-client: running on %s\n", mounts.String())
	if *statusFile != "" {
		go func() {
			for {
				var b strings.Builder
				for _, w := range workers {
					w.mu.Lock()
					fmt.Fprintf(&b, "label=%s t=%d ops=%d acked=%d errors=%d estale=%d reopened=%d last_ok=%d\n",
						w.label, time.Now().UnixNano(), w.ops, w.ackedN, w.nerrs, w.estale, w.reopened, w.lastOK.UnixNano())
					w.mu.Unlock()
				}
				tmp := *statusFile + ".tmp"
				if os.WriteFile(tmp, []byte(b.String()), 0o644) == nil {
					os.Rename(tmp, *statusFile)
				}
				time.Sleep(500 * time.Millisecond)
			}
		}()
	}
	sig := <-sigs
	for _, w := range workers {
		w.stopped.Store(true)
	}
	done.Wait()
	if sig != syscall.SIGUSR1 {
		os.Exit(1)
	}
	syscall.Sync()
	// Read from the server, not from this client's page cache.
	os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o644)
	for _, w := range workers {
		w.verify()
	}
}
