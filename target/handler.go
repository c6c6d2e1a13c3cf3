package target

import (
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/aoetarget/aoetarget/aoe"
)

// Store is the backing disk of an export, as package blockstore provides
// it. ReadAt and WriteAt take byte offsets within the export and must be
// safe for concurrent use.
type Store interface {
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	// Flush makes every completed write durable (fdatasync).
	Flush() error
	// Sectors is the size of the export in 512-byte sectors.
	Sectors() uint64
	// ReadOnly reports whether writes are refused.
	ReadOnly() bool
	// Durable reports whether WriteAt returns only once data is stable.
	Durable() bool
}

// VectorStore is implemented by stores that can read into or write from
// several buffers with one call (blockstore.File: preadv, pwritev). The
// engine merges requests for adjacent sectors into one such call;
// without it, they are done one by one.
type VectorStore interface {
	// ReadvAt reads into each buffer of bufs in turn from byte offset
	// off, as ReadAt would into their concatenation.
	ReadvAt(bufs [][]byte, off int64) (int, error)
	// WritevAt writes each buffer of bufs in turn from byte offset off,
	// as WriteAt would write their concatenation.
	WritevAt(bufs [][]byte, off int64) (int, error)
}

// NoWaitReader is implemented by stores that can read without blocking
// when the data is cached (blockstore.File with RWF_NOWAIT, and
// blockstore.Memory); ReadAtNoWait fails with an error wrapping
// blockstore.ErrWouldBlock when the read would wait for the disk.
type NoWaitReader interface {
	ReadAtNoWait(p []byte, off int64) (int, error)
}

// NoWaitVectorReader is implemented by stores that can read a range
// into several buffers without blocking when it is all cached
// (blockstore.File): the engine then serves adjacent cached reads with one
// system call.
type NoWaitVectorReader interface {
	ReadvAtNoWait(bufs [][]byte, off int64) (int, error)
}

// CacheProber is implemented by stores that can tell whether a range is
// in the page cache without reading it or starting a read from the disk
// (blockstore.File, with cachestat(2)): a read that does not wait and
// misses starts the disk read on its own, with its own device
// notification, where the engine's batch of reads shares one. The error
// wraps errors.ErrUnsupported when the store cannot tell.
type CacheProber interface {
	Cached(off int64, n int) (bool, error)
}

// Limits of the per-export AoE state, as vblade has them.
const (
	// MaxMasks is the size of the Mac Mask List (AoEr11, Section 3.3).
	MaxMasks = 32
	// MaxReserve is the size of the reserve list; the wire's NMacs is a byte.
	MaxReserve = 255
)

// FirmwareVersion is the firmware version reported in Query Config replies.
const FirmwareVersion = 0x0001

// DefaultBufferCount is the buffer count advertised when Config leaves it 0,
// vblade's default.
const DefaultBufferCount = 16

// Config configures a Handler.
type Config struct {
	// Major and Minor are the export's shelf and slot.
	Major uint16
	Minor uint8
	// BufferCount is the advertised number of outstanding requests; 0
	// means DefaultBufferCount.
	BufferCount uint16
	// Writeback acknowledges writes before they are durable. The Linux
	// initiator never flushes, so a crash of the target host can lose
	// writes that md already counted as mirrored.
	Writeback bool
	// Masks is the initial Mac Mask List (vblade's -m).
	Masks []aoe.MAC
	// ConfigString is the initial config string.
	ConfigString []byte
	// Identity strings for IDENTIFY DEVICE; empty fields get defaults
	// (model "aoetarget", a serial unique per host and shelf.slot).
	Model, Serial, Firmware string
	// Hostname feeds the default serial number.
	Hostname string
	// Logger receives warnings about I/O errors; nil discards them.
	Logger *slog.Logger
	// OnStateChange, if set, is called after the config string, the mask
	// list or the reserve list changed over the wire, with the new state.
	// It is called with the handler's state lock held: it must not call
	// back into the Handler.
	OnStateChange func(State)
}

// State is the AoE state of an export that the wire can change.
type State struct {
	ConfigString []byte
	Masks        []aoe.MAC
	Reserve      []aoe.MAC
}

// Verdict says what became of a request frame.
type Verdict uint8

