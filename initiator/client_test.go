package initiator_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aoetarget/aoetarget/aoe"
	"github.com/aoetarget/aoetarget/initiator"
	"github.com/aoetarget/aoetarget/initiator/initiatortest"
	"github.com/google/go-cmp/cmp"
)

var (
	clientMAC = aoe.MAC{0x02, 0, 0, 0, 0, 0x01}
	otherMAC  = aoe.MAC{0x02, 0, 0, 0, 0, 0x02}
	targetMAC = aoe.MAC{0x02, 0, 0, 0, 0, 0x10}
)

// wait bounds a test's requests. Nothing is timed against it: it only
// keeps a broken test from hanging.
const wait = 30 * time.Second

// newTarget returns a fake target 1.0 with a disk of n sectors of random
// bytes, advertising the sector count of mtu.
func newTarget(n, mtu int) *initiatortest.Target {
	disk := make([]byte, n*aoe.SectorSize)
	for i := range disk {
		disk[i] = byte(rand.Uint32())
	}
	return &initiatortest.Target{
		Major: 1, Minor: 0, MAC: targetMAC, Disk: disk, MTU: mtu,
		Identity: aoe.Identity{Serial: "1.0:test", Firmware: "V1", Model: "fake target"},
	}
}

// newClient connects a Client at mtu to the targets over an in-memory pipe.
func newClient(t *testing.T, mtu int, targets ...*initiatortest.Target) *initiator.Client {
	t.Helper()
	a, b := initiatortest.Pipe()
	served := make(chan error, 1)
	go func() { served <- initiatortest.Serve(b, targets...) }()
	c := initiator.New(a, clientMAC, mtu)
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		b.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return c
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// recorder records the requests a target receives.
type recorder struct {
	mu   sync.Mutex
	reqs []aoe.Frame
}

func (r *recorder) intercept(req aoe.Frame, replies [][]byte) [][]byte {
	req.Arg = bytes.Clone(req.Arg)
	r.mu.Lock()
	r.reqs = append(r.reqs, req)
	r.mu.Unlock()
	return replies
}

func (r *recorder) atas(t *testing.T) []aoe.ATA {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var as []aoe.ATA
	for _, f := range r.reqs {
		if f.Header.Command != aoe.CommandATA {
			continue
		}
		a, err := aoe.ParseATA(f.Arg)
		if err != nil {
			t.Fatalf("ParseATA: %v", err)
		}
		as = append(as, a)
	}
	return as
}

func (r *recorder) frames() []aoe.Frame {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reqs)
}

func TestMaxSectors(t *testing.T) {
	tests := []struct {
		scnt uint8
		mtu  int
		want int
	}{
		{scnt: 0, mtu: 1500, want: 2}, // 0 means 2
		{scnt: 0, mtu: 9000, want: 2},
		{scnt: 2, mtu: 1500, want: 2},
		{scnt: 17, mtu: 1500, want: 2},
		{scnt: 17, mtu: 9000, want: 17},
		{scnt: 255, mtu: 9000, want: 17},
		{scnt: 8, mtu: 9000, want: 8},
		{scnt: 17, mtu: 1060, want: 2},
		{scnt: 17, mtu: 1059, want: 1},
		{scnt: 17, mtu: 500, want: 2}, // none fit: the Linux default of 1024 bytes
		{scnt: 255, mtu: 65536, want: 127},
	}
	for _, tt := range tests {
		tg := initiator.Target{Config: aoe.Config{SectorCount: tt.scnt}}
		if got := tg.MaxSectors(tt.mtu); got != tt.want {
			t.Errorf("MaxSectors(scnt %d, mtu %d) = %d, want %d", tt.scnt, tt.mtu, got, tt.want)
		}
	}
}

