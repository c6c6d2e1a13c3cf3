// Package pcap reads and writes classic pcap capture files (not pcapng)
// of Ethernet frames, for replaying captured AoE traffic in tests.
package pcap

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

// Packet is one record of a pcap file.
type Packet struct {
	Data    []byte // the captured bytes
	OrigLen int    // the length of the frame on the wire
}

// File header constants.
const (
	MagicMicro       = 0xa1b2c3d4 // microsecond timestamps
	MagicNano        = 0xa1b23c4d // nanosecond timestamps
	LinkTypeEthernet = 1
	maxRecordSize    = 1 << 20 // far above any Ethernet frame, bounds allocations
)

// Read reads every record of a classic pcap file, in either byte
// order, and checks that its link type is Ethernet.
func Read(r io.Reader) ([]Packet, error) {
	var hdr [24]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("pcap file header: %w", err)
	}
	var order binary.ByteOrder
	switch m := binary.LittleEndian.Uint32(hdr[0:4]); m {
	case MagicMicro, MagicNano:
		order = binary.LittleEndian
	default:
		switch binary.BigEndian.Uint32(hdr[0:4]) {
		case MagicMicro, MagicNano:
			order = binary.BigEndian
		default:
			return nil, fmt.Errorf("pcap magic %#08x: not a classic pcap file", m)
		}
	}
	if major := order.Uint16(hdr[4:6]); major != 2 {
		return nil, fmt.Errorf("pcap version %d.%d, want 2.x", major, order.Uint16(hdr[6:8]))
	}
	// The upper bits of the link type field may carry FCS information.
	if lt := order.Uint32(hdr[20:24]) & 0xffff; lt != LinkTypeEthernet {
		return nil, fmt.Errorf("pcap link type %d, want %d (Ethernet)", lt, LinkTypeEthernet)
	}

	var pkts []Packet
	for {
		var rec [16]byte
		if _, err := io.ReadFull(r, rec[:]); err != nil {
			if err == io.EOF {
				return pkts, nil
			}
			return nil, fmt.Errorf("pcap record %d header: %w", len(pkts)+1, err)
		}
		incl, orig := order.Uint32(rec[8:12]), order.Uint32(rec[12:16])
		if incl > maxRecordSize {
			return nil, fmt.Errorf("pcap record %d: %d bytes, at most %d", len(pkts)+1, incl, maxRecordSize)
		}
		data := make([]byte, incl)
		if _, err := io.ReadFull(r, data); err != nil {
			return nil, fmt.Errorf("pcap record %d data: %w", len(pkts)+1, err)
		}
		pkts = append(pkts, Packet{Data: data, OrigLen: int(orig)})
	}
}

// ReadFile reads every record of the pcap file at path.
func ReadFile(path string) ([]Packet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	pkts, err := Read(bufio.NewReader(f))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return pkts, nil
}

// Append appends pkts to b as a classic pcap file in the given byte order,
// with the given magic (MagicMicro or MagicNano) and link type.
func Append(b []byte, order binary.AppendByteOrder, magic uint32, linkType uint32, pkts [][]byte) []byte {
	b = order.AppendUint32(b, magic)
	b = order.AppendUint16(b, 2) // version 2.4
	b = order.AppendUint16(b, 4)
	b = order.AppendUint32(b, 0)        // thiszone
	b = order.AppendUint32(b, 0)        // sigfigs
	b = order.AppendUint32(b, 1<<18)    // snaplen
	b = order.AppendUint32(b, linkType) // network
	for i, p := range pkts {
		b = order.AppendUint32(b, uint32(1000+i)) // ts_sec
		b = order.AppendUint32(b, uint32(i))      // ts_usec
		b = order.AppendUint32(b, uint32(len(p))) // incl_len
		b = order.AppendUint32(b, uint32(len(p))) // orig_len
		b = append(b, p...)
	}
	return b
}
