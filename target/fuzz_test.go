package target

import (
	"bytes"
	"errors"
	"testing"

	"github.com/aoetarget/aoetarget/blockstore"

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

// windowStore fails the test on any store access outside the export.
type windowStore struct {
	*blockstore.Memory
	t *testing.T
}

func (s windowStore) check(op string, n int, off int64) {
	if off < 0 || off+int64(n) > int64(s.Sectors())*aoe.SectorSize || off%aoe.SectorSize != 0 || n%aoe.SectorSize != 0 {
		s.t.Fatalf("%s of %d bytes at byte %d: outside the export or not whole sectors", op, n, off)
	}
}

func (s windowStore) ReadAt(p []byte, off int64) (int, error) {
	s.check("read", len(p), off)
	return s.Memory.ReadAt(p, off)
}

func (s windowStore) WriteAt(p []byte, off int64) (int, error) {
	s.check("write", len(p), off)
	return s.Memory.WriteAt(p, off)
}

func (s windowStore) ReadAtNoWait(p []byte, off int64) (int, error) {
	s.check("read", len(p), off)
	return s.Memory.ReadAtNoWait(p, off)
}

// FuzzStage checks the engine's path through the handler against Handle:
// for any frame, staging it, doing its I/O (failing it if fail is set) and
// completing it must give the same verdict, the same reply byte for byte
// and the same store contents as Handle over a store that fails the same
// way; and neither path may touch the store outside the export.
func FuzzStage(f *testing.F) {
	for _, seed := range [][]byte{
		ataRequest(hostA, 1, aoe.ATA{Flags: aoe.ATAExtended, SectorCount: 2, CmdStatus: aoe.ATAReadSectorsExt, LBA: 8}),
		ataRequest(hostA, 2, aoe.ATA{Flags: aoe.ATAExtended | aoe.ATAWrite, SectorCount: 1, CmdStatus: aoe.ATAWriteSectorsExt, LBA: testSectors - 1, Data: make([]byte, 512)}),
		ataRequest(hostA, 3, aoe.ATA{SectorCount: 2, CmdStatus: aoe.ATAWriteSectors, LBA: 0xe0000004, Data: make([]byte, 1024)}),
		ataRequest(hostA, 4, aoe.ATA{SectorCount: 1, CmdStatus: aoe.ATAReadSectors, LBA: testSectors}),
		ataRequest(hostA, 5, aoe.ATA{CmdStatus: aoe.ATAFlushCacheExt}),
		configRequest(hostA, aoe.ConfigRead, ""),
	} {
		f.Add(seed, uint16(1500), false, false)
		f.Add(seed, uint16(9000), true, true)
	}
	f.Fuzz(func(t *testing.T, req []byte, mtu uint16, fail, cache bool) {
		p := Port{MAC: targetMAC, MTU: int(mtu%9000) + 60}
		eio := errors.New("injected EIO")
		m1, m2 := blockstore.NewMemory(testSectors), blockstore.NewMemory(testSectors)
		h1, err := NewHandler(Config{Major: 1, Minor: 2}, windowStore{m1, t})
		if err != nil {
			t.Fatal(err)
		}
		h2, err := NewHandler(Config{Major: 1, Minor: 2}, windowStore{m2, t})
		if err != nil {
			t.Fatal(err)
		}
		if fail {
			m1.SetReadErr(eio)
			m1.SetWriteErr(eio)
			m1.SetFlushErr(eio)
			if cache {
				m2.SetReadErr(eio) // the staged read's cache attempt fails too
			}
		}
		want := make([]byte, p.MTU+aoe.EthernetHeaderLen)
		wn, wv := h1.Handle(p, req, want)

		got := make([]byte, p.MTU+aoe.EthernetHeaderLen)
		var op ioOp
		var a acct
		n, v, res := h2.stage(p, req, got, cache, &op, &a)
		switch res {
		case stageDeferred:
			n, v = h2.Handle(p, req, got) // what the engine does with it
			if fail {                     // only a flush is deferred; fail it as h1's failed
				var f aoe.Frame
				if f, err = aoe.ParseFrame(req); err != nil || f.Header.Command != aoe.CommandATA {
					t.Fatalf("deferred a request that is not ATA: %x", req)
				}
				return
			}
		case stageIO:
			if len(op.buf) == 0 && op.n == 0 {
				t.Fatal("staged an empty reply")
			}
			var ioErr error
			if fail {
				ioErr = eio
			} else if op.write {
				_, ioErr = windowStore{m2, t}.WriteAt(op.buf, op.off)
				if ioErr == nil {
					ioErr = m2.Flush()
				}
			} else {
				_, ioErr = windowStore{m2, t}.ReadAt(op.buf, op.off)
			}
			n, v = h2.complete(got, &op, ioErr, &a)
		}
		if res != stageDeferred {
			h2.record(&a, 0, 0) // what the engine does once it sent the reply
		}
		if v != wv || !bytes.Equal(got[:n], want[:wn]) {
			t.Fatalf("engine path: %v, %d bytes\n%x\nHandle: %v, %d bytes\n%x", v, n, got[:n], wv, wn, want[:wn])
		}
		if d := countersDiff(h1.Initiators(), h2.Initiators()); d != "" {
			t.Fatalf("the engine path counted differently from Handle (-Handle +engine):\n%s", d)
		}
		if !bytes.Equal(m1.Bytes(), m2.Bytes()) {
			t.Fatal("the store differs between the engine path and Handle")
		}
	})
}
