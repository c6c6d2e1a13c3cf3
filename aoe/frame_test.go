package aoe_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/aoetarget/aoetarget/aoe"
)

var (
	// Addresses from the captures: the Linux initiator VM and a vblade target.
	initiatorMAC = aoe.MAC{0x52, 0x54, 0x00, 0xae, 0x00, 0x01}
	targetMAC    = aoe.MAC{0x46, 0xba, 0xdb, 0x73, 0xf3, 0x48}
)

// linuxConfigQuery is frame 1 of linux61-aoe-vblade-mtu1500.pcap: the
// kernel's broadcast Query Config, all zeros after the header.
var linuxConfigQuery = []byte{
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst broadcast
	0x52, 0x54, 0x00, 0xae, 0x00, 0x01, // src initiator
	0x88, 0xa2, // ethertype AoE
	0x10,       // ver 1, flags 0
	0x00,       // error 0
	0xff, 0xff, // major 0xffff (broadcast)
	0xff,                   // minor 0xff (broadcast)
	0x01,                   // command 1 (query config)
	0x00, 0x00, 0x00, 0x00, // tag 0
	0x00, 0x00, // buffer count 0
	0x00, 0x00, // firmware version 0
	0x00,       // sector count 0
	0x00,       // aoe ver 0, ccmd 0 (read)
	0x00, 0x00, // config string length 0
}

// linuxReadRequest is frame 8 of linux61-aoe-vblade-mtu1500.pcap: a
// 36-byte READ SECTORS EXT of 2 sectors at LBA 0 to e1.0.
var linuxReadRequest = []byte{
	0x46, 0xba, 0xdb, 0x73, 0xf3, 0x48, // dst target
	0x52, 0x54, 0x00, 0xae, 0x00, 0x01, // src initiator
	0x88, 0xa2, // ethertype AoE
	0x10,       // ver 1, flags 0
	0x00,       // error 0
	0x00, 0x01, // major 1
	0x00,                   // minor 0
	0x00,                   // command 0 (ATA)
	0x00, 0x02, 0xdd, 0xe1, // tag 0x0002dde1 (bit 31 clear)
	0x40,                               // aflags E
	0x00,                               // feature 0
	0x02,                               // sector count 2
	0x24,                               // command READ SECTORS EXT
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // lba 0
	0x00, 0x00, // reserved
}

// linuxIdentifyRequest is frame 5 of linux61-aoe-vblade-mtu1500.pcap.
var linuxIdentifyRequest = []byte{
	0x46, 0xba, 0xdb, 0x73, 0xf3, 0x48, // dst target
	0x52, 0x54, 0x00, 0xae, 0x00, 0x01, // src initiator
	0x88, 0xa2, // ethertype AoE
	0x10,       // ver 1, flags 0
	0x00,       // error 0
	0x00, 0x01, // major 1
	0x00,                   // minor 0
	0x00,                   // command 0 (ATA)
	0x00, 0x01, 0xdd, 0xdb, // tag 0x0001dddb
	0x00,                   // aflags 0
	0x00,                   // feature 0
	0x01,                   // sector count 1
	0xec,                   // command IDENTIFY DEVICE
	0x00, 0x00, 0x00, 0xa0, // lba0-3: lba3 0xa0 (the old device register)
	0x00, 0x00, // lba4-5
	0x00, 0x00, // reserved
}

// writeRequest returns a WRITE SECTORS EXT frame of n sectors at lba, each
// byte of the data set to its offset modulo 251.
func writeRequest(n int, lba uint64) []byte {
	b := []byte{
		0x46, 0xba, 0xdb, 0x73, 0xf3, 0x48, // dst target
		0x52, 0x54, 0x00, 0xae, 0x00, 0x01, // src initiator
		0x88, 0xa2, // ethertype AoE
		0x10,       // ver 1, flags 0
		0x00,       // error 0
		0x00, 0x01, // major 1
		0x00,                   // minor 0
		0x00,                   // command 0 (ATA)
		0x00, 0x0f, 0xdf, 0x55, // tag 0x000fdf55
		0x41,       // aflags E|W
		0x00,       // feature 0
		uint8(n),   // sector count
		0x34,       // command WRITE SECTORS EXT
		uint8(lba), // lba0
		uint8(lba >> 8), uint8(lba >> 16), uint8(lba >> 24),
		uint8(lba >> 32), uint8(lba >> 40), // lba1-5
		0x00, 0x00, // reserved
	}
	for i := range n * aoe.SectorSize {
		b = append(b, uint8(i%251))
	}
	return b
}

