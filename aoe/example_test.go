package aoe_test

import (
	"bytes"
	"fmt"
	"log"

	"github.com/aoetarget/aoetarget/aoe"
)

// This example parses a read request as the Linux initiator sends it and
// builds the reply a target sends back, reading the sectors straight into
// the reply buffer.
func ExampleParseFrame() {
	request := []byte{
		0x46, 0xba, 0xdb, 0x73, 0xf3, 0x48, // dst: the target
		0x52, 0x54, 0x00, 0xae, 0x00, 0x01, // src: the initiator
		0x88, 0xa2, // ethertype AoE
		0x10,       // ver 1, flags 0
		0x00,       // error 0
		0x00, 0x01, // major 1
		0x00,                   // minor 0
		0x00,                   // command 0 (ATA)
		0x00, 0x02, 0xdd, 0xe1, // tag
		0x40,                               // aflags E (LBA48)
		0x00,                               // feature 0
		0x02,                               // sector count 2
		0x24,                               // READ SECTORS EXT
		0x08, 0x00, 0x00, 0x00, 0x00, 0x00, // lba 8
		0x00, 0x00, // reserved
	}
	// The export: 64 sectors, sector n filled with the byte n.
	disk := bytes.NewReader(func() []byte {
		b := make([]byte, 64*aoe.SectorSize)
		for i := range b {
			b[i] = byte(i / aoe.SectorSize)
		}
		return b
	}())

	f, err := aoe.ParseFrame(request)
	if err != nil {
		log.Fatal(err)
	}
	if f.Header.Response() || f.Header.Command != aoe.CommandATA || !f.Header.Addressed(1, 0) {
		return // not for this target
	}
	a, err := aoe.ParseATA(f.Arg)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("from %v: e%d.%d tag %#08x, command %#02x, %d sectors at LBA %d, LBA48 %v\n",
		f.Src, f.Header.Major, f.Header.Minor, f.Header.Tag, a.CmdStatus, a.SectorCount, a.LBA, a.Extended())

	// The reply goes back to the sender with R set and the same tag; its
	// argument carries status DRDY, then the sectors.
	n := int(a.SectorCount) * aoe.SectorSize
	reply := aoe.Frame{Dst: f.Src, Src: f.Dst, Header: f.Header}
	reply.Header.Flags = aoe.FlagResponse
	buf := make([]byte, 0, aoe.FrameHeaderLen+aoe.ATAArgLen+n)
	buf, err = reply.AppendHeaders(buf)
	if err != nil {
		log.Fatal(err)
	}
	buf, err = aoe.ATA{Flags: a.Flags, CmdStatus: aoe.ATAStatusDRDY, LBA: a.LBA}.AppendHeader(buf)
	if err != nil {
		log.Fatal(err)
	}
	data := buf[len(buf) : len(buf)+n]
	if _, err := disk.ReadAt(data, int64(a.LBA)*aoe.SectorSize); err != nil {
		log.Fatal(err)
	}
	buf = buf[:len(buf)+n]

	fmt.Printf("reply: %d bytes\n", len(buf))
	fmt.Printf("headers: % x\n", buf[:aoe.FrameHeaderLen])
	fmt.Printf("argument: % x\n", buf[aoe.FrameHeaderLen:aoe.FrameHeaderLen+aoe.ATAArgLen])
	fmt.Printf("data: %d bytes of sector 8, then %d of sector 9\n",
		bytes.Count(data, []byte{8}), bytes.Count(data, []byte{9}))
	// Output:
	// from 52:54:00:ae:00:01: e1.0 tag 0x0002dde1, command 0x24, 2 sectors at LBA 8, LBA48 true
	// reply: 1060 bytes
	// headers: 52 54 00 ae 00 01 46 ba db 73 f3 48 88 a2 18 00 00 01 00 00 00 02 dd e1
	// argument: 40 00 00 40 08 00 00 00 00 00 00 00
	// data: 512 bytes of sector 8, then 512 of sector 9
}