func TestDiscover(t *testing.T) {
	mk := func(major uint16, minor uint8, last byte) *initiatortest.Target {
		tg := newTarget(8, 9000)
		tg.Major, tg.Minor, tg.MAC = major, minor, aoe.MAC{0x02, 0, 0, 0, 1, last}
		tg.SetConfig(fmt.Sprintf("target %d.%d", major, minor))
		return tg
	}
	targets := []*initiatortest.Target{mk(2, 0, 3), mk(1, 1, 2), mk(1, 0, 1)}
	// A second reply from 1.0 is deduplicated.
	targets[2].Intercept = func(_ aoe.Frame, replies [][]byte) [][]byte {
		return append(replies, replies...)
	}
	c := newClient(t, 9000, targets...)

	want := func(ts ...*initiatortest.Target) []initiator.Target {
		var out []initiator.Target
		for _, tg := range ts {
			out = append(out, initiator.Target{
				Major: tg.Major, Minor: tg.Minor, MAC: tg.MAC,
				Config: aoe.Config{
					BufferCount: 16, FirmwareVersion: 0x4019, SectorCount: 17, Version: 1,
					String: []byte(tg.Config()),
				},
			})
		}
		return out
	}
	tests := []struct {
		major uint16
		minor uint8
		want  []initiator.Target
	}{
		{aoe.BroadcastMajor, aoe.BroadcastMinor, want(targets[2], targets[1], targets[0])},
		{1, aoe.BroadcastMinor, want(targets[2], targets[1])},
		{aoe.BroadcastMajor, 0, want(targets[2], targets[0])},
		{2, 0, want(targets[0])},
	}
	for _, tt := range tests {
		got, err := c.Discover(ctxFor(t, 500*time.Millisecond), tt.major, tt.minor)
		if err != nil {
			t.Fatalf("Discover(%d, %d): %v", tt.major, tt.minor, err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("Discover(%d, %d) (-want +got):\n%s", tt.major, tt.minor, diff)
		}
	}

	_, err := c.Discover(ctxFor(t, 50*time.Millisecond), 3, 0)
	if !errors.Is(err, initiator.ErrNoReply) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Discover(3, 0) error = %v, want ErrNoReply and DeadlineExceeded", err)
	}

	tg, err := c.Lookup(ctxFor(t, wait), 1, 1)
	if err != nil {
		t.Fatalf("Lookup(1, 1): %v", err)
	}
	if diff := cmp.Diff(want(targets[1])[0], tg); diff != "" {
		t.Errorf("Lookup(1, 1) (-want +got):\n%s", diff)
	}
}

func TestRequestFields(t *testing.T) {
	tg := newTarget(64, 1500)
	var rec recorder
	tg.Intercept = rec.intercept
	c := newClient(t, 1500, tg)
	ctx := ctxFor(t, wait)
	tgt := initiator.Target{Major: 1, Minor: 0, MAC: targetMAC}
	for i := 0; i < 3; i++ {
		if _, _, err := c.Identify(ctx, tgt); err != nil {
			t.Fatalf("Identify: %v", err)
		}
	}
	if _, err := c.Discover(ctxFor(t, 500*time.Millisecond), aoe.BroadcastMajor, aoe.BroadcastMinor); err != nil {
		t.Fatalf("Discover: %v", err)
	}
	tags := map[uint32]bool{}
	for _, f := range rec.frames() {
		h := f.Header
		if f.Src != clientMAC || h.Version != aoe.Version || h.Flags != 0 || h.Tag&(1<<31) == 0 {
			t.Errorf("request src %v version %d flags %#x tag %#x: want src %v, version 1, no flags, tag bit 31",
				f.Src, h.Version, h.Flags, h.Tag, clientMAC)
		}
		if tags[h.Tag] {
			t.Errorf("tag %#x used twice", h.Tag)
		}
		tags[h.Tag] = true
		switch h.Command {
		case aoe.CommandATA:
			if f.Dst != targetMAC {
				t.Errorf("ATA request to %v, want %v", f.Dst, targetMAC)
			}
		case aoe.CommandQueryConfig:
			if f.Dst != aoe.BroadcastMAC || !h.IsBroadcast() {
				t.Errorf("discovery to %v %d.%d, want broadcast", f.Dst, h.Major, h.Minor)
			}
		}
	}
	if len(tags) < 4 {
		t.Errorf("target saw %d requests, want at least 4", len(tags))
	}
}