func TestParseFrame(t *testing.T) {
	padded := append(append([]byte(nil), linuxReadRequest...), make([]byte, 60-len(linuxReadRequest))...)
	tests := []struct {
		name string
		b    []byte
		want aoe.Frame
		err  error
	}{
		{
			name: "linux config query",
			b:    linuxConfigQuery,
			want: aoe.Frame{
				Dst: aoe.BroadcastMAC, Src: initiatorMAC,
				Header: aoe.Header{
					Version: 1, Major: aoe.BroadcastMajor, Minor: aoe.BroadcastMinor,
					Command: aoe.CommandQueryConfig,
				},
				Arg: make([]byte, aoe.ConfigArgLen),
			},
		},
		{
			name: "linux read request",
			b:    linuxReadRequest,
			want: aoe.Frame{
				Dst: targetMAC, Src: initiatorMAC,
				Header: aoe.Header{Version: 1, Major: 1, Command: aoe.CommandATA, Tag: 0x0002dde1},
				Arg:    linuxReadRequest[aoe.FrameHeaderLen:],
			},
		},
		{
			name: "padding stays in Arg",
			b:    padded,
			want: aoe.Frame{
				Dst: targetMAC, Src: initiatorMAC,
				Header: aoe.Header{Version: 1, Major: 1, Command: aoe.CommandATA, Tag: 0x0002dde1},
				Arg:    padded[aoe.FrameHeaderLen:],
			},
		},
		{
			name: "headers only",
			b:    linuxReadRequest[:aoe.FrameHeaderLen],
			want: aoe.Frame{
				Dst: targetMAC, Src: initiatorMAC,
				Header: aoe.Header{Version: 1, Major: 1, Command: aoe.CommandATA, Tag: 0x0002dde1},
				Arg:    []byte{},
			},
		},
		{
			name: "not AoE",
			b: []byte{
				0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst broadcast
				0x52, 0x54, 0x00, 0xae, 0x00, 0x01, // src
				0x08, 0x06, // ethertype ARP
				0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x00, 0x00, // ARP, not AoE
			},
			err: aoe.ErrInvalid,
		},
		{
			name: "VLAN tagged",
			b: []byte{
				0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst broadcast
				0x52, 0x54, 0x00, 0xae, 0x00, 0x01, // src
				0x81, 0x00, // ethertype 802.1Q
				0x00, 0x05, // VLAN 5
				0x88, 0xa2, // ethertype AoE
				0x10, 0x00, 0xff, 0xff, 0xff, 0x01, 0x00, 0x00, 0x00, 0x00, // AoE header
			},
			err: aoe.ErrInvalid,
		},
		{name: "empty", b: nil, err: aoe.ErrShort},
		{name: "ethernet header only", b: linuxReadRequest[:aoe.EthernetHeaderLen], err: aoe.ErrShort},
		{name: "one byte short", b: linuxReadRequest[:aoe.FrameHeaderLen-1], err: aoe.ErrShort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := aoe.ParseFrame(tt.b)
			checkErr(t, err, tt.err)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseFrame (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseFrameShort(t *testing.T) {
	for n := 0; n < aoe.FrameHeaderLen; n++ {
		if _, err := aoe.ParseFrame(linuxReadRequest[:n]); !errors.Is(err, aoe.ErrShort) {
			t.Errorf("ParseFrame(%d bytes): error %v, want ErrShort", n, err)
		}
	}
}

func TestParseFrameAliases(t *testing.T) {
	b := append([]byte(nil), linuxReadRequest...)
	f, err := aoe.ParseFrame(b)
	if err != nil {
		t.Fatal(err)
	}
	if &f.Arg[0] != &b[aoe.FrameHeaderLen] {
		t.Error("Arg does not alias the parsed buffer")
	}
}

func TestFrameAppend(t *testing.T) {
	tests := []struct {
		name    string
		f       aoe.Frame
		headers []byte
		err     error
	}{
		{
			name: "read reply headers",
			f: aoe.Frame{
				Dst: initiatorMAC, Src: targetMAC,
				Header: aoe.Header{
					Version: aoe.Version, Flags: aoe.FlagResponse, Major: 1, Minor: 0,
					Command: aoe.CommandATA, Tag: 0x0002dde1,
				},
				Arg: []byte{0xde, 0xad},
			},
			headers: []byte{
				0x52, 0x54, 0x00, 0xae, 0x00, 0x01, // dst initiator
				0x46, 0xba, 0xdb, 0x73, 0xf3, 0x48, // src target
				0x88, 0xa2, // ethertype AoE
				0x18,       // ver 1, flags R
				0x00,       // error 0
				0x00, 0x01, // major 1
				0x00,                   // minor 0
				0x00,                   // command 0 (ATA)
				0x00, 0x02, 0xdd, 0xe1, // tag 0x0002dde1
			},
		},
		{
			name: "error reply, no argument",
			f: aoe.Frame{
				Dst: initiatorMAC, Src: targetMAC,
				Header: aoe.Header{
					Version: aoe.Version, Flags: aoe.FlagResponse | aoe.FlagError,
					Error: aoe.ErrorUnsupportedVersion, Major: 7, Minor: 9,
					Command: aoe.CommandQueryConfig, Tag: 0x80000000,
				},
			},
			headers: []byte{
				0x52, 0x54, 0x00, 0xae, 0x00, 0x01, // dst initiator
				0x46, 0xba, 0xdb, 0x73, 0xf3, 0x48, // src target
				0x88, 0xa2, // ethertype AoE
				0x1c,       // ver 1, flags R|E
				0x05,       // error 5 (unsupported version)
				0x00, 0x07, // major 7
				0x09,                   // minor 9
				0x01,                   // command 1 (query config)
				0x80, 0x00, 0x00, 0x00, // tag 0x80000000
			},
		},
		{
			name: "bad version",
			f:    aoe.Frame{Header: aoe.Header{Version: 0x10}, Arg: []byte{1}},
			err:  aoe.ErrInvalid,
		},
		{
			name: "bad flags",
			f:    aoe.Frame{Header: aoe.Header{Version: 1, Flags: 0x80}},
			err:  aoe.ErrInvalid,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte{0x01, 0x02, 0x03}
			in := append(make([]byte, 0, 128), prefix...)

			got, err := tt.f.AppendHeaders(in)
			checkErr(t, err, tt.err)
			if tt.err != nil {
				// On error the buffer comes back as it was.
				if diff := cmp.Diff(prefix, got); diff != "" {
					t.Errorf("AppendHeaders on error (-want +got):\n%s", diff)
				}
				got, err = tt.f.AppendBinary(in)
				checkErr(t, err, tt.err)
				if diff := cmp.Diff(prefix, got); diff != "" {
					t.Errorf("AppendBinary on error (-want +got):\n%s", diff)
				}
				_, err = tt.f.MarshalBinary()
				checkErr(t, err, tt.err)
				return
			}
			if diff := cmp.Diff(append(prefix, tt.headers...), got); diff != "" {
				t.Errorf("AppendHeaders (-want +got):\n%s", diff)
			}

			wantFrame := append(append([]byte(nil), tt.headers...), tt.f.Arg...)
			got, err = tt.f.AppendBinary(in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(append(prefix, wantFrame...), got); diff != "" {
				t.Errorf("AppendBinary (-want +got):\n%s", diff)
			}
			got, err = tt.f.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(wantFrame, got); diff != "" {
				t.Errorf("MarshalBinary (-want +got):\n%s", diff)
			}

			back, err := aoe.ParseFrame(got)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.f, back, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

// TestFrameRoundTrip checks that a parsed frame marshals back to exactly
// the bytes it came from, padding included.
func TestFrameRoundTrip(t *testing.T) {
	for _, b := range [][]byte{linuxConfigQuery, linuxReadRequest, linuxIdentifyRequest, writeRequest(2, 0x1c000)} {
		f, err := aoe.ParseFrame(b)
		if err != nil {
			t.Fatal(err)
		}
		got, err := f.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, got) {
			t.Errorf("MarshalBinary(ParseFrame(b)) != b:\n%s", cmp.Diff(b, got))
		}
	}
}
