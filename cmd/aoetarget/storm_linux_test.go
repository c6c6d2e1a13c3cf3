package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/packet"

	"github.com/aoetarget/aoetarget/aoe"
)

// stormFrames is how many hostile frames TestIntegrationStorm sends;
// AOETARGET_STORM_FRAMES overrides it.
const stormFrames = 1_000_000

// stormGen makes hostile frames for one target: random bytes behind a
// valid AoE Ethernet header, mutations of valid requests of every command,
// and every header field at its edges. It keeps them from changing what
// the test's well-behaved client relies on: writes that would land in the
// client's sectors are moved past them, as are those that would land in a
// quarter of the export kept quiet, so that a stray write shows (every
// sector a write frame addresses is recorded); and valid Mac Mask edits
// and Reserve sets, which the protocol lets anyone send and which would
// legitimately lock the client out, become reads.
type stormGen struct {
	rng          *rand.Rand
	dst, src     aoe.MAC
	major        uint16
	minor        uint8
	sectors      uint64 // of the export
	protect      uint64 // sectors [0, protect) belong to the client
	quiet        uint64 // no write frame addresses sectors [quiet, 2*quiet)
	written      []bool // sectors a write frame addressed
	kinds        [8]int // frames made of each kind
	maxLen       int
	buf, scratch []byte
}

func newStormGen(seed uint64, dst, src aoe.MAC, sectors, protect uint64, mtu int) *stormGen {
	return &stormGen{
		rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), dst: dst, src: src,
		major: testShelf, minor: testSlot, sectors: sectors, protect: protect, quiet: sectors / 4,
		written: make([]bool, sectors), maxLen: mtu + aoe.EthernetHeaderLen,
		buf: make([]byte, 0, 9216+64), scratch: make([]byte, 9216),
	}
}

// pick returns one of vals at random.
func pick[T any](g *stormGen, vals ...T) T { return vals[g.rng.IntN(len(vals))] }

func (g *stormGen) header(cmd aoe.Command, tag uint32) aoe.Frame {
	src := g.src
	switch g.rng.IntN(20) {
	case 0:
		src = aoe.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	case 1:
		src = aoe.MAC{0x01, 0x00, 0x5e, 0, 0, byte(g.rng.Uint32())}
	case 2:
		src = aoe.MAC{}
	}
	h := aoe.Header{Version: aoe.Version, Major: g.major, Minor: g.minor, Command: cmd, Tag: tag}
	if g.rng.IntN(4) == 0 {
		h.Version = pick(g, uint8(0), 2, 15)
	}
	if g.rng.IntN(4) == 0 {
		h.Flags = pick(g, aoe.FlagResponse, aoe.FlagError, aoe.FlagResponse|aoe.FlagError, aoe.Flags(g.rng.IntN(16)))
	}
	if g.rng.IntN(4) == 0 {
		h.Major = pick(g, uint16(0xffff), 0, g.major+1)
		h.Minor = pick(g, uint8(0xff), 0, g.minor+1)
	}
	return aoe.Frame{Dst: g.dst, Src: src, Header: h}
}

// edgeLBA returns an LBA at an edge of the export or of the field.
func (g *stormGen) edgeLBA() uint64 {
	return pick(g, 0, g.sectors-1, g.sectors, g.sectors+1, g.sectors-2, aoe.MaxLBA28, aoe.MaxLBA28+1,
		1<<48-1, 1<<47, g.rng.Uint64N(g.sectors), g.rng.Uint64N(1<<48))
}

