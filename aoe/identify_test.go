package aoe_test

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/aoetarget/aoetarget/aoe"
)

// words returns the 256 little-endian words of an IDENTIFY page.
func words(b []byte) []uint16 {
	w := make([]uint16, aoe.IdentifyLen/2)
	for i := range w {
		w[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return w
}

// ataString returns the words of s as an ATA string field of n words:
// space padded, the first character in the high byte of each word.
func ataString(s string, n int) []uint16 {
	b := bytes.Repeat([]byte{' '}, 2*n)
	copy(b, s)
	w := make([]uint16, n)
	for i := range w {
		w[i] = uint16(b[2*i])<<8 | uint16(b[2*i+1])
	}
	return w
}

func TestIdentityPut(t *testing.T) {
	// fixed holds the words every page has, whatever the capacity.
	fixed := map[int]uint16{
		3:  16,     // heads
		6:  63,     // sectors per track
		47: 0x8000, // no READ/WRITE MULTIPLE
		49: 0x0200, // LBA supported
		50: 0x4000, // capabilities valid
		53: 0x0001, // words 54-58 valid
		55: 16,     // current heads
		56: 63,     // current sectors per track
		80: 0x007e, // ATA-1 to ATA-6
		82: 0x4000, // command sets supported
		83: 0x7400, // bit 10 LBA48, 12 FLUSH CACHE, 13 FLUSH CACHE EXT, 14 valid
		84: 0x4000, // extensions valid
		85: 0x4000, // command sets enabled
		86: 0x3400, // enabled: bit 10 LBA48, 12 FLUSH CACHE, 13 FLUSH CACHE EXT
		87: 0x4000, // valid
		93: 0x400b, // hardware reset result
	}
	tests := []struct {
		name string
		id   aoe.Identity
		// capacity words: 1 and 54 (cylinders), 57-58 (CHS capacity),
		// 60-61 (LBA28 capacity), 100-103 (LBA48 capacity)
		capacity map[int]uint16
	}{
		{
			name: "64 MiB, like the vblade exports of the captures",
			id:   aoe.Identity{Sectors: 131072, Serial: "1.1:vm", Firmware: "V25", Model: "Coraid EtherDrive vblade"},
			capacity: map[int]uint16{
				1: 130, 54: 130, // 131072 / (16*63) cylinders
				57: 0xffe0, 58: 0x0001, // 130*16*63 = 131040
				60: 0x0000, 61: 0x0002, // 131072
				100: 0x0000, 101: 0x0002, 102: 0, 103: 0, // 131072
			},
		},
		{
			name: "empty",
			id:   aoe.Identity{},
			capacity: map[int]uint16{
				60: 0, 61: 0, 100: 0,
			},
		},
		{
			name: "largest LBA28 capacity",
			id:   aoe.Identity{Sectors: aoe.MaxLBA28},
			capacity: map[int]uint16{
				1: 16383, 54: 16383, // capped
				57: 0xfc10, 58: 0x00fb, // 16383*16*63 = 16514064
				60: 0xffff, 61: 0x0fff, // 0x0fffffff
				100: 0xffff, 101: 0x0fff, 102: 0, 103: 0,
			},
		},
		{
			name: "one past LBA28: words 60-61 capped at 0x0fffffff",
			id:   aoe.Identity{Sectors: aoe.MaxLBA28 + 1},
			capacity: map[int]uint16{
				1: 16383, 54: 16383,
				57: 0xfc10, 58: 0x00fb,
				60: 0xffff, 61: 0x0fff, // capped
				100: 0x0000, 101: 0x1000, 102: 0, 103: 0, // 0x10000000
			},
		},
		{
			name: "4 TiB",
			id:   aoe.Identity{Sectors: 1 << 33},
			capacity: map[int]uint16{
				1: 16383, 54: 16383,
				57: 0xfc10, 58: 0x00fb,
				60: 0xffff, 61: 0x0fff, // capped
				100: 0x0000, 101: 0x0000, 102: 0x0002, 103: 0, // 2^33
			},
		},
		{
			name: "largest LBA48 capacity",
			id:   aoe.Identity{Sectors: aoe.MaxLBA48},
			capacity: map[int]uint16{
				1: 16383, 54: 16383,
				57: 0xfc10, 58: 0x00fb,
				60: 0xffff, 61: 0x0fff,
				100: 0xffff, 101: 0xffff, 102: 0xffff, 103: 0,
			},
		},
		{
			name: "strings longer than their fields are cut",
			id: aoe.Identity{
				Sectors:  1008,
				Serial:   "0123456789abcdefghijKLMN",
				Firmware: "v1.2.3-rc1",
				Model:    "aoetarget replica 0123456789012345678901234567890",
			},
			capacity: map[int]uint16{
				1: 1, 54: 1,
				57: 1008, 58: 0,
				60: 1008, 61: 0,
				100: 1008,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := make([]uint16, aoe.IdentifyLen/2)
			for i, v := range fixed {
				want[i] = v
			}
			for i, v := range tt.capacity {
				want[i] = v
			}
			copy(want[10:20], ataString(tt.id.Serial, 10))
			copy(want[23:27], ataString(tt.id.Firmware, 4))
			copy(want[27:47], ataString(tt.id.Model, 20))

			// Put overwrites every byte of the page and nothing after it.
			b := bytes.Repeat([]byte{0xa5}, aoe.IdentifyLen+8)
			tt.id.Put(b)
			if diff := cmp.Diff(want, words(b)); diff != "" {
				t.Errorf("Put: page words (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(bytes.Repeat([]byte{0xa5}, 8), b[aoe.IdentifyLen:]); diff != "" {
				t.Errorf("Put wrote past the page (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIdentityStrings(t *testing.T) {
	// The bytes of every word are swapped: "1.1:vm" is stored ".1:1mv".
	var b [aoe.IdentifyLen]byte
	aoe.Identity{Serial: "1.1:vm", Firmware: "V25", Model: "Coraid EtherDrive vblade"}.Put(b[:])
	tests := []struct {
		name       string
		start, end int // byte offsets
		want       string
	}{
		{"serial", 20, 40, ".1:1mv              "},
		{"firmware", 46, 54, "2V 5    "},
		{"model", 54, 94, "oCardiE htrerDvi ebvaled                "},
	}
	for _, tt := range tests {
		if got := string(b[tt.start:tt.end]); got != tt.want {
			t.Errorf("%s bytes = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestParseIdentity(t *testing.T) {
	page := func(set map[int]uint16) []byte {
		b := make([]byte, aoe.IdentifyLen)
		for i, v := range set {
			binary.LittleEndian.PutUint16(b[2*i:], v)
		}
		return b
	}
	tests := []struct {
		name string
		b    []byte
		want aoe.Identity
		ok   bool
	}{
		{
			name: "LBA48 from word 83 bit 10",
			b: page(map[int]uint16{
				83: 1 << 10, 60: 0xffff, 61: 0x0fff,
				100: 0x0004, 101: 0x0003, 102: 0x0002, 103: 0x0001,
			}),
			want: aoe.Identity{Sectors: 0x0001000200030004},
			ok:   true,
		},
		{
			name: "LBA48 from word 86 bit 10",
			b:    page(map[int]uint16{86: 1 << 10, 60: 0x1234, 100: 0x0002, 101: 0x0001}),
			want: aoe.Identity{Sectors: 0x00010002},
			ok:   true,
		},
		{
			name: "no LBA48: words 60-61",
			b: page(map[int]uint16{
				83: 0x7bff, 86: 0x7bff, // every bit but 10
				60: 0x5678, 61: 0x0234, 100: 0xffff,
			}),
			want: aoe.Identity{Sectors: 0x02345678},
			ok:   true,
		},
		{
			name: "strings: byte-swapped, trailing spaces and NULs trimmed",
			b: func() []byte {
				b := make([]byte, aoe.IdentifyLen)
				copy(b[20:], ".1:1mv  ")                 // serial "1.1:vm  ", then NULs
				copy(b[46:], "2V 5    ")                 // firmware "V25     "
				copy(b[54:], "oCardiE htrerDvi ebvaled") // model "Coraid EtherDrive vblade", then NULs
				return b
			}(),
			want: aoe.Identity{Serial: "1.1:vm", Firmware: "V25", Model: "Coraid EtherDrive vblade"},
			ok:   true,
		},
		{name: "short page", b: make([]byte, aoe.IdentifyLen-1)},
		{name: "empty", b: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := aoe.ParseIdentity(tt.b)
			if ok != tt.ok {
				t.Fatalf("ParseIdentity ok = %v, want %v", ok, tt.ok)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseIdentity (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIdentityRoundTrip(t *testing.T) {
	for _, id := range []aoe.Identity{
		{},
		{Sectors: 1},
		{Sectors: 131072, Serial: "1.1:vm", Firmware: "V25", Model: "Coraid EtherDrive vblade"},
		{Sectors: aoe.MaxLBA28 + 1, Serial: "01234567890123456789", Firmware: "01234567", Model: "0123456789012345678901234567890123456789"},
		{Sectors: aoe.MaxLBA48, Serial: "odd", Firmware: "x", Model: "aoetarget"},
	} {
		b := make([]byte, aoe.IdentifyLen)
		id.Put(b)
		got, ok := aoe.ParseIdentity(b)
		if !ok {
			t.Fatalf("ParseIdentity(Put(%+v)) failed", id)
		}
		if diff := cmp.Diff(id, got); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}
}
