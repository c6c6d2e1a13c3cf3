package aoe

import "encoding/binary"

// IdentifyLen is the length of the IDENTIFY DEVICE data page.
const IdentifyLen = 512

// Identity describes a device for the IDENTIFY DEVICE reply (ATA/ATAPI-6,
// Section 8.15).
type Identity struct {
	Sectors  uint64 // capacity in 512-byte sectors
	Serial   string // words 10-19, at most 20 characters
	Firmware string // words 23-26, at most 8 characters
	Model    string // words 27-46, at most 40 characters
}

// Put writes the 512-byte IDENTIFY DEVICE page for id into b, which must
// be at least IdentifyLen bytes long. The page claims LBA and LBA48
// support (words 49, 83 and 86, bit 10 of 83 and 86 being what the Linux
// initiator checks), FLUSH CACHE and FLUSH CACHE EXT (words 82-87), the
// capacity in words 60-61 (capped at MaxLBA28) and 100-103, and a CHS
// geometry in words 1, 3, 6 and 54-58 for initiators that still use it.
func (id Identity) Put(b []byte) {
	b = b[:IdentifyLen]
	clear(b)
	w := func(i int, v uint16) { binary.LittleEndian.PutUint16(b[2*i:], v) }

	// Default CHS geometry: 16 heads, 63 sectors per track, as many
	// cylinders as fit (at most 16383), as ATA-6 asks for large disks.
	const heads, spt = 16, 63
	cyl := id.Sectors / (heads * spt)
	if cyl > 16383 {
		cyl = 16383
	}
	w(1, uint16(cyl))
	w(3, heads)
	w(6, spt)
	putString(b[2*10:2*20], id.Serial)
	putString(b[2*23:2*27], id.Firmware)
	putString(b[2*27:2*47], id.Model)
	w(47, 0x8000)            // READ/WRITE MULTIPLE: no multiple-sector support
	w(49, 0x0200)            // capabilities: LBA supported
	w(50, 0x4000)            // capabilities: valid
	w(53, 0x0001)            // words 54-58 are valid
	w(54, uint16(cyl))       // current cylinders
	w(55, heads)             // current heads
	w(56, spt)               // current sectors per track
	chs := cyl * heads * spt // current capacity in sectors (words 57-58)
	w(57, uint16(chs))
	w(58, uint16(chs>>16))
	lba28 := id.Sectors
	if lba28 > MaxLBA28 {
		lba28 = MaxLBA28
	}
	w(60, uint16(lba28))
	w(61, uint16(lba28>>16))
	w(80, 0x007e)              // major version: ATA-1 to ATA-6
	w(82, 0x4000)              // command sets supported (word valid)
	w(83, 0x7400)              // bit 10 LBA48, 12 FLUSH CACHE, 13 FLUSH CACHE EXT, 14 valid
	w(84, 0x4000)              // command set extensions: valid
	w(85, 0x4000)              // command sets enabled (word valid)
	w(86, 0x3400)              // enabled: LBA48, FLUSH CACHE, FLUSH CACHE EXT
	w(87, 0x4000)              // valid
	w(93, 0x400b)              // hardware reset result, as vblade reports it
	s := id.Sectors & MaxLBA48 // words 100-103: LBA48 capacity
	w(100, uint16(s))
	w(101, uint16(s>>16))
	w(102, uint16(s>>32))
	w(103, uint16(s>>48))
}

// putString writes s into an ATA string field: padded with spaces and with
// the two bytes of every word swapped, as ATA strings are stored.
func putString(b []byte, s string) {
	for i := range b {
		b[i] = ' '
	}
	copy(b, s)
	for i := 0; i+1 < len(b); i += 2 {
		b[i], b[i+1] = b[i+1], b[i]
	}
}

// ParseIdentity reads the fields of Identity back from an IDENTIFY DEVICE
// page, as an initiator does: the LBA48 capacity when word 83 or 86 has bit
// 10 set, otherwise the LBA28 capacity of words 60-61. It returns false if
// b is shorter than IdentifyLen.
func ParseIdentity(b []byte) (Identity, bool) {
	if len(b) < IdentifyLen {
		return Identity{}, false
	}
	w := func(i int) uint16 { return binary.LittleEndian.Uint16(b[2*i:]) }
	var id Identity
	if w(83)&(1<<10) != 0 || w(86)&(1<<10) != 0 {
		id.Sectors = uint64(w(100)) | uint64(w(101))<<16 | uint64(w(102))<<32 | uint64(w(103))<<48
	} else {
		id.Sectors = uint64(w(60)) | uint64(w(61))<<16
	}
	id.Serial = getString(b[2*10 : 2*20])
	id.Firmware = getString(b[2*23 : 2*27])
	id.Model = getString(b[2*27 : 2*47])
	return id, true
}

func getString(b []byte) string {
	s := make([]byte, len(b))
	for i := 0; i+1 < len(b); i += 2 {
		s[i], s[i+1] = b[i+1], b[i]
	}
	end := len(s)
	for end > 0 && (s[end-1] == ' ' || s[end-1] == 0) {
		end--
	}
	return string(s[:end])
}
