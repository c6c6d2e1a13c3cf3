package initiator

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/aoetarget/aoetarget/aoe"
)

// Target is a target that Discover or Lookup found, or one the caller knows.
type Target struct {
	Major uint16
	Minor uint8
	// MAC is where requests go; the zero MAC means broadcast.
	MAC aoe.MAC
	// Config is the target's Query Config reply; its String is a copy.
	Config aoe.Config
}

// String returns the target's address as shelf.slot.
func (t Target) String() string { return addr(t.Major, t.Minor) }

// dst returns the destination of requests to t.
func (t Target) dst() aoe.MAC {
	if t.MAC.IsZero() {
		return aoe.BroadcastMAC
	}
	return t.MAC
}

// MaxSectors returns how many sectors one ATA frame to t carries on an
// interface with the given MTU, as the Linux initiator computes it: the
// target's sector count (0 means 2), but no more than fit in the MTU after
// the 36 bytes of headers, and 2 if none fit.
func (t Target) MaxSectors(mtu int) int {
	n := int(t.Config.SectorCount)
	if n == 0 {
		n = 2
	}
	n = min(n, (mtu-aoe.FrameHeaderLen-aoe.ATAArgLen)/aoe.SectorSize)
	if n <= 0 {
		n = 2
	}
	return n
}

// ATAError is an ATA command that the target failed: the reply's status had
// ERR, or another bit the Linux initiator treats as failure (BSY, DF, DRQ).
type ATAError struct {
	Status uint8 // the status register
	Err    uint8 // the error register (a field cannot be named Error)
}

// ataFailed is the status mask of a failed command (BSY, DF, DRQ, ERR), the
// one the Linux initiator checks.
const ataFailed = aoe.ATAStatusBSY | aoe.ATAStatusDF | aoe.ATAStatusDRQ | aoe.ATAStatusERR

// Error describes the status and error registers.
func (e *ATAError) Error() string {
	var bits []string
	for _, b := range []struct {
		v    uint8
		name string
	}{{aoe.ATAErrorABRT, "ABRT"}, {aoe.ATAErrorIDNF, "IDNF"}, {aoe.ATAErrorUNC, "UNC"}} {
		if e.Err&b.v != 0 {
			bits = append(bits, b.name)
		}
	}
	s := fmt.Sprintf("ATA status %#02x, error %#02x", e.Status, e.Err)
	if len(bits) > 0 {
		s += " (" + strings.Join(bits, " ") + ")"
	}
	return s
}

// MaskError is a Mac Mask List edit that the target refused (MError): Index
// is the directive that failed, the reply's directive count.
type MaskError struct {
	Code  aoe.MaskError
	Index int
}

// Error describes the code and the failing directive.
func (e *MaskError) Error() string {
	var what string
	switch e.Code {
	case aoe.MaskErrorUnspecified:
		what = "unspecified error"
	case aoe.MaskErrorBadDirective:
		what = "bad directive"
	case aoe.MaskErrorListFull:
		what = "mask list full"
	default:
		what = fmt.Sprintf("error %d", e.Code)
	}
	return fmt.Sprintf("initiator: mac mask directive %d: %s", e.Index, what)
}

// waitErr turns the error of batch.wait into the error of a request.
func waitErr(ctx context.Context, what string, major uint16, minor uint8, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
		return noReply(what, major, minor, ctxErr)
	}
	return err
}

// flagError returns the AoE error of a reply with the E flag, wrapped, or
// nil.
func flagError(f aoe.Frame) error {
	h := f.Header
	if h.Flags&aoe.FlagError == 0 {
		return nil
	}
	return fmt.Errorf("initiator: %v %s from %v: %w", h.Command, addr(h.Major, h.Minor), f.Src, h.Error)
}

// Do sends one request to dst with header h and argument arg and waits for
// its reply. It fills in the source address, the version and a fresh tag
// with bit 31 set, as userland tools do, and leaves the other fields of h as
// given. A reply must carry the tag, the command and h's shelf and slot
// (any, for a broadcast field) and be addressed to the request's source.
// Without a reply in time the request is sent again with a new tag, until
// ctx ends; the error then wraps ErrNoReply.
//
// The returned frame is a copy. A reply with the E flag is returned along
// with an error that wraps its aoe.Error.
func (c *Client) Do(ctx context.Context, dst aoe.MAC, h aoe.Header, arg []byte) (aoe.Frame, error) {
	if err := ctx.Err(); err != nil {
		return aoe.Frame{}, noReply(h.Command.String(), h.Major, h.Minor, err)
	}
	b := c.getBatch(1)
	cl := &b.calls[0]
	req, err := b.prepare(cl, dst, h)
	if err != nil {
		b.release()
		return aoe.Frame{}, err
	}
	if err := b.start(cl, append(req, arg...)); err != nil {
		b.abort()
		return aoe.Frame{}, err
	}
	r, err := b.wait(ctx)
	if err != nil {
		b.abort()
		return aoe.Frame{}, waitErr(ctx, h.Command.String(), h.Major, h.Minor, err)
	}
	b.release()
	f, _ := aoe.ParseFrame(r.b) // parsed by the reader already
	f.Arg = bytes.Clone(f.Arg)
	c.putBuf(r.b)
	return f, flagError(f)
}

