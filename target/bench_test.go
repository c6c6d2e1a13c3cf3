package target

import (
	"strconv"
	"testing"

	"github.com/aoetarget/aoetarget/aoe"
)

// The per-frame path, without sockets: what the engine costs on top of
// the two syscalls (receive, send) and the store's read or write.

func BenchmarkClassify(b *testing.B) {
	req := ataRequest(hostA, 1, aoe.ATA{Flags: aoe.ATAExtended, SectorCount: 2, CmdStatus: aoe.ATAReadSectorsExt, LBA: 4})
	b.ReportAllocs()
	for b.Loop() {
		classify(req)
	}
}

func BenchmarkTryHandleRead(b *testing.B) {
	for _, p := range []Port{port1500, port9000} {
		n := MaxSectors(p.MTU)
		b.Run(strconv.Itoa(p.MTU), func(b *testing.B) {
			h, _ := newTestHandler(b, Config{})
			req := ataRequest(hostA, 1, aoe.ATA{Flags: aoe.ATAExtended, SectorCount: uint8(n), CmdStatus: aoe.ATAReadSectorsExt, LBA: 4})
			resp := make([]byte, p.MTU+14)
			b.ReportAllocs()
			b.SetBytes(int64(n * 512))
			for b.Loop() {
				if _, _, ok := h.TryHandle(p, req, resp); !ok {
					b.Fatal("not inline")
				}
			}
		})
	}
}

func BenchmarkHandleWrite(b *testing.B) {
	for _, wb := range []bool{false, true} {
		name := "durable"
		if wb {
			name = "writeback"
		}
		b.Run(name, func(b *testing.B) {
			h, _ := newTestHandler(b, Config{Writeback: wb})
			req := ataRequest(hostA, 1, aoe.ATA{Flags: aoe.ATAExtended | aoe.ATAWrite, SectorCount: 2, CmdStatus: aoe.ATAWriteSectorsExt, LBA: 4, Data: pattern(1024, 0)})
			resp := make([]byte, 1514)
			b.ReportAllocs()
			b.SetBytes(1024)
			for b.Loop() {
				h.Handle(port1500, req, resp)
			}
		})
	}
}

func BenchmarkScheduler(b *testing.B) {
	var s scheduler
	jobs := make([]*job, 16)
	for i := range jobs {
		jobs[i] = &job{span: span{lba: uint64(i * 8), n: 8, write: true}, waiters: make([]*job, 0, 4)}
		s.admit(jobs[i])
	}
	j := &job{span: span{lba: 1000, n: 2, write: true}, waiters: make([]*job, 0, 4)}
	var ready []*job
	b.ReportAllocs()
	for b.Loop() {
		s.busy(j.span)
		s.admit(j)
		ready = s.done(j, ready[:0])
	}
}
