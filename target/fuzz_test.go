package target

import (
	"testing"

	"github.com/aoetarget/aoetarget/aoe"
)

// FuzzHandle feeds arbitrary frames to a handler over an in-memory store
// and checks its invariants: no panic, replies only to well-formed requests
// for us, every reply parses, carries the request's tag and command, comes
// from our MAC, and fits in the MTU.
func FuzzHandle(f *testing.F) {
	for _, seed := range [][]byte{
		// A Linux-style broadcast Query Config.
		request(hostA, aoe.Header{Major: 0xffff, Minor: 0xff, Command: aoe.CommandQueryConfig}, make([]byte, 8)),
		// READ SECTORS EXT of two sectors.
		ataRequest(hostA, 1, aoe.ATA{Flags: aoe.ATAExtended, SectorCount: 2, CmdStatus: aoe.ATAReadSectorsExt, LBA: 8}),
		// WRITE SECTORS EXT of one sector.
		ataRequest(hostA, 2, aoe.ATA{Flags: aoe.ATAExtended | aoe.ATAWrite, SectorCount: 1, CmdStatus: aoe.ATAWriteSectorsExt, LBA: testSectors - 1, Data: make([]byte, 512)}),
		// IDENTIFY.
		ataRequest(hostA, 3, aoe.ATA{SectorCount: 1, CmdStatus: aoe.ATAIdentifyDevice}),
		// Mask edit adding two MACs.
		maskRequest(hostA, aoe.MacMask{Command: aoe.MaskEdit, Directives: []aoe.Directive{{Command: aoe.DirectiveAdd, MAC: hostA}, {Command: aoe.DirectiveAdd, MAC: hostB}}}),
		// Reserve set.
		request(hostA, aoe.Header{Major: 1, Minor: 2, Command: aoe.CommandReserve}, marshal(aoe.Reserve{Command: aoe.ReserveSet, MACs: []aoe.MAC{hostB}})),
		// Config force-set.
		configRequest(hostA, aoe.ConfigForceSet, "abc"),
	} {
		f.Add(seed, uint16(1500))
	}
	f.Fuzz(func(t *testing.T, req []byte, mtu uint16) {
		p := Port{MAC: targetMAC, MTU: int(mtu%9000) + 60}
		h, mem := newTestHandler(t, Config{})
		resp := make([]byte, p.MTU+aoe.EthernetHeaderLen)
		n, v := h.Handle(p, req, resp)
		if v != Reply {
			if n != 0 {
				t.Fatalf("verdict %v with %d bytes", v, n)
			}
			if mem.Writes() != 0 {
				t.Fatal("a dropped request wrote to the store")
			}
			return
		}
		if n < MinFrameLen || n > len(resp) {
			t.Fatalf("reply of %d bytes, MTU %d", n, p.MTU)
		}
		rf, err := aoe.ParseFrame(resp[:n])
		if err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
		q, err := aoe.ParseFrame(req)
		if err != nil {
			t.Fatalf("replied to a frame that does not parse: %v", err)
		}
		if rf.Header.Tag != q.Header.Tag || rf.Header.Command != q.Header.Command || !rf.Header.Response() ||
			rf.Src != targetMAC || rf.Dst != q.Src || rf.Header.Major != 1 || rf.Header.Minor != 2 {
			t.Fatalf("reply header %+v to %+v", rf.Header, q.Header)
		}
		if mem.Writes() != 0 {
			// Only a successful write may write to the store.
			a, err := aoe.ParseATA(q.Arg)
			r, _ := aoe.ParseATA(rf.Arg)
			if q.Header.Command != aoe.CommandATA || err != nil || r.CmdStatus != aoe.ATAStatusDRDY ||
				(a.CmdStatus != aoe.ATAWriteSectors && a.CmdStatus != aoe.ATAWriteSectorsExt) {
				t.Fatalf("store changed by %+v", q.Header)
			}
		}
	})
}
