package target

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/aoetarget/aoetarget/aoe"
	"github.com/aoetarget/aoetarget/blockstore"
)

// countersDiff compares two snapshots of per-initiator counters, but for
// the times and the latencies.
func countersDiff(want, got []InitiatorStats) string {
	return cmp.Diff(want, got, cmpopts.IgnoreFields(InitiatorStats{}, "FirstSeen", "LastSeen", "Latency"), cmpopts.EquateEmpty())
}

// mixFrame is a frame of a known mix of traffic: tag is its reply's tag,
// 0 if it must be dropped.
type mixFrame struct {
	b   []byte
	tag uint32
}

// trafficMix is a known mix of traffic, in phases: the frames of a phase
// may be sent at once; the next phase starts once every reply came. want
// is what the handler must count.
type trafficMix struct {
	phases     [][]mixFrame
	want       map[aoe.MAC]*InitiatorStats
	frames     int
	replies    int
	writes     int // successful writes: the group commits' sum
	reads      int // successful reads
	dataErrors int // failed I/O: the fault-injected sectors
}

// Sectors the mix's store fails.
const (
	mixBadWrite = 900
	mixBadRead  = 950
)

// mixStore returns the store the mix runs against: it fails writes of
// sector mixBadWrite and reads of mixBadRead.
func mixStore() *blockstore.Memory {
	m := blockstore.NewMemory(testSectors)
	m.SetFault(func(op blockstore.Op, off int64, n int) error {
		touches := func(s int64) bool { return off <= s*512 && off+int64(n) > s*512 }
		if (op == blockstore.OpWrite && touches(mixBadWrite)) || (op == blockstore.OpRead && touches(mixBadRead)) {
			return errors.New("injected EIO")
		}
		return nil
	})
	return m
}

