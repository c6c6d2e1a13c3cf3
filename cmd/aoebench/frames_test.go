package main

import (
	"bytes"
	"testing"

	"github.com/aoetarget/aoetarget/aoe"
	"github.com/google/go-cmp/cmp"
)

var (
	macA = aoe.MAC{0x02, 0, 0, 0, 0, 0xa}
	macB = aoe.MAC{0x02, 0, 0, 0, 0, 0xb}
)

// TestOffsets checks the offsets the hot path uses against package aoe.
func TestOffsets(t *testing.T) {
	for _, tt := range []struct {
		name      string
		got, want int
	}{
		{"tag", offTag, aoe.EthernetHeaderLen + 6},
		{"ATA argument", offAFlags, aoe.FrameHeaderLen},
		{"data", offData, aoe.FrameHeaderLen + aoe.ATAArgLen},
	} {
		if tt.got != tt.want {
			t.Errorf("%s offset = %d, want %d", tt.name, tt.got, tt.want)
		}
	}
}

func TestPutATA(t *testing.T) {
	tests := []struct {
		name    string
		write   bool
		lba     uint64
		count   uint8
		wantLen int
		wantATA aoe.ATA
	}{
		{
			name: "read of 2 sectors, padded", lba: 0x123456789abc, count: 2, wantLen: minFrameLen,
			wantATA: aoe.ATA{Flags: aoe.ATAExtended, SectorCount: 2, CmdStatus: aoe.ATAReadSectorsExt, LBA: 0x123456789abc},
		},
		{
			name: "write of 2 sectors", write: true, lba: 7, count: 2, wantLen: offData + 1024,
			wantATA: aoe.ATA{Flags: aoe.ATAExtended | aoe.ATAWrite, SectorCount: 2, CmdStatus: aoe.ATAWriteSectorsExt, LBA: 7},
		},
		{
			name: "jumbo write of 17 sectors", write: true, lba: aoe.MaxLBA48, count: 17, wantLen: offData + 17*512,
			wantATA: aoe.ATA{Flags: aoe.ATAExtended | aoe.ATAWrite, SectorCount: 17, CmdStatus: aoe.ATAWriteSectorsExt, LBA: aoe.MaxLBA48},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := newRequest(9000+14, macB, macA, 0x1234, 0x56)
			if err != nil {
				t.Fatal(err)
			}
			// Garbage where padding goes, from an earlier write frame.
			for i := offData; i < len(b); i++ {
				b[i] = 0xee
			}
			const tag = 0x80010002
			n := putATA(b, tag, tt.write, tt.lba, tt.count)
			if n != tt.wantLen {
				t.Fatalf("length = %d, want %d", n, tt.wantLen)
			}
			f, err := aoe.ParseFrame(b[:n])
			if err != nil {
				t.Fatal(err)
			}
			wantHdr := aoe.Header{Version: aoe.Version, Major: 0x1234, Minor: 0x56, Command: aoe.CommandATA, Tag: tag}
			if f.Dst != macB || f.Src != macA || f.Header != wantHdr {
				t.Errorf("frame %v -> %v %+v, want %v -> %v %+v", f.Src, f.Dst, f.Header, macA, macB, wantHdr)
			}
			a, err := aoe.ParseATA(f.Arg)
			if err != nil {
				t.Fatal(err)
			}
			a.Data = nil
			if diff := cmp.Diff(tt.wantATA, a); diff != "" {
				t.Errorf("ATA argument (-want +got):\n%s", diff)
			}
			if !tt.write && !bytes.Equal(b[offData:n], make([]byte, n-offData)) {
				t.Errorf("padding of a read is not zero: % x", b[offData:n])
			}
			putTag(b, 0x80020003)
			if f, _ := aoe.ParseFrame(b[:n]); f.Header.Tag != 0x80020003 {
				t.Errorf("after putTag the tag is %#x", f.Header.Tag)
			}
		})
	}
}

func TestNewRequestShortBuffer(t *testing.T) {
	if _, err := newRequest(20, macB, macA, 1, 1); err == nil {
		t.Error("newRequest with a 20-byte buffer succeeded")
	}
}

