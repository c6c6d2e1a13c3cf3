package initiatortest

import (
	"bytes"
	"errors"
	"net"
	"slices"
	"sync"

	"github.com/aoetarget/aoetarget/aoe"
)

// maskMax is the size of the Mac Mask List, as in vblade.
const maskMax = 32

// Target is a small fake AoE target that serves a byte slice, for tests. It
// answers Query Config (all five sub-commands), IDENTIFY DEVICE, READ and
// WRITE SECTORS (EXT), FLUSH CACHE (EXT), Mac Mask List and Reserve/Release
// roughly as vblade does: a non-empty mask list silently drops frames from
// other sources, a reservation refuses ATA commands other than IDENTIFY
// from other sources with AoE error 6, a sector count above the advertised
// one gets AoE error 2, and an address past the end gets ATA status ERR
// with IDNF. It is not the real target and checks far less.
//
// Set the exported fields before Serve; change them afterwards only through
// the methods.
type Target struct {
	Major uint16
	Minor uint8
	MAC   aoe.MAC
	// Disk is the exported disk; its length should be a multiple of 512.
	Disk []byte
	// BufferCount is advertised in Query Config replies; 0 means 16.
	BufferCount uint16
	// MTU sets the advertised sector count, (MTU-36)/512; 0 means 1500.
	MTU int
	// Identity is the IDENTIFY DEVICE reply; a zero Sectors is set from
	// len(Disk).
	Identity aoe.Identity

	// Intercept, if set, is called for every frame the target receives,
	// with the frames it would send in reply (none or one, each its own
	// slice), and returns the frames to send instead: tests use it to
	// record requests and to drop, delay, duplicate or forge replies. It
	// runs on the Serve goroutine; req.Arg is valid only during the call.
	Intercept func(req aoe.Frame, replies [][]byte) [][]byte

	mu      sync.Mutex
	config  []byte
	mask    []aoe.MAC
	reserve []aoe.MAC
}

// SetConfig sets the config string.
func (t *Target) SetConfig(s string) {
	t.mu.Lock()
	t.config = []byte(s)
	t.mu.Unlock()
}

// Config returns the config string.
func (t *Target) Config() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.config)
}

// Mask returns a copy of the Mac Mask List.
func (t *Target) Mask() []aoe.MAC {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.mask)
}

// Reservation returns a copy of the reserve list.
func (t *Target) Reservation() []aoe.MAC {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.reserve)
}

// Serve answers the requests that arrive on conn until conn is closed;
// it then returns nil. Other read errors are returned.
func (t *Target) Serve(conn net.PacketConn) error { return Serve(conn, t) }

// Serve answers the requests that arrive on conn for any of the targets, as
// if they shared one Ethernet segment, until conn is closed; it then
// returns nil. Other read errors are returned.
func Serve(conn net.PacketConn, targets ...*Target) error {
	buf := make([]byte, 65536)
	for {
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		req, err := aoe.ParseFrame(buf[:n])
		if err != nil {
			continue
		}
		for _, t := range targets {
			replies := t.Handle(req)
			if t.Intercept != nil {
				replies = t.Intercept(req, replies)
			}
			for _, r := range replies {
				if _, err := conn.WriteTo(r, nil); err != nil {
					if errors.Is(err, net.ErrClosed) {
						return nil
					}
					return err
				}
			}
		}
	}
}

func (t *Target) mtu() int {
	if t.MTU == 0 {
		return 1500
	}
	return t.MTU
}

// maxSectors is the advertised sector count.
func (t *Target) maxSectors() int {
	return min(255, (t.mtu()-aoe.FrameHeaderLen-aoe.ATAArgLen)/aoe.SectorSize)
}

// Handle returns the replies of the target to the request req: none, or
// one frame.
func (t *Target) Handle(req aoe.Frame) [][]byte {
	h := req.Header
	if h.Response() || !h.Addressed(t.Major, t.Minor) ||
		(req.Dst != t.MAC && !req.Dst.IsBroadcast()) {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.mask) > 0 && !slices.Contains(t.mask, req.Src) {
		return nil
	}
	if h.Version != aoe.Version {
		return [][]byte{t.reply(req, aoe.ErrorUnsupportedVersion, req.Arg)}
	}
	var arg []byte
	var err error
	switch h.Command {
	case aoe.CommandQueryConfig:
		arg, err = t.queryConfig(req)
		if arg == nil && err == nil {
			return nil // a test that does not match
		}
	case aoe.CommandATA:
		arg, err = t.ata(req)
	case aoe.CommandMacMask:
		arg, err = t.macMask(req)
	case aoe.CommandReserve:
		arg, err = t.reserveRelease(req)
	default:
		err = aoe.ErrorUnrecognizedCommand
	}
	if err != nil {
		var e aoe.Error
		if !errors.As(err, &e) {
			e = aoe.ErrorBadArgument
		}
		if arg == nil {
			arg = req.Arg
		}
		return [][]byte{t.reply(req, e, arg)}
	}
	return [][]byte{t.reply(req, 0, arg)}
}

func (t *Target) reply(req aoe.Frame, e aoe.Error, arg []byte) []byte {
	h := req.Header
	h.Flags |= aoe.FlagResponse
	h.Version = aoe.Version
	if e != 0 {
		h.Flags |= aoe.FlagError
		h.Error = e
	}
	if req.Header.IsBroadcast() {
		h.Major, h.Minor = t.Major, t.Minor
	}
	f := aoe.Frame{Dst: req.Src, Src: t.MAC, Header: h, Arg: arg}
	b, _ := f.MarshalBinary()
	return b
}

