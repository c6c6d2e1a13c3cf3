package aoe

import (
	"fmt"
)

// ATAArgLen is the length of the ATA argument that precedes the data
// (AoEr11, Section 3.1):
//
//	 0               1               2               3
//	+---------------+---------------+---------------+---------------+
//	|    AFlags     |  Err/Feature  | Sector Count  |  Cmd/Status   |
//	+---------------+---------------+---------------+---------------+
//	|     lba0      |     lba1      |     lba2      |     lba3      |
//	+---------------+---------------+---------------+---------------+
//	|     lba4      |     lba5      |           reserved            |
//	+---------------+---------------+---------------+---------------+
const ATAArgLen = 12

// ATAFlags are the AFlags bits of the ATA argument (AoEr11, Section 3.1).
type ATAFlags uint8

// ATA argument flags.
const (
	// ATAExtended (E) marks an LBA48 command.
	ATAExtended ATAFlags = 0x40
	// ATADevice (D) is the device/head register's DEV bit.
	ATADevice ATAFlags = 0x10
	// ATAAsync (A) asks for an asynchronous write; no known peer uses it.
	ATAAsync ATAFlags = 0x02
	// ATAWrite (W) marks a command that carries data to the target.
	ATAWrite ATAFlags = 0x01
)

// ATA command codes (ATA/ATAPI-6) that AoE targets see.
const (
	ATAReadSectors     = 0x20
	ATAReadSectorsExt  = 0x24
	ATAWriteSectors    = 0x30
	ATAWriteSectorsExt = 0x34
	ATACheckPowerMode  = 0xe5
	ATAFlushCache      = 0xe7
	ATAFlushCacheExt   = 0xea
	ATAIdentifyDevice  = 0xec
)

// ATA status register bits.
const (
	ATAStatusERR  = 0x01 // error
	ATAStatusDRQ  = 0x08 // data request
	ATAStatusDF   = 0x20 // device fault
	ATAStatusDRDY = 0x40 // device ready
	ATAStatusBSY  = 0x80 // busy
)

// ATA error register bits.
const (
	ATAErrorABRT = 0x04 // command aborted
	ATAErrorIDNF = 0x10 // ID (address) not found
	ATAErrorUNC  = 0x40 // uncorrectable data
)

// MaxLBA28 is the largest address of an LBA28 command; the Linux initiator
// puts 0xe0 in the top nibble of lba3, so targets mask 28-bit LBAs with it.
const MaxLBA28 = 1<<28 - 1

// MaxLBA48 is the largest 48-bit address.
const MaxLBA48 = 1<<48 - 1

// ATA is the argument of an Issue ATA Command message (AoEr11, Section
// 3.1). In a request Command and Feature are the ATA command and feature
// registers; in a response the same bytes are Status and Error, which is
// why they share fields here.
type ATA struct {
	Flags ATAFlags
	// ErrFeature is the feature register in a request and the error
	// register in a response.
	ErrFeature uint8
	// SectorCount is the number of 512-byte sectors to transfer.
	SectorCount uint8
	// CmdStatus is the command register in a request and the status
	// register in a response.
	CmdStatus uint8
	// LBA is the 48-bit logical block address (lba0 is its low byte).
	LBA uint64
	// Data is what follows the argument: the sectors of a write request or
	// of a read response. After ParseATA it aliases the parsed buffer and
	// holds every trailing byte, padding included; use SectorCount to know
	// how much of it is data.
	Data []byte
}

// ParseATA parses an ATA argument from the argument bytes of a frame. It
// returns an error wrapping ErrShort if b is shorter than ATAArgLen. The
// reserved bytes are ignored, as vblade and the Linux initiator do. It does
// not allocate: a.Data aliases b.
func ParseATA(b []byte) (ATA, error) {
	if len(b) < ATAArgLen {
		return ATA{}, fmt.Errorf("aoe: ATA argument is %d bytes, need %d: %w", len(b), ATAArgLen, ErrShort)
	}
	return ATA{
		Flags:       ATAFlags(b[0]),
		ErrFeature:  b[1],
		SectorCount: b[2],
		CmdStatus:   b[3],
		LBA: uint64(b[4]) | uint64(b[5])<<8 | uint64(b[6])<<16 |
			uint64(b[7])<<24 | uint64(b[8])<<32 | uint64(b[9])<<40,
		Data: b[ATAArgLen:],
	}, nil
}

// Extended reports whether the request is an LBA48 command.
func (a ATA) Extended() bool { return a.Flags&ATAExtended != 0 }

// Write reports whether the request carries data to the target.
func (a ATA) Write() bool { return a.Flags&ATAWrite != 0 }

// AppendHeader appends the ATAArgLen bytes of the argument to b, without
// Data, so that a target can read sectors straight into the bytes that
// follow. It returns an error wrapping ErrInvalid if LBA does not fit in
// 48 bits.
func (a ATA) AppendHeader(b []byte) ([]byte, error) {
	if a.LBA > MaxLBA48 {
		return b, fmt.Errorf("aoe: LBA %d does not fit in 48 bits: %w", a.LBA, ErrInvalid)
	}
	return append(b,
		uint8(a.Flags), a.ErrFeature, a.SectorCount, a.CmdStatus,
		uint8(a.LBA), uint8(a.LBA>>8), uint8(a.LBA>>16),
		uint8(a.LBA>>24), uint8(a.LBA>>32), uint8(a.LBA>>40),
		0, 0,
	), nil
}

// AppendBinary appends the argument and Data to b.
func (a ATA) AppendBinary(b []byte) ([]byte, error) {
	b, err := a.AppendHeader(b)
	if err != nil {
		return b, err
	}
	return append(b, a.Data...), nil
}

// MarshalBinary returns the argument followed by Data.
func (a ATA) MarshalBinary() ([]byte, error) {
	return a.AppendBinary(make([]byte, 0, ATAArgLen+len(a.Data)))
}