// Verdicts. Every Drop verdict means no reply is sent.
const (
	Reply            Verdict = iota // a reply was built
	DropMalformed                   // shorter than the headers or not AoE
	DropResponse                    // the R flag is set: a reply, not a request
	DropNotAddressed                // for another shelf.slot
	DropBadSource                   // source MAC is a group or zero address
	DropMasked                      // source MAC not on a non-empty mask list
	DropNoMatch                     // config test or test-prefix did not match

	// NumVerdicts is the number of verdicts (the length of
	// InitiatorStats.Dropped).
	NumVerdicts

	// deferred is TryHandle's internal verdict for a request that needs
	// a goroutine that may block.
	deferred = NumVerdicts     // TryHandle: the request needs Handle
	staged   = NumVerdicts + 1 // stage: the request is an ioOp
)

var verdictNames = [NumVerdicts]string{"reply", "malformed", "response", "not-addressed", "bad-source", "masked", "no-match"}

// String returns the verdict's name, as used in metrics.
func (v Verdict) String() string {
	if v < NumVerdicts {
		return verdictNames[v]
	}
	return fmt.Sprintf("Verdict(%d)", uint8(v))
}

// Stats counts what a Handler did: a snapshot (see Handler.Stats). The
// counts of requests are the sums over the initiators (see
// InitiatorStats); the others are the engine's.
type Stats struct {
	Verdicts    [NumVerdicts]atomic.Uint64
	Reads       atomic.Uint64 // ATA read commands completed
	Writes      atomic.Uint64 // ATA write commands completed
	ReadBytes   atomic.Uint64
	WriteBytes  atomic.Uint64
	Flushes     atomic.Uint64 // store flushes
	Merged      atomic.Uint64 // reads and writes merged into the I/O of the request before them
	StalledIO   atomic.Uint64 // requests failed because the store stalled past the I/O deadline
	ReadIOs     atomic.Uint64 // reads of the store through io_uring (each may serve several merged requests)
	WriteIOs    atomic.Uint64 // writes to the store through io_uring
	ATAErrors   atomic.Uint64 // ATA replies with the ERR bit
	AoEErrors   atomic.Uint64 // replies with the E flag
	IOErrors    atomic.Uint64 // store read/write/flush failures
	ConfigReqs  atomic.Uint64
	MaskReqs    atomic.Uint64
	ReserveReqs atomic.Uint64
}

// Handler answers the AoE requests for one export. It is safe for
// concurrent use.
type Handler struct {
	major    uint16
	minor    uint8
	bufcnt   uint16
	wback    bool
	store    Store
	nowait   NoWaitReader // store, if it can read without blocking
	nowaitv  NoWaitVectorReader
	prober   CacheProber
	vector   VectorStore // store, if it can do vectored I/O
	log      *slog.Logger
	identity [aoe.IdentifyLen]byte
	onChange func(State)
	commits  committer

	// stats holds the engine's counters (Flushes, Merged, StalledIO,
	// ReadIOs, WriteIOs, IOErrors); the others are in inits.
	stats    Stats
	inits    initiatorTable
	inflight atomic.Int64 // requests a Server received and did not answer yet
	_        [56]byte     // inflight changes with every batch: keep mu off its cache line

	mu      sync.RWMutex // guards the fields below
	cstring []byte
	masks   []aoe.MAC
	reserve []aoe.MAC
}