// Discover broadcasts a Query Config read for major.minor (either may be
// the broadcast address) and collects the replies until ctx ends. The query
// is repeated after the timeout, then after twice as long, and so on. The
// targets come back sorted by address and MAC, one per MAC and address;
// replies with the E flag are ignored. Without any target the error wraps
// ErrNoReply.
func (c *Client) Discover(ctx context.Context, major uint16, minor uint8) ([]Target, error) {
	if err := ctx.Err(); err != nil {
		return nil, noReply("discover", major, minor, err)
	}
	b := c.getBatch(1)
	b.done = make(chan reply, 64) // this batch is never released: abort below
	defer b.abort()
	cl := &b.calls[0]
	h := aoe.Header{Major: major, Minor: minor, Command: aoe.CommandQueryConfig}
	req, err := b.prepare(cl, aoe.BroadcastMAC, h)
	if err != nil {
		return nil, err
	}
	cl.multi = true
	req, err = aoe.Config{Command: aoe.ConfigRead}.AppendBinary(req)
	if err != nil {
		return nil, err
	}
	if err := b.start(cl, req); err != nil {
		return nil, err
	}

	type key struct {
		mac   aoe.MAC
		major uint16
		minor uint8
	}
	seen := make(map[key]bool)
	var ts []Target
	for {
		r, err := b.wait(ctx)
		if err != nil {
			if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				break
			}
			return ts, err
		}
		if t, ok := parseTarget(r.b); ok {
			k := key{t.MAC, t.Major, t.Minor}
			if !seen[k] {
				seen[k] = true
				ts = append(ts, t)
			}
		}
		c.putBuf(r.b)
	}
	if len(ts) == 0 {
		return nil, noReply("discover", major, minor, ctx.Err())
	}
	slices.SortFunc(ts, func(a, b Target) int {
		return cmp.Or(cmp.Compare(a.Major, b.Major), cmp.Compare(a.Minor, b.Minor),
			bytes.Compare(a.MAC[:], b.MAC[:]))
	})
	return ts, nil
}

// parseTarget returns the target that sent the Query Config reply in b.
func parseTarget(b []byte) (Target, bool) {
	f, err := aoe.ParseFrame(b)
	if err != nil || f.Header.Flags&aoe.FlagError != 0 {
		return Target{}, false
	}
	cfg, err := aoe.ParseConfig(f.Arg)
	if err != nil {
		return Target{}, false
	}
	cfg.String = bytes.Clone(cfg.String)
	return Target{Major: f.Header.Major, Minor: f.Header.Minor, MAC: f.Src, Config: cfg}, true
}

// Lookup broadcasts a Query Config read for major.minor and returns the
// first target that answers, resending until ctx ends.
func (c *Client) Lookup(ctx context.Context, major uint16, minor uint8) (Target, error) {
	h := aoe.Header{Major: major, Minor: minor, Command: aoe.CommandQueryConfig}
	arg, _ := aoe.Config{Command: aoe.ConfigRead}.MarshalBinary()
	f, err := c.Do(ctx, aoe.BroadcastMAC, h, arg)
	if err != nil {
		return Target{}, err
	}
	cfg, err := aoe.ParseConfig(f.Arg)
	if err != nil {
		return Target{}, fmt.Errorf("initiator: config reply from %v: %w", f.Src, err)
	}
	return Target{Major: f.Header.Major, Minor: f.Header.Minor, MAC: f.Src, Config: cfg}, nil
}

// ATA issues one ATA command to t and returns the reply's ATA argument. For
// a command without the W flag the reply's Data is a copy of the
// a.SectorCount sectors it carries (all it carries, if fewer); for a write
// it is nil. A reply whose status shows failure returns the argument along
// with an error that wraps an *ATAError (see errors.As).
func (c *Client) ATA(ctx context.Context, t Target, a aoe.ATA) (aoe.ATA, error) {
	arg, err := a.MarshalBinary()
	if err != nil {
		return aoe.ATA{}, err
	}
	h := aoe.Header{Major: t.Major, Minor: t.Minor, Command: aoe.CommandATA}
	f, err := c.Do(ctx, t.dst(), h, arg)
	if err != nil {
		return aoe.ATA{}, err
	}
	r, err := aoe.ParseATA(f.Arg)
	if err != nil {
		return aoe.ATA{}, fmt.Errorf("initiator: ATA reply from %v: %w", f.Src, err)
	}
	if a.Write() {
		r.Data = nil
	} else if n := int(a.SectorCount) * aoe.SectorSize; len(r.Data) > n {
		r.Data = r.Data[:n:n]
	}
	if r.CmdStatus&ataFailed != 0 {
		return r, fmt.Errorf("initiator: ATA command %#02x to %s: %w",
			a.CmdStatus, t, &ATAError{Status: r.CmdStatus, Err: r.ErrFeature})
	}
	return r, nil
}