// next returns the next frame (valid until the next call).
func (g *stormGen) next() []byte {
	tag := g.rng.Uint32()
	kind := g.rng.IntN(len(g.kinds))
	g.kinds[kind]++
	var f aoe.Frame
	switch kind {
	case 0: // random bytes behind an AoE Ethernet header
		n := g.rng.IntN(g.maxLen - 14 + 1)
		b := g.buf[:14+n]
		copy(b, g.dst[:])
		copy(b[6:], g.src[:])
		binary.BigEndian.PutUint16(b[12:], aoe.EtherType)
		for i := 14; i < len(b); i++ {
			b[i] = byte(g.rng.Uint32())
		}
		if n >= 10 && g.rng.IntN(2) == 0 { // often addressed to the target, to get past the filter
			b[14] = aoe.Version<<4 | b[14]&0x0f
			binary.BigEndian.PutUint16(b[18:], g.major)
			b[20] = g.minor
		}
		return g.guard(b)
	case 1, 2: // ATA
		f = g.header(aoe.CommandATA, tag)
		a := aoe.ATA{
			CmdStatus:   pick(g, aoe.ATAReadSectors, aoe.ATAReadSectorsExt, aoe.ATAWriteSectors, aoe.ATAWriteSectorsExt, aoe.ATAIdentifyDevice, aoe.ATAFlushCache, aoe.ATAFlushCacheExt, aoe.ATACheckPowerMode, uint8(g.rng.Uint32())),
			SectorCount: pick(g, uint8(0), 1, 2, 17, 18, 255, uint8(g.rng.Uint32())),
			LBA:         g.edgeLBA(),
		}
		if g.rng.IntN(2) == 0 {
			a.Flags |= aoe.ATAExtended
		}
		if a.CmdStatus == aoe.ATAWriteSectors || a.CmdStatus == aoe.ATAWriteSectorsExt {
			a.Flags |= aoe.ATAWrite
			a.Data = g.scratch[:min(int(a.SectorCount)*512, g.maxLen-36, pick(g, 0, 512, 1024, 8704))]
		}
		f.Arg, _ = a.MarshalBinary()
	case 3: // Query Config
		f = g.header(aoe.CommandQueryConfig, tag)
		c := aoe.Config{Command: aoe.ConfigCommand(g.rng.IntN(8)), String: g.scratch[:pick(g, 0, 1, 1023, 1024)]}
		arg, err := c.MarshalBinary()
		if err != nil {
			arg = nil
		}
		if g.rng.IntN(4) == 0 { // a 1025-byte string: the length field says so
			arg = append(make([]byte, 8), g.scratch[:1025]...)
			binary.BigEndian.PutUint16(arg[6:], 1025)
			arg[5] = byte(g.rng.IntN(6))
		}
		f.Arg = arg
	case 4: // Mac Mask List
		f = g.header(aoe.CommandMacMask, tag)
		n := pick(g, 0, 1, 32, 33, 40, 255)
		arg := make([]byte, 4+8*min(n, 60))
		arg[1] = byte(g.rng.IntN(3))
		arg[2] = byte(g.rng.IntN(4))
		arg[3] = byte(n)
		for i := 4; i < len(arg); i++ {
			arg[i] = byte(g.rng.Uint32())
		}
		f.Arg = arg
	case 5: // Reserve/Release
		f = g.header(aoe.CommandReserve, tag)
		n := pick(g, 0, 1, 255, 200)
		arg := make([]byte, 2+6*min(n, 200))
		arg[0] = byte(g.rng.IntN(4))
		arg[1] = byte(n)
		for i := 2; i < len(arg); i++ {
			arg[i] = byte(g.rng.Uint32())
		}
		f.Arg = arg
	default: // unknown commands and bare headers
		f = g.header(aoe.Command(pick(g, 4, 5, 0xf0, 0xff, g.rng.IntN(256))), tag)
		f.Arg = g.scratch[:g.rng.IntN(64)]
	}
	b, err := f.AppendBinary(g.buf[:0])
	if err != nil {
		b, _ = f.AppendHeaders(g.buf[:0])
		b = append(b, f.Arg...)
	}
	// Mutate: flip bytes, truncate, or pad.
	switch g.rng.IntN(4) {
	case 0:
		for range 1 + g.rng.IntN(3) {
			i := 14 + g.rng.IntN(len(b)-14)
			b[i] ^= byte(1 + g.rng.IntN(255))
		}
	case 1:
		b = b[:14+g.rng.IntN(len(b)-14+1)]
	case 2:
		b = append(b, g.scratch[:g.rng.IntN(64)]...)
	}
	if len(b) > g.maxLen {
		b = b[:g.maxLen]
	}
	return g.guard(b)
}

// shift returns how far a write of n sectors at lba must move to stay off
// the client's sectors [0, protect) and the quiet ones [quiet, 2*quiet).
func (g *stormGen) shift(lba, n uint64) uint64 {
	if lba < g.protect {
		return 2 * g.quiet // past both
	}
	if lba < 2*g.quiet && lba+n > g.quiet {
		return 2*g.quiet - lba + g.rng.Uint64N(16)
	}
	return 0
}