func TestIdentify(t *testing.T) {
	tg := newTarget(1000, 1500)
	var rec recorder
	tg.Intercept = rec.intercept
	c := newClient(t, 1500, tg)
	id, page, err := c.Identify(ctxFor(t, wait), initiator.Target{Major: 1, Minor: 0, MAC: targetMAC})
	if err != nil {
		t.Fatalf("Identify: %v", err)
	}
	want := aoe.Identity{Sectors: 1000, Serial: "1.0:test", Firmware: "V1", Model: "fake target"}
	if diff := cmp.Diff(want, id); diff != "" {
		t.Errorf("Identify (-want +got):\n%s", diff)
	}
	wantPage := make([]byte, aoe.IdentifyLen)
	want.Put(wantPage)
	if !bytes.Equal(page, wantPage) {
		t.Errorf("Identify page differs from the target's")
	}
	got := rec.atas(t)
	for i := range got {
		if !bytes.Equal(got[i].Data, make([]byte, len(got[i].Data))) {
			t.Errorf("IDENTIFY request carries nonzero bytes after the argument: % x", got[i].Data)
		}
		got[i].Data = nil // padding to the Ethernet minimum
	}
	wantReq := []aoe.ATA{{SectorCount: 1, CmdStatus: aoe.ATAIdentifyDevice, LBA: 0xa0 << 24}}
	if diff := cmp.Diff(wantReq, got); diff != "" {
		t.Errorf("IDENTIFY request (-want +got):\n%s", diff)
	}
}

func TestReadWriteSplit(t *testing.T) {
	tests := []struct {
		mtu      int
		frame    int // sectors per frame
		lba      uint64
		sectors  int
		bufcnt   uint16
		wantReqs int
	}{
		{mtu: 1500, frame: 2, lba: 0, sectors: 1, wantReqs: 1},
		{mtu: 1500, frame: 2, lba: 7, sectors: 2, wantReqs: 1},
		{mtu: 1500, frame: 2, lba: 3, sectors: 3, wantReqs: 2},
		{mtu: 1500, frame: 2, lba: 0, sectors: 100, wantReqs: 50},
		{mtu: 1500, frame: 2, lba: 11, sectors: 99, bufcnt: 3, wantReqs: 50},
		{mtu: 9000, frame: 17, lba: 0, sectors: 17, wantReqs: 1},
		{mtu: 9000, frame: 17, lba: 1, sectors: 18, wantReqs: 2},
		{mtu: 9000, frame: 17, lba: 5, sectors: 1000, wantReqs: 59},
		{mtu: 9000, frame: 17, lba: 0, sectors: 17 * 40, bufcnt: 1, wantReqs: 40},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("mtu%d/lba%d+%d/bufcnt%d", tt.mtu, tt.lba, tt.sectors, tt.bufcnt), func(t *testing.T) {
			tg := newTarget(1200, tt.mtu)
			tg.BufferCount = tt.bufcnt
			var rec recorder
			tg.Intercept = rec.intercept
			c := newClient(t, tt.mtu, tg)
			ctx := ctxFor(t, wait)
			tgt, err := c.Lookup(ctx, 1, 0)
			if err != nil {
				t.Fatalf("Lookup: %v", err)
			}
			if got := tgt.MaxSectors(tt.mtu); got != tt.frame {
				t.Fatalf("MaxSectors = %d, want %d", got, tt.frame)
			}

			data := make([]byte, tt.sectors*aoe.SectorSize)
			for i := range data {
				data[i] = byte(rand.Uint32())
			}
			before := bytes.Clone(tg.Disk)
			if err := c.WriteAt(ctx, tgt, data, tt.lba); err != nil {
				t.Fatalf("WriteAt: %v", err)
			}
			off := int(tt.lba) * aoe.SectorSize
			copy(before[off:], data)
			if !bytes.Equal(tg.Disk, before) {
				t.Fatalf("disk after WriteAt differs from what was written")
			}
			checkSplit(t, rec.atas(t), aoe.ATAWriteSectorsExt, tt.lba, tt.sectors, tt.frame, tt.wantReqs)

			rec = recorder{}
			got := make([]byte, len(data))
			if err := c.ReadAt(ctx, tgt, got, tt.lba); err != nil {
				t.Fatalf("ReadAt: %v", err)
			}
			if !bytes.Equal(got, data) {
				t.Errorf("ReadAt returned other bytes than WriteAt wrote")
			}
			checkSplit(t, rec.atas(t), aoe.ATAReadSectorsExt, tt.lba, tt.sectors, tt.frame, tt.wantReqs)
		})
	}
}