// NewHandler returns a Handler for the export in cfg backed by store.
func NewHandler(cfg Config, store Store) (*Handler, error) {
	if cfg.Major >= aoe.BroadcastMajor || cfg.Minor >= aoe.BroadcastMinor {
		return nil, fmt.Errorf("target: address %d.%d is a broadcast address", cfg.Major, cfg.Minor)
	}
	if len(cfg.Masks) > MaxMasks {
		return nil, fmt.Errorf("target: %d MACs in the mask list, at most %d", len(cfg.Masks), MaxMasks)
	}
	if len(cfg.ConfigString) > aoe.MaxConfigStringLen {
		return nil, fmt.Errorf("target: config string of %d bytes, at most %d", len(cfg.ConfigString), aoe.MaxConfigStringLen)
	}
	h := &Handler{
		major:    cfg.Major,
		minor:    cfg.Minor,
		bufcnt:   cfg.BufferCount,
		wback:    cfg.Writeback,
		store:    store,
		log:      cfg.Logger,
		onChange: cfg.OnStateChange,
		cstring:  slices.Clone(cfg.ConfigString),
	}
	if h.bufcnt == 0 {
		h.bufcnt = DefaultBufferCount
	}
	h.nowait, _ = store.(NoWaitReader)
	h.nowaitv, _ = store.(NoWaitVectorReader)
	h.prober, _ = store.(CacheProber)
	h.vector, _ = store.(VectorStore)
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	for _, m := range cfg.Masks {
		if !slices.Contains(h.masks, m) {
			h.masks = append(h.masks, m)
		}
	}
	id := aoe.Identity{
		Sectors:  store.Sectors(),
		Model:    cfg.Model,
		Serial:   cfg.Serial,
		Firmware: cfg.Firmware,
	}
	if id.Model == "" {
		id.Model = "aoetarget"
	}
	if id.Firmware == "" {
		id.Firmware = "aoet1"
	}
	if id.Serial == "" {
		id.Serial = DefaultSerial(cfg.Major, cfg.Minor, cfg.Hostname)
	}
	id.Put(h.identity[:])
	return h, nil
}

// DefaultSerial returns the IDENTIFY serial number of shelf.slot on host:
// "shelf.slot:host" as vblade makes it, or, when that is longer than the 20
// characters ATA allows, "shelf.slot:" and a hash of host, so that serials
// stay unique per host and address.
func DefaultSerial(major uint16, minor uint8, host string) string {
	s := fmt.Sprintf("%d.%d:%s", major, minor, host)
	if len(s) <= 20 {
		return s
	}
	f := fnv.New32a()
	f.Write([]byte(host))
	return fmt.Sprintf("%d.%d:%08x", major, minor, f.Sum32())
}

// State returns a copy of the export's AoE state.
func (h *Handler) State() State {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.stateLocked()
}

func (h *Handler) stateLocked() State {
	return State{
		ConfigString: slices.Clone(h.cstring),
		Masks:        slices.Clone(h.masks),
		Reserve:      slices.Clone(h.reserve),
	}
}