// newTrafficMix builds the mix from initiators a and b (and c, which only
// sends a malformed frame) to the export 1.2 at dst. With inMemory, it
// has the frames that the kernel's socket filter would not let through
// too.
func newTrafficMix(dst, a, b, c aoe.MAC, inMemory bool) *trafficMix {
	x := &trafficMix{want: make(map[aoe.MAC]*InitiatorStats)}
	st := func(m aoe.MAC) *InitiatorStats {
		if x.want[m] == nil {
			x.want[m] = &InitiatorStats{MAC: m}
		}
		return x.want[m]
	}
	var phase []mixFrame
	tag := uint32(1000)
	add := func(frame []byte, replied bool) {
		x.frames++
		if len(frame) >= 6 {
			copy(frame[0:6], dst[:])
		}
		f := mixFrame{b: frame}
		if replied {
			f.tag = tag
			x.replies++
		}
		phase = append(phase, f)
	}
	hdr := func(cmd aoe.Command) aoe.Header {
		tag++
		return aoe.Header{Major: 1, Minor: 2, Command: cmd, Tag: tag}
	}
	endPhase := func() { x.phases = append(x.phases, phase); phase = nil }
	// ataOK is an ATA command that runs, with an ATA error or not.
	ataOK := func(src aoe.MAC, q aoe.ATA, op int, ataErr bool) {
		add(request(src, hdr(aoe.CommandATA), marshal(q)), true)
		s := st(src)
		s.Requests[ReqATA]++
		s.ATA[op]++
		if ataErr {
			s.ATAErrors++
			s.ATAErrorsByOp[op]++
			return
		}
		n := uint64(q.SectorCount) * 512
		switch op {
		case ATARead:
			s.ReadBytes += n
			x.reads++
		case ATAWrite:
			s.WriteBytes += n
			x.writes++
		}
	}
	// aoeErr is a request answered with AoE error code.
	aoeErr := func(src aoe.MAC, frame []byte, cmd int, code aoe.Error) {
		add(frame, true)
		s := st(src)
		s.Requests[cmd]++
		s.AoEErrors++
		s.AoEErrorsByCode[code]++
		if code == aoe.ErrorTargetReserved {
			s.Reserved++
		}
	}
	// other is a request answered without error that runs no ATA command.
	other := func(src aoe.MAC, frame []byte, cmd int) {
		add(frame, true)
		st(src).Requests[cmd]++
	}
	drop := func(src aoe.MAC, frame []byte, v Verdict) {
		add(frame, false)
		st(src).Dropped[v]++
	}
	read := func(lba uint64, n uint8) aoe.ATA {
		return aoe.ATA{Flags: aoe.ATAExtended, SectorCount: n, CmdStatus: aoe.ATAReadSectorsExt, LBA: lba}
	}
	write := func(lba uint64, n uint8) aoe.ATA {
		return aoe.ATA{Flags: aoe.ATAExtended | aoe.ATAWrite, SectorCount: n, CmdStatus: aoe.ATAWriteSectorsExt, LBA: lba,
			Data: pattern(int(n)*512, byte(lba))}
	}
	config := func(cmd aoe.ConfigCommand, s string) []byte {
		return marshal(aoe.Config{Command: cmd, String: []byte(s)})
	}
	reserve := func(macs ...aoe.MAC) []byte {
		return marshal(aoe.Reserve{Command: aoe.ReserveSet, MACs: macs})
	}
	mask := func(cmd aoe.DirectiveCommand, m aoe.MAC) []byte {
		return marshal(aoe.MacMask{Command: aoe.MaskEdit, Directives: []aoe.Directive{{Command: cmd, MAC: m}}})
	}

	// Phase 1: reads (6 of 2 sectors) from a, writes (4 of 2 sectors)
	// from b, failed I/O, the other ATA commands, AoE errors.
	for i := range uint64(6) {
		ataOK(a, read(8*i, 2), ATARead, false)
	}
	for i := range uint64(4) {
		ataOK(b, write(100+8*i, 2), ATAWrite, false)
	}
	ataOK(b, write(mixBadWrite, 1), ATAWrite, true)
	ataOK(a, read(mixBadRead, 1), ATARead, true)
	ataOK(a, read(testSectors-1, 2), ATARead, true) // past the end
	ataOK(a, aoe.ATA{SectorCount: 1, CmdStatus: aoe.ATAIdentifyDevice}, ATAIdentify, false)
	ataOK(a, aoe.ATA{CmdStatus: aoe.ATACheckPowerMode}, ATACheckPower, false)
	ataOK(a, aoe.ATA{CmdStatus: aoe.ATAFlushCacheExt}, ATAFlush, false)
	ataOK(a, aoe.ATA{CmdStatus: 0xb0}, ATAOther, true) // SMART: aborted
	other(b, request(b, hdr(aoe.CommandQueryConfig), config(aoe.ConfigRead, "")), ReqConfig)
	aoeErr(a, request(a, hdr(0x42), nil), ReqOther, aoe.ErrorUnrecognizedCommand)
	h := hdr(aoe.CommandATA)
	h.Version = 2
	aoeErr(b, request(b, h, marshal(aoe.ATA{SectorCount: 1, CmdStatus: aoe.ATAIdentifyDevice})), ReqATA, aoe.ErrorUnsupportedVersion)
	aoeErr(b, request(b, hdr(aoe.CommandATA), make([]byte, 11)), ReqATA, aoe.ErrorBadArgument)
	x.dataErrors = 2
	endPhase()

	// Phase 2: dropped frames, then one that is answered.
	drop(c, request(c, hdr(aoe.CommandATA), nil)[:20], DropMalformed) // a cut header, with a source
	drop(aoe.MAC{}, request(aoe.MAC{}, hdr(aoe.CommandQueryConfig), config(aoe.ConfigRead, "")), DropBadSource)
	mcast := aoe.MAC{0x03, 0, 0, 0, 0, 0x07}
	drop(mcast, request(mcast, hdr(aoe.CommandQueryConfig), config(aoe.ConfigRead, "")), DropBadSource)
	drop(b, request(b, hdr(aoe.CommandQueryConfig), config(aoe.ConfigTest, "nomatch")), DropNoMatch)
	if inMemory {
		drop(aoe.MAC{}, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, DropMalformed) // no source: "other"
		rh := hdr(aoe.CommandQueryConfig)
		rh.Flags = aoe.FlagResponse
		drop(a, request(a, rh, config(aoe.ConfigRead, "")), DropResponse)
		nh := hdr(aoe.CommandQueryConfig)
		nh.Major = 7
		drop(a, request(a, nh, config(aoe.ConfigRead, "")), DropNotAddressed)
	}
	other(a, request(a, hdr(aoe.CommandQueryConfig), config(aoe.ConfigRead, "")), ReqConfig)
	endPhase()

	// Phase 3: a masks everyone else out, b is dropped, a lifts the mask.
	other(a, request(a, hdr(aoe.CommandMacMask), mask(aoe.DirectiveAdd, a)), ReqMacMask)
	drop(b, request(b, hdr(aoe.CommandATA), marshal(read(0, 1))), DropMasked)
	drop(b, request(b, hdr(aoe.CommandATA), marshal(read(2, 1))), DropMasked)
	drop(b, request(b, hdr(aoe.CommandQueryConfig), config(aoe.ConfigRead, "")), DropMasked)
	other(a, request(a, hdr(aoe.CommandMacMask), mask(aoe.DirectiveDelete, a)), ReqMacMask)
	endPhase()

	// Phase 4: a reserves the export; b's read and reservation are
	// refused, its IDENTIFY is not; a reads and releases.
	other(a, request(a, hdr(aoe.CommandReserve), reserve(a)), ReqReserve)
	aoeErr(b, request(b, hdr(aoe.CommandATA), marshal(read(0, 1))), ReqATA, aoe.ErrorTargetReserved)
	aoeErr(b, request(b, hdr(aoe.CommandReserve), reserve(b)), ReqReserve, aoe.ErrorTargetReserved)
	ataOK(b, aoe.ATA{SectorCount: 1, CmdStatus: aoe.ATAIdentifyDevice}, ATAIdentify, false)
	ataOK(a, read(0, 2), ATARead, false)
	other(a, request(a, hdr(aoe.CommandReserve), reserve()), ReqReserve)
	endPhase()
	return x
}

