package target

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/aoetarget/aoetarget/aoe"
	"github.com/aoetarget/aoetarget/blockstore"
	"github.com/aoetarget/aoetarget/internal/pcap"
)

// TestReplayLinuxInitiator replays the requests of the real Linux 6.1
// initiator, captured while it talked to vblade 25 (discovery, IDENTIFY,
// the partition scan, writes and read-backs), through the handler, and
// compares each reply with vblade's field by field.
func TestReplayLinuxInitiator(t *testing.T) {
	for _, c := range []struct {
		file string
		mtu  int
	}{
		{"../aoe/testdata/linux61-aoe-vblade-mtu1500.pcap", 1500},
		{"../aoe/testdata/linux61-aoe-vblade-mtu9000-part.pcap", 9000},
	} {
		t.Run(fmt.Sprint(c.mtu), func(t *testing.T) {
			pkts, err := pcap.ReadFile(c.file)
			if err != nil {
				t.Fatal(err)
			}
			replayCapture(t, pkts, c.mtu)
		})
	}
}

// sector range bookkeeping: which sectors the capture wrote.
type written map[uint64]bool

func (w written) all(lba uint64, n int) bool {
	for i := range uint64(n) {
		if !w[lba+i] {
			return false
		}
	}
	return n > 0
}

func replayCapture(t *testing.T, pkts []pcap.Packet, mtu int) {
	type key struct {
		major uint16
		minor uint8
		tag   uint32
	}
	// vblade's replies, by target and tag.
	vblade := map[key]aoe.Frame{}
	for _, p := range pkts {
		f, err := aoe.ParseFrame(p.Data)
		if err != nil {
			t.Fatal(err)
		}
		if f.Header.Response() {
			vblade[key{f.Header.Major, f.Header.Minor, f.Header.Tag}] = f
		}
	}
	// One handler per target address seen, as the capture has two vblades
	// of 64 MiB (131072 sectors) each.
	handlers := map[[2]int]*Handler{}
	writes := map[[2]int]written{}
	handler := func(major uint16, minor uint8) *Handler {
		k := [2]int{int(major), int(minor)}
		if h := handlers[k]; h != nil {
			return h
		}
		h, err := NewHandler(Config{Major: major, Minor: minor}, blockstore.NewMemory(131072))
		if err != nil {
			t.Fatal(err)
		}
		handlers[k], writes[k] = h, written{}
		return h
	}
	var compared, data, identify, config int
	resp := make([]byte, mtu+aoe.EthernetHeaderLen)
	for i, p := range pkts {
		req, _ := aoe.ParseFrame(p.Data)
		if req.Header.Response() {
			continue
		}
		// Requests go to every target they address (broadcast queries).
		for _, addr := range [][2]int{{1, 0}, {1, 1}} {
			major, minor := uint16(addr[0]), uint8(addr[1])
			if !req.Header.Addressed(major, minor) {
				continue
			}
			want, ok := vblade[key{major, minor, req.Header.Tag}]
			if !ok {
				continue // vblade's reply is not in the capture
			}
			h := handler(major, minor)
			n, v := h.Handle(Port{MAC: want.Src, MTU: mtu}, p.Data, resp)
			if v != Reply {
				t.Fatalf("frame %d: verdict %v, vblade replied", i+1, v)
			}
			got, err := aoe.ParseFrame(resp[:n])
			if err != nil {
				t.Fatalf("frame %d: %v", i+1, err)
			}
			if got.Dst != want.Dst || got.Src != want.Src {
				t.Fatalf("frame %d: reply %v -> %v, vblade %v -> %v", i+1, got.Src, got.Dst, want.Src, want.Dst)
			}
			gh, wh := got.Header, want.Header
			wh.Version = aoe.Version // vblade's announcement has version 0
			if gh != wh {
				t.Fatalf("frame %d: header %+v, vblade %+v", i+1, gh, wh)
			}
			compared++
			switch req.Header.Command {
			case aoe.CommandQueryConfig:
				gc, err1 := aoe.ParseConfig(got.Arg)
				wc, err2 := aoe.ParseConfig(want.Arg)
				if err1 != nil || err2 != nil {
					t.Fatalf("frame %d: %v %v", i+1, err1, err2)
				}
				if gc.SectorCount != wc.SectorCount || gc.BufferCount != wc.BufferCount ||
					gc.Version != wc.Version || gc.Command != wc.Command || !bytes.Equal(gc.String, wc.String) {
					t.Fatalf("frame %d: config %+v, vblade %+v", i+1, gc, wc)
				}
				config++
			case aoe.CommandATA:
				q, _ := aoe.ParseATA(req.Arg)
				ga, err1 := aoe.ParseATA(got.Arg)
				wa, err2 := aoe.ParseATA(want.Arg)
				if err1 != nil || err2 != nil {
					t.Fatalf("frame %d: %v %v", i+1, err1, err2)
				}
				if ga.CmdStatus != wa.CmdStatus || ga.ErrFeature != wa.ErrFeature || ga.Flags != wa.Flags || ga.LBA != wa.LBA {
					t.Fatalf("frame %d: ATA reply %+v, vblade %+v", i+1, ga, wa)
				}
				sectors := int(q.SectorCount)
				switch q.CmdStatus {
				case aoe.ATAIdentifyDevice:
					gi, _ := aoe.ParseIdentity(ga.Data)
					wi, _ := aoe.ParseIdentity(wa.Data)
					if gi.Sectors != wi.Sectors || len(ga.Data) < aoe.IdentifyLen {
						t.Fatalf("frame %d: identify %+v, vblade %+v", i+1, gi, wi)
					}
					identify++
				case aoe.ATAWriteSectors, aoe.ATAWriteSectorsExt:
					for s := range uint64(sectors) {
						writes[addr][q.LBA+s] = true
					}
				case aoe.ATAReadSectors, aoe.ATAReadSectorsExt:
					if len(ga.Data) != sectors*aoe.SectorSize {
						t.Fatalf("frame %d: read reply carries %d bytes, want %d", i+1, len(ga.Data), sectors*aoe.SectorSize)
					}
					wd := wa.Data[:sectors*aoe.SectorSize]
					// Compare the data where the capture holds every write that
					// made it: sectors written earlier in the capture, or
					// never-written sectors that vblade returned as zeros.
					if writes[addr].all(q.LBA, sectors) || bytes.Equal(wd, make([]byte, len(wd))) {
						if !bytes.Equal(ga.Data, wd) {
							t.Fatalf("frame %d: read of %d sectors at %d differs from vblade's", i+1, sectors, q.LBA)
						}
						data++
					}
				}
			}
		}
	}
	t.Logf("compared %d replies with vblade's: %d config, %d identify, %d reads with data", compared, config, identify, data)
	if config == 0 || identify == 0 || data == 0 {
		t.Fatal("the capture exercised too little")
	}
}
