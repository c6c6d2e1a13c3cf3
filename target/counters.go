package target

import (
	"bytes"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aoetarget/aoetarget/aoe"
)

// The handler counts what it does per initiator (source MAC) in a table
// of fixed capacity whose entries are sets of atomic counters. The
// per-frame path only finds the entry (a scan of the published entries,
// no lock) and adds to a few counters; the snapshot functions
// (Initiators, Stats, CommitSizes) add them up. A request is counted
// once, when its reply is handed to the socket or it is dropped; for a
// request given to Handle, TryHandle or HandleUnavailable, before they
// return.

// MaxInitiators is the capacity of a Handler's initiator table: further
// source MACs count under the "other" entry (MAC zero).
const MaxInitiators = 64

// Indexes of InitiatorStats.Requests: the AoE command of a request.
const (
	ReqATA     = iota // Issue ATA Command
	ReqConfig         // Query Config Information
	ReqMacMask        // Mac Mask List
	ReqReserve        // Reserve/Release
	ReqOther          // any other command code (answered with an error)

	// NumAoECommands is the length of InitiatorStats.Requests.
	NumAoECommands
)

// Indexes of InitiatorStats.ATA: the ATA command of a request.
const (
	ATARead       = iota // READ SECTORS (EXT)
	ATAWrite             // WRITE SECTORS (EXT)
	ATAIdentify          // IDENTIFY DEVICE
	ATAFlush             // FLUSH CACHE (EXT)
	ATACheckPower        // CHECK POWER MODE
	ATAOther             // any other ATA command (aborted)

	// NumATAOps is the length of InitiatorStats.ATA.
	NumATAOps
)

// Indexes of InitiatorStats.Latency.
const (
	LatencyRead  = iota // ATA reads
	LatencyWrite        // ATA writes
	LatencyOther        // every other reply

	// NumLatencyOps is the length of InitiatorStats.Latency.
	NumLatencyOps
)

// NumAoEErrors is the length of InitiatorStats.AoEErrorsByCode: index i
// counts AoE error code i (aoe.ErrorUnrecognizedCommand to
// aoe.ErrorTargetReserved), index 0 any other code.
const NumAoEErrors = int(aoe.ErrorTargetReserved) + 1

var (
	aoeCommandNames = [NumAoECommands]string{"ata", "config", "mac-mask", "reserve", "other"}
	ataOpNames      = [NumATAOps]string{"read", "write", "identify", "flush", "check-power", "other"}
	latencyOpNames  = [NumLatencyOps]string{"read", "write", "other"}
	aoeErrorNames   = [NumAoEErrors]string{"other", "unrecognized-command", "bad-argument", "device-unavailable",
		"config-string-present", "unsupported-version", "target-reserved"}
)

func name(names []string, i int) string {
	if i < 0 || i >= len(names) {
		return ""
	}
	return names[i]
}

// AoECommandName returns the name of index i of InitiatorStats.Requests,
// for labels: "ata", "config", "mac-mask", "reserve", "other"; "" if i is
// out of range.
func AoECommandName(i int) string { return name(aoeCommandNames[:], i) }

// ATAOpName returns the name of index i of InitiatorStats.ATA, for
// labels: "read", "write", "identify", "flush", "check-power", "other"; ""
// if i is out of range.
func ATAOpName(i int) string { return name(ataOpNames[:], i) }

// LatencyOpName returns the name of index i of InitiatorStats.Latency, for
// labels: "read", "write", "other"; "" if i is out of range.
func LatencyOpName(i int) string { return name(latencyOpNames[:], i) }

// AoEErrorName returns the name of index i of
// InitiatorStats.AoEErrorsByCode, for labels: "bad-argument",
// "target-reserved" and so on, "other" for 0; "" if i is out of range.
func AoEErrorName(i int) string { return name(aoeErrorNames[:], i) }

// Histogram is a snapshot of a histogram with fixed buckets.
type Histogram struct {
	// Bounds are the buckets' upper bounds (inclusive, ascending; in
	// seconds for latencies), without the last bucket's +Inf. The slice
	// is shared: do not modify it.
	Bounds []float64
	// Counts are the observations per bucket, not cumulative: Counts[i]
	// is the number in (Bounds[i-1], Bounds[i]], and Counts[len(Bounds)]
	// the number above the last bound.
	Counts []uint64
	// Count is the number of observations (the sum of Counts).
	Count uint64
	// Sum is the sum of the observations (seconds for latencies).
	Sum float64
}