// SetState replaces the export's AoE state, e.g. with what was persisted
// before a restart. It does not call OnStateChange.
func (h *Handler) SetState(s State) error {
	if len(s.ConfigString) > aoe.MaxConfigStringLen || len(s.Masks) > MaxMasks || len(s.Reserve) > MaxReserve {
		return errors.New("target: state exceeds the protocol's limits")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cstring = slices.Clone(s.ConfigString)
	h.masks = slices.Clone(s.Masks)
	h.reserve = slices.Clone(s.Reserve)
	return nil
}

// MaxSectors is the number of sectors one ATA command may carry on an
// interface with the given MTU: (MTU - 36) / 512, as the Linux initiator
// computes it, at most 255.
func MaxSectors(mtu int) int {
	n := (mtu - aoe.FrameHeaderLen - aoe.ATAArgLen) / aoe.SectorSize
	return max(0, min(n, 255))
}

// Port describes the interface a request arrived on.
type Port struct {
	MAC aoe.MAC // the interface's address: the reply's source
	MTU int     // the interface's MTU
}

// Handle answers the request frame req (a whole Ethernet frame) that
// arrived on port p. It builds the reply frame in resp, which must be at
// least p.MTU+aoe.EthernetHeaderLen bytes long, and returns its length
// with the Reply verdict, or 0 and the reason the request is dropped.
// resp must not overlap req. Handle may block on the store.
//
// Handle counts the request in the handler's counters (see Initiators),
// untimed: only a Server times requests, from their receipt.
//
// Replies shorter than the 60-byte Ethernet minimum are zero-padded to it:
// a real NIC pads on the wire, but virtual links (veth, tap, bridges) carry
// short frames as they are, and some initiators (aoeping) ignore frames
// under 60 bytes.
func (h *Handler) Handle(p Port, req, resp []byte) (int, Verdict) {
	var a acct
	n, v := h.handleAcct(p, req, resp, &a)
	h.record(&a, 0, 0)
	return n, v
}

// handleAcct is Handle without counting the request: it describes it in
// a, for record.
func (h *Handler) handleAcct(p Port, req, resp []byte, a *acct) (int, Verdict) {
	n, v := h.handleOp(p, req, resp, false, nil, false, false, a)
	return h.finish(resp, n, v, a)
}

// TryHandle is Handle for a goroutine that must not block on the disk: it
// answers every request that needs no storage, and reads whose data the
// store has cached, and returns ok false, having done nothing, for the
// requests that must go to Handle on a goroutine that may block (other
// reads, writes and flushes). It counts the requests it answers or drops
// as Handle does, and not those it leaves to Handle.
func (h *Handler) TryHandle(p Port, req, resp []byte) (n int, v Verdict, ok bool) {
	var a acct
	n, v = h.handleOp(p, req, resp, true, nil, false, false, &a)
	if v == deferred {
		return 0, 0, false
	}
	n, v = h.finish(resp, n, v, &a)
	h.record(&a, 0, 0)
	return n, v, true
}

// finish notes the verdict in a and pads a short reply.
func (h *Handler) finish(resp []byte, n int, v Verdict, a *acct) (int, Verdict) {
	a.v = v
	if v == Reply && n < MinFrameLen {
		clear(resp[n:MinFrameLen])
		n = MinFrameLen
	}
	return n, v
}

// MinFrameLen is the shortest Ethernet frame, without its checksum.
const MinFrameLen = 60

// HandleUnavailable is Handle for when the store cannot be used (it
// stalls): requests that need the store (reads, writes, flushes) get the
// ATA error a failed I/O gets, at once, without touching it; the others
// are answered as usual. It counts the request as Handle does.
func (h *Handler) HandleUnavailable(p Port, req, resp []byte) (int, Verdict) {
	var a acct
	n, v := h.handleUnavailable(p, req, resp, &a)
	h.record(&a, 0, 0)
	return n, v
}

// handleUnavailable is HandleUnavailable without counting the request: it
// describes it in a, for record.
func (h *Handler) handleUnavailable(p Port, req, resp []byte, a *acct) (int, Verdict) {
	n, v := h.handleOp(p, req, resp, false, nil, false, true, a)
	return h.finish(resp, n, v, a)
}

// handleOp is handle; with op non-nil, reads and writes that need the
// store are validated, their reply built as if they succeed, and left in
// op with the staged verdict (reads served from the cache first if cache
// is set).
// With unavailable set, requests that need the store fail at once.
// It describes the request in a (but for its final verdict, which finish
// or complete notes), for record.
func (h *Handler) handleOp(p Port, req, resp []byte, nowait bool, op *ioOp, cache, unavailable bool, a *acct) (int, Verdict) {
	*a = acct{op: noOp}
	f, err := aoe.ParseFrame(req)
	if err != nil {
		if len(req) >= 12 {
			copy(a.src[:], req[6:12]) // the source, if it has one
		}
		return 0, DropMalformed
	}
	a.src, a.cmd = f.Src, cmdIndex(f.Header.Command)
	if f.Header.Response() {
		return 0, DropResponse
	}
	if !f.Header.Addressed(h.major, h.minor) {
		return 0, DropNotAddressed
	}
	if f.Src.IsMulticast() || f.Src.IsZero() {
		return 0, DropBadSource
	}
	if !h.allowed(f.Src) {
		return 0, DropMasked
	}
	r := reply{h: h, port: p, req: f, buf: resp, nowait: nowait || op != nil, stage: op != nil, cache: cache,
		unavailable: unavailable, a: *a}
	n, v := h.command(&r, op)
	*a = r.a
	return n, v
}

// command answers the request r, which passed handleOp's checks.
func (h *Handler) command(r *reply, op *ioOp) (int, Verdict) {
	if r.req.Header.Version != aoe.Version {
		return r.aoeError(aoe.ErrorUnsupportedVersion), Reply
	}
	switch r.req.Header.Command {
	case aoe.CommandATA:
		n := h.ata(r)
		if r.deferred {
			return 0, deferred
		}
		if r.staged {
			if op != nil {
				*op = r.op
				op.n = n
			}
			return n, staged
		}
		return n, Reply
	case aoe.CommandQueryConfig:
		return h.config(r)
	case aoe.CommandMacMask:
		return h.macMask(r), Reply
	case aoe.CommandReserve:
		return h.reserveRelease(r), Reply
	}
	return r.aoeError(aoe.ErrorUnrecognizedCommand), Reply
}

// allowed reports whether src may talk to the export: the mask list is
// empty or holds src.
func (h *Handler) allowed(src aoe.MAC) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.masks) == 0 || slices.Contains(h.masks, src)
}

