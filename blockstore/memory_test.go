package blockstore

import (
	"bytes"
	"errors"
	"testing"
)

var errInjected = errors.New("injected fault")

func TestMemoryRange(t *testing.T) {
	m := NewMemory(4) // 2048 bytes, as rangeCases expect
	for _, tt := range rangeCases {
		buf := make([]byte, tt.n)
		rn, rerr := m.ReadAt(buf, tt.off)
		wn, werr := m.WriteAt(buf, tt.off)
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
	if m.Sectors() != 4 {
		t.Errorf("Sectors() = %d, want 4", m.Sectors())
	}
}

func TestMemoryFaults(t *testing.T) {
	tests := []struct {
		name   string
		inject func(m *Memory)
		read   bool // ReadAt fails
		write  bool // WriteAt fails
		flush  bool // Flush fails
	}{
		{name: "none", inject: func(m *Memory) {}},
		{name: "read", inject: func(m *Memory) { m.SetReadErr(errInjected) }, read: true},
		{name: "write", inject: func(m *Memory) { m.SetWriteErr(errInjected) }, write: true},
		{name: "flush", inject: func(m *Memory) { m.SetFlushErr(errInjected) }, flush: true},
		{name: "hook write only", inject: func(m *Memory) {
			m.SetFault(func(op Op, off int64, n int) error {
				if op == OpWrite {
					return errInjected
				}
				return nil
			})
		}, write: true},
		{name: "hook at sector 2", inject: func(m *Memory) {
			m.SetFault(func(op Op, off int64, n int) error {
				if op != OpFlush && off <= 2*512 && off+int64(n) > 2*512 {
					return errInjected
				}
				return nil
			})
		}, read: true, write: true},
		{name: "hook flush", inject: func(m *Memory) {
			m.SetFault(func(op Op, off int64, n int) error {
				if op == OpFlush {
					return errInjected
				}
				return nil
			})
		}, flush: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMemory(8)
			old := pattern(8*512, 1)
			m.WriteAt(old, 0)
			m.Flush()
			tt.inject(m)

			data := pattern(1024, 2)
			n, err := m.WriteAt(data, 1024)
			if tt.write {
				if !errors.Is(err, errInjected) || n != 0 {
					t.Errorf("WriteAt: %d, %v; want 0, injected", n, err)
				}
				if !bytes.Equal(m.Bytes(), old) {
					t.Error("failed WriteAt changed the contents")
				}
			} else if err != nil || n != len(data) {
				t.Errorf("WriteAt: %d, %v", n, err)
			}

			buf := make([]byte, 1024)
			n, err = m.ReadAt(buf, 1024)
			if tt.read {
				if !errors.Is(err, errInjected) || n != 0 {
					t.Errorf("ReadAt: %d, %v; want 0, injected", n, err)
				}
			} else if err != nil || n != len(buf) {
				t.Errorf("ReadAt: %d, %v", n, err)
			}
			// Out-of-range is reported before any injected fault.
			if _, err := m.ReadAt(buf, 8*512); !errors.Is(err, ErrOutOfRange) {
				t.Errorf("ReadAt out of range: %v, want ErrOutOfRange", err)
			}

			err = m.Flush()
			if tt.flush != errors.Is(err, errInjected) || (!tt.flush && err != nil) {
				t.Errorf("Flush: %v; want failure %v", err, tt.flush)
			}
			if got := m.Flushes(); got != 2 {
				t.Errorf("Flushes() = %d, want 2", got)
			}
			if tt.flush && !bytes.Equal(m.Stable(), old) {
				t.Error("failed Flush made writes stable")
			}
			if !tt.flush && !bytes.Equal(m.Stable(), m.Bytes()) {
				t.Error("successful Flush did not make writes stable")
			}

			// Clearing the faults restores normal service.
			m.SetReadErr(nil)
			m.SetWriteErr(nil)
			m.SetFlushErr(nil)
			m.SetFault(nil)
			if _, err := m.WriteAt(data, 1024); err != nil {
				t.Errorf("WriteAt after clearing: %v", err)
			}
			if err := m.Flush(); err != nil {
				t.Errorf("Flush after clearing: %v", err)
			}
		})
	}
}