// InitiatorStats is what a Handler counted for one initiator (source MAC).
// Every request frame counts once: in Requests if it was answered, in
// Dropped if it was not.
type InitiatorStats struct {
	// MAC is the initiator's address; the zero MAC is the "other" entry:
	// frames from further MACs once the table is full (MaxInitiators),
	// and frames without a usable source (too short to have one, or from
	// the zero MAC).
	MAC aoe.MAC
	// FirstSeen is when the first frame from MAC was counted. LastSeen
	// is when the latest frame was received by a Server's receive loop
	// (to the batch); frames given to Handle directly do not move it, so
	// it is at least FirstSeen.
	FirstSeen, LastSeen time.Time
	// Requests counts the answered requests by AoE command (ReqATA...),
	// including those answered with an error.
	Requests [NumAoECommands]uint64
	// ATA counts the ATA commands run, by op (ATARead...); an ATA
	// request refused before it ran (a bad argument, a reservation)
	// counts in Requests[ReqATA] only.
	ATA [NumATAOps]uint64
	// ReadBytes and WriteBytes count the data of successful reads and
	// writes.
	ReadBytes, WriteBytes uint64
	// ATAErrors counts the replies with the ATA status ERR bit, and
	// ATAErrorsByOp the same by ATA op.
	ATAErrors     uint64
	ATAErrorsByOp [NumATAOps]uint64
	// AoEErrors counts the replies with the AoE E flag, and
	// AoEErrorsByCode the same by error code (see NumAoEErrors).
	AoEErrors       uint64
	AoEErrorsByCode [NumAoEErrors]uint64
	// Dropped counts the frames dropped without a reply, by verdict;
	// Dropped[Reply] is always 0.
	Dropped [NumVerdicts]uint64
	// Reserved counts the requests refused because another initiator
	// holds the reservation (AoE error aoe.ErrorTargetReserved: ATA
	// commands, and Reserve/Release set commands, of an initiator not on
	// the reserve list). They are in AoEErrors too.
	Reserved uint64
	// Latency holds, by op (LatencyRead...), the time from a request's
	// receipt by a Server's receive loop to its reply being handed to
	// the socket. Requests given to Handle directly are not timed.
	Latency [NumLatencyOps]Histogram
}

// Initiators returns a snapshot of the per-initiator counters, sorted by
// MAC (so the "other" entry, if it was used, comes first).
func (h *Handler) Initiators() []InitiatorStats {
	t := &h.inits
	n := int(t.n.Load())
	out := make([]InitiatorStats, 0, n+1)
	if t.other.first.Load() != 0 {
		out = append(out, t.other.snapshot())
	}
	for _, e := range t.entries[:n] {
		out = append(out, e.snapshot())
	}
	slices.SortFunc(out, func(a, b InitiatorStats) int { return bytes.Compare(a.MAC[:], b.MAC[:]) })
	return out
}

// InFlight returns the number of requests a Server received for the
// export and has not answered (or dropped) yet: the requests queued for
// or in the store. Requests given to Handle directly do not count.
func (h *Handler) InFlight() int64 { return max(0, h.inflight.Load()) }

// CommitSizes returns a snapshot of the group-commit histogram: for each
// flush done to acknowledge writes (not FLUSH CACHE commands), the number
// of write requests it acknowledged. Stats().Flushes counts every flush.
func (h *Handler) CommitSizes() Histogram { return h.commits.commitSizes() }

// Sectors returns the size of the export in 512-byte sectors.
func (h *Handler) Sectors() uint64 { return h.store.Sectors() }

// ReadOnly reports whether the export refuses writes.
func (h *Handler) ReadOnly() bool { return h.store.ReadOnly() }

// Writeback reports whether writes are acknowledged before they are
// durable (Config.Writeback).
func (h *Handler) Writeback() bool { return h.wback }

// Stats returns a snapshot of the handler's counters, the sums over the
// initiators and the engine's own counters; its fields do not change
// after the call: call Stats again for newer values.
func (h *Handler) Stats() *Stats {
	s := new(Stats)
	for _, c := range [...]struct{ dst, src *atomic.Uint64 }{
		{&s.Flushes, &h.stats.Flushes},
		{&s.Merged, &h.stats.Merged},
		{&s.StalledIO, &h.stats.StalledIO},
		{&s.ReadIOs, &h.stats.ReadIOs},
		{&s.WriteIOs, &h.stats.WriteIOs},
		{&s.IOErrors, &h.stats.IOErrors},
	} {
		c.dst.Store(c.src.Load())
	}
	for _, in := range h.Initiators() {
		var replies uint64
		for _, n := range in.Requests {
			replies += n
		}
		s.Verdicts[Reply].Add(replies)
		for v := Reply + 1; v < NumVerdicts; v++ {
			s.Verdicts[v].Add(in.Dropped[v])
		}
		s.Reads.Add(in.ATA[ATARead] - in.ATAErrorsByOp[ATARead])
		s.Writes.Add(in.ATA[ATAWrite] - in.ATAErrorsByOp[ATAWrite])
		s.ReadBytes.Add(in.ReadBytes)
		s.WriteBytes.Add(in.WriteBytes)
		s.ATAErrors.Add(in.ATAErrors)
		s.AoEErrors.Add(in.AoEErrors)
		// A config query that did not match is dropped, but it was a
		// config request all the same.
		s.ConfigReqs.Add(in.Requests[ReqConfig] + in.Dropped[DropNoMatch])
		s.MaskReqs.Add(in.Requests[ReqMacMask])
		s.ReserveReqs.Add(in.Requests[ReqReserve])
	}
	return s
}