// checkSplit checks that reqs are cmd commands with the E flag that cover
// sectors sectors from lba once each, in frames of at most frame sectors.
func checkSplit(t *testing.T, reqs []aoe.ATA, cmd uint8, lba uint64, sectors, frame, wantReqs int) {
	t.Helper()
	if len(reqs) != wantReqs {
		t.Errorf("%d requests, want %d", len(reqs), wantReqs)
	}
	covered := make([]int, sectors)
	for _, a := range reqs {
		wantFlags := aoe.ATAExtended
		if cmd == aoe.ATAWriteSectorsExt {
			wantFlags |= aoe.ATAWrite
		}
		if a.CmdStatus != cmd || a.Flags != wantFlags {
			t.Errorf("request command %#x flags %#x, want %#x and %#x", a.CmdStatus, a.Flags, cmd, wantFlags)
		}
		if int(a.SectorCount) > frame || a.SectorCount == 0 {
			t.Errorf("request of %d sectors, want 1 to %d", a.SectorCount, frame)
		}
		if cmd == aoe.ATAWriteSectorsExt && len(a.Data) != int(a.SectorCount)*aoe.SectorSize {
			t.Errorf("write of %d sectors carries %d bytes", a.SectorCount, len(a.Data))
		}
		for s := a.LBA; s < a.LBA+uint64(a.SectorCount); s++ {
			if s < lba || s >= lba+uint64(sectors) {
				t.Errorf("request for sector %d, outside %d+%d", s, lba, sectors)
				continue
			}
			covered[s-lba]++
		}
	}
	for i, n := range covered {
		if n != 1 {
			t.Errorf("sector %d covered %d times", lba+uint64(i), n)
		}
	}
}

func TestWindow(t *testing.T) {
	const window, frames = 4, 12
	tg := newTarget(64, 1500)
	// Hold the replies back until window requests are outstanding, which
	// happens only if the client keeps that many in flight, and check that
	// it never has more.
	var held [][]byte
	outstanding, peak := 0, 0
	tg.Intercept = func(req aoe.Frame, replies [][]byte) [][]byte {
		if req.Header.Command != aoe.CommandATA {
			return replies
		}
		outstanding++
		peak = max(peak, outstanding)
		held = append(held, replies...)
		if outstanding < window {
			return nil
		}
		out := held
		held, outstanding = nil, 0
		return out
	}
	c := newClient(t, 1500, tg)
	c.SetWindow(window)
	c.SetTimeout(wait) // no retransmissions: they would skew the count
	tgt := initiator.Target{Major: 1, Minor: 0, MAC: targetMAC, Config: aoe.Config{SectorCount: 2}}
	p := make([]byte, frames*2*aoe.SectorSize)
	if err := c.ReadAt(ctxFor(t, wait), tgt, p, 0); err != nil {
		t.Fatalf("ReadAt: %v", err)
	}
	if !bytes.Equal(p, tg.Disk[:len(p)]) {
		t.Errorf("ReadAt returned other bytes than the disk's")
	}
	if peak != window {
		t.Errorf("at most %d requests in flight, want %d", peak, window)
	}
}

func TestRetransmit(t *testing.T) {
	tests := []struct {
		name string
		// drop decides, for the n-th ATA request (from 0) and its reply,
		// what to send: it may keep the reply for later.
		intercept func(n int, reply []byte, late *[][]byte) [][]byte
	}{
		{
			name: "lost request",
			intercept: func(n int, reply []byte, _ *[][]byte) [][]byte {
				if n == 0 {
					return nil
				}
				return [][]byte{reply}
			},
		},
		{
			name: "late reply to the first tag",
			intercept: func(n int, reply []byte, late *[][]byte) [][]byte {
				if n == 0 {
					*late = append(*late, reply) // held until the resend arrives
					return nil
				}
				return *late // the resend's own reply is lost
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := newTarget(64, 1500)
			var rec recorder
			n := 0
			var late [][]byte
			tg.Intercept = func(req aoe.Frame, replies [][]byte) [][]byte {
				rec.intercept(req, replies)
				if req.Header.Command != aoe.CommandATA {
					return replies
				}
				defer func() { n++ }()
				return tt.intercept(n, replies[0], &late)
			}
			c := newClient(t, 1500, tg)
			c.SetTimeout(10 * time.Millisecond)
			tgt := initiator.Target{Major: 1, Minor: 0, MAC: targetMAC}
			p := make([]byte, 2*aoe.SectorSize)
			if err := c.ReadAt(ctxFor(t, wait), tgt, p, 4); err != nil {
				t.Fatalf("ReadAt: %v", err)
			}
			if !bytes.Equal(p, tg.Disk[4*aoe.SectorSize:6*aoe.SectorSize]) {
				t.Errorf("ReadAt returned other bytes than the disk's")
			}
			var tags []uint32
			for _, f := range rec.frames() {
				tags = append(tags, f.Header.Tag)
			}
			if len(tags) < 2 {
				t.Fatalf("%d requests, want a resend", len(tags))
			}
			if tags[0] == tags[1] {
				t.Errorf("resend reused tag %#x", tags[0])
			}
			atas := rec.atas(t)
			if atas[0].LBA != atas[1].LBA || atas[0].SectorCount != atas[1].SectorCount {
				t.Errorf("resend %+v differs from the request %+v", atas[1], atas[0])
			}
		})
	}
}