// wantStats returns what the mix must count, sorted by MAC.
func (x *trafficMix) wantStats() []InitiatorStats {
	var out []InitiatorStats
	for _, s := range x.want {
		out = append(out, *s)
	}
	slicesSortByMAC(out)
	return out
}

func slicesSortByMAC(s []InitiatorStats) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && string(s[j].MAC[:]) < string(s[j-1].MAC[:]); j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// check compares h's counters with the mix's: exactly, and, if timed
// (the mix went through a Server), the latency histograms' counts: every
// reply once, by op.
func (x *trafficMix) check(t *testing.T, h *Handler, timed bool, start time.Time) {
	t.Helper()
	got := h.Initiators()
	if d := countersDiff(x.wantStats(), got); d != "" {
		t.Errorf("counters differ from the traffic (-want +got):\n%s", d)
	}
	end := time.Now()
	for _, g := range got {
		if g.FirstSeen.Before(start.Add(-time.Millisecond)) || g.FirstSeen.After(end) || g.LastSeen.Before(g.FirstSeen) || g.LastSeen.After(end) {
			t.Errorf("%v: first seen %v, last seen %v; the test ran from %v to %v", g.MAC, g.FirstSeen, g.LastSeen, start, end)
		}
		var replies uint64
		for _, n := range g.Requests {
			replies += n
		}
		want := [NumLatencyOps]uint64{g.ATA[ATARead], g.ATA[ATAWrite], replies - g.ATA[ATARead] - g.ATA[ATAWrite]}
		for op, l := range g.Latency {
			if !timed {
				want[op] = 0
			}
			var sum uint64
			for _, c := range l.Counts {
				sum += c
			}
			if l.Count != want[op] || sum != l.Count || len(l.Counts) != len(l.Bounds)+1 || (l.Count > 0) != (l.Sum > 0) {
				t.Errorf("%v: %s latency: %d timed (bucket sum %d, sum %vs, %d buckets), want %d", g.MAC, LatencyOpName(op), l.Count, sum, l.Sum, len(l.Counts), want[op])
			}
		}
	}
	st := h.Stats()
	var dropped uint64
	for v := Reply + 1; v < NumVerdicts; v++ {
		dropped += st.Verdicts[v].Load()
	}
	if st.Verdicts[Reply].Load() != uint64(x.replies) || dropped != uint64(x.frames-x.replies) ||
		st.Reads.Load() != uint64(x.reads) || st.Writes.Load() != uint64(x.writes) || st.IOErrors.Load() < uint64(x.dataErrors) {
		t.Errorf("Stats: %d replies, %d dropped, %d reads, %d writes, %d I/O errors; want %d, %d, %d, %d, at least %d",
			st.Verdicts[Reply].Load(), dropped, st.Reads.Load(), st.Writes.Load(), st.IOErrors.Load(),
			x.replies, x.frames-x.replies, x.reads, x.writes, x.dataErrors)
	}
	cs := h.CommitSizes()
	if cs.Sum != float64(x.writes) || cs.Count == 0 || cs.Count >= st.Flushes.Load() {
		t.Errorf("group commits: %d flushes acknowledged %v writes (%d flushes in all); want %d writes, and the FLUSH CACHE's flush besides",
			cs.Count, cs.Sum, st.Flushes.Load(), x.writes)
	}
	if n := h.InFlight(); n != 0 {
		t.Errorf("%d requests in flight after the traffic", n)
	}
}

