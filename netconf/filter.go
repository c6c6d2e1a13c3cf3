package netconf

import (
	"fmt"

	"golang.org/x/net/bpf"
)

// EtherType is the AoE ethertype, 0x88A2 (AoEr11, Section 2).
const EtherType = 0x88A2

// Offsets and sizes in an Ethernet frame carrying an AoE header (AoEr11,
// Section 2):
//
//	 0                   1                   2
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3
//	+-----------+-----------+---+-+-+---+-+----------
//	|    dst    |    src    |typ|v|e|maj|m|cmd tag...
//	|           |           |   |f|r|   |i|
//	+-----------+-----------+---+-+-+---+-+----------
//
// Byte 14 holds ver<<4 | flags, where flags is R (0x8) and E (0x4).
const (
	offType  = 12
	offFlags = 14
	offMajor = 16
	offMinor = 18

	// minFrameLen is the shortest frame the filter passes: Ethernet header,
	// ver/flags, error, major and minor (bytes 0 to 18).
	minFrameLen = offMinor + 1

	flagResponse = 0x08

	// The AoE broadcast shelf and slot addresses.
	broadcastMajor = 0xffff
	broadcastMinor = 0xff

	// accept is the filter's "keep the whole frame" return value (the
	// largest snapshot length, as tcpdump uses).
	accept = 0x40000
)

// Filter selects which AoE frames the kernel passes to a socket opened by
// Listen. The zero value passes requests for shelf 0, slot 0 and broadcasts.
type Filter struct {
	// Responses selects the direction. False passes requests (R flag
	// clear) only, as a target wants; true passes responses (R flag set)
	// only, as an initiator wants.
	Responses bool

	// Major is the shelf address to pass: frames addressed to Major or to the
	// broadcast shelf 0xffff pass. Ignored when AnyAddress is set.
	Major uint16

	// Minor is the slot address to pass: frames addressed to Minor or to the
	// broadcast slot 0xff pass. Ignored when AnyAddress is set.
	Minor uint8

	// AnyAddress passes frames for every shelf.slot, as an initiator that
	// talks to several targets wants.
	AnyAddress bool
}

// String returns a short description of f for logs, such as
// "requests for 1.2 (or broadcast)".
func (f Filter) String() string {
	dir := "requests"
	if f.Responses {
		dir = "responses"
	}
	if f.AnyAddress {
		return dir + " for any address"
	}
	return fmt.Sprintf("%s for %d.%d (or broadcast)", dir, f.Major, f.Minor)
}

// instructions returns the unassembled program for f. See Program.
func (f Filter) instructions() []bpf.Instruction {
	// Each test jumps over a "reject" when the frame passes it.
	rPass := bpf.JumpBitsNotSet // requests: R clear
	if f.Responses {
		rPass = bpf.JumpBitsSet // responses: R set
	}

	prog := []bpf.Instruction{
		// Too short to hold major and minor: reject. (The kernel and the
		// x/net/bpf VM would also reject a load past the end, but say it.)
		bpf.LoadExtension{Num: bpf.ExtLen},
		bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: minFrameLen, SkipTrue: 1},
		bpf.RetConstant{Val: 0},

		bpf.LoadAbsolute{Off: offType, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: EtherType, SkipTrue: 1},
		bpf.RetConstant{Val: 0},

		bpf.LoadAbsolute{Off: offFlags, Size: 1},
		bpf.JumpIf{Cond: rPass, Val: flagResponse, SkipTrue: 1},
		bpf.RetConstant{Val: 0},
	}
	if !f.AnyAddress {
		prog = append(prog,
			// Major: ours or broadcast, else reject.
			bpf.LoadAbsolute{Off: offMajor, Size: 2},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(f.Major), SkipTrue: 2},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: broadcastMajor, SkipTrue: 1},
			bpf.RetConstant{Val: 0},
			// Minor: ours or broadcast, else reject.
			bpf.LoadAbsolute{Off: offMinor, Size: 1},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(f.Minor), SkipTrue: 2},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: broadcastMinor, SkipTrue: 1},
			bpf.RetConstant{Val: 0},
		)
	}
	return append(prog, bpf.RetConstant{Val: accept})
}

// Program assembles the classic BPF program for f (golang.org/x/net/bpf). The
// program runs on whole Ethernet frames, as an AF_PACKET SOCK_RAW socket sees
// them, and passes a frame only if all of these hold:
//
//   - it is at least 19 bytes long (up to and including the minor address);
//     shorter frames are rejected, never read past their end;
//   - the ethertype at offset 12 is EtherType (0x88A2);
//   - the R flag (0x08 in the low nibble of byte 14, ver<<4|flags) is clear
//     for a request filter, set for a response filter;
//   - unless f.AnyAddress, the major address (bytes 16-17, big endian) is
//     f.Major or 0xffff and the minor address (byte 18) is f.Minor or 0xff.
//
// The AoE version is deliberately not checked: a target must answer another
// version with error 5 (AoEr11, Section 2.4), so it has to see the frame. The
// program passes the whole frame. The error is only non-nil if assembly
// fails, which would be a bug in this package.
func (f Filter) Program() ([]bpf.RawInstruction, error) {
	raw, err := bpf.Assemble(f.instructions())
	if err != nil {
		return nil, fmt.Errorf("netconf: assemble filter (%v): %w", f, err)
	}
	return raw, nil
}