func TestIgnoresStrayReplies(t *testing.T) {
	tg := newTarget(64, 1500)
	// Before each reply to a read, send forged ones that carry other data
	// and must all be ignored.
	tg.Intercept = func(req aoe.Frame, replies [][]byte) [][]byte {
		if req.Header.Command != aoe.CommandATA || len(replies) != 1 {
			return replies
		}
		good := replies[0]
		forge := func(edit func(f *aoe.Frame)) []byte {
			b := bytes.Clone(good)
			f, _ := aoe.ParseFrame(b)
			a, _ := aoe.ParseATA(f.Arg)
			for i := range a.Data {
				a.Data[i] ^= 0xff
			}
			edit(&f)
			out, _ := f.MarshalBinary()
			return out
		}
		return [][]byte{
			forge(func(f *aoe.Frame) { f.Header.Tag += 12345 }),
			forge(func(f *aoe.Frame) { f.Header.Tag &^= 1 << 31 }),
			forge(func(f *aoe.Frame) { f.Header.Major = 2 }),
			forge(func(f *aoe.Frame) { f.Header.Minor = 1 }),
			forge(func(f *aoe.Frame) { f.Header.Command = aoe.CommandQueryConfig }),
			forge(func(f *aoe.Frame) { f.Header.Flags &^= aoe.FlagResponse }),
			forge(func(f *aoe.Frame) { f.Dst = otherMAC }),
			good[:aoe.FrameHeaderLen-1], // runt
			good,
			forge(func(*aoe.Frame) {}), // a duplicate after the reply
		}
	}
	c := newClient(t, 1500, tg)
	tgt := initiator.Target{Major: 1, Minor: 0, MAC: targetMAC}
	ctx := ctxFor(t, wait)
	for lba := uint64(0); lba < 64; lba += 8 {
		p := make([]byte, 2*aoe.SectorSize)
		if err := c.ReadAt(ctx, tgt, p, lba); err != nil {
			t.Fatalf("ReadAt(%d): %v", lba, err)
		}
		off := int(lba) * aoe.SectorSize
		if !bytes.Equal(p, tg.Disk[off:off+len(p)]) {
			t.Fatalf("ReadAt(%d) took a forged reply", lba)
		}
	}
}

