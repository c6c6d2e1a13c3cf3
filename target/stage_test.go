package target

import (
	"bytes"
	"errors"
	"testing"

	"github.com/aoetarget/aoetarget/aoe"
	"github.com/aoetarget/aoetarget/blockstore"
)

// TestStageComplete checks that staging a request, doing its I/O and
// completing it gives, byte for byte, the reply Handle gives: on success,
// on store errors, and for the requests stage answers itself.
func TestStageComplete(t *testing.T) {
	eio := errors.New("EIO")
	read := aoe.ATA{Flags: aoe.ATAExtended, SectorCount: 2, CmdStatus: aoe.ATAReadSectorsExt, LBA: 6}
	read28 := aoe.ATA{SectorCount: 1, CmdStatus: aoe.ATAReadSectors, LBA: 0xe0000003} // LBA28 with the top nibble set
	write := aoe.ATA{Flags: aoe.ATAExtended | aoe.ATAWrite, SectorCount: 2, CmdStatus: aoe.ATAWriteSectorsExt, LBA: 10, Data: pattern(1024, 3)}
	tests := []struct {
		name   string
		ata    aoe.ATA
		inject func(*blockstore.Memory)
		err    error // the I/O error complete gets
		want   stageResult
	}{
		{"read", read, nil, nil, stageIO},
		{"read LBA28", read28, nil, nil, stageIO},
		{"write", write, nil, nil, stageIO},
		{"read error", read, func(m *blockstore.Memory) { m.SetReadErr(eio) }, eio, stageIO},
		{"write error", write, func(m *blockstore.Memory) { m.SetWriteErr(eio) }, eio, stageIO},
		{"flush error fails the write", write, func(m *blockstore.Memory) { m.SetFlushErr(eio) }, eio, stageIO},
		{"read past the end", aoe.ATA{Flags: aoe.ATAExtended, SectorCount: 2, CmdStatus: aoe.ATAReadSectorsExt, LBA: testSectors - 1}, nil, nil, stageDone},
		{"write short of data", aoe.ATA{Flags: aoe.ATAExtended | aoe.ATAWrite, SectorCount: 2, CmdStatus: aoe.ATAWriteSectorsExt, Data: make([]byte, 512)}, nil, nil, stageDone},
		{"identify", aoe.ATA{SectorCount: 1, CmdStatus: aoe.ATAIdentifyDevice}, nil, nil, stageDone},
		{"flush", aoe.ATA{CmdStatus: aoe.ATAFlushCacheExt}, nil, nil, stageDeferred},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := ataRequest(hostA, 7, tt.ata)
			// What Handle answers.
			h1, m1 := newTestHandler(t, Config{})
			h2, m2 := newTestHandler(t, Config{})
			for _, m := range []*blockstore.Memory{m1, m2} {
				if _, err := m.WriteAt(pattern(testSectors*512, 9), 0); err != nil {
					t.Fatal(err)
				}
			}
			if tt.inject != nil {
				tt.inject(m1)
			}
			want := make([]byte, 1514)
			wn, wv := h1.Handle(port1500, req, want)

			// What stage, the I/O and complete answer.
			got := make([]byte, 1514)
			var op ioOp
			var a acct
			n, v, res := h2.stage(port1500, req, got, false, &op, &a)
			if res != tt.want {
				t.Fatalf("stage result %d, want %d", res, tt.want)
			}
			if res == stageIO {
				var err error
				if op.write {
					_, err = m2.WriteAt(op.buf, op.off)
				} else {
					_, err = m2.ReadAt(op.buf, op.off)
				}
				if err != nil {
					t.Fatal(err)
				}
				n, v = h2.complete(got, &op, tt.err, &a)
			}
			if res == stageDeferred {
				return
			}
			h2.record(&a, 0, 0) // what the engine does once it sent the reply
			if v != wv || !bytes.Equal(got[:n], want[:wn]) {
				t.Errorf("staged reply (%v, %d bytes)\n%x\nHandle's (%v, %d bytes)\n%x", v, n, got[:n], wv, wn, want[:wn])
			}
			s1, s2 := h1.Stats(), h2.Stats()
			if s1.Reads.Load() != s2.Reads.Load() || s1.Writes.Load() != s2.Writes.Load() || s1.ATAErrors.Load() != s2.ATAErrors.Load() ||
				s1.Verdicts[Reply].Load() != s2.Verdicts[Reply].Load() {
				t.Errorf("stats differ: reads %d/%d writes %d/%d ata errors %d/%d replies %d/%d",
					s2.Reads.Load(), s1.Reads.Load(), s2.Writes.Load(), s1.Writes.Load(),
					s2.ATAErrors.Load(), s1.ATAErrors.Load(), s2.Verdicts[Reply].Load(), s1.Verdicts[Reply].Load())
			}
			if d := countersDiff(h1.Initiators(), h2.Initiators()); d != "" {
				t.Errorf("per-initiator counters differ (-Handle +stage):\n%s", d)
			}
		})
	}
}
