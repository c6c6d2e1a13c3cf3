package main

import (
	"errors"
	"strings"
	"testing"
)

func TestStampRoundTrip(t *testing.T) {
	s := make([]byte, 512)
	for _, tt := range []struct {
		lba       uint64
		seq, seed uint32
	}{{0, 0, 0}, {1, 1, 1}, {1<<48 - 1, 1<<32 - 1, 0xdeadbeef}} {
		stampSector(s, tt.lba, tt.seq, tt.seed)
		if err := checkSector(s, tt.lba, tt.seq, tt.seed); err != nil {
			t.Errorf("checkSector of a fresh stamp: %v", err)
		}
	}
}

func TestStampMismatch(t *testing.T) {
	const lba, seq, seed = 1000, 7, 0x1234
	stamped := func(f func(s []byte)) []byte {
		s := make([]byte, 512)
		stampSector(s, lba, seq, seed)
		f(s)
		return s
	}
	tests := []struct {
		name   string
		sector []byte
		want   string // in the message
		check  func(*stampError) bool
	}{
		{"zeros", make([]byte, 512), "no stamp", func(e *stampError) bool { return !e.Stamped }},
		{"another sector", stamped(func(s []byte) { stampSector(s, lba+1, seq, seed) }), "holds sector 1001",
			func(e *stampError) bool { return e.GotLBA == lba+1 }},
		{"an older write", stamped(func(s []byte) { stampSector(s, lba, seq-1, seed) }), "holds write 6, want write 7",
			func(e *stampError) bool { return e.GotSeq == seq-1 }},
		{"another run", stamped(func(s []byte) { stampSector(s, lba, seq, seed+1) }), "another run",
			func(e *stampError) bool { return e.GotSeed == seed+1 }},
		{"one flipped bit", stamped(func(s []byte) { s[300] ^= 4 }), "damaged from byte 300",
			func(e *stampError) bool { return e.BadByte == 300 }},
		{"last byte", stamped(func(s []byte) { s[511]++ }), "damaged from byte 511",
			func(e *stampError) bool { return e.BadByte == 511 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkSector(tt.sector, lba, seq, seed)
			var se *stampError
			if !errors.As(err, &se) {
				t.Fatalf("checkSector = %v, want a *stampError", err)
			}
			if !strings.Contains(err.Error(), tt.want) || !tt.check(se) {
				t.Errorf("checkSector = %q (%+v), want one about %q", err, se, tt.want)
			}
		})
	}
	if err := checkSector(make([]byte, 100), lba, seq, seed); err == nil {
		t.Error("checkSector accepted a 100-byte sector")
	}
}

func TestStampsDiffer(t *testing.T) {
	a, b := make([]byte, 512), make([]byte, 512)
	stampSector(a, 1, 1, 1)
	stampSector(b, 1, 2, 1)
	if string(a[24:]) == string(b[24:]) {
		t.Error("two writes of one sector have the same filler")
	}
}

func TestCheckSectorDoesNotAllocate(t *testing.T) {
	s := make([]byte, 512)
	stampSector(s, 5, 6, 7)
	if n := testing.AllocsPerRun(1000, func() { _ = checkSector(s, 5, 6, 7) }); n != 0 {
		t.Errorf("checkSector allocates %v times on a match", n)
	}
}