// reply builds a response to req in buf.
type reply struct {
	h      *Handler
	port   Port
	req    aoe.Frame
	buf    []byte
	nowait bool // must not block on the store (TryHandle)
	// deferred is set when nowait stopped the request: it needs Handle.
	deferred bool
	// stage: leave reads and writes that need the store to the caller
	// (stage, complete); cached reads are still served if cache is set.
	stage, cache bool
	staged       bool // the request is in op
	op           ioOp
	unavailable  bool // the store stalls: fail what needs it (HandleUnavailable)
	a            acct // what the request did, for the counters
}

// headers appends the Ethernet and AoE headers of the reply, with the given
// error code (0 for none), to r.buf[:0].
func (r *reply) headers(code aoe.Error) []byte {
	hdr := r.req.Header
	hdr.Flags = aoe.FlagResponse
	hdr.Error = 0
	if code != 0 {
		hdr.Flags |= aoe.FlagError
		hdr.Error = code
		r.a.aoeErr = code
	}
	hdr.Version = aoe.Version
	hdr.Major, hdr.Minor = r.h.major, r.h.minor
	f := aoe.Frame{Dst: r.req.Src, Src: r.port.MAC, Header: hdr}
	b, _ := f.AppendHeaders(r.buf[:0]) // version and flags are in range
	return b
}

// aoeError builds a reply with the E flag and code, echoing the request's
// argument as far as it fits, as vblade does.
func (r *reply) aoeError(code aoe.Error) int {
	b := r.headers(code)
	n := copy(r.buf[len(b):min(len(r.buf), r.port.MTU+aoe.EthernetHeaderLen)], r.req.Arg)
	return len(b) + n
}

// config answers a Query Config request (AoEr11, Section 3.2).
func (h *Handler) config(r *reply) (int, Verdict) {
	q, err := aoe.ParseConfig(r.req.Arg)
	if err != nil {
		return r.aoeError(aoe.ErrorBadArgument), Reply
	}
	h.mu.Lock()
	code := aoe.Error(0)
	switch q.Command {
	case aoe.ConfigTest:
		if !bytes.Equal(q.String, h.cstring) {
			h.mu.Unlock()
			return 0, DropNoMatch
		}
	case aoe.ConfigTestPrefix:
		if !bytes.HasPrefix(h.cstring, q.String) {
			h.mu.Unlock()
			return 0, DropNoMatch
		}
	case aoe.ConfigSet:
		if len(h.cstring) != 0 && !bytes.Equal(q.String, h.cstring) {
			code = aoe.ErrorConfigStringPresent
			break
		}
		fallthrough
	case aoe.ConfigForceSet:
		if !bytes.Equal(q.String, h.cstring) {
			h.cstring = append(h.cstring[:0], q.String...)
			h.changedLocked()
		}
	}
	c := h.configArgLocked(r.port.MTU, q.Command)
	b := r.headers(code)
	b, _ = c.AppendBinary(b) // the string is at most MaxConfigStringLen
	h.mu.Unlock()
	return len(b), Reply
}

// configArgLocked returns the export's Query Config argument. The String
// aliases h.cstring: use it under h.mu.
func (h *Handler) configArgLocked(mtu int, cmd aoe.ConfigCommand) aoe.Config {
	return aoe.Config{
		BufferCount:     h.bufcnt,
		FirmwareVersion: FirmwareVersion,
		SectorCount:     uint8(MaxSectors(mtu)),
		Version:         aoe.Version,
		Command:         cmd,
		String:          h.cstring,
	}
}

