package blockstore

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
)

// split cuts b into buffers of the given sizes (aligned, or skewed by one
// byte), as the engine's frames would be.
func split(b []byte, sizes []int, skew int) [][]byte {
	var bufs [][]byte
	for _, n := range sizes {
		buf := alignedBuf(n, skew)
		copy(buf, b[:n])
		b = b[n:]
		bufs = append(bufs, buf)
	}
	return bufs
}

func TestVector(t *testing.T) {
	tests := []struct {
		name  string
		off   int64
		sizes []int
	}{
		{"one", 512, []int{1024}},
		{"four frames of a 4K block", 4096, []int{1024, 1024, 1024, 1024}},
		{"jumbo and empty", 0, []int{8704, 0, 512}},
		{"past MaxVectors", 1024, func() []int {
			s := make([]int, MaxVectors+3)
			for i := range s {
				s[i] = 512
			}
			return s
		}()},
		{"to the end of the window", 100 * 512, []int{512, 1024, 512}},
	}
	for _, m := range modes {
		for _, skew := range []int{0, 1} {
			t.Run(m.name, func(t *testing.T) {
				orig := pattern(200*512, 1)
				path := tempFile(t, orig)
				opts := m.opts
				opts.Offset, opts.Length = 4, 104 // window: sectors 4..108
				f := mustOpen(t, path, opts)
				model := bytes.Clone(orig[4*512 : 108*512])
				for i, tt := range tests {
					total := 0
					for _, n := range tt.sizes {
						total += n
					}
					data := pattern(total, byte(10+i))
					bufs := split(data, tt.sizes, skew)
					if n, err := f.WritevAt(bufs, tt.off); err != nil || n != total {
						t.Fatalf("%s skew %d: WritevAt: %d, %v", tt.name, skew, n, err)
					}
					copy(model[tt.off:], data)
					got := split(make([]byte, total), tt.sizes, skew)
					if n, err := f.ReadvAt(got, tt.off); err != nil || n != total {
						t.Fatalf("%s skew %d: ReadvAt: %d, %v", tt.name, skew, n, err)
					}
					if !bytes.Equal(bytes.Join(got, nil), data) {
						t.Errorf("%s skew %d: read back differs", tt.name, skew)
					}
				}
				file := readFile(t, path)
				if !bytes.Equal(file[:4*512], orig[:4*512]) || !bytes.Equal(file[108*512:], orig[108*512:]) {
					t.Error("bytes outside the window changed")
				}
				if !bytes.Equal(file[4*512:108*512], model) {
					t.Error("window does not hold what was written")
				}
				// Out of range: nothing read or written.
				bufs := split(make([]byte, 1024), []int{512, 512}, skew)
				if n, err := f.WritevAt(bufs, 103*512); !errors.Is(err, ErrOutOfRange) || n != 0 {
					t.Errorf("WritevAt past the end: %d, %v; want 0, ErrOutOfRange", n, err)
				}
				if n, err := f.ReadvAt(bufs, -512); !errors.Is(err, ErrOutOfRange) || n != 0 {
					t.Errorf("ReadvAt before the start: %d, %v; want 0, ErrOutOfRange", n, err)
				}
				if !bytes.Equal(readFile(t, path), file) {
					t.Error("a refused vector wrote")
				}
			})
		}
	}
}

func TestVectorShortAndClosed(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			path := tempFile(t, pattern(16*512, 2))
			f := mustOpen(t, path, m.opts)
			if err := os.Truncate(path, 5*512); err != nil {
				t.Fatal(err)
			}
			bufs := split(make([]byte, 4096), []int{1024, 1024, 1024, 1024}, 0)
			n, err := f.ReadvAt(bufs, 0)
			if !errors.Is(err, io.ErrUnexpectedEOF) || n > 5*512 {
				t.Errorf("ReadvAt across the new end: %d, %v; want at most %d bytes and io.ErrUnexpectedEOF", n, err, 5*512)
			}
			if !m.opts.Direct && n != 5*512 {
				t.Errorf("ReadvAt across the new end read %d bytes, want %d", n, 5*512)
			}
			if !bytes.Equal(bytes.Join(bufs, nil)[:n], pattern(16*512, 2)[:n]) {
				t.Error("short read returned wrong bytes")
			}
			ro := mustOpen(t, tempFile(t, make([]byte, 4096)), Options{ReadOnly: true})
			if _, err := ro.WritevAt(bufs, 0); !errors.Is(err, ErrReadOnly) {
				t.Errorf("WritevAt on a read-only store: %v, want ErrReadOnly", err)
			}
			f.Close()
			if _, err := f.ReadvAt(bufs, 0); !errors.Is(err, ErrClosed) {
				t.Errorf("ReadvAt after Close: %v, want ErrClosed", err)
			}
			if _, err := f.WritevAt(bufs, 0); !errors.Is(err, ErrClosed) {
				t.Errorf("WritevAt after Close: %v, want ErrClosed", err)
			}
		})
	}
}

func TestVectorAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under -race")
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			f := mustOpen(t, tempFile(t, make([]byte, 64*512)), m.opts)
			bufs := split(make([]byte, 4096), []int{1024, 1024, 1024, 1024}, 0)
			f.WritevAt(bufs, 0) // warm the pool
			if a := testing.AllocsPerRun(100, func() {
				if _, err := f.WritevAt(bufs, 8192); err != nil {
					t.Fatal(err)
				}
				if _, err := f.ReadvAt(bufs, 4096); err != nil {
					t.Fatal(err)
				}
			}); a != 0 {
				t.Errorf("ReadvAt+WritevAt: %v allocations, want 0", a)
			}
		})
	}
}