func TestMemoryDurability(t *testing.T) {
	m := NewMemory(8)
	a, b := pattern(512, 1), pattern(700, 2)
	m.WriteAt(a, 0)
	m.WriteAt(b, 1000) // unaligned, spans sectors 1-3
	if !bytes.Equal(m.Stable(), make([]byte, 8*512)) {
		t.Fatal("unflushed writes are stable")
	}
	if err := m.Flush(); err != nil {
		t.Fatal(err)
	}
	want := m.Bytes()
	if !bytes.Equal(m.Stable(), want) {
		t.Fatal("flushed writes are not stable")
	}
	m.WriteAt(pattern(512, 3), 4*512)
	m.Crash()
	if !bytes.Equal(m.Bytes(), want) {
		t.Error("Crash did not discard the unflushed write")
	}

	m.SetDurable(true)
	if !m.Durable() {
		t.Error("Durable() = false after SetDurable(true)")
	}
	m.WriteAt(pattern(512, 4), 5*512)
	copy(want[5*512:], pattern(512, 4))
	m.Crash()
	if !bytes.Equal(m.Bytes(), want) {
		t.Error("durable write lost in Crash")
	}
	if m.Writes() != 4 {
		t.Errorf("Writes() = %d, want 4", m.Writes())
	}
}

func TestMemoryReadOnlyClose(t *testing.T) {
	m := NewMemory(2)
	m.SetReadOnly(true)
	if !m.ReadOnly() {
		t.Error("ReadOnly() = false")
	}
	if _, err := m.WriteAt(make([]byte, 512), 0); !errors.Is(err, ErrReadOnly) {
		t.Errorf("WriteAt: %v, want ErrReadOnly", err)
	}
	m.SetFlushErr(errInjected)
	if err := m.Flush(); err != nil {
		t.Errorf("read-only Flush: %v, want nil", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := m.ReadAt(make([]byte, 512), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadAt after Close: %v, want ErrClosed", err)
	}
	if err := m.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close: %v, want ErrClosed", err)
	}

	w := NewMemory(2)
	w.WriteAt(pattern(1024, 5), 0)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if w.Flushes() != 1 || !bytes.Equal(w.Stable(), pattern(1024, 5)) {
		t.Error("Close did not flush")
	}
	if _, err := w.WriteAt(make([]byte, 512), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteAt after Close: %v, want ErrClosed", err)
	}
}

func TestOpString(t *testing.T) {
	for op, want := range map[Op]string{OpRead: "read", OpWrite: "write", OpFlush: "flush", 0: "Op(0)"} {
		if got := op.String(); got != want {
			t.Errorf("Op(%d).String() = %q, want %q", uint8(op), got, want)
		}
	}
}

// FuzzMemory checks Memory against a plain byte slice for arbitrary requests:
// in-range requests succeed and match, anything else is ErrOutOfRange.
func FuzzMemory(f *testing.F) {
	f.Add(int64(0), uint16(512), true)       // whole first sector
	f.Add(int64(4000), uint16(200), false)   // straddles the end
	f.Add(int64(-1), uint16(1), true)        // negative
	f.Add(int64(1<<62), uint16(4096), false) // far past the end
	f.Fuzz(func(t *testing.T, off int64, n uint16, write bool) {
		const size = 8 * 512
		m := NewMemory(8)
		model := pattern(size, 9)
		m.WriteAt(model, 0)
		buf := pattern(int(n), 7)
		var err error
		var got int
		if write {
			got, err = m.WriteAt(buf, off)
		} else {
			got, err = m.ReadAt(buf, off)
		}
		in := off >= 0 && off <= size && int64(n) <= size-off
		if !in {
			if !errors.Is(err, ErrOutOfRange) || got != 0 {
				t.Fatalf("off %d n %d: %d, %v; want ErrOutOfRange", off, n, got, err)
			}
			if !bytes.Equal(m.Bytes(), model) {
				t.Fatal("out-of-range request changed the contents")
			}
			return
		}
		if err != nil || got != int(n) {
			t.Fatalf("off %d n %d: %d, %v", off, n, got, err)
		}
		if write {
			copy(model[off:], buf)
			if !bytes.Equal(m.Bytes(), model) {
				t.Fatal("contents differ from the model")
			}
		} else if !bytes.Equal(buf, model[off:off+int64(n)]) {
			t.Fatal("read differs from the model")
		}
	})
}