// epoch is the reference of mono: time.Since of a time with a monotonic
// reading costs one clock read, time.Now two.
var epoch = time.Now()

// mono returns the monotonic time in nanoseconds since epoch, at least 1
// (0 means "no time").
func mono() int64 { return int64(time.Since(epoch)) + 1 }

// wall converts a mono time to a time.Time without monotonic reading.
func wall(t int64) time.Time {
	if t == 0 {
		return time.Time{}
	}
	return epoch.Add(time.Duration(t - 1)).Round(0)
}

// noOp is acct.op for a request that ran no ATA command.
const noOp = 0xff

// acct is what one request did, for the counters: handleOp (and
// complete) fill it in, and record counts it, once, when the reply is
// handed to the socket or the request is dropped.
type acct struct {
	src    aoe.MAC
	v      Verdict
	cmd    uint8     // ReqATA...
	op     uint8     // ATARead..., noOp if no ATA command ran
	ataErr bool      // the reply has the ATA ERR bit
	aoeErr aoe.Error // the reply's AoE error code, 0 for none
	bytes  uint32    // data read or written, if it succeeds
}

func cmdIndex(c aoe.Command) uint8 {
	if c <= aoe.CommandReserve {
		return uint8(c) // ReqATA... follow the command codes
	}
	return ReqOther
}

func ataOpIndex(c uint8) uint8 {
	switch c {
	case aoe.ATAReadSectors, aoe.ATAReadSectorsExt:
		return ATARead
	case aoe.ATAWriteSectors, aoe.ATAWriteSectorsExt:
		return ATAWrite
	case aoe.ATAIdentifyDevice:
		return ATAIdentify
	case aoe.ATAFlushCache, aoe.ATAFlushCacheExt:
		return ATAFlush
	case aoe.ATACheckPowerMode:
		return ATACheckPower
	}
	return ATAOther
}

// record counts the request a describes. recv is when a Server received
// it (0: given to Handle directly), sent when its reply was handed to the
// socket (0: not timed).
func (h *Handler) record(a *acct, recv, sent int64) {
	e := h.inits.lookup(a.src)
	if recv != 0 {
		for last := e.last.Load(); recv > last && !e.last.CompareAndSwap(last, recv); last = e.last.Load() {
		}
	}
	if a.v != Reply {
		e.dropped[a.v].Add(1)
		return
	}
	if a.op == noOp {
		e.reqs[a.cmd].Add(1)
	} else {
		e.ata[a.op].Add(1)
		if a.ataErr {
			e.ataErrs[a.op].Add(1)
		}
	}
	if a.aoeErr != 0 {
		i := int(a.aoeErr)
		if i >= NumAoEErrors {
			i = 0
		}
		e.aoeErrs[i].Add(1)
	}
	lat := LatencyOther
	switch a.op {
	case ATARead:
		lat = LatencyRead
		if a.bytes != 0 {
			e.readBytes.Add(uint64(a.bytes))
		}
	case ATAWrite:
		lat = LatencyWrite
		if a.bytes != 0 {
			e.writeBytes.Add(uint64(a.bytes))
		}
	}
	if sent != 0 && recv != 0 {
		e.latency[lat].observe(sent - recv)
	}
}

// latencyBounds are the latency buckets' upper bounds in nanoseconds;
// latencySeconds the same in seconds.
var (
	latencyBounds = [...]int64{50e3, 100e3, 250e3, 500e3, 1e6, 2.5e6, 5e6, 10e6, 25e6, 50e6, 100e6, 250e6, 1e9}
	latencySecs   = func() []float64 {
		s := make([]float64, len(latencyBounds))
		for i, b := range latencyBounds {
			s[i] = float64(b) / 1e9
		}
		return s
	}()
)

// latencyHist is a histogram of durations with the latencyBounds buckets.
type latencyHist struct {
	counts [len(latencyBounds) + 1]atomic.Uint64
	sum    atomic.Uint64 // nanoseconds
}

