package main

import (
	"encoding/binary"
	"fmt"

	"github.com/aoetarget/aoetarget/aoe"
)

// Offsets in an Ethernet frame carrying an AoE ATA command (AoEr11,
// Sections 2 and 3.1). The measuring loop patches and checks these bytes
// directly instead of parsing whole frames; the tests check them against
// package aoe.
const (
	offType    = 12
	offVerFlag = aoe.EthernetHeaderLen     // 14: version << 4 | flags
	offError   = offVerFlag + 1            // 15
	offMajor   = offVerFlag + 2            // 16
	offMinor   = offVerFlag + 4            // 18
	offCommand = offVerFlag + 5            // 19
	offTag     = offVerFlag + 6            // 20
	offAFlags  = aoe.FrameHeaderLen        // 24
	offErrFeat = offAFlags + 1             // 25
	offCount   = offAFlags + 2             // 26
	offStatus  = offAFlags + 3             // 27: command in a request, status in a reply
	offLBA     = offAFlags + 4             // 28..33, lba0 first
	offData    = offAFlags + aoe.ATAArgLen // 36
)

// minFrameLen is the shortest Ethernet frame without its FCS (ETH_ZLEN);
// shorter requests are padded with zeros.
const minFrameLen = 60

// tagUserland is bit 31 of the tag, which marks requests from userland
// tools (the Linux initiator ignores replies that carry it).
const tagUserland = 1 << 31

// ataFailed is the status mask of a failed command (BSY, DF, DRQ, ERR), the
// one the Linux initiator checks.
const ataFailed = aoe.ATAStatusBSY | aoe.ATAStatusDF | aoe.ATAStatusDRQ | aoe.ATAStatusERR

// newRequest returns a frame buffer of bufLen bytes holding an ATA request
// from src to dst for major.minor: the Ethernet and AoE headers and an ATA
// argument that putATA fills in per frame.
func newRequest(bufLen int, dst, src aoe.MAC, major uint16, minor uint8) ([]byte, error) {
	f := aoe.Frame{Dst: dst, Src: src, Header: aoe.Header{
		Version: aoe.Version, Major: major, Minor: minor, Command: aoe.CommandATA,
	}}
	b, err := f.AppendHeaders(make([]byte, 0, bufLen))
	if err != nil {
		return nil, err
	}
	b, err = aoe.ATA{Flags: aoe.ATAExtended, CmdStatus: aoe.ATAReadSectorsExt}.AppendHeader(b)
	if err != nil {
		return nil, err
	}
	if len(b) > bufLen {
		return nil, fmt.Errorf("frame buffer of %d bytes is too short", bufLen)
	}
	return b[:bufLen], nil
}

// putATA fills in the per-frame fields of a request built by newRequest:
// the tag, the direction, the sector count and the LBA (LBA48 commands,
// READ SECTORS EXT or WRITE SECTORS EXT). It returns the frame's length:
// the headers, plus count sectors for a write, padded to minFrameLen. The
// data of a write must be in b[offData:] already.
func putATA(b []byte, tag uint32, write bool, lba uint64, count uint8) int {
	binary.BigEndian.PutUint32(b[offTag:], tag)
	putLBA(b, lba)
	b[offCount] = count
	n := offData
	if write {
		b[offAFlags] = byte(aoe.ATAExtended | aoe.ATAWrite)
		b[offStatus] = aoe.ATAWriteSectorsExt
		n += int(count) * aoe.SectorSize
	} else {
		b[offAFlags] = byte(aoe.ATAExtended)
		b[offStatus] = aoe.ATAReadSectorsExt
	}
	if n < minFrameLen {
		clear(b[n:minFrameLen])
		n = minFrameLen
	}
	return n
}

// putTag changes the tag of a request, for a retransmission.
func putTag(b []byte, tag uint32) { binary.BigEndian.PutUint32(b[offTag:], tag) }

func putLBA(b []byte, lba uint64) {
	l := b[offLBA : offLBA+6]
	l[0], l[1], l[2] = byte(lba), byte(lba>>8), byte(lba>>16)
	l[3], l[4], l[5] = byte(lba>>24), byte(lba>>32), byte(lba>>40)
}

// replyStatus classifies a reply.
type replyStatus uint8

const (
	replyOK       replyStatus = iota
	replyIgnore               // not an ATA reply from the target we talk to
	replyAoEError             // the E flag: an AoE error code
	replyATAError             // the ATA status shows failure
	replyShort                // a read reply without all its sectors
)

// checkReply looks at a frame received from the target at major.minor and
// returns its tag and what it says. A read reply is complete only with
// count sectors of data (the caller passes the count of its request after
// finding it by tag; pass 0 to check the header only).
func checkReply(b []byte, major uint16, minor uint8) (tag uint32, st replyStatus) {
	if len(b) < offData || b[offType] != aoe.EtherType>>8 || b[offType+1] != aoe.EtherType&0xff ||
		b[offVerFlag]&byte(aoe.FlagResponse) == 0 || b[offCommand] != byte(aoe.CommandATA) ||
		binary.BigEndian.Uint16(b[offMajor:]) != major || b[offMinor] != minor {
		return 0, replyIgnore
	}
	tag = binary.BigEndian.Uint32(b[offTag:])
	if b[offVerFlag]&byte(aoe.FlagError) != 0 {
		return tag, replyAoEError
	}
	if b[offStatus]&ataFailed != 0 {
		return tag, replyATAError
	}
	return tag, replyOK
}

// readComplete reports whether a read reply carries count sectors.
func readComplete(b []byte, count uint8) bool {
	return len(b) >= offData+int(count)*aoe.SectorSize
}

// makeTag returns the tag of a frame in slot (below 1<<16) at its gen'th
// sending: bit 31 set, as userland tools do, then 15 bits of generation,
// then the slot, so a reply finds its slot without a lookup table and a
// late reply to an earlier sending is told apart.
func makeTag(slot int, gen uint32) uint32 {
	return tagUserland | (gen&0x7fff)<<16 | uint32(slot)
}

// tagSlot returns the slot of a tag made by makeTag.
func tagSlot(tag uint32) int { return int(tag & 0xffff) }
