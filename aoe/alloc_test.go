package aoe_test

import (
	"testing"

	"github.com/aoetarget/aoetarget/aoe"
)

// Sinks keep the results of the measured code alive.
var (
	sinkFrame aoe.Frame
	sinkATA   aoe.ATA
	sinkBytes []byte
	sinkErr   error
)

// parseATARequest is the target's hot path for an incoming frame.
func parseATARequest(b []byte) (aoe.Frame, aoe.ATA, error) {
	f, err := aoe.ParseFrame(b)
	if err != nil {
		return f, aoe.ATA{}, err
	}
	a, err := aoe.ParseATA(f.Arg)
	return f, a, err
}

// appendReadReply encodes the headers of the reply to a read request into
// buf and extends it over the sectors, which a target reads straight into
// the returned slice's tail.
func appendReadReply(buf []byte, f aoe.Frame, a aoe.ATA) ([]byte, error) {
	reply := aoe.Frame{Dst: f.Src, Src: f.Dst, Header: f.Header}
	reply.Header.Flags = aoe.FlagResponse
	b, err := reply.AppendHeaders(buf)
	if err != nil {
		return buf, err
	}
	b, err = aoe.ATA{Flags: a.Flags, CmdStatus: aoe.ATAStatusDRDY, LBA: a.LBA}.AppendHeader(b)
	if err != nil {
		return buf, err
	}
	return b[:len(b)+int(a.SectorCount)*aoe.SectorSize], nil
}

func TestParseATARequestAllocs(t *testing.T) {
	for _, tt := range []struct {
		name string
		b    []byte
	}{
		{"write 17 sectors", writeRequest(17, 0x1c000)},
		{"write 2 sectors", writeRequest(2, 0x1c000)},
		{"read", linuxReadRequest},
		{"identify", linuxIdentifyRequest},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := parseATARequest(tt.b); err != nil {
				t.Fatal(err)
			}
			allocs := testing.AllocsPerRun(1000, func() {
				sinkFrame, sinkATA, sinkErr = parseATARequest(tt.b)
			})
			if allocs != 0 {
				t.Errorf("ParseFrame + ParseATA: %v allocations, want 0", allocs)
			}
		})
	}
}

func TestAppendReadReplyAllocs(t *testing.T) {
	for _, sectors := range []int{1, 2, 17, 255} {
		req := append([]byte(nil), linuxReadRequest...)
		req[aoe.FrameHeaderLen+2] = uint8(sectors) // sector count
		f, a, err := parseATARequest(req)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 0, aoe.FrameHeaderLen+aoe.ATAArgLen+sectors*aoe.SectorSize)
		b, err := appendReadReply(buf, f, a)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != cap(buf) {
			t.Fatalf("%d sectors: reply is %d bytes, want %d", sectors, len(b), cap(buf))
		}
		allocs := testing.AllocsPerRun(1000, func() {
			sinkBytes, sinkErr = appendReadReply(buf, f, a)
		})
		if allocs != 0 {
			t.Errorf("%d sectors: AppendHeaders + AppendHeader: %v allocations, want 0", sectors, allocs)
		}
	}
}

func BenchmarkParseATARequest(b *testing.B) {
	for _, bb := range []struct {
		name string
		b    []byte
	}{
		{"read", linuxReadRequest},
		{"write-2", writeRequest(2, 0x1c000)},
		{"write-17", writeRequest(17, 0x1c000)},
	} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sinkFrame, sinkATA, sinkErr = parseATARequest(bb.b)
			}
		})
	}
}

func BenchmarkAppendReadReply(b *testing.B) {
	for _, bb := range []struct {
		name    string
		sectors int
	}{
		{"read-2", 2},
		{"read-17", 17},
	} {
		b.Run(bb.name, func(b *testing.B) {
			req := append([]byte(nil), linuxReadRequest...)
			req[aoe.FrameHeaderLen+2] = uint8(bb.sectors) // sector count
			f, a, err := parseATARequest(req)
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 0, aoe.FrameHeaderLen+aoe.ATAArgLen+bb.sectors*aoe.SectorSize)
			b.ReportAllocs()
			for b.Loop() {
				sinkBytes, sinkErr = appendReadReply(buf, f, a)
			}
		})
	}
}

func BenchmarkParseConfig(b *testing.B) {
	arg := aoecfgQuery()
	b.ReportAllocs()
	for b.Loop() {
		_, sinkErr = aoe.ParseConfig(arg)
	}
}