// settle waits until h has counted every frame of x and none is in
// flight (replies are handed to the socket before they are counted).
func (x *trafficMix) settle(t *testing.T, h *Handler) {
	t.Helper()
	for i := 0; ; i++ {
		total := uint64(0)
		for _, s := range h.Initiators() {
			for _, n := range s.Requests {
				total += n
			}
			for _, n := range s.Dropped {
				total += n
			}
		}
		if total == uint64(x.frames) && h.InFlight() == 0 {
			return
		}
		if i == 2000 {
			t.Fatalf("counted %d of %d frames, %d in flight", total, x.frames, h.InFlight())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// run sends the mix through send, phase by phase, and waits for each
// phase's replies from recv (which returns nil when none came in time).
func (x *trafficMix) run(t *testing.T, send func([]byte), recv func() []byte) {
	t.Helper()
	for i, phase := range x.phases {
		want := make(map[uint32]bool)
		for _, f := range phase {
			send(f.b)
			if f.tag != 0 {
				want[f.tag] = true
			}
		}
		for len(want) > 0 {
			b := recv()
			if b == nil {
				t.Fatalf("phase %d: no reply to tags %v", i+1, want)
			}
			f, err := aoe.ParseFrame(b)
			if err != nil || !f.Header.Response() || f.Header.Tag == 0 { // tag 0: the announcement
				continue
			}
			if !want[f.Header.Tag] {
				t.Fatalf("phase %d: unexpected reply with tag %d", i+1, f.Header.Tag)
			}
			delete(want, f.Header.Tag)
		}
	}
}

// TestCountersHandle sends the known mix straight to a Handler: the
// counters must match it exactly, without latencies (nothing is timed).
func TestCountersHandle(t *testing.T) {
	start := time.Now()
	h, err := NewHandler(Config{Major: 1, Minor: 2}, mixStore())
	if err != nil {
		t.Fatal(err)
	}
	hostC := aoe.MAC{0x02, 0, 0, 0, 0, 0xcc}
	x := newTrafficMix(targetMAC, hostA, hostB, hostC, true)
	resp := make([]byte, port1500.MTU+aoe.EthernetHeaderLen)
	for _, phase := range x.phases {
		for _, f := range phase {
			n, v := h.Handle(port1500, f.b, resp)
			if (v == Reply) != (f.tag != 0) {
				t.Fatalf("frame %x: verdict %v (%d bytes)", f.b, v, n)
			}
		}
	}
	x.check(t, h, false, start)
}

// TestCountersServer sends the known mix to a Server over an in-memory
// link (one frame per receive, one reply per send): every request must
// be counted exactly once, with its latency, whichever path it took
// (the receive loop, a worker, the committer).
func TestCountersServer(t *testing.T) {
	for _, store := range []string{"cached", "uncached"} {
		t.Run(store, func(t *testing.T) {
			start := time.Now()
			var s Store = mixStore()
			if store == "uncached" {
				s = blockingStore{s.(*blockstore.Memory)} // reads go to the workers
			}
			h, err := NewHandler(Config{Major: 1, Minor: 2}, s)
			if err != nil {
				t.Fatal(err)
			}
			iconn, stop := servePipe(t, h, ServerConfig{})
			defer func() {
				if err := stop(); err != nil {
					t.Error(err)
				}
			}()

			x := newTrafficMix(targetMAC, hostA, hostB, aoe.MAC{0x02, 0, 0, 0, 0, 0xcc}, true)
			buf := make([]byte, 9100)
			x.run(t, func(b []byte) { iconn.WriteTo(b, nil) }, func() []byte {
				iconn.SetReadDeadline(time.Now().Add(10 * time.Second))
				n, _, err := iconn.ReadFrom(buf)
				if err != nil {
					return nil
				}
				return buf[:n]
			})
			x.settle(t, h)
			x.check(t, h, true, start)
		})
	}
}

// TestInitiatorTableFull sends requests from more MACs than the table
// holds: the first MaxInitiators get entries, the rest count under the
// "other" entry, which comes first in the snapshot.
func TestInitiatorTableFull(t *testing.T) {
	h, _ := newTestHandler(t, Config{})
	resp := make([]byte, 1514)
	const extra = 6
	for i := range MaxInitiators + extra {
		src := aoe.MAC{0x02, 0, 0, 0, byte(i >> 8), byte(i + 1)}
		for range 2 {
			if _, v := h.Handle(port1500, configRequest(src, aoe.ConfigRead, ""), resp); v != Reply {
				t.Fatalf("verdict %v", v)
			}
		}
	}
	got := h.Initiators()
	if len(got) != MaxInitiators+1 {
		t.Fatalf("%d entries, want %d and the other", len(got), MaxInitiators)
	}
	if got[0].MAC != (aoe.MAC{}) || got[0].Requests[ReqConfig] != 2*extra {
		t.Errorf("first entry %v with %d config requests, want the other entry with %d", got[0].MAC, got[0].Requests[ReqConfig], 2*extra)
	}
	for i, s := range got[1:] {
		if want := (aoe.MAC{0x02, 0, 0, 0, byte(i >> 8), byte(i + 1)}); s.MAC != want || s.Requests[ReqConfig] != 2 {
			t.Errorf("entry %d: %v with %d requests, want %v with 2", i+1, s.MAC, s.Requests[ReqConfig], want)
		}
	}
}

// TestLatencyBuckets checks the bucket boundaries: an observation equal
// to a bound is in its bucket; above the last bound, in +Inf.
func TestLatencyBuckets(t *testing.T) {
	var l latencyHist
	for _, d := range []time.Duration{0, 50 * time.Microsecond, 50*time.Microsecond + 1, time.Millisecond, time.Second, 2 * time.Second} {
		l.observe(int64(d))
	}
	h := l.snapshot()
	want := make([]uint64, len(latencyBounds)+1)
	want[0], want[1], want[4], want[len(latencyBounds)-1], want[len(latencyBounds)] = 2, 1, 1, 1, 1
	if !cmp.Equal(h.Counts, want) || h.Count != 6 || fmt.Sprint(h.Sum) != fmt.Sprint((3*time.Second+100*time.Microsecond+time.Millisecond+1).Seconds()) {
		t.Fatalf("histogram %+v, want counts %v", h, want)
	}
	if h.Bounds[0] != 50e-6 || h.Bounds[len(h.Bounds)-1] != 1 {
		t.Fatalf("bounds %v", h.Bounds)
	}
	for i, name := range []string{AoECommandName(ReqMacMask), ATAOpName(ATACheckPower), LatencyOpName(LatencyOther), AoEErrorName(int(aoe.ErrorTargetReserved)), ATAOpName(NumATAOps)} {
		if want := []string{"mac-mask", "check-power", "other", "target-reserved", ""}[i]; name != want {
			t.Errorf("name %d: %q, want %q", i, name, want)
		}
	}
}

// BenchmarkRecord is what counting costs a request.
func BenchmarkRecord(b *testing.B) {
	h, _ := newTestHandler(b, Config{})
	for i := range 8 {
		h.inits.lookup(aoe.MAC{0x02, 0, 0, 0, 0, byte(i + 1)})
	}
	a := acct{src: hostA, v: Reply, cmd: ReqATA, op: ATARead, bytes: 1024}
	now := mono()
	b.ReportAllocs()
	for b.Loop() {
		h.record(&a, now, now+100e3)
	}
}