// guard applies the rules of stormGen to a finished frame, parsing it as
// the target would.
func (g *stormGen) guard(b []byte) []byte {
	f, err := aoe.ParseFrame(b)
	if err != nil {
		return b
	}
	arg := b[aoe.FrameHeaderLen:]
	switch f.Header.Command {
	case aoe.CommandATA:
		a, err := aoe.ParseATA(f.Arg)
		if err != nil || (a.CmdStatus != aoe.ATAWriteSectors && a.CmdStatus != aoe.ATAWriteSectorsExt) {
			return b
		}
		lba := a.LBA
		if a.CmdStatus == aoe.ATAWriteSectors {
			lba &= aoe.MaxLBA28
		}
		n := uint64(a.SectorCount)
		// Move writes off the client's sectors and the quiet sectors
		// (LBA28 or not, the bits above the sector number stay).
		if shift := g.shift(lba, n); shift != 0 {
			lba += shift
			binary.LittleEndian.PutUint32(arg[4:], uint32(a.LBA+shift))
			binary.LittleEndian.PutUint16(arg[8:], uint16((a.LBA+shift)>>32))
		}
		for s := lba; s < lba+n && s < g.sectors; s++ {
			g.written[s] = true
		}
	case aoe.CommandMacMask:
		if m, err := aoe.ParseMacMask(f.Arg); err == nil && m.Command == aoe.MaskEdit {
			arg[1] = byte(aoe.MaskRead)
		}
	case aoe.CommandReserve:
		if r, err := aoe.ParseReserve(f.Arg); err == nil && (r.Command == aoe.ReserveSet || r.Command == aoe.ReserveForceSet) {
			arg[0] = byte(aoe.ReserveRead)
		}
	}
	return b
}

// TestIntegrationStorm sends a million hostile frames at a running
// target while a well-behaved client keeps writing and reading its own
// sectors, then checks that the target still answers, that the client
// saw no error and its data verifies, that nothing outside the export's
// window changed and nothing inside it that no write frame addressed, and
// that memory stayed bounded. Run with -v for the figures.
//
// Then three shorter storms check that protections hold under it: a
// read-only export (the file must not change at all; the client only
// reads), an export whose mask list holds only the client, and one the
// client has reserved (no sector outside the client's may change).
func TestIntegrationStorm(t *testing.T) {
	frames := stormFrames
	if s := os.Getenv("AOETARGET_STORM_FRAMES"); s != "" {
		var err error
		if frames, err = strconv.Atoi(s); err != nil {
			t.Fatal(err)
		}
	}
	if testing.Short() {
		frames = 20_000
	}
	t.Run("open", func(t *testing.T) { storm(t, "open", frames) })
	for _, mode := range []string{"read-only", "masked", "reserved"} {
		t.Run(mode, func(t *testing.T) { storm(t, mode, max(frames/10, 1000)) })
	}
}