func TestErrors(t *testing.T) {
	tg := newTarget(64, 1500)
	c := newClient(t, 1500, tg)
	tgt := initiator.Target{Major: 1, Minor: 0, MAC: targetMAC}
	ctx := ctxFor(t, wait)

	t.Run("E flag", func(t *testing.T) {
		h := aoe.Header{Major: 1, Minor: 0, Command: 0xf1}
		f, err := c.Do(ctx, targetMAC, h, []byte{1, 2, 3})
		if !errors.Is(err, aoe.ErrorUnrecognizedCommand) {
			t.Errorf("Do(vendor command) error = %v, want %v", err, aoe.ErrorUnrecognizedCommand)
		}
		if f.Header.Flags != aoe.FlagResponse|aoe.FlagError || f.Header.Error != aoe.ErrorUnrecognizedCommand {
			t.Errorf("Do returned header %+v, want the error reply", f.Header)
		}
		_, err = c.ATA(ctx, tgt, aoe.ATA{Flags: aoe.ATAExtended, SectorCount: 3, CmdStatus: aoe.ATAReadSectorsExt})
		if !errors.Is(err, aoe.ErrorBadArgument) {
			t.Errorf("ATA(3 sectors at MTU 1500) error = %v, want %v", err, aoe.ErrorBadArgument)
		}
	})

	t.Run("ATA status", func(t *testing.T) {
		r, err := c.ATA(ctx, tgt, aoe.ATA{CmdStatus: 0x99})
		var ae *initiator.ATAError
		if !errors.As(err, &ae) || *ae != (initiator.ATAError{Status: 0x41, Err: aoe.ATAErrorABRT}) {
			t.Errorf("ATA(0x99) error = %v, want ATAError status 0x41 ABRT", err)
		}
		if r.CmdStatus != 0x41 {
			t.Errorf("ATA(0x99) reply status %#x, want 0x41", r.CmdStatus)
		}
		err = c.ReadAt(ctx, tgt, make([]byte, 4*aoe.SectorSize), 62)
		if !errors.As(err, &ae) || ae.Err != aoe.ATAErrorIDNF {
			t.Errorf("ReadAt past the end error = %v, want ATAError IDNF", err)
		}
		if err := c.Flush(ctx, tgt); err != nil {
			t.Errorf("Flush: %v", err)
		}
	})

	t.Run("partial sector", func(t *testing.T) {
		for _, n := range []int{1, 511, 513, 1000} {
			if err := c.WriteAt(ctx, tgt, make([]byte, n), 0); !errors.Is(err, aoe.ErrInvalid) {
				t.Errorf("WriteAt(%d bytes) error = %v, want ErrInvalid", n, err)
			}
			if err := c.ReadAt(ctx, tgt, make([]byte, n), 0); !errors.Is(err, aoe.ErrInvalid) {
				t.Errorf("ReadAt(%d bytes) error = %v, want ErrInvalid", n, err)
			}
		}
		if err := c.ReadAt(ctx, tgt, make([]byte, 1024), aoe.MaxLBA48); !errors.Is(err, aoe.ErrInvalid) {
			t.Errorf("ReadAt past LBA48 error = %v, want ErrInvalid", err)
		}
	})

	t.Run("no reply", func(t *testing.T) {
		c.SetTimeout(5 * time.Millisecond)
		defer c.SetTimeout(0)
		short := ctxFor(t, 50*time.Millisecond)
		err := c.ReadAt(short, initiator.Target{Major: 7, Minor: 7, MAC: targetMAC}, make([]byte, 4096), 0)
		if !errors.Is(err, initiator.ErrNoReply) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("ReadAt(absent target) error = %v, want ErrNoReply and DeadlineExceeded", err)
		}
		canceled, cancel := context.WithCancel(context.Background())
		cancel()
		if _, _, err := c.Identify(canceled, tgt); !errors.Is(err, initiator.ErrNoReply) || !errors.Is(err, context.Canceled) {
			t.Errorf("Identify(canceled) error = %v, want ErrNoReply and Canceled", err)
		}
	})
}

func TestQueryConfig(t *testing.T) {
	tg := newTarget(8, 1500)
	c := newClient(t, 1500, tg)
	c.SetTimeout(5 * time.Millisecond)
	tgt := initiator.Target{Major: 1, Minor: 0, MAC: targetMAC}
	ctx := ctxFor(t, wait)

	tests := []struct {
		cmd     aoe.ConfigCommand
		s       string
		want    string // the reply's string
		err     error
		noReply bool
	}{
		{cmd: aoe.ConfigRead, want: ""},
		{cmd: aoe.ConfigTest, s: "x", noReply: true},
		{cmd: aoe.ConfigSet, s: "host=a", want: "host=a"},
		{cmd: aoe.ConfigRead, want: "host=a"},
		{cmd: aoe.ConfigTest, s: "host=a", want: "host=a"},
		{cmd: aoe.ConfigTest, s: "host=", noReply: true},
		{cmd: aoe.ConfigTestPrefix, s: "host=", want: "host=a"},
		{cmd: aoe.ConfigTestPrefix, s: "host=b", noReply: true},
		{cmd: aoe.ConfigSet, s: "host=b", want: "host=a", err: aoe.ErrorConfigStringPresent},
		{cmd: aoe.ConfigForceSet, s: "host=b", want: "host=b"},
		{cmd: aoe.ConfigRead, want: "host=b"},
	}
	for i, tt := range tests {
		rctx := ctx
		if tt.noReply {
			rctx = ctxFor(t, 30*time.Millisecond)
		}
		cfg, err := c.QueryConfig(rctx, tgt, tt.cmd, []byte(tt.s))
		switch {
		case tt.noReply:
			if !errors.Is(err, initiator.ErrNoReply) {
				t.Errorf("%d: %v %q: error = %v, want ErrNoReply", i, tt.cmd, tt.s, err)
			}
			continue
		case tt.err != nil:
			if !errors.Is(err, tt.err) {
				t.Errorf("%d: %v %q: error = %v, want %v", i, tt.cmd, tt.s, err, tt.err)
			}
		case err != nil:
			t.Errorf("%d: %v %q: %v", i, tt.cmd, tt.s, err)
			continue
		}
		if string(cfg.String) != tt.want || cfg.Command != tt.cmd || cfg.SectorCount != 2 || cfg.BufferCount != 16 {
			t.Errorf("%d: %v %q: reply %+v, want string %q", i, tt.cmd, tt.s, cfg, tt.want)
		}
	}
}