// Announcement builds, in buf, the unsolicited Query Config response a
// target sends at startup so that initiators find it without waiting for
// their next discovery: to dst (the broadcast address, or each MAC of the
// mask list) from port p, with tag 0.
func (h *Handler) Announcement(p Port, dst aoe.MAC, buf []byte) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	f := aoe.Frame{Dst: dst, Src: p.MAC, Header: aoe.Header{
		Version: aoe.Version,
		Flags:   aoe.FlagResponse,
		Major:   h.major,
		Minor:   h.minor,
		Command: aoe.CommandQueryConfig,
	}}
	b, _ := f.AppendHeaders(buf[:0])
	b, _ = h.configArgLocked(p.MTU, aoe.ConfigRead).AppendBinary(b)
	return len(b)
}

// AnnounceTo returns where announcements go: the MACs of the mask list, or
// the broadcast address when the list is empty.
func (h *Handler) AnnounceTo() []aoe.MAC {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if len(h.masks) == 0 {
		return []aoe.MAC{aoe.BroadcastMAC}
	}
	return slices.Clone(h.masks)
}

func (h *Handler) changedLocked() {
	if h.onChange != nil {
		h.onChange(h.stateLocked())
	}
}

// macMask answers a Mac Mask List request (AoEr11, Section 3.3).
func (h *Handler) macMask(r *reply) int {
	m, err := aoe.ParseMacMask(r.req.Arg)
	if err != nil || m.Command > aoe.MaskEdit {
		return r.aoeError(aoe.ErrorBadArgument)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	out := aoe.MacMask{Command: m.Command}
	if m.Command == aoe.MaskEdit {
		changed := false
	edit:
		for i, d := range m.Directives {
			switch d.Command {
			case aoe.DirectiveNone:
			case aoe.DirectiveAdd:
				if slices.Contains(h.masks, d.MAC) {
					continue
				}
				if len(h.masks) >= MaxMasks {
					out.Error, out.Directives = aoe.MaskErrorListFull, m.Directives[:i]
					break edit
				}
				h.masks = append(h.masks, d.MAC)
				changed = true
			case aoe.DirectiveDelete:
				if j := slices.Index(h.masks, d.MAC); j >= 0 {
					h.masks = slices.Delete(h.masks, j, j+1)
					changed = true
				}
			default:
				out.Error, out.Directives = aoe.MaskErrorBadDirective, m.Directives[:i]
				break edit
			}
		}
		if changed {
			h.changedLocked()
		}
	}
	if out.Error == aoe.MaskErrorNone {
		out.Directives = make([]aoe.Directive, len(h.masks))
		for i, mac := range h.masks {
			out.Directives[i] = aoe.Directive{Command: aoe.DirectiveAdd, MAC: mac}
		}
	}
	b := r.headers(0)
	b, _ = out.AppendBinary(b) // at most MaxMasks or 255 directives
	return len(b)
}

// reserveRelease answers a Reserve/Release request (AoEr11, Section 3.4).
func (h *Handler) reserveRelease(r *reply) int {
	q, err := aoe.ParseReserve(r.req.Arg)
	if err != nil || q.Command > aoe.ReserveForceSet {
		return r.aoeError(aoe.ErrorBadArgument)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch q.Command {
	case aoe.ReserveSet:
		if len(h.reserve) != 0 && !slices.Contains(h.reserve, r.req.Src) {
			out := aoe.Reserve{Command: q.Command, MACs: h.reserve}
			b := r.headers(aoe.ErrorTargetReserved)
			b, _ = out.AppendBinary(b)
			return len(b)
		}
		fallthrough
	case aoe.ReserveForceSet:
		var list []aoe.MAC
		for _, m := range q.MACs {
			if !slices.Contains(list, m) {
				list = append(list, m)
			}
		}
		if !slices.Equal(list, h.reserve) {
			h.reserve = list
			h.changedLocked()
		}
	}
	out := aoe.Reserve{Command: q.Command, MACs: h.reserve}
	b := r.headers(0)
	b, _ = out.AppendBinary(b) // at most 255 addresses
	return len(b)
}

// reserved reports whether src is locked out by a reservation.
func (h *Handler) reserved(src aoe.MAC) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.reserve) != 0 && !slices.Contains(h.reserve, src)
}
