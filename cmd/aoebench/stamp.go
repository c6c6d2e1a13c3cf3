package main

import (
	"encoding/binary"
	"fmt"

	"github.com/aoetarget/aoetarget/aoe"
)

// A stamped sector, as --rw verify writes it and checks it on the way back:
//
//	bytes 0-7    stampMagic
//	bytes 8-15   the sector's LBA, little endian
//	bytes 16-19  the sequence number of the I/O that wrote it
//	bytes 20-23  the run's seed (low 32 bits)
//	bytes 24-511 pseudo-random bytes drawn from the three values above
//
// So a read that returns another sector, an older write of the same sector,
// a write from another run, or damaged data is caught, and told apart.
const stampMagic = "AoEbench"

const stampHeaderLen = 24

// stampSector fills the 512-byte sector s with the stamp of lba, seq and
// seed.
func stampSector(s []byte, lba uint64, seq, seed uint32) {
	s = s[:aoe.SectorSize]
	copy(s, stampMagic)
	binary.LittleEndian.PutUint64(s[8:], lba)
	binary.LittleEndian.PutUint32(s[16:], seq)
	binary.LittleEndian.PutUint32(s[20:], seed)
	x := stampState(lba, seq, seed)
	for i := stampHeaderLen; i < aoe.SectorSize; i += 8 {
		x = xorshift(x)
		binary.LittleEndian.PutUint64(s[i:], x)
	}
}

// stampError describes a sector that does not hold the stamp expected.
type stampError struct {
	LBA      uint64 // the sector read
	WantSeq  uint32
	GotLBA   uint64 // what the sector says, when it has a stamp
	GotSeq   uint32
	GotSeed  uint32
	Stamped  bool // the sector has the magic
	BadByte  int  // first differing byte of the pseudo-random part, or -1
	WantSeed uint32
}

func (e *stampError) Error() string {
	switch {
	case !e.Stamped:
		return fmt.Sprintf("sector %d: no stamp (never written by aoebench, or overwritten)", e.LBA)
	case e.GotSeed != e.WantSeed:
		return fmt.Sprintf("sector %d: stamp of another run (seed %#x, want %#x)", e.LBA, e.GotSeed, e.WantSeed)
	case e.GotLBA != e.LBA:
		return fmt.Sprintf("sector %d: holds sector %d's data (seq %d)", e.LBA, e.GotLBA, e.GotSeq)
	case e.GotSeq != e.WantSeq:
		return fmt.Sprintf("sector %d: holds write %d, want write %d (an older or a lost write)", e.LBA, e.GotSeq, e.WantSeq)
	}
	return fmt.Sprintf("sector %d: write %d damaged from byte %d", e.LBA, e.WantSeq, e.BadByte)
}

// checkSector reports whether s holds the stamp of lba, seq and seed; if
// not, it returns a *stampError. It allocates only on a mismatch.
func checkSector(s []byte, lba uint64, seq, seed uint32) error {
	if len(s) < aoe.SectorSize {
		return fmt.Errorf("sector %d: %d bytes, want %d", lba, len(s), aoe.SectorSize)
	}
	s = s[:aoe.SectorSize]
	if string(s[:8]) != stampMagic {
		return &stampError{LBA: lba, WantSeq: seq, WantSeed: seed, BadByte: -1}
	}
	gotLBA := binary.LittleEndian.Uint64(s[8:])
	gotSeq := binary.LittleEndian.Uint32(s[16:])
	gotSeed := binary.LittleEndian.Uint32(s[20:])
	if gotLBA != lba || gotSeq != seq || gotSeed != seed {
		return &stampError{LBA: lba, WantSeq: seq, WantSeed: seed, GotLBA: gotLBA, GotSeq: gotSeq,
			GotSeed: gotSeed, Stamped: true, BadByte: -1}
	}
	x := stampState(lba, seq, seed)
	for i := stampHeaderLen; i < aoe.SectorSize; i += 8 {
		x = xorshift(x)
		if binary.LittleEndian.Uint64(s[i:]) != x {
			for j := range 8 {
				if s[i+j] != byte(x>>(8*j)) {
					i += j
					break
				}
			}
			return &stampError{LBA: lba, WantSeq: seq, WantSeed: seed, GotLBA: gotLBA, GotSeq: gotSeq,
				GotSeed: gotSeed, Stamped: true, BadByte: i}
		}
	}
	return nil
}

// stampState seeds the pseudo-random part of a stamp; never zero.
func stampState(lba uint64, seq, seed uint32) uint64 {
	x := splitmix(lba ^ uint64(seq)<<40 ^ uint64(seed)<<8)
	if x == 0 {
		x = 1
	}
	return x
}

// xorshift is Marsaglia's xorshift64 step.
func xorshift(x uint64) uint64 {
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	return x
}

// splitmix is the SplitMix64 finalizer: a cheap, well-mixed hash of x.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}