func TestMaskAndReserve(t *testing.T) {
	tg := newTarget(8, 1500)
	c := newClient(t, 1500, tg)
	c.SetTimeout(5 * time.Millisecond)
	tgt := initiator.Target{Major: 1, Minor: 0, MAC: targetMAC}
	ctx := ctxFor(t, wait)
	p := make([]byte, aoe.SectorSize)

	// Mask list: only otherMAC may talk to the target.
	m, err := c.MacMask(ctx, tgt, aoe.MacMask{Command: aoe.MaskEdit, Directives: []aoe.Directive{
		{Command: aoe.DirectiveAdd, MAC: otherMAC},
	}})
	wantMask := aoe.MacMask{Command: aoe.MaskEdit, Directives: []aoe.Directive{{Command: aoe.DirectiveAdd, MAC: otherMAC}}}
	if err != nil || !cmp.Equal(m, wantMask) {
		t.Fatalf("MacMask(add) = %+v, %v, want %+v", m, err, wantMask)
	}
	err = c.ReadAt(ctxFor(t, 30*time.Millisecond), tgt, p, 0)
	if !errors.Is(err, initiator.ErrNoReply) {
		t.Errorf("ReadAt from a masked-out MAC: error = %v, want ErrNoReply", err)
	}
	c.SetSourceMAC(otherMAC)
	if got := c.SourceMAC(); got != otherMAC {
		t.Errorf("SourceMAC() = %v, want %v", got, otherMAC)
	}
	if err := c.ReadAt(ctx, tgt, p, 0); err != nil {
		t.Errorf("ReadAt from the masked-in MAC: %v", err)
	}
	m, err = c.MacMask(ctx, tgt, aoe.MacMask{Command: aoe.MaskEdit, Directives: []aoe.Directive{
		{Command: aoe.DirectiveDelete, MAC: otherMAC}, {Command: 9},
	}})
	var me *initiator.MaskError
	if !errors.As(err, &me) || *me != (initiator.MaskError{Code: aoe.MaskErrorBadDirective, Index: 1}) {
		t.Errorf("MacMask(bad directive) = %+v, %v, want MaskError bad directive at 1", m, err)
	}
	c.SetSourceMAC(clientMAC)
	if m, err := c.MacMask(ctx, tgt, aoe.MacMask{Command: aoe.MaskRead}); err != nil || len(m.Directives) != 0 {
		t.Errorf("MacMask(read) = %+v, %v, want an empty list", m, err)
	}

	// Reservation: otherMAC holds the target.
	c.SetSourceMAC(otherMAC)
	r, err := c.Reserve(ctx, tgt, aoe.Reserve{Command: aoe.ReserveSet, MACs: []aoe.MAC{otherMAC}})
	if err != nil || !cmp.Equal(r, aoe.Reserve{Command: aoe.ReserveSet, MACs: []aoe.MAC{otherMAC}}) {
		t.Fatalf("Reserve(set) = %+v, %v", r, err)
	}
	c.SetSourceMAC(clientMAC)
	if err := c.WriteAt(ctx, tgt, p, 0); !errors.Is(err, aoe.ErrorTargetReserved) {
		t.Errorf("WriteAt by a host without the reservation: error = %v, want %v", err, aoe.ErrorTargetReserved)
	}
	if _, _, err := c.Identify(ctx, tgt); err != nil {
		t.Errorf("Identify by a host without the reservation: %v", err)
	}
	if _, err := c.Reserve(ctx, tgt, aoe.Reserve{Command: aoe.ReserveSet}); !errors.Is(err, aoe.ErrorTargetReserved) {
		t.Errorf("release by a host without the reservation: error = %v, want %v", err, aoe.ErrorTargetReserved)
	}
	if r, err := c.Reserve(ctx, tgt, aoe.Reserve{Command: aoe.ReserveForceSet}); err != nil || len(r.MACs) != 0 {
		t.Errorf("Reserve(force-set none) = %+v, %v", r, err)
	}
	if err := c.WriteAt(ctx, tgt, p, 0); err != nil {
		t.Errorf("WriteAt after the release: %v", err)
	}
}