// reply builds a reply frame with package aoe.
func reply(t *testing.T, h aoe.Header, a aoe.ATA) []byte {
	t.Helper()
	h.Version = aoe.Version
	b, err := aoe.Frame{Dst: macA, Src: macB, Header: h}.AppendHeaders(nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err = a.AppendBinary(b)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCheckReply(t *testing.T) {
	ok := aoe.Header{Flags: aoe.FlagResponse, Major: 3, Minor: 4, Command: aoe.CommandATA, Tag: 0x8001000a}
	good := aoe.ATA{Flags: aoe.ATAExtended, SectorCount: 2, CmdStatus: aoe.ATAStatusDRDY, Data: make([]byte, 1024)}
	with := func(f func(*aoe.Header)) aoe.Header { h := ok; f(&h); return h }
	tests := []struct {
		name    string
		frame   []byte
		wantTag uint32
		want    replyStatus
	}{
		{"good read reply", reply(t, ok, good), 0x8001000a, replyOK},
		{"request, not a reply", reply(t, with(func(h *aoe.Header) { h.Flags = 0 }), good), 0, replyIgnore},
		{"other shelf", reply(t, with(func(h *aoe.Header) { h.Major = 9 }), good), 0, replyIgnore},
		{"other slot", reply(t, with(func(h *aoe.Header) { h.Minor = 9 }), good), 0, replyIgnore},
		{"query config reply", reply(t, with(func(h *aoe.Header) { h.Command = aoe.CommandQueryConfig }), good), 0, replyIgnore},
		{"AoE error", reply(t, with(func(h *aoe.Header) { h.Flags |= aoe.FlagError; h.Error = aoe.ErrorBadArgument }), good), 0x8001000a, replyAoEError},
		{"ATA error", reply(t, ok, aoe.ATA{CmdStatus: aoe.ATAStatusDRDY | aoe.ATAStatusERR, ErrFeature: aoe.ATAErrorABRT}), 0x8001000a, replyATAError},
		{"too short for the ATA argument", reply(t, ok, good)[:offData-1], 0, replyIgnore},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tag, st := checkReply(tt.frame, 3, 4)
			if tag != tt.wantTag || st != tt.want {
				t.Errorf("checkReply = %#x, %d; want %#x, %d", tag, st, tt.wantTag, tt.want)
			}
		})
	}
	full := reply(t, ok, good)
	if !readComplete(full, 2) || readComplete(full[:len(full)-1], 2) {
		t.Error("readComplete does not check the data length")
	}
}

func TestTags(t *testing.T) {
	for _, tt := range []struct {
		slot int
		gen  uint32
	}{{0, 0}, {1, 1}, {65535, 0x7fff}, {31, 0x8001}} {
		tag := makeTag(tt.slot, tt.gen)
		if tag&tagUserland == 0 {
			t.Errorf("makeTag(%d, %d) = %#x lacks bit 31", tt.slot, tt.gen, tag)
		}
		if got := tagSlot(tag); got != tt.slot {
			t.Errorf("tagSlot(makeTag(%d, %d)) = %d", tt.slot, tt.gen, got)
		}
	}
	if makeTag(5, 1) == makeTag(5, 2) {
		t.Error("generations do not change the tag")
	}
}

func TestPutATADoesNotAllocate(t *testing.T) {
	b, _ := newRequest(1514, macB, macA, 1, 1)
	if n := testing.AllocsPerRun(1000, func() { putATA(b, 1, true, 12, 2) }); n != 0 {
		t.Errorf("putATA allocates %v times", n)
	}
	r := reply(t, aoe.Header{Flags: aoe.FlagResponse, Major: 1, Minor: 1}, aoe.ATA{SectorCount: 2, Data: make([]byte, 1024)})
	if n := testing.AllocsPerRun(1000, func() { checkReply(r, 1, 1) }); n != 0 {
		t.Errorf("checkReply allocates %v times", n)
	}
}
