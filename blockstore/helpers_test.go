package blockstore

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pattern returns n bytes that differ from sector to sector and byte to byte,
// seeded so that different writes are distinguishable.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i) ^ byte(i>>9)*31 ^ seed
	}
	return b
}

// tempFile creates a file with the given contents in a test temp dir.
func tempFile(t *testing.T, contents []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, contents, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// readFile returns the contents of path.
func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mustOpen opens path or fails the test, and closes it at cleanup.
func mustOpen(t *testing.T, path string, opts Options) *File {
	t.Helper()
	f, err := Open(path, opts)
	if err != nil {
		if opts.Direct && errors.Is(err, ErrNoDirect) {
			t.Skipf("filesystem of %s refuses O_DIRECT: %v", path, err)
		}
		t.Fatalf("Open(%q, %+v): %v", path, opts, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// alignedBuf returns an n-byte buffer aligned to 4096 bytes, or misaligned by
// skew bytes from that.
func alignedBuf(n, skew int) []byte {
	raw := make([]byte, n+2*4096)
	p := uintptr(unsafe.Pointer(&raw[0]))
	s := int((4096-p%4096)%4096) + skew
	return raw[s : s+n : s+n]
}

// openFlags returns the F_GETFL flags of f's descriptor.
func openFlags(t *testing.T, f *File) int {
	t.Helper()
	var fl int
	if err := control(f.raw, func(fd int) (err error) {
		fl, err = unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return fl
}

// requireRoot skips the test unless running as root.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root (loop devices)")
	}
}

// loopDevice attaches a loop device to a new file of the given contents and
// returns the device and backing file paths; extra arguments go to losetup.
func loopDevice(t *testing.T, contents []byte, args ...string) (dev, backing string) {
	t.Helper()
	requireRoot(t)
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("skipping: losetup not found")
	}
	backing = tempFile(t, contents)
	cmd := exec.Command("losetup", append(append([]string{"-f", "--show"}, args...), backing)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("skipping: losetup -f --show %s: %v: %s", backing, err, stderr.Bytes())
	}
	dev = strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v: %s", dev, err, out)
		}
	})
	return dev, backing
}

// checkWindow verifies that file holds orig outside [base, base+len(win)) and
// win inside it.
func checkWindow(t *testing.T, file, orig, win []byte, base int) {
	t.Helper()
	if len(file) != len(orig) {
		t.Fatalf("file is %d bytes, want %d", len(file), len(orig))
	}
	if !bytes.Equal(file[:base], orig[:base]) {
		t.Error("bytes before the window changed")
	}
	if end := base + len(win); !bytes.Equal(file[end:], orig[end:]) {
		t.Error("bytes after the window changed")
	}
	if !bytes.Equal(file[base:base+len(win)], win) {
		t.Error("window contents differ from what was written")
	}
}