func storm(t *testing.T, mode string, frames int) {
	l := newLab(t, 1500)
	const fileSectors, offset, sectors, protect = 4096, 256, 2048, 256
	orig := make([]byte, fileSectors*512)
	for i := range orig {
		orig[i] = byte(i*7 + i>>9)
	}
	file := image(t, fileSectors, 0)
	if err := os.WriteFile(file, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	flags := []string{"-o", fmt.Sprint(offset), "-l", fmt.Sprint(sectors)}
	switch mode {
	case "read-only":
		flags = append(flags, "-r")
	case "masked":
		flags = append(flags, "-m", l.srcMAC.String())
	}
	p := l.start(ours, file, flags...)
	tg := l.target()
	if mode == "reserved" {
		if _, err := l.client.Reserve(ctxT(t, 10*time.Second), tg, aoe.Reserve{Command: aoe.ReserveSet, MACs: []aoe.MAC{l.srcMAC}}); err != nil {
			t.Fatal(err)
		}
	}

	// The well-behaved client: writes and reads back its own sectors.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var ops int
	var clientErr error
	model := bytes.Clone(orig[offset*512 : (offset+protect)*512])
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(1, 2))
		buf := make([]byte, 8*512)
		got := make([]byte, len(buf))
		for ctx.Err() == nil {
			lba := rng.Uint64N(protect - 8)
			for i := range buf {
				buf[i] = byte(rng.Uint32())
			}
			octx, ocancel := context.WithTimeout(context.Background(), 30*time.Second)
			var err error
			if mode == "read-only" {
				copy(buf, model[lba*512:]) // what it must read
			} else {
				err = l.client.WriteAt(octx, tg, buf, lba)
			}
			if err == nil {
				copy(model[lba*512:], buf)
				err = l.client.ReadAt(octx, tg, got, lba)
			}
			ocancel()
			if err == nil && !bytes.Equal(got, buf) {
				err = fmt.Errorf("sectors %d-%d read back differ from what was written", lba, lba+7)
			}
			if err != nil {
				clientErr = err
				return
			}
			ops++
		}
	}()

	// The storm, from another MAC, paced by a Query Config round trip
	// every 16 frames so that the target's small receive queue (the
	// buffer count, as vblade sizes it) is not simply overrun.
	raw := l.rawConn()
	stormMAC := aoe.MAC{0x02, 0x5e, 0x00, 0x00, 0x00, 0x01}
	g := newStormGen(42, l.tgtMAC, stormMAC, sectors, protect, l.mtu)
	dst := &packet.Addr{HardwareAddr: l.tgtMAC.HardwareAddr()}
	rbuf := make([]byte, 9216)
	start := time.Now()
	sendErrs := 0
	for sent := 0; sent < frames; {
		for range 16 {
			b := g.next()
			if len(b) < 14 {
				continue
			}
			if _, err := raw.WriteTo(b, dst); err != nil {
				sendErrs++
			}
			sent++
		}
		ping := aoe.Frame{Dst: l.tgtMAC, Src: l.srcMAC, Header: aoe.Header{Version: aoe.Version, Major: testShelf, Minor: testSlot,
			Command: aoe.CommandQueryConfig, Tag: 0xfeed0000 | uint32(sent&0xffff)}}
		pb, _ := ping.MarshalBinary()
		for try := 0; ; try++ {
			if try == 100 {
				t.Fatalf("target stopped answering after %d storm frames\n%s", sent, p.out.String())
			}
			raw.WriteTo(pb, dst)
			raw.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			got := false
			for {
				n, _, err := raw.ReadFrom(rbuf)
				if err != nil {
					break
				}
				if r, err := aoe.ParseFrame(rbuf[:n]); err == nil && r.Header.Tag == ping.Header.Tag && r.Dst == l.srcMAC {
					got = true
					break
				}
			}
			if got {
				break
			}
		}
	}
	elapsed := time.Since(start)
	cancel()
	wg.Wait()
	if clientErr != nil {
		t.Fatalf("the well-behaved client failed after %d operations: %v", ops, clientErr)
	}
	if ops == 0 {
		t.Fatal("the well-behaved client completed no operation")
	}
	if _, _, err := l.client.Identify(ctxT(t, 10*time.Second), tg); err != nil {
		t.Fatalf("IDENTIFY after the storm: %v", err)
	}
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	hwm := regexp.MustCompile(`VmHWM:\s+(\d+) kB`).FindSubmatch(status)
	if err := p.stop(t); err != nil {
		t.Fatalf("target exited with %v\n%s", err, p.out.String())
	}

	after, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(after[:offset*512], orig[:offset*512]) || !bytes.Equal(after[(offset+sectors)*512:], orig[(offset+sectors)*512:]) {
		t.Error("bytes outside the export's window changed")
	}
	if !bytes.Equal(after[offset*512:(offset+protect)*512], model) {
		t.Error("the client's sectors do not hold what it last wrote")
	}
	unchanged, addressed := 0, 0
	for s := uint64(protect); s < sectors; s++ {
		a, o := after[(offset+s)*512:(offset+s+1)*512], orig[(offset+s)*512:(offset+s+1)*512]
		if g.written[s] && mode == "open" {
			addressed++
			continue
		}
		if !bytes.Equal(a, o) {
			t.Errorf("sector %d changed, but no write frame addressed it or the export does not take its writes (%s)", s, mode)
		} else {
			unchanged++
		}
	}
	var peak int
	if hwm != nil {
		peak, _ = strconv.Atoi(string(hwm[1]))
	}
	const maxRSS = 512 << 10 // kB; the race detector multiplies memory use
	if hwm == nil || peak > maxRSS {
		t.Errorf("peak RSS %d kB (want at most %d kB)", peak, maxRSS)
	}
	stop := ""
	for _, line := range strings.Split(p.out.String(), "\n") {
		if strings.Contains(line, "msg=stopping") {
			stop = line
		}
	}
	t.Logf("storm (%s): %d frames in %v (%.0f/s, %d send errors), kinds %v; client: %d verified operations (write and read back, or read); "+
		"%d sectors addressed by storm writes, %d others unchanged; target peak RSS %d kB", mode, frames, elapsed.Round(time.Millisecond),
		float64(frames)/elapsed.Seconds(), sendErrs, g.kinds, ops, addressed, unchanged, peak)
	t.Logf("target: %s", stop)
}
