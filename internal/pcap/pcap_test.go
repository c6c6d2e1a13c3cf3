package pcap

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func writePcap(order binary.AppendByteOrder, magic uint32, linkType uint32, pkts [][]byte) []byte {
	return Append(nil, order, magic, linkType, pkts)
}

func TestRead(t *testing.T) {
	// Two frames of the Linux initiator: a broadcast Query Config and a
	// READ SECTORS EXT request.
	linuxConfigQuery := append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x88, 0xa2,
		0x10, 0, 0xff, 0xff, 0xff, 0x01, 0, 0, 0, 0}, make([]byte, 36)...)
	linuxReadRequest := []byte{0x52, 0x54, 0, 0xae, 0, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x88, 0xa2,
		0x10, 0, 0, 1, 0, 0, 0x12, 0x34, 0x56, 0x78, 0x40, 0, 2, 0x24, 8, 0, 0, 0, 0, 0, 0, 0}
	pkts := [][]byte{linuxConfigQuery, linuxReadRequest, {}}
	want := []Packet{
		{Data: linuxConfigQuery, OrigLen: len(linuxConfigQuery)},
		{Data: linuxReadRequest, OrigLen: len(linuxReadRequest)},
		{Data: []byte{}, OrigLen: 0},
	}
	valid := writePcap(binary.LittleEndian, MagicMicro, LinkTypeEthernet, pkts)
	// A record that claims 4 GiB must fail before anything is allocated.
	huge := binary.LittleEndian.AppendUint32(append([]byte(nil), valid[:24]...), 0) // ts_sec
	huge = binary.LittleEndian.AppendUint32(huge, 0)                                // ts_usec
	huge = binary.LittleEndian.AppendUint32(huge, 0xffffffff)                       // incl_len
	huge = binary.LittleEndian.AppendUint32(huge, 0xffffffff)                       // orig_len
	tests := []struct {
		name    string
		file    []byte
		want    []Packet
		wantErr bool
	}{
		{name: "little-endian", file: valid, want: want},
		{name: "big-endian", file: writePcap(binary.BigEndian, MagicMicro, LinkTypeEthernet, pkts), want: want},
		{name: "nanosecond, big-endian", file: writePcap(binary.BigEndian, MagicNano, LinkTypeEthernet, pkts), want: want},
		{name: "nanosecond, little-endian", file: writePcap(binary.LittleEndian, MagicNano, LinkTypeEthernet, pkts), want: want},
		{name: "FCS bits in the link type", file: writePcap(binary.LittleEndian, MagicMicro, 0x14000000|LinkTypeEthernet, pkts), want: want},
		{name: "no records", file: valid[:24]},
		{name: "pcapng", file: append([]byte{0x0a, 0x0d, 0x0d, 0x0a}, valid[4:]...), wantErr: true},
		{name: "linux cooked capture", file: writePcap(binary.LittleEndian, MagicMicro, 113, pkts), wantErr: true},
		{name: "short file header", file: valid[:23], wantErr: true},
		{name: "short record header", file: valid[:24+15], wantErr: true},
		{name: "short record", file: valid[:len(valid)-16-1], wantErr: true},
		{name: "huge record", file: huge, wantErr: true},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Read(bytes.NewReader(tt.file))
			if (err != nil) != tt.wantErr {
				t.Fatalf("Read error = %v, want error: %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Read (-want +got):\n%s", diff)
			}
		})
	}
}
