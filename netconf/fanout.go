package netconf

import (
	"fmt"

	"golang.org/x/net/bpf"
)

// Offsets in an AoE frame as a PACKET_FANOUT program sees it: the kernel
// runs it on the frame from the AoE header on (the Ethernet header is
// already pulled), so these are offsets from byte 14 of the frame.
const (
	fanoutCmd  = 5  // AoE command
	fanoutLBA1 = 15 // ATA LBA bits 8-15 (arg byte 5: the LBA is little-endian from arg byte 4)
	fanoutLBA2 = 16 // ATA LBA bits 16-23
)

// FanoutRegion is the number of sectors that a fanout program keeps on one
// socket: requests whose first sector lies in the same aligned region of
// this many sectors (128 KiB) always reach the same socket, so they are
// received, and applied, in the order they arrived.
const FanoutRegion = 256

// FanoutProgram returns the cBPF program that steers AoE frames among the
// sockets of a PACKET_FANOUT group: ATA requests by the region of their
// first sector (LBA bits 8-23: consecutive regions of FanoutRegion sectors
// go to consecutive sockets), everything else to the first socket. The
// kernel takes its result modulo the group's size.
//
// Requests for the same sectors (a write and its retransmissions under new
// tags, or a later write of the same block) start in the same region, so
// one socket, one receive loop, sees them in arrival order; requests that
// only partly overlap across a region boundary are ordered by the time
// their loops admit them.
func FanoutProgram() ([]bpf.RawInstruction, error) {
	raw, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: fanoutCmd, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 0, SkipTrue: 6}, // not ATA: socket 0
		bpf.LoadAbsolute{Off: fanoutLBA1, Size: 1},
		bpf.TAX{},
		bpf.LoadAbsolute{Off: fanoutLBA2, Size: 1},
		bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 8},
		bpf.ALUOpX{Op: bpf.ALUOpOr},
		bpf.RetA{},
		bpf.RetConstant{Val: 0},
	})
	if err != nil {
		return nil, fmt.Errorf("netconf: assemble fanout program: %w", err)
	}
	return raw, nil
}
