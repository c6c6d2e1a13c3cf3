package aoe_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/aoetarget/aoetarget/aoe"
)

func TestParseATA(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
		want aoe.ATA
		err  error
	}{
		{
			name: "linux read ext",
			b: []byte{
				0x40,                               // aflags E
				0x00,                               // feature 0
				0x02,                               // sector count 2
				0x24,                               // command READ SECTORS EXT
				0x00, 0xc0, 0x01, 0x00, 0x00, 0x00, // lba 0x1c000
				0x00, 0x00, // reserved
			},
			want: aoe.ATA{
				Flags: aoe.ATAExtended, SectorCount: 2, CmdStatus: aoe.ATAReadSectorsExt,
				LBA: 0x1c000, Data: []byte{},
			},
		},
		{
			name: "linux identify, lba3 holds the device register",
			b: []byte{
				0x00,                   // aflags 0
				0x00,                   // feature 0
				0x01,                   // sector count 1
				0xec,                   // command IDENTIFY DEVICE
				0x00, 0x00, 0x00, 0xa0, // lba0-3
				0x00, 0x00, // lba4-5
				0x00, 0x00, // reserved
			},
			want: aoe.ATA{SectorCount: 1, CmdStatus: aoe.ATAIdentifyDevice, LBA: 0xa0000000, Data: []byte{}},
		},
		{
			name: "lba28 write, 0xe0 in the top nibble of lba3",
			b: []byte{
				0x01,                   // aflags W
				0x00,                   // feature 0
				0x01,                   // sector count 1
				0x30,                   // command WRITE SECTORS
				0x78, 0x56, 0x34, 0xe2, // lba0-3: 0x2345678 | 0xe0<<24
				0x00, 0x00, // lba4-5
				0x00, 0x00, // reserved
				0xaa, 0xbb, 0xcc, // data (short, the parser does not check it)
			},
			want: aoe.ATA{
				Flags: aoe.ATAWrite, SectorCount: 1, CmdStatus: aoe.ATAWriteSectors,
				LBA: 0xe2345678, Data: []byte{0xaa, 0xbb, 0xcc},
			},
		},
		{
			name: "all flags, 48-bit lba, nonzero reserved bytes ignored",
			b: []byte{
				0x53,                               // aflags E|D|A|W
				0x12,                               // feature 0x12
				0xff,                               // sector count 255
				0x34,                               // command WRITE SECTORS EXT
				0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // lba 0x010203040506
				0xee, 0xff, // reserved, nonzero
			},
			want: aoe.ATA{
				Flags:       aoe.ATAExtended | aoe.ATADevice | aoe.ATAAsync | aoe.ATAWrite,
				ErrFeature:  0x12,
				SectorCount: 255,
				CmdStatus:   aoe.ATAWriteSectorsExt,
				LBA:         0x010203040506,
				Data:        []byte{},
			},
		},
		{
			name: "vblade IDNF error response",
			b: []byte{
				0x40,                               // aflags E
				0x10,                               // error IDNF
				0x02,                               // sector count 2
				0x41,                               // status DRDY|ERR
				0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // lba 0xffffffffffff
				0x00, 0x00, // reserved
			},
			want: aoe.ATA{
				Flags: aoe.ATAExtended, ErrFeature: aoe.ATAErrorIDNF, SectorCount: 2,
				CmdStatus: aoe.ATAStatusDRDY | aoe.ATAStatusERR, LBA: aoe.MaxLBA48, Data: []byte{},
			},
		},
		{name: "empty", b: nil, err: aoe.ErrShort},
		{name: "11 bytes", b: make([]byte, aoe.ATAArgLen-1), err: aoe.ErrShort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := aoe.ParseATA(tt.b)
			checkErr(t, err, tt.err)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseATA (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseATAShort(t *testing.T) {
	arg := linuxReadRequest[aoe.FrameHeaderLen:]
	for n := 0; n < aoe.ATAArgLen; n++ {
		if _, err := aoe.ParseATA(arg[:n]); !errors.Is(err, aoe.ErrShort) {
			t.Errorf("ParseATA(%d bytes): error %v, want ErrShort", n, err)
		}
	}
	if _, err := aoe.ParseATA(arg[:aoe.ATAArgLen]); err != nil {
		t.Errorf("ParseATA(%d bytes): %v", aoe.ATAArgLen, err)
	}
}

func TestParseATAWriteData(t *testing.T) {
	b := writeRequest(2, 0x1c000)
	a, err := aoe.ParseATA(b[aoe.FrameHeaderLen:])
	if err != nil {
		t.Fatal(err)
	}
	if !a.Write() || !a.Extended() {
		t.Errorf("Write() = %v, Extended() = %v; want true, true", a.Write(), a.Extended())
	}
	if got, want := len(a.Data), int(a.SectorCount)*aoe.SectorSize; got != want {
		t.Errorf("len(Data) = %d, want %d", got, want)
	}
	if &a.Data[0] != &b[aoe.FrameHeaderLen+aoe.ATAArgLen] {
		t.Error("Data does not alias the parsed buffer")
	}
}

func TestATAFlags(t *testing.T) {
	tests := []struct {
		flags           aoe.ATAFlags
		extended, write bool
	}{
		{0, false, false},
		{aoe.ATAExtended, true, false},
		{aoe.ATAWrite, false, true},
		{aoe.ATAExtended | aoe.ATAWrite, true, true},
		{aoe.ATADevice | aoe.ATAAsync, false, false},
		{0xff, true, true},
	}
	for _, tt := range tests {
		a := aoe.ATA{Flags: tt.flags}
		if a.Extended() != tt.extended || a.Write() != tt.write {
			t.Errorf("flags %#02x: Extended() = %v, Write() = %v; want %v, %v",
				tt.flags, a.Extended(), a.Write(), tt.extended, tt.write)
		}
	}
}

func TestATAAppend(t *testing.T) {
	tests := []struct {
		name   string
		a      aoe.ATA
		header []byte
		err    error
	}{
		{
			name: "read reply",
			a: aoe.ATA{
				Flags: aoe.ATAExtended, CmdStatus: aoe.ATAStatusDRDY, LBA: 0x1c000,
				Data: []byte{0xe2, 0xbf, 0xee, 0x1c},
			},
			header: []byte{
				0x40,                               // aflags E
				0x00,                               // error 0
				0x00,                               // sector count 0 (vblade counts down)
				0x40,                               // status DRDY
				0x00, 0xc0, 0x01, 0x00, 0x00, 0x00, // lba 0x1c000
				0x00, 0x00, // reserved
			},
		},
		{
			name: "identify request",
			a:    aoe.ATA{SectorCount: 1, CmdStatus: aoe.ATAIdentifyDevice, LBA: 0xa0000000},
			header: []byte{
				0x00,                   // aflags 0
				0x00,                   // feature 0
				0x01,                   // sector count 1
				0xec,                   // command IDENTIFY DEVICE
				0x00, 0x00, 0x00, 0xa0, // lba0-3
				0x00, 0x00, // lba4-5
				0x00, 0x00, // reserved
			},
		},
		{
			name: "largest lba",
			a: aoe.ATA{
				Flags: aoe.ATAExtended | aoe.ATAWrite, ErrFeature: 0xff, SectorCount: 0xff,
				CmdStatus: aoe.ATAWriteSectorsExt, LBA: aoe.MaxLBA48,
			},
			header: []byte{
				0x41,                               // aflags E|W
				0xff,                               // feature 0xff
				0xff,                               // sector count 255
				0x34,                               // command WRITE SECTORS EXT
				0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // lba 2^48-1
				0x00, 0x00, // reserved
			},
		},
		{
			name: "byte order of the lba",
			a:    aoe.ATA{LBA: 0x060504030201},
			header: []byte{
				0x00,                               // aflags 0
				0x00,                               // feature 0
				0x00,                               // sector count 0
				0x00,                               // command 0
				0x01, 0x02, 0x03, 0x04, 0x05, 0x06, // lba0 first
				0x00, 0x00, // reserved
			},
		},
		{name: "lba over 48 bits", a: aoe.ATA{LBA: aoe.MaxLBA48 + 1}, err: aoe.ErrInvalid},
		{name: "lba all ones", a: aoe.ATA{LBA: ^uint64(0), Data: []byte{1}}, err: aoe.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte{0x99}

			got, err := tt.a.AppendHeader(append([]byte(nil), prefix...))
			checkErr(t, err, tt.err)
			if tt.err != nil {
				if diff := cmp.Diff(prefix, got); diff != "" {
					t.Errorf("AppendHeader on error (-want +got):\n%s", diff)
				}
				got, err = tt.a.AppendBinary(append([]byte(nil), prefix...))
				checkErr(t, err, tt.err)
				if diff := cmp.Diff(prefix, got); diff != "" {
					t.Errorf("AppendBinary on error (-want +got):\n%s", diff)
				}
				_, err = tt.a.MarshalBinary()
				checkErr(t, err, tt.err)
				return
			}
			if diff := cmp.Diff(append(prefix, tt.header...), got); diff != "" {
				t.Errorf("AppendHeader (-want +got):\n%s", diff)
			}

			want := append(append([]byte(nil), tt.header...), tt.a.Data...)
			got, err = tt.a.AppendBinary(append([]byte(nil), prefix...))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(append(prefix, want...), got); diff != "" {
				t.Errorf("AppendBinary (-want +got):\n%s", diff)
			}
			got, err = tt.a.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("MarshalBinary (-want +got):\n%s", diff)
			}

			back, err := aoe.ParseATA(got)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.a, back, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}