// Identify sends IDENTIFY DEVICE to t and returns the identity it reports
// and the 512-byte page.
func (c *Client) Identify(ctx context.Context, t Target) (aoe.Identity, []byte, error) {
	r, err := c.ATA(ctx, t, aoe.ATA{
		SectorCount: 1,
		CmdStatus:   aoe.ATAIdentifyDevice,
		LBA:         0xa0 << 24, // device register, as the Linux initiator sends it
	})
	if err != nil {
		return aoe.Identity{}, nil, err
	}
	id, ok := aoe.ParseIdentity(r.Data)
	if !ok {
		return aoe.Identity{}, nil, fmt.Errorf("initiator: IDENTIFY reply carries %d bytes, need %d: %w",
			len(r.Data), aoe.IdentifyLen, aoe.ErrShort)
	}
	return id, r.Data, nil
}

// Flush sends FLUSH CACHE EXT to t.
func (c *Client) Flush(ctx context.Context, t Target) error {
	_, err := c.ATA(ctx, t, aoe.ATA{Flags: aoe.ATAExtended, CmdStatus: aoe.ATAFlushCacheExt})
	return err
}

// ReadAt reads len(p) bytes from t starting at sector lba. len(p) must be a
// multiple of the sector size. The read is split into READ SECTORS EXT
// commands of t.MaxSectors(mtu) sectors, of which up to the window (see
// SetWindow), and no more than the target's buffer count, are in flight.
func (c *Client) ReadAt(ctx context.Context, t Target, p []byte, lba uint64) error {
	return c.transfer(ctx, t, p, lba, false)
}

// WriteAt writes p to t starting at sector lba, split as ReadAt splits
// reads, with WRITE SECTORS EXT commands.
func (c *Client) WriteAt(ctx context.Context, t Target, p []byte, lba uint64) error {
	return c.transfer(ctx, t, p, lba, true)
}

func (c *Client) transfer(ctx context.Context, t Target, p []byte, lba uint64, write bool) error {
	what := "read"
	cmd, flags := uint8(aoe.ATAReadSectorsExt), aoe.ATAExtended
	if write {
		what = "write"
		cmd, flags = aoe.ATAWriteSectorsExt, aoe.ATAExtended|aoe.ATAWrite
	}
	if len(p)%aoe.SectorSize != 0 {
		return fmt.Errorf("initiator: %s of %d bytes is not a whole number of %d-byte sectors: %w",
			what, len(p), aoe.SectorSize, aoe.ErrInvalid)
	}
	sectors := uint64(len(p) / aoe.SectorSize)
	if lba > aoe.MaxLBA48 || sectors > aoe.MaxLBA48+1-lba {
		return fmt.Errorf("initiator: %s of %d sectors at %d runs past 48-bit addresses: %w",
			what, sectors, lba, aoe.ErrInvalid)
	}
	if len(p) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return noReply(what, t.Major, t.Minor, err)
	}

	frame := min(t.MaxSectors(c.mtu), 255) * aoe.SectorSize
	_, _, window := c.options()
	if bc := int(t.Config.BufferCount); bc > 0 {
		window = min(window, bc)
	}
	window = min(window, (len(p)+frame-1)/frame)

	b := c.getBatch(window)
	h := aoe.Header{Major: t.Major, Minor: t.Minor, Command: aoe.CommandATA}
	dst := t.dst()
	off, inflight := 0, 0
	for off < len(p) || inflight > 0 {
		for inflight < window && off < len(p) {
			cl := b.idle()
			n := min(frame, len(p)-off)
			req, err := b.prepare(cl, dst, h)
			if err != nil {
				b.abort()
				return err
			}
			a := aoe.ATA{
				Flags:       flags,
				SectorCount: uint8(n / aoe.SectorSize),
				CmdStatus:   cmd,
				LBA:         lba + uint64(off/aoe.SectorSize),
			}
			req, _ = a.AppendHeader(req) // LBA checked above
			if write {
				req = append(req, p[off:off+n]...)
			}
			cl.off, cl.n, cl.lba = off, n, a.LBA
			if err := b.start(cl, req); err != nil {
				b.abort()
				return err
			}
			off += n
			inflight++
		}
		r, err := b.wait(ctx)
		if err != nil {
			b.abort()
			return waitErr(ctx, what, t.Major, t.Minor, err)
		}
		inflight--
		err = c.complete(r, p, write)
		c.putBuf(r.b)
		if err != nil {
			b.abort()
			return err
		}
	}
	b.release()
	return nil
}