func TestConcurrent(t *testing.T) {
	tg := newTarget(2048, 9000)
	c := newClient(t, 9000, tg)
	ctx := ctxFor(t, wait)
	tgt, err := c.Lookup(ctx, 1, 0)
	if err != nil {
		t.Fatalf("Lookup: %v", err)
	}
	want := bytes.Clone(tg.Disk)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Go(func() {
			for i := 0; i < 4; i++ {
				lba := uint64(g*256 + i*64)
				p := make([]byte, 64*aoe.SectorSize)
				if err := c.ReadAt(ctx, tgt, p, lba); err != nil {
					t.Errorf("ReadAt(%d): %v", lba, err)
					return
				}
				off := int(lba) * aoe.SectorSize
				if !bytes.Equal(p, want[off:off+len(p)]) {
					t.Errorf("ReadAt(%d) returned other bytes than the disk's", lba)
				}
			}
		})
	}
	wg.Wait()
}

func TestClose(t *testing.T) {
	a, b := initiatortest.Pipe() // nobody answers on b
	defer b.Close()
	c := initiator.New(a, clientMAC, 1500)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Do(context.Background(), targetMAC, aoe.Header{Major: 1, Command: aoe.CommandQueryConfig}, nil)
		errc <- err
	}()
	// Wait until the request is on the wire, then close.
	buf := make([]byte, 1600)
	if _, _, err := b.ReadFrom(buf); err != nil {
		t.Fatalf("ReadFrom: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Do during Close: error = %v, want net.ErrClosed", err)
	}
	if _, err := c.Do(context.Background(), targetMAC, aoe.Header{Major: 1}, nil); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Do after Close: error = %v, want net.ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func BenchmarkReadAt(b *testing.B) {
	for _, mtu := range []int{1500, 9000} {
		b.Run(fmt.Sprintf("mtu%d", mtu), func(b *testing.B) {
			tg := newTarget(4096, mtu)
			x, y := initiatortest.Pipe()
			go tg.Serve(y)
			c := initiator.New(x, clientMAC, mtu)
			defer func() { c.Close(); y.Close() }()
			ctx := context.Background()
			tgt, err := c.Lookup(ctx, 1, 0)
			if err != nil {
				b.Fatal(err)
			}
			p := make([]byte, 1<<20)
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			for b.Loop() {
				if err := c.ReadAt(ctx, tgt, p, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestRetransmitStorm resends everything almost at once while the target
// drops some requests and duplicates some replies: every sector must still
// be written and read exactly as given, whatever reply arrives when.
func TestRetransmitStorm(t *testing.T) {
	for _, mtu := range []int{1500, 9000} {
		t.Run(fmt.Sprintf("mtu%d", mtu), func(t *testing.T) {
			tg := newTarget(4096, mtu)
			n := 0
			tg.Intercept = func(req aoe.Frame, replies [][]byte) [][]byte {
				n++
				switch {
				case n%3 == 0:
					return nil
				case n%5 == 0:
					return append(replies, replies...)
				}
				return replies
			}
			c := newClient(t, mtu, tg)
			c.SetTimeout(time.Millisecond)
			tgt := initiator.Target{Major: 1, Minor: 0, MAC: targetMAC, Config: aoe.Config{SectorCount: 17}}
			ctx := ctxFor(t, wait)
			data := make([]byte, len(tg.Disk)-8*aoe.SectorSize)
			for i := range data {
				data[i] = byte(rand.Uint32())
			}
			if err := c.WriteAt(ctx, tgt, data, 3); err != nil {
				t.Fatalf("WriteAt: %v", err)
			}
			if !bytes.Equal(tg.Disk[3*aoe.SectorSize:][:len(data)], data) {
				t.Fatalf("disk differs from what WriteAt wrote")
			}
			got := make([]byte, len(data))
			if err := c.ReadAt(ctx, tgt, got, 3); err != nil {
				t.Fatalf("ReadAt: %v", err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("ReadAt returned other bytes than the disk's")
			}
		})
	}
}