func (t *Target) configArg(cmd aoe.ConfigCommand) []byte {
	bc := t.BufferCount
	if bc == 0 {
		bc = 16
	}
	b, _ := aoe.Config{
		BufferCount:     bc,
		FirmwareVersion: 0x4019,
		SectorCount:     uint8(t.maxSectors()),
		Version:         aoe.Version,
		Command:         cmd,
		String:          t.config,
	}.MarshalBinary()
	return b
}

func (t *Target) queryConfig(req aoe.Frame) ([]byte, error) {
	c, err := aoe.ParseConfig(req.Arg)
	if err != nil {
		return nil, err
	}
	switch c.Command {
	case aoe.ConfigTest:
		if !bytes.Equal(c.String, t.config) {
			return nil, nil
		}
	case aoe.ConfigTestPrefix:
		if !bytes.HasPrefix(t.config, c.String) {
			return nil, nil
		}
	case aoe.ConfigSet:
		if len(t.config) > 0 && !bytes.Equal(c.String, t.config) {
			return t.configArg(c.Command), aoe.ErrorConfigStringPresent
		}
		t.config = bytes.Clone(c.String)
	case aoe.ConfigForceSet:
		t.config = bytes.Clone(c.String)
	}
	return t.configArg(c.Command), nil
}

func (t *Target) ata(req aoe.Frame) ([]byte, error) {
	a, err := aoe.ParseATA(req.Arg)
	if err != nil {
		return nil, err
	}
	if a.CmdStatus != aoe.ATAIdentifyDevice && len(t.reserve) > 0 && !slices.Contains(t.reserve, req.Src) {
		return nil, aoe.ErrorTargetReserved
	}
	if int(a.SectorCount) > t.maxSectors() {
		return nil, aoe.ErrorBadArgument
	}
	r := aoe.ATA{Flags: a.Flags, SectorCount: a.SectorCount, CmdStatus: aoe.ATAStatusDRDY, LBA: a.LBA}
	fail := func(e uint8) ([]byte, error) {
		r.CmdStatus = aoe.ATAStatusDRDY | aoe.ATAStatusERR
		r.ErrFeature = e
		return r.MarshalBinary()
	}
	n := int(a.SectorCount) * aoe.SectorSize
	switch a.CmdStatus {
	case aoe.ATAIdentifyDevice:
		id := t.Identity
		if id.Sectors == 0 {
			id.Sectors = uint64(len(t.Disk) / aoe.SectorSize)
		}
		r.Data = make([]byte, aoe.IdentifyLen)
		id.Put(r.Data)
	case aoe.ATAReadSectors, aoe.ATAReadSectorsExt, aoe.ATAWriteSectors, aoe.ATAWriteSectorsExt:
		lba := a.LBA
		if !a.Extended() {
			lba &= aoe.MaxLBA28
		}
		write := a.CmdStatus == aoe.ATAWriteSectors || a.CmdStatus == aoe.ATAWriteSectorsExt
		if write && len(a.Data) < n {
			return nil, aoe.ErrorBadArgument
		}
		off := lba * aoe.SectorSize
		if off > uint64(len(t.Disk)) || uint64(len(t.Disk))-off < uint64(n) {
			return fail(aoe.ATAErrorIDNF)
		}
		if write {
			copy(t.Disk[off:], a.Data[:n])
		} else {
			r.Data = t.Disk[off : off+uint64(n)]
		}
	case aoe.ATAFlushCache, aoe.ATAFlushCacheExt:
	default:
		return fail(aoe.ATAErrorABRT)
	}
	return r.MarshalBinary()
}

func (t *Target) macMask(req aoe.Frame) ([]byte, error) {
	m, err := aoe.ParseMacMask(req.Arg)
	if err != nil {
		return nil, err
	}
	var r aoe.MacMask
	switch m.Command {
	case aoe.MaskRead:
	case aoe.MaskEdit:
	edit:
		for i, d := range m.Directives {
			switch d.Command {
			case aoe.DirectiveNone:
			case aoe.DirectiveAdd:
				if slices.Contains(t.mask, d.MAC) {
					continue
				}
				if len(t.mask) == maskMax {
					r.Error = aoe.MaskErrorListFull
				} else {
					t.mask = append(t.mask, d.MAC)
				}
			case aoe.DirectiveDelete:
				t.mask = slices.DeleteFunc(t.mask, func(m aoe.MAC) bool { return m == d.MAC })
			default:
				r.Error = aoe.MaskErrorBadDirective
			}
			if r.Error != aoe.MaskErrorNone {
				r.Directives = m.Directives[:i]
				break edit
			}
		}
	default:
		return nil, aoe.ErrorBadArgument
	}
	r.Command = m.Command
	if r.Error == aoe.MaskErrorNone {
		for _, mac := range t.mask {
			r.Directives = append(r.Directives, aoe.Directive{Command: aoe.DirectiveAdd, MAC: mac})
		}
	}
	return r.MarshalBinary()
}

func (t *Target) reserveRelease(req aoe.Frame) ([]byte, error) {
	r, err := aoe.ParseReserve(req.Arg)
	if err != nil {
		return nil, err
	}
	switch r.Command {
	case aoe.ReserveRead:
	case aoe.ReserveSet:
		if len(t.reserve) > 0 && !slices.Contains(t.reserve, req.Src) {
			return nil, aoe.ErrorTargetReserved
		}
		t.reserve = slices.Clone(r.MACs)
	case aoe.ReserveForceSet:
		t.reserve = slices.Clone(r.MACs)
	default:
		return nil, aoe.ErrorBadArgument
	}
	return aoe.Reserve{Command: r.Command, MACs: t.reserve}.MarshalBinary()
}