// complete checks the reply r to a read or write call and copies the data
// of a read into p.
func (c *Client) complete(r reply, p []byte, write bool) error {
	cl := r.call
	f, _ := aoe.ParseFrame(r.b)
	if err := flagError(f); err != nil {
		return err
	}
	a, err := aoe.ParseATA(f.Arg)
	if err != nil {
		return fmt.Errorf("initiator: ATA reply from %v: %w", f.Src, err)
	}
	if a.CmdStatus&ataFailed != 0 {
		return fmt.Errorf("initiator: sectors %d+%d of %s: %w", cl.lba, cl.n/aoe.SectorSize,
			addr(cl.major, cl.minor), &ATAError{Status: a.CmdStatus, Err: a.ErrFeature})
	}
	if write {
		return nil
	}
	if len(a.Data) < cl.n {
		return fmt.Errorf("initiator: read reply from %v carries %d bytes, need %d: %w",
			f.Src, len(a.Data), cl.n, aoe.ErrShort)
	}
	copy(p[cl.off:cl.off+cl.n], a.Data)
	return nil
}

// QueryConfig sends a Query Config request with sub-command cmd and config
// string s to t and returns the reply's configuration, its String a copy. A
// target answers test and test-prefix only when its string matches, so for
// those a mismatch shows as an error wrapping ErrNoReply once ctx ends.
func (c *Client) QueryConfig(ctx context.Context, t Target, cmd aoe.ConfigCommand, s []byte) (aoe.Config, error) {
	arg, err := aoe.Config{Command: cmd, String: s}.MarshalBinary()
	if err != nil {
		return aoe.Config{}, err
	}
	h := aoe.Header{Major: t.Major, Minor: t.Minor, Command: aoe.CommandQueryConfig}
	f, err := c.Do(ctx, t.dst(), h, arg)
	if err != nil && f.Header.Flags&aoe.FlagError == 0 {
		return aoe.Config{}, err
	}
	cfg, perr := aoe.ParseConfig(f.Arg)
	switch {
	case err != nil && perr != nil:
		return aoe.Config{}, err
	case err != nil:
		return cfg, err // the E flag, with whatever configuration came along
	case perr != nil:
		return aoe.Config{}, fmt.Errorf("initiator: config reply from %v: %w", f.Src, perr)
	}
	return cfg, nil
}

// MacMask sends a Mac Mask List request to t and returns the reply, which
// lists the target's mask. If the target refused an edit the reply comes
// with a *MaskError.
func (c *Client) MacMask(ctx context.Context, t Target, m aoe.MacMask) (aoe.MacMask, error) {
	arg, err := m.MarshalBinary()
	if err != nil {
		return aoe.MacMask{}, err
	}
	h := aoe.Header{Major: t.Major, Minor: t.Minor, Command: aoe.CommandMacMask}
	f, err := c.Do(ctx, t.dst(), h, arg)
	if err != nil {
		return aoe.MacMask{}, err
	}
	// A failed edit's Dir Count is the index of the failing directive;
	// vblade sends no directives after it, aoetarget the ones it applied.
	if len(f.Arg) >= aoe.MacMaskArgLen && aoe.MaskError(f.Arg[2]) != aoe.MaskErrorNone {
		r := aoe.MacMask{Command: aoe.MaskCommand(f.Arg[1]), Error: aoe.MaskError(f.Arg[2])}
		return r, &MaskError{Code: r.Error, Index: int(f.Arg[3])}
	}
	r, err := aoe.ParseMacMask(f.Arg)
	if err != nil {
		return aoe.MacMask{}, fmt.Errorf("initiator: mac mask reply from %v: %w", f.Src, err)
	}
	return r, nil
}

// Reserve sends a Reserve/Release request to t and returns the reply, which
// lists the target's reservation. A target reserved by others answers a
// set with an error wrapping aoe.ErrorTargetReserved.
func (c *Client) Reserve(ctx context.Context, t Target, r aoe.Reserve) (aoe.Reserve, error) {
	arg, err := r.MarshalBinary()
	if err != nil {
		return aoe.Reserve{}, err
	}
	h := aoe.Header{Major: t.Major, Minor: t.Minor, Command: aoe.CommandReserve}
	f, err := c.Do(ctx, t.dst(), h, arg)
	if err != nil {
		return aoe.Reserve{}, err
	}
	rr, err := aoe.ParseReserve(f.Arg)
	if err != nil {
		return aoe.Reserve{}, fmt.Errorf("initiator: reserve reply from %v: %w", f.Src, err)
	}
	return rr, nil
}
