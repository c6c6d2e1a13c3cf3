package aoe_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/aoetarget/aoetarget/aoe"
	"github.com/aoetarget/aoetarget/internal/pcap"
)

// This file holds a minimal reader for classic pcap files (not pcapng) and
// the tests that replay the captures of the Linux initiator talking to
// vblade through the parsers and encoders.

// readPcapFile reads the pcap file at path, skipping the test if the file
// does not exist and skip is set.
func readPcapFile(t *testing.T, path string, skip bool) []pcap.Packet {
	t.Helper()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) && skip {
		t.Skipf("skipping: %s is not present (the read-only shared/ folder sits next to the repository on the dev box and in CI): %v", path, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pkts, err := pcap.Read(bufio.NewReader(f))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return pkts
}

// capture describes one of the captures of the Linux 6.1 aoe driver
// talking to two vblade 25 targets with 64 MiB exports (see
// testdata/README.md).
type capture struct {
	name   string
	path   string
	mtu    int
	frames int
	// skip marks a capture from ../shared, which is absent outside the
	// dev box and CI.
	skip bool
}

const sharedCaptures = "../../shared/captures"

var captures = []capture{
	{name: "testdata/mtu1500", path: "testdata/linux61-aoe-vblade-mtu1500.pcap", mtu: 1500, frames: 600},
	{name: "testdata/mtu9000-part", path: "testdata/linux61-aoe-vblade-mtu9000-part.pcap", mtu: 9000, frames: 420},
	{name: "shared/mtu1500", path: filepath.Join(sharedCaptures, "linux61-aoe-vblade-mtu1500.pcap"), mtu: 1500, frames: 600, skip: true},
	{name: "shared/mtu9000", path: filepath.Join(sharedCaptures, "linux61-aoe-vblade-mtu9000.pcap"), mtu: 9000, frames: 600, skip: true},
}

// vbladeExportSectors is the size of the two vblade exports in the
// captures: 64 MiB files.
const vbladeExportSectors = 64 << 20 / aoe.SectorSize

// minEthernetFrame is the shortest Ethernet frame without its FCS; shorter
// frames are padded up to it.
const minEthernetFrame = 60

// exchange identifies a request and its response.
type exchange struct {
	initiator, target aoe.MAC
	major             uint16
	minor             uint8
	tag               uint32
}

// captureStats counts the shapes seen in a capture, so that a capture
// without them fails rather than passes vacuously.
type captureStats struct {
	announce, configQuery, configReply             int
	identify, identifyReply                        int
	read, readReply, write, writeReply, unmatchedR int
}

func TestCaptures(t *testing.T) {
	for _, c := range captures {
		t.Run(c.name, func(t *testing.T) {
			pkts := readPcapFile(t, c.path, c.skip)
			if len(pkts) != c.frames {
				t.Errorf("%d frames, want %d", len(pkts), c.frames)
			}
			var st captureStats
			reqs := make(map[exchange]aoe.ATA)
			for i, p := range pkts {
				if len(p.Data) != p.OrigLen {
					t.Fatalf("frame %d: captured %d of %d bytes", i+1, len(p.Data), p.OrigLen)
				}
				if err := checkCaptureFrame(p.Data, c.mtu, reqs, &st); err != nil {
					t.Errorf("frame %d (%d bytes): %v", i+1, len(p.Data), err)
				}
			}
			t.Logf("%+v", st)
			for name, n := range map[string]int{
				"config queries": st.configQuery, "config replies": st.configReply,
				"IDENTIFY requests": st.identify, "IDENTIFY replies": st.identifyReply,
				"read requests": st.read, "read replies": st.readReply,
				"write requests": st.write, "write replies": st.writeReply,
			} {
				if n == 0 {
					t.Errorf("no %s in the capture", name)
				}
			}
		})
	}
}

// checkCaptureFrame parses one captured frame, checks the shape the
// Linux initiator or vblade gave it, and checks that the encoders rebuild
// its bytes up to the end of the argument.
func checkCaptureFrame(frame []byte, mtu int, reqs map[exchange]aoe.ATA, st *captureStats) error {
	f, err := aoe.ParseFrame(frame)
	if err != nil {
		return err
	}
	h := f.Header

	// The whole frame, padding included, marshals back to itself.
	all, err := f.MarshalBinary()
	if err != nil {
		return fmt.Errorf("Frame.MarshalBinary: %v", err)
	}
	if !bytes.Equal(frame, all) {
		return fmt.Errorf("Frame.MarshalBinary (-captured +marshalled):\n%s", cmp.Diff(frame, all))
	}

	switch {
	case h.Version == aoe.Version:
	case h.Version == 0 && h.Response() && h.Command == aoe.CommandQueryConfig && f.Dst.IsBroadcast():
		// vblade's startup announcement (aoead) sets only the R flag
		// in the version/flags byte.
		st.announce++
	default:
		return fmt.Errorf("version %d", h.Version)
	}
	if h.Flags&^aoe.FlagResponse != 0 {
		return fmt.Errorf("flags %#x: only R is expected", h.Flags)
	}
	if !h.Response() && h.Tag&(1<<31) != 0 {
		return fmt.Errorf("request tag %#08x has bit 31 set (the kernel keeps it clear)", h.Tag)
	}

	// headers are rebuilt from the parsed fields, not copied.
	headers, err := f.AppendHeaders(make([]byte, 0, len(frame)))
	if err != nil {
		return fmt.Errorf("AppendHeaders: %v", err)
	}
	var rebuilt []byte
	switch h.Command {
	case aoe.CommandQueryConfig:
		rebuilt, err = checkCaptureConfig(f, headers, mtu, st)
	case aoe.CommandATA:
		rebuilt, err = checkCaptureATA(f, headers, mtu, reqs, st)
	default:
		return fmt.Errorf("command %v: the capture holds only ATA and Query Config", h.Command)
	}
	if err != nil {
		return err
	}
	if orig := frame[:min(len(rebuilt), len(frame))]; !bytes.Equal(orig, rebuilt) {
		return fmt.Errorf("rebuilt frame (-captured +rebuilt):\n%s", cmp.Diff(orig, rebuilt))
	}
	if len(rebuilt) < len(frame) && len(frame) > minEthernetFrame {
		return fmt.Errorf("%d bytes after the argument's %d, in a frame longer than %d: not padding",
			len(frame)-len(rebuilt), len(rebuilt), minEthernetFrame)
	}
	return nil
}

func checkCaptureConfig(f aoe.Frame, headers []byte, mtu int, st *captureStats) ([]byte, error) {
	h := f.Header
	c, err := aoe.ParseConfig(f.Arg)
	if err != nil {
		return nil, fmt.Errorf("ParseConfig: %v", err)
	}
	if !h.Response() {
		// The kernel's query: all zeros after the header, tag 0, read.
		st.configQuery++
		if h.Tag != 0 {
			return nil, fmt.Errorf("config query tag %#08x, want 0", h.Tag)
		}
		if !bytes.Equal(f.Arg, make([]byte, aoe.ConfigArgLen)) {
			return nil, fmt.Errorf("config query argument % x, want %d zero bytes", f.Arg, aoe.ConfigArgLen)
		}
	} else {
		// vblade's reply: what the kernel needs to bring the device up.
		st.configReply++
		want := aoe.Config{
			BufferCount:     c.BufferCount,
			FirmwareVersion: c.FirmwareVersion,
			SectorCount:     uint8((mtu - 36) / aoe.SectorSize), // 2 at MTU 1500, 17 at 9000
			Version:         aoe.Version,
			Command:         aoe.ConfigRead,
			String:          []byte{},
		}
		if diff := cmp.Diff(want, c); diff != "" {
			return nil, fmt.Errorf("config reply (-want +got):\n%s", diff)
		}
		if c.BufferCount < 2 {
			return nil, fmt.Errorf("config reply buffer count %d: Linux needs at least 2", c.BufferCount)
		}
		if h.Major == aoe.BroadcastMajor || h.Minor == aoe.BroadcastMinor {
			return nil, fmt.Errorf("config reply from broadcast address %d.%d", h.Major, h.Minor)
		}
	}
	return c.AppendBinary(headers)
}

func checkCaptureATA(f aoe.Frame, headers []byte, mtu int, reqs map[exchange]aoe.ATA, st *captureStats) ([]byte, error) {
	h := f.Header
	a, err := aoe.ParseATA(f.Arg)
	if err != nil {
		return nil, fmt.Errorf("ParseATA: %v", err)
	}
	scnt := int(a.SectorCount)
	var dataLen int // how much of a.Data is data rather than padding
	if !h.Response() {
		if f.Dst.IsMulticast() || h.IsBroadcast() {
			return nil, fmt.Errorf("ATA request to %v, %d.%d: want a unicast to one target", f.Dst, h.Major, h.Minor)
		}
		switch a.CmdStatus {
		case aoe.ATAIdentifyDevice:
			// aoecmd_ata_id: scnt 1, lba3 0xa0, aflags 0.
			st.identify++
			want := aoe.ATA{SectorCount: 1, CmdStatus: aoe.ATAIdentifyDevice, LBA: 0xa0 << 24, Data: []byte{}}
			if diff := cmp.Diff(want, a); diff != "" {
				return nil, fmt.Errorf("IDENTIFY request (-want +got):\n%s", diff)
			}
		case aoe.ATAReadSectorsExt:
			// LBA48 (vblade claims it) with the E flag, and a 36-byte
			// frame: nothing follows the argument.
			st.read++
			if a.Flags != aoe.ATAExtended {
				return nil, fmt.Errorf("READ EXT flags %#02x, want E only", a.Flags)
			}
			if n := aoe.FrameHeaderLen + aoe.ATAArgLen + len(a.Data); n != 36 {
				return nil, fmt.Errorf("read request is %d bytes, want 36", n)
			}
		case aoe.ATAWriteSectorsExt:
			st.write++
			dataLen = scnt * aoe.SectorSize
			if a.Flags != aoe.ATAExtended|aoe.ATAWrite {
				return nil, fmt.Errorf("WRITE EXT flags %#02x, want E|W", a.Flags)
			}
			if len(a.Data) != dataLen {
				return nil, fmt.Errorf("write of %d sectors carries %d bytes, want %d", scnt, len(a.Data), dataLen)
			}
		default:
			return nil, fmt.Errorf("ATA command %#02x: Linux sends only IDENTIFY, READ EXT and WRITE EXT to an LBA48 device", a.CmdStatus)
		}
		if a.CmdStatus != aoe.ATAIdentifyDevice {
			if maxScnt := (mtu - 36) / aoe.SectorSize; scnt == 0 || scnt > maxScnt {
				return nil, fmt.Errorf("%d sectors in one request, want 1 to %d at MTU %d", scnt, maxScnt, mtu)
			}
			if a.LBA+uint64(scnt) > vbladeExportSectors {
				return nil, fmt.Errorf("%d sectors at LBA %d: outside the %d-sector export", scnt, a.LBA, vbladeExportSectors)
			}
		}
		reqs[exchange{f.Src, f.Dst, h.Major, h.Minor, h.Tag}] = a
	} else {
		// vblade's replies: DRDY, no error, the sector count counted
		// down to 0.
		if a.CmdStatus != aoe.ATAStatusDRDY || a.ErrFeature != 0 || a.SectorCount != 0 {
			return nil, fmt.Errorf("reply status %#02x error %#02x count %d, want 0x40, 0, 0", a.CmdStatus, a.ErrFeature, a.SectorCount)
		}
		req, ok := reqs[exchange{f.Dst, f.Src, h.Major, h.Minor, h.Tag}]
		switch {
		case !ok:
			// The request is before the start of the capture (or of
			// its excerpt); only a read reply carries data.
			st.unmatchedR++
			dataLen = len(a.Data)
			if a.Flags != aoe.ATAExtended || dataLen == 0 || dataLen%aoe.SectorSize != 0 {
				return nil, fmt.Errorf("unmatched reply: flags %#02x, %d data bytes", a.Flags, dataLen)
			}
		case req.CmdStatus == aoe.ATAIdentifyDevice:
			st.identifyReply++
			dataLen = aoe.IdentifyLen
			if len(a.Data) != dataLen {
				return nil, fmt.Errorf("IDENTIFY reply carries %d bytes, want %d", len(a.Data), dataLen)
			}
			id, ok := aoe.ParseIdentity(a.Data)
			if !ok {
				return nil, fmt.Errorf("ParseIdentity failed")
			}
			want := aoe.Identity{
				Sectors:  vbladeExportSectors,
				Serial:   fmt.Sprintf("%d.%d:vm", h.Major, h.Minor), // vblade: "shelf.slot:hostname"
				Firmware: "V25",
				Model:    "Coraid EtherDrive vblade",
			}
			if diff := cmp.Diff(want, id); diff != "" {
				return nil, fmt.Errorf("IDENTIFY page (-want +got):\n%s", diff)
			}
		case req.Write():
			// A 36-byte reply, padded to the Ethernet minimum.
			st.writeReply++
			if len(f.Arg) != minEthernetFrame-aoe.FrameHeaderLen {
				return nil, fmt.Errorf("write reply is %d bytes, want %d", aoe.FrameHeaderLen+len(f.Arg), minEthernetFrame)
			}
		default:
			// Reads return exactly the request's sectors.
			st.readReply++
			dataLen = int(req.SectorCount) * aoe.SectorSize
			if len(a.Data) != dataLen {
				return nil, fmt.Errorf("read of %d sectors returned %d bytes, want %d", req.SectorCount, len(a.Data), dataLen)
			}
		}
		if ok && (a.Flags != req.Flags || a.LBA != req.LBA) {
			return nil, fmt.Errorf("reply flags %#02x LBA %d, request's %#02x %d", a.Flags, a.LBA, req.Flags, req.LBA)
		}
	}
	b, err := a.AppendHeader(headers)
	if err != nil {
		return nil, fmt.Errorf("AppendHeader: %v", err)
	}
	return append(b, a.Data[:dataLen]...), nil
}