func (l *latencyHist) observe(d int64) {
	d = max(d, 0)
	i := 0
	for i < len(latencyBounds) && d > latencyBounds[i] {
		i++
	}
	l.counts[i].Add(1)
	l.sum.Add(uint64(d))
}

func (l *latencyHist) snapshot() Histogram {
	h := Histogram{Bounds: latencySecs, Counts: make([]uint64, len(l.counts))}
	for i := range l.counts {
		h.Counts[i] = l.counts[i].Load()
		h.Count += h.Counts[i]
	}
	h.Sum = float64(l.sum.Load()) / 1e9
	return h
}

// commitBounds are the group-commit histogram's bounds (see committer).
var (
	commitBounds = [...]uint64{1, 2, 4, 8, 16, 32, 64, 128}
	commitFloats = []float64{1, 2, 4, 8, 16, 32, 64, 128}
)

// initCounters is the counters of one source MAC.
type initCounters struct {
	mac         aoe.MAC
	first, last atomic.Int64                  // mono
	reqs        [NumAoECommands]atomic.Uint64 // answered requests that ran no ATA command
	ata         [NumATAOps]atomic.Uint64
	ataErrs     [NumATAOps]atomic.Uint64
	aoeErrs     [NumAoEErrors]atomic.Uint64
	dropped     [NumVerdicts]atomic.Uint64
	readBytes   atomic.Uint64
	writeBytes  atomic.Uint64
	latency     [NumLatencyOps]latencyHist
}

func (e *initCounters) snapshot() InitiatorStats {
	s := InitiatorStats{MAC: e.mac, ReadBytes: e.readBytes.Load(), WriteBytes: e.writeBytes.Load()}
	first, last := e.first.Load(), e.last.Load()
	s.FirstSeen, s.LastSeen = wall(first), wall(max(first, last))
	for i := range e.reqs {
		s.Requests[i] = e.reqs[i].Load()
	}
	for i := range e.ata {
		// The error first: record counts it after the command, so
		// that ATAErrorsByOp[i] <= ATA[i] holds in every snapshot.
		s.ATAErrorsByOp[i] = e.ataErrs[i].Load()
		s.ATAErrors += s.ATAErrorsByOp[i]
		s.ATA[i] = e.ata[i].Load()
		s.Requests[ReqATA] += s.ATA[i]
	}
	for i := range e.aoeErrs {
		s.AoEErrorsByCode[i] = e.aoeErrs[i].Load()
		s.AoEErrors += s.AoEErrorsByCode[i]
	}
	s.Reserved = s.AoEErrorsByCode[aoe.ErrorTargetReserved]
	for i := range e.dropped {
		s.Dropped[i] = e.dropped[i].Load()
	}
	for i := range e.latency {
		s.Latency[i] = e.latency[i].snapshot()
	}
	return s
}

// initiatorTable maps source MACs to their counters. Entries are only
// added, under mu: each is written before n covers it, so lookups scan
// the first n without a lock.
type initiatorTable struct {
	n       atomic.Int32
	keys    [MaxInitiators]uint64 // the MACs as numbers; never 0
	entries [MaxInitiators]*initCounters
	other   initCounters // MAC zero: the table is full, or no source
	mu      sync.Mutex
}

func macKey(m aoe.MAC) uint64 {
	return uint64(m[0])<<40 | uint64(m[1])<<32 | uint64(m[2])<<24 | uint64(m[3])<<16 | uint64(m[4])<<8 | uint64(m[5])
}

// lookup returns the entry of mac, adding it if there is room.
func (t *initiatorTable) lookup(mac aoe.MAC) *initCounters {
	k := macKey(mac)
	if k == 0 {
		return t.otherEntry()
	}
	n := int(t.n.Load())
	for i, key := range t.keys[:n] {
		if key == k {
			return t.entries[i]
		}
	}
	if n == MaxInitiators {
		return t.otherEntry()
	}
	return t.add(mac, k)
}

func (t *initiatorTable) otherEntry() *initCounters {
	if t.other.first.Load() == 0 {
		t.other.first.CompareAndSwap(0, mono())
	}
	return &t.other
}

func (t *initiatorTable) add(mac aoe.MAC, k uint64) *initCounters {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := int(t.n.Load())
	for i, key := range t.keys[:n] {
		if key == k { // added meanwhile
			return t.entries[i]
		}
	}
	if n == MaxInitiators {
		return t.otherEntry()
	}
	e := &initCounters{mac: mac}
	e.first.Store(mono())
	t.keys[n], t.entries[n] = k, e
	t.n.Store(int32(n + 1))
	return e
}
