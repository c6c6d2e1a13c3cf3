package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mdlayher/packet"

	"github.com/aoetarget/aoetarget/aoe"
	"github.com/aoetarget/aoetarget/initiator"
	"github.com/aoetarget/aoetarget/internal/netns"
	"github.com/aoetarget/aoetarget/netconf"
)

// The integration tests run the real binaries, aoetarget and Debian's
// vblade, in one network namespace and the project's initiator in another,
// over a veth pair. The suite that both pass proves the initiator right;
// where vblade differs by design the test says so.

// binPath is the aoetarget binary built by TestMain.
var binPath string

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "aoetarget-bin")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		binPath = filepath.Join(dir, "aoetarget")
		out, err := exec.Command("go", "build", "-race", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "building aoetarget: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// impl is a target implementation under test.
type impl struct {
	name   string
	vblade bool
	wrap   []string // a command that runs the target, e.g. setpriv
}

var (
	ours   = impl{name: "aoetarget"}
	vblade = impl{name: "vblade", vblade: true}
	impls  = []impl{ours, vblade}
)

func (i impl) path(t *testing.T) string {
	if !i.vblade {
		return binPath
	}
	p, err := exec.LookPath("vblade")
	if err != nil {
		if p, err = exec.LookPath("/usr/sbin/vblade"); err != nil {
			t.Skip("skipping: Debian's vblade is not installed (apt-get install vblade; hack/test installs it)")
		}
	}
	return p
}

// lab is one test's network: the target's namespace and the initiator's,
// joined by a veth pair.
type lab struct {
	t        *testing.T
	tgt, ini *netns.NS
	tif, iif string
	mtu      int
	client   *initiator.Client
	srcMAC   aoe.MAC // the initiator interface's MAC
	tgtMAC   aoe.MAC
}

const testShelf, testSlot = 7, 3

func newLab(t *testing.T, mtu int) *lab {
	netns.SkipUnlessRoot(t)
	l := &lab{t: t, tgt: netns.New(t), ini: netns.New(t), mtu: mtu}
	l.tif, l.iif = netns.Veth(t, l.tgt, l.ini, mtu)
	l.tgtMAC, _ = aoe.MACFrom(l.tgt.HardwareAddr(t, l.tif))
	l.srcMAC, _ = aoe.MACFrom(l.ini.HardwareAddr(t, l.iif))
	l.client = l.dial()
	return l
}

// dial opens an initiator in the initiator's namespace.
func (l *lab) dial() *initiator.Client {
	var c *initiator.Client
	err := l.ini.Do(func() error {
		var err error
		c, err = initiator.Dial(l.iif)
		return err
	})
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { c.Close() })
	return c
}

// rawConn opens a raw AoE socket in the initiator's namespace that sees
// every response.
func (l *lab) rawConn() *packet.Conn {
	var c *packet.Conn
	err := l.ini.Do(func() error {
		ifi, err := netconf.Lookup(l.iif)
		if err != nil {
			return err
		}
		c, err = netconf.Listen(ifi, netconf.Config{Filter: netconf.Filter{Responses: true, AnyAddress: true}})
		return err
	})
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { c.Close() })
	return c
}

// exchange sends f from a raw socket and returns the first reply with its
// tag.
func (l *lab) exchange(f aoe.Frame) aoe.Frame {
	l.t.Helper()
	c := l.rawConn()
	b, err := f.MarshalBinary()
	if err != nil {
		l.t.Fatal(err)
	}
	if _, err := c.WriteTo(b, &packet.Addr{HardwareAddr: f.Dst.HardwareAddr()}); err != nil {
		l.t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 9100)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			l.t.Fatalf("no reply to %+v: %v", f.Header, err)
		}
		r, err := aoe.ParseFrame(buf[:n])
		if err == nil && r.Header.Tag == f.Header.Tag {
			r.Arg = bytes.Clone(r.Arg)
			return r
		}
	}
}

// image creates a backing file of the given size filled with fill.
func image(t *testing.T, sectors int, fill byte) string {
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(p, bytes.Repeat([]byte{fill}, sectors*aoe.SectorSize), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// proc is a running target.
type proc struct {
	cmd  *exec.Cmd
	out  *netns.Output
	done chan error
}

// start runs impl with the given flags on file in the target namespace and
// waits until it answers a Query Config.
func (l *lab) start(i impl, file string, flags ...string) *proc {
	return l.startAddr(i, file, testShelf, testSlot, flags...)
}

func (l *lab) startAddr(i impl, file string, shelf, slot int, flags ...string) *proc {
	t := l.t
	args := append(flags, fmt.Sprint(shelf), fmt.Sprint(slot), l.tif, file)
	p := &proc{out: &netns.Output{}, done: make(chan error, 1)}
	p.cmd = l.command(context.Background(), i, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", i.name, p.out.String())
		}
	})
	l.waitReady(uint16(shelf), uint8(slot), p)
	return p
}

// command returns the command that runs i (through its wrapper, if any)
// with args in the target's namespace.
func (l *lab) command(ctx context.Context, i impl, args ...string) *exec.Cmd {
	if len(i.wrap) == 0 {
		return l.tgt.Command(ctx, i.path(l.t), args...)
	}
	return l.tgt.Command(ctx, i.wrap[0], append(append(slices.Clone(i.wrap[1:]), i.path(l.t)), args...)...)
}

// roundTrip writes n random bytes at lba, reads them back, fails the test
// unless they come back intact within d, and returns them.
func (l *lab) roundTrip(tg initiator.Target, lba uint64, n int, d time.Duration) []byte {
	l.t.Helper()
	data := make([]byte, n)
	rand.Read(data)
	ctx := ctxT(l.t, d)
	if err := l.client.WriteAt(ctx, tg, data, lba); err != nil {
		l.t.Fatal(err)
	}
	got := make([]byte, len(data))
	if err := l.client.ReadAt(ctx, tg, got, lba); err != nil || !bytes.Equal(got, data) {
		l.t.Fatalf("read back: %v, equal %v", err, bytes.Equal(got, data))
	}
	return data
}

// waitReady waits until the target answers a Query Config.
func (l *lab) waitReady(shelf uint16, slot uint8, p *proc) initiator.Target {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		tctx, tcancel := context.WithTimeout(ctx, time.Second)
		tg, err := l.client.Lookup(tctx, shelf, slot)
		tcancel()
		if err == nil {
			return tg
		}
		select {
		case err := <-p.done:
			l.t.Fatalf("target exited: %v\n%s", err, p.out.String())
		case <-ctx.Done():
			l.t.Fatalf("target never answered: %v\n%s", err, p.out.String())
		default:
		}
	}
}

// stop sends SIGTERM and returns the exit error.
func (p *proc) stop(t *testing.T) error {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("target did not stop on SIGTERM")
		return nil
	}
}

func (l *lab) target() initiator.Target {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tg, err := l.client.Lookup(ctx, testShelf, testSlot)
	if err != nil {
		l.t.Fatal(err)
	}
	return tg
}

// noReplyWait is how long a test waits to conclude that no reply comes.
const noReplyWait = 600 * time.Millisecond

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// ataErr returns the ATA status and error of err, which must be an
// *initiator.ATAError.
func ataErr(t *testing.T, err error) (status, errReg uint8) {
	t.Helper()
	var ae *initiator.ATAError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v: want an ATA error", err)
	}
	return ae.Status, ae.Err
}

func forEach(t *testing.T, fn func(t *testing.T, i impl)) {
	for _, i := range impls {
		t.Run(i.name, func(t *testing.T) {
			t.Parallel()
			fn(t, i)
		})
	}
}

func TestIntegrationDiscoverIdentify(t *testing.T) {
	forEach(t, func(t *testing.T, i impl) {
		l := newLab(t, 1500)
		const sectors = 8192
		l.start(i, image(t, sectors, 0), "-b", "24")
		ts, err := l.client.Discover(ctxT(t, 1500*time.Millisecond), aoe.BroadcastMajor, aoe.BroadcastMinor)
		if err != nil {
			t.Fatal(err)
		}
		if len(ts) != 1 {
			t.Fatalf("discovered %v, want one target", ts)
		}
		tg := ts[0]
		if tg.Major != testShelf || tg.Minor != testSlot || tg.MAC != l.tgtMAC {
			t.Fatalf("discovered %v at %v, want %d.%d at %v", tg, tg.MAC, testShelf, testSlot, l.tgtMAC)
		}
		if tg.Config.BufferCount != 24 || tg.Config.SectorCount != 2 {
			t.Fatalf("config %+v: want bufcnt 24, 2 sectors per frame at MTU 1500", tg.Config)
		}
		id, page, err := l.client.Identify(ctxT(t, 5*time.Second), tg)
		if err != nil {
			t.Fatal(err)
		}
		if id.Sectors != sectors {
			t.Fatalf("IDENTIFY capacity %d, want %d", id.Sectors, sectors)
		}
		w := func(i int) uint16 { return uint16(page[2*i]) | uint16(page[2*i+1])<<8 }
		if w(83)&(1<<10) == 0 || w(86)&(1<<10) == 0 || uint32(w(60))|uint32(w(61))<<16 != sectors {
			t.Fatalf("IDENTIFY words 83 %#x 86 %#x 60-61: want LBA48 and LBA28 capacity", w(83), w(86))
		}
		wantModel := "aoetarget"
		if i.vblade {
			wantModel = "Coraid EtherDrive vblade"
		}
		if id.Model != wantModel || !strings.HasPrefix(id.Serial, fmt.Sprintf("%d.%d:", testShelf, testSlot)) {
			t.Fatalf("IDENTIFY model %q serial %q", id.Model, id.Serial)
		}
	})
}

func TestIntegrationRoundTrip(t *testing.T) {
	for _, mtu := range []int{1500, 9000} {
		t.Run(fmt.Sprint(mtu), func(t *testing.T) {
			forEach(t, func(t *testing.T, i impl) {
				l := newLab(t, mtu)
				file := image(t, 8192, 0)
				l.start(i, file)
				tg := l.target()
				want := map[int]int{1500: 2, 9000: 17}[mtu]
				if int(tg.Config.SectorCount) != want || tg.MaxSectors(mtu) != want {
					t.Fatalf("sectors per frame %d (%d), want %d", tg.Config.SectorCount, tg.MaxSectors(mtu), want)
				}
				data := make([]byte, 1<<20)
				rand.Read(data)
				const lba = 1001 // odd, so frames straddle 4 KiB pages
				ctx := ctxT(t, 30*time.Second)
				if err := l.client.WriteAt(ctx, tg, data, lba); err != nil {
					t.Fatal(err)
				}
				got := make([]byte, len(data))
				if err := l.client.ReadAt(ctx, tg, got, lba); err != nil {
					t.Fatal(err)
				}
				if sha256.Sum256(got) != sha256.Sum256(data) {
					t.Fatal("read back differs from what was written")
				}
				disk, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(disk[lba*512:lba*512+len(data)], data) {
					t.Fatal("backing file does not hold the data")
				}
				if n := bytes.Count(disk[:lba*512], []byte{0}) + bytes.Count(disk[lba*512+len(data):], []byte{0}); n != len(disk)-len(data) {
					t.Fatal("bytes outside the written range changed")
				}
			})
		})
	}
}

func TestIntegrationATAErrors(t *testing.T) {
	forEach(t, func(t *testing.T, i impl) {
		l := newLab(t, 1500)
		const sectors = 1000
		file := image(t, sectors, 0x5a)
		l.start(i, file)
		tg := l.target()
		ctx := ctxT(t, 20*time.Second)
		read := func(lba uint64, n uint8) error {
			_, err := l.client.ATA(ctx, tg, aoe.ATA{Flags: aoe.ATAExtended, SectorCount: n, CmdStatus: aoe.ATAReadSectorsExt, LBA: lba})
			return err
		}
		// The last sector reads; past the end is IDNF.
		if err := read(sectors-1, 1); err != nil {
			t.Fatalf("last sector: %v", err)
		}
		for _, c := range []struct {
			lba uint64
			n   uint8
		}{{sectors, 1}, {sectors - 1, 2}, {aoe.MaxLBA48, 1}} {
			st, er := ataErr(t, read(c.lba, c.n))
			if st != 0x41 || er&aoe.ATAErrorIDNF == 0 {
				t.Fatalf("read %d+%d: status %#x error %#x, want 0x41 IDNF", c.lba, c.n, st, er)
			}
		}
		// A write past the end is IDNF too and changes nothing.
		_, err := l.client.ATA(ctx, tg, aoe.ATA{Flags: aoe.ATAExtended | aoe.ATAWrite, SectorCount: 2, CmdStatus: aoe.ATAWriteSectorsExt, LBA: sectors - 1, Data: make([]byte, 1024)})
		if st, er := ataErr(t, err); st != 0x41 || er&aoe.ATAErrorIDNF == 0 {
			t.Fatalf("write across the end: status %#x error %#x", st, er)
		}
		disk, _ := os.ReadFile(file)
		if !bytes.Equal(disk, bytes.Repeat([]byte{0x5a}, len(disk))) {
			t.Fatal("a failed write changed the file")
		}
		// An LBA28 read masks the top nibble of lba3 (0xe0, as Linux sends).
		r, err := l.client.ATA(ctx, tg, aoe.ATA{SectorCount: 1, CmdStatus: aoe.ATAReadSectors, LBA: 0xe0<<24 | 5})
		if err != nil || len(r.Data) != 512 || r.CmdStatus != 0x40 {
			t.Fatalf("LBA28 read: %v, %d bytes, status %#x", err, len(r.Data), r.CmdStatus)
		}
		// Unknown ATA commands are aborted.
		_, err = l.client.ATA(ctx, tg, aoe.ATA{CmdStatus: 0xef})
		if st, er := ataErr(t, err); st != 0x41 || er != aoe.ATAErrorABRT {
			t.Fatalf("SET FEATURES: status %#x error %#x, want 0x41 ABRT", st, er)
		}
		// CHECK POWER MODE: active.
		r, err = l.client.ATA(ctx, tg, aoe.ATA{CmdStatus: aoe.ATACheckPowerMode})
		if err != nil || r.SectorCount != 0xff {
			t.Fatalf("CHECK POWER MODE: %v, count %#x", err, r.SectorCount)
		}
		// FLUSH CACHE: both succeed (vblade without syncing).
		if _, err := l.client.ATA(ctx, tg, aoe.ATA{CmdStatus: aoe.ATAFlushCache}); err != nil {
			t.Fatalf("FLUSH CACHE: %v", err)
		}
		// FLUSH CACHE EXT: vblade aborts it by design; we flush.
		err = l.client.Flush(ctx, tg)
		if i.vblade {
			if st, er := ataErr(t, err); st != 0x41 || er != aoe.ATAErrorABRT {
				t.Fatalf("vblade FLUSH CACHE EXT: %#x %#x", st, er)
			}
		} else if err != nil {
			t.Fatalf("FLUSH CACHE EXT: %v", err)
		}
	})
}

func TestIntegrationAoEErrors(t *testing.T) {
	forEach(t, func(t *testing.T, i impl) {
		l := newLab(t, 1500)
		l.start(i, image(t, 64, 0))
		tg := l.target()
		ctx := ctxT(t, 10*time.Second)
		// An unknown AoE command: error 1.
		_, err := l.client.Do(ctx, tg.MAC, aoe.Header{Major: testShelf, Minor: testSlot, Command: 9}, nil)
		if !errors.Is(err, aoe.ErrorUnrecognizedCommand) {
			t.Fatalf("command 9: %v", err)
		}
		// Frames with the response flag, or for another address, get no answer.
		short := func() context.Context { return ctxT(t, noReplyWait) }
		cfg, _ := aoe.Config{}.MarshalBinary()
		for _, h := range []aoe.Header{
			{Flags: aoe.FlagResponse, Major: testShelf, Minor: testSlot, Command: aoe.CommandQueryConfig},
			{Major: testShelf + 1, Minor: testSlot, Command: aoe.CommandQueryConfig},
			{Major: testShelf, Minor: testSlot + 1, Command: aoe.CommandQueryConfig},
		} {
			if _, err := l.client.Do(short(), tg.MAC, h, cfg); !errors.Is(err, initiator.ErrNoReply) {
				t.Fatalf("%+v: %v, want no reply", h, err)
			}
		}
		// Version 2: aoetarget answers error 5; vblade does not check the
		// version at all and answers the query.
		f := aoe.Frame{Dst: tg.MAC, Src: l.srcMAC, Arg: cfg, Header: aoe.Header{
			Version: 2, Major: testShelf, Minor: testSlot, Command: aoe.CommandQueryConfig, Tag: 0x8000_0042}}
		r := l.exchange(f)
		if i.vblade {
			t.Logf("vblade answers a version 2 frame with version %d, flags %#x, error %d (no version check by design)",
				r.Header.Version, r.Header.Flags, r.Header.Error)
		} else if r.Header.Flags&aoe.FlagError == 0 || r.Header.Error != aoe.ErrorUnsupportedVersion || r.Header.Version != aoe.Version {
			t.Fatalf("version 2: reply %+v, want error 5", r.Header)
		}
	})
}

func TestIntegrationQueryConfig(t *testing.T) {
	forEach(t, func(t *testing.T, i impl) {
		l := newLab(t, 1500)
		l.start(i, image(t, 64, 0))
		tg := l.target()
		ctx := ctxT(t, 10*time.Second)
		short := func() context.Context { return ctxT(t, noReplyWait) }
		c, err := l.client.QueryConfig(ctx, tg, aoe.ConfigSet, []byte("replica-a"))
		if err != nil || string(c.String) != "replica-a" {
			t.Fatalf("set: %v %q", err, c.String)
		}
		if _, err := l.client.QueryConfig(ctx, tg, aoe.ConfigSet, []byte("other")); !errors.Is(err, aoe.ErrorConfigStringPresent) {
			t.Fatalf("set over a present string: %v, want error 4", err)
		}
		if c, err := l.client.QueryConfig(ctx, tg, aoe.ConfigTest, []byte("replica-a")); err != nil || string(c.String) != "replica-a" {
			t.Fatalf("test: %v %q", err, c.String)
		}
		if _, err := l.client.QueryConfig(short(), tg, aoe.ConfigTest, []byte("replica")); !errors.Is(err, initiator.ErrNoReply) {
			t.Fatalf("test mismatch: %v, want no reply", err)
		}
		if _, err := l.client.QueryConfig(ctx, tg, aoe.ConfigTestPrefix, []byte("replica")); err != nil {
			t.Fatalf("test prefix: %v", err)
		}
		if _, err := l.client.QueryConfig(short(), tg, aoe.ConfigTestPrefix, []byte("replica-b")); !errors.Is(err, initiator.ErrNoReply) {
			t.Fatalf("prefix mismatch: %v, want no reply", err)
		}
		long := bytes.Repeat([]byte("x"), 1024)
		if c, err := l.client.QueryConfig(ctx, tg, aoe.ConfigForceSet, long); err != nil || !bytes.Equal(c.String, long) {
			t.Fatalf("force set of 1024 bytes: %v, %d bytes", err, len(c.String))
		}
		if c, err := l.client.QueryConfig(ctx, tg, aoe.ConfigRead, nil); err != nil || !bytes.Equal(c.String, long) {
			t.Fatalf("read: %v, %d bytes", err, len(c.String))
		}
	})
}

func TestIntegrationMacMask(t *testing.T) {
	forEach(t, func(t *testing.T, i impl) {
		l := newLab(t, 1500)
		l.start(i, image(t, 64, 0))
		tg := l.target()
		ctx := ctxT(t, 10*time.Second)
		add := func(m aoe.MAC) aoe.Directive { return aoe.Directive{Command: aoe.DirectiveAdd, MAC: m} }
		// The list holds 32; the 33rd add fails with "list full" and the
		// reply's count says which directive failed.
		var ds []aoe.Directive
		for j := range 33 {
			ds = append(ds, add(aoe.MAC{0x02, 0x43, 0, 0, 0, byte(j)}))
		}
		ds[0] = add(l.srcMAC)
		_, err := l.client.MacMask(ctx, tg, aoe.MacMask{Command: aoe.MaskEdit, Directives: ds})
		var me *initiator.MaskError
		if !errors.As(err, &me) || me.Code != aoe.MaskErrorListFull || me.Index != 32 {
			t.Fatalf("33 adds: %v, want list full at directive 32", err)
		}
		r, err := l.client.MacMask(ctx, tg, aoe.MacMask{Command: aoe.MaskRead})
		if err != nil || len(r.Directives) != 32 || r.Directives[0].MAC != l.srcMAC {
			t.Fatalf("read: %v, %d entries", err, len(r.Directives))
		}
		// We are on the list and served; a MAC that is not gets no answer.
		if _, _, err := l.client.Identify(ctx, tg); err != nil {
			t.Fatalf("identify from a listed MAC: %v", err)
		}
		l.client.SetSourceMAC(aoe.MAC{0x02, 0x42, 0, 0, 0, 1})
		sctx := ctxT(t, noReplyWait)
		if _, _, err := l.client.Identify(sctx, tg); !errors.Is(err, initiator.ErrNoReply) {
			t.Fatalf("identify from a masked-out MAC: %v, want no reply", err)
		}
		l.client.SetSourceMAC(l.srcMAC)
		if i.vblade {
			// vblade 25 as Debian builds it aborts ("*** buffer overflow
			// detected ***") on a delete directive; see the closing note.
			return
		}
		dels := make([]aoe.Directive, len(r.Directives))
		for j, d := range r.Directives {
			dels[j] = aoe.Directive{Command: aoe.DirectiveDelete, MAC: d.MAC}
		}
		if r, err := l.client.MacMask(ctx, tg, aoe.MacMask{Command: aoe.MaskEdit, Directives: dels}); err != nil || len(r.Directives) != 0 {
			t.Fatalf("delete all: %v %+v", err, r)
		}
		l.client.SetSourceMAC(aoe.MAC{0x02, 0x42, 0, 0, 0, 1})
		if _, _, err := l.client.Identify(ctx, tg); err != nil {
			t.Fatalf("identify after the list was emptied: %v", err)
		}
	})
}

func TestIntegrationInitialMask(t *testing.T) {
	forEach(t, func(t *testing.T, i impl) {
		l := newLab(t, 1500)
		p := l.start(i, image(t, 64, 0), "-m", strings.ReplaceAll(strings.ToUpper(l.srcMAC.String()), ":", "")+",02:42:00:00:00:09")
		_ = p
		tg := l.target() // we are on the list
		ctx := ctxT(t, 10*time.Second)
		r, err := l.client.MacMask(ctx, tg, aoe.MacMask{Command: aoe.MaskRead})
		if err != nil || len(r.Directives) != 2 {
			t.Fatalf("read: %v %+v", err, r)
		}
		l.client.SetSourceMAC(aoe.MAC{0x02, 0x42, 0, 0, 0, 0x10})
		sctx := ctxT(t, noReplyWait)
		if _, err := l.client.Lookup(sctx, testShelf, testSlot); !errors.Is(err, initiator.ErrNoReply) {
			t.Fatalf("query from an unlisted MAC: %v, want no reply", err)
		}
	})
}

func TestIntegrationReserve(t *testing.T) {
	forEach(t, func(t *testing.T, i impl) {
		l := newLab(t, 1500)
		l.start(i, image(t, 64, 0))
		tg := l.target()
		ctx := ctxT(t, 10*time.Second)
		other := aoe.MAC{0x02, 0x42, 0, 0, 0, 2}
		r, err := l.client.Reserve(ctx, tg, aoe.Reserve{Command: aoe.ReserveSet, MACs: []aoe.MAC{l.srcMAC}})
		if err != nil || len(r.MACs) != 1 {
			t.Fatalf("set: %v %+v", err, r)
		}
		buf := make([]byte, 512)
		if err := l.client.ReadAt(ctx, tg, buf, 0); err != nil {
			t.Fatalf("read by the holder: %v", err)
		}
		l.client.SetSourceMAC(other)
		if err := l.client.ReadAt(ctx, tg, buf, 0); !errors.Is(err, aoe.ErrorTargetReserved) {
			t.Fatalf("read by another host: %v, want error 6", err)
		}
		if _, _, err := l.client.Identify(ctx, tg); err != nil {
			t.Fatalf("IDENTIFY by another host while reserved: %v", err)
		}
		if _, err := l.client.Reserve(ctx, tg, aoe.Reserve{Command: aoe.ReserveSet, MACs: []aoe.MAC{other}}); !errors.Is(err, aoe.ErrorTargetReserved) {
			t.Fatalf("set by another host: %v, want error 6", err)
		}
		if r, err := l.client.Reserve(ctx, tg, aoe.Reserve{Command: aoe.ReserveRead}); err != nil || len(r.MACs) != 1 || r.MACs[0] != l.srcMAC {
			t.Fatalf("read the list: %v %+v", err, r)
		}
		if _, err := l.client.Reserve(ctx, tg, aoe.Reserve{Command: aoe.ReserveForceSet}); err != nil {
			t.Fatalf("force release: %v", err)
		}
		if err := l.client.ReadAt(ctx, tg, buf, 0); err != nil {
			t.Fatalf("read after release: %v", err)
		}
	})
}

func TestIntegrationReadOnly(t *testing.T) {
	forEach(t, func(t *testing.T, i impl) {
		l := newLab(t, 1500)
		file := image(t, 64, 0x33)
		l.start(i, file, "-r")
		tg := l.target()
		ctx := ctxT(t, 10*time.Second)
		err := l.client.WriteAt(ctx, tg, make([]byte, 1024), 0)
		if st, er := ataErr(t, err); st&aoe.ATAStatusERR == 0 || er&aoe.ATAErrorABRT == 0 {
			t.Fatalf("write to a read-only export: %#x %#x", st, er)
		}
		buf := make([]byte, 1024)
		if err := l.client.ReadAt(ctx, tg, buf, 0); err != nil || !bytes.Equal(buf, bytes.Repeat([]byte{0x33}, 1024)) {
			t.Fatalf("read: %v", err)
		}
		disk, _ := os.ReadFile(file)
		if !bytes.Equal(disk, bytes.Repeat([]byte{0x33}, len(disk))) {
			t.Fatal("the file changed")
		}
	})
}

func TestIntegrationWindow(t *testing.T) {
	forEach(t, func(t *testing.T, i impl) {
		l := newLab(t, 1500)
		file := image(t, 2048, 0xaa)
		const off, length = 100, 1000
		l.start(i, file, "-o", fmt.Sprint(off), "-l", fmt.Sprint(length))
		tg := l.target()
		ctx := ctxT(t, 30*time.Second)
		id, _, err := l.client.Identify(ctx, tg)
		if err != nil || id.Sectors != length {
			t.Fatalf("capacity %d (%v), want %d", id.Sectors, err, length)
		}
		data := make([]byte, length*512)
		rand.Read(data)
		if err := l.client.WriteAt(ctx, tg, data, 0); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(data))
		if err := l.client.ReadAt(ctx, tg, got, 0); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read back: %v", err)
		}
		if err := l.client.WriteAt(ctx, tg, make([]byte, 512), length); err == nil {
			t.Fatal("write past the window succeeded")
		}
		disk, _ := os.ReadFile(file)
		if !bytes.Equal(disk[off*512:(off+length)*512], data) {
			t.Fatal("window does not hold the data at the offset")
		}
		if !bytes.Equal(disk[:off*512], bytes.Repeat([]byte{0xaa}, off*512)) ||
			!bytes.Equal(disk[(off+length)*512:], bytes.Repeat([]byte{0xaa}, len(disk)-(off+length)*512)) {
			t.Fatal("bytes outside the window changed")
		}
	})
}

func TestIntegrationBroadcastAddressing(t *testing.T) {
	forEach(t, func(t *testing.T, i impl) {
		l := newLab(t, 1500)
		l.start(i, image(t, 64, 0))
		ctx := ctxT(t, 10*time.Second)
		for _, a := range [][2]int{{aoe.BroadcastMajor, aoe.BroadcastMinor}, {testShelf, aoe.BroadcastMinor}, {aoe.BroadcastMajor, testSlot}} {
			tg, err := l.client.Lookup(ctx, uint16(a[0]), uint8(a[1]))
			if err != nil || tg.Major != testShelf || tg.Minor != testSlot {
				t.Fatalf("lookup %d.%d: %v %v", a[0], a[1], err, tg)
			}
		}
		// An ATA command to the broadcast address is served too.
		tg := initiator.Target{Major: aoe.BroadcastMajor, Minor: aoe.BroadcastMinor, MAC: l.tgtMAC, Config: l.target().Config}
		if id, _, err := l.client.Identify(ctx, tg); err != nil || id.Sectors != 64 {
			t.Fatalf("broadcast IDENTIFY: %v %+v", err, id)
		}
	})
}

// TestIntegrationAnnounce checks the unsolicited config response at
// startup: broadcast, or unicast to each MAC of the mask list.
func TestIntegrationAnnounce(t *testing.T) {
	for _, masked := range []bool{false, true} {
		t.Run(fmt.Sprint("masked=", masked), func(t *testing.T) {
			forEach(t, func(t *testing.T, i impl) {
				l := newLab(t, 9000)
				raw := l.rawConn()
				var flags []string
				want := aoe.BroadcastMAC
				if masked {
					flags = []string{"-m", l.srcMAC.String()}
					want = l.srcMAC
				}
				l.start(i, image(t, 64, 0), flags...)
				raw.SetReadDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 9100)
				for {
					n, _, err := raw.ReadFrom(buf)
					if err != nil {
						t.Fatalf("no announcement: %v", err)
					}
					f, err := aoe.ParseFrame(buf[:n])
					if err != nil || f.Header.Command != aoe.CommandQueryConfig || f.Header.Tag != 0 {
						continue // the test's own lookups
					}
					c, err := aoe.ParseConfig(f.Arg)
					if err != nil {
						t.Fatal(err)
					}
					if f.Dst != want || f.Src != l.tgtMAC || f.Header.Major != testShelf || f.Header.Minor != testSlot || c.SectorCount != 17 {
						t.Fatalf("announcement %v -> %v %+v %+v, want to %v", f.Src, f.Dst, f.Header, c, want)
					}
					if !i.vblade && f.Header.Version != aoe.Version {
						t.Fatalf("announcement version %d", f.Header.Version)
					}
					return
				}
			})
		})
	}
}

// TestIntegrationLinkFlap takes the target's link down and up: vblade
// exits on the socket error; aoetarget keeps serving.
func TestIntegrationLinkFlap(t *testing.T) {
	l := newLab(t, 1500)
	p := l.start(ours, image(t, 64, 0))
	tg := l.target()
	for range 3 {
		l.tgt.LinkDown(t, l.tif)
		sctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		if _, _, err := l.client.Identify(sctx, tg); err == nil {
			t.Fatal("answered while its link was down")
		}
		cancel()
		l.tgt.LinkUp(t, l.tif)
		l.tgt.WaitRunning(t, l.tif)
		if _, _, err := l.client.Identify(ctxT(t, 10*time.Second), tg); err != nil {
			t.Fatalf("after the link came back: %v\n%s", err, p.out.String())
		}
	}
	select {
	case err := <-p.done:
		t.Fatalf("target exited: %v", err)
	default:
	}
}

// TestIntegrationInterfaceRecreated deletes the target's interface and
// creates it again under the same name: aoetarget reopens its socket.
func TestIntegrationInterfaceRecreated(t *testing.T) {
	l := newLab(t, 1500)
	p := l.start(ours, image(t, 64, 0))
	l.tgt.DeleteLink(t, l.tif) // deletes both ends of the pair
	l.client.Close()
	netns.VethNamed(t, l.tgt, l.tif, l.ini, l.iif, 1500)
	l.client = l.dial()
	l.waitReady(testShelf, testSlot, p)
	if !strings.Contains(p.out.String(), "recreated") {
		t.Fatalf("no log line about the recreated interface:\n%s", p.out.String())
	}
}

// TestIntegrationMTUChange raises the MTU while the target runs: it
// announces and serves 17 sectors per frame.
func TestIntegrationMTUChange(t *testing.T) {
	l := newLab(t, 1500)
	l.start(ours, image(t, 64, 0))
	l.tgt.SetMTU(t, l.tif, 9000)
	l.ini.SetMTU(t, l.iif, 9000)
	l.client.Close()
	l.client = l.dial()
	ctx := ctxT(t, 20*time.Second)
	for {
		tg, err := l.client.Lookup(ctx, testShelf, testSlot)
		if err != nil {
			t.Fatal(err)
		}
		if tg.Config.SectorCount == 17 {
			buf := make([]byte, 17*512)
			if err := l.client.ReadAt(ctx, tg, buf, 0); err != nil {
				t.Fatal(err)
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestIntegrationAoeping runs Debian's aoeping (aoetools) against
// aoetarget: discovery and IDENTIFY.
func TestIntegrationAoeping(t *testing.T) {
	l := newLab(t, 1500)
	path, err := exec.LookPath("aoeping")
	if err != nil {
		if path, err = exec.LookPath("/usr/sbin/aoeping"); err != nil {
			t.Skip("skipping: aoeping (Debian aoetools) is not installed")
		}
	}
	l.start(ours, image(t, 64, 0))
	out, err := l.ini.Command(context.Background(), path, "-v", "-s", "5", "-I", fmt.Sprint(testShelf), fmt.Sprint(testSlot), l.iif).CombinedOutput()
	if err != nil {
		t.Fatalf("aoeping: %v\n%s", err, out)
	}
	for _, want := range []string{
		fmt.Sprintf("found e%d.%d with mac %s", testShelf, testSlot, strings.ReplaceAll(l.tgtMAC.String(), ":", "")),
		"model: aoetarget",
		fmt.Sprintf("serial_number: %d.%d:", testShelf, testSlot),
	} {
		if !bytes.Contains(out, []byte(want)) {
			t.Fatalf("aoeping output lacks %q:\n%s", want, out)
		}
	}
}

// TestIntegrationStop checks that SIGTERM stops aoetarget cleanly (exit
// status 0), and that a write acknowledged before is in the file.
func TestIntegrationStop(t *testing.T) {
	l := newLab(t, 1500)
	file := image(t, 64, 0)
	p := l.start(ours, file)
	tg := l.target()
	data := bytes.Repeat([]byte("durable!"), 128)
	if err := l.client.WriteAt(ctxT(t, 10*time.Second), tg, data, 8); err != nil {
		t.Fatal(err)
	}
	if err := p.stop(t); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.out.String())
	}
	if !strings.Contains(p.out.String(), "stopping") {
		t.Fatalf("no stop message:\n%s", p.out.String())
	}
	disk, _ := os.ReadFile(file)
	if !bytes.Equal(disk[8*512:8*512+len(data)], data) {
		t.Fatal("acknowledged write not in the file")
	}
}

// TestIntegrationTshark captures a session with tshark and checks that
// Wireshark's AoE dissector finds every frame well-formed and every
// request answered.
func TestIntegrationTshark(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("skipping: tshark is not installed")
	}
	l := newLab(t, 1500)
	pcap := filepath.Join(t.TempDir(), "aoe.pcap")
	capture := l.ini.Command(context.Background(), "dumpcap", "-q", "-i", l.iif, "-w", pcap)
	if err := capture.Start(); err != nil {
		t.Skipf("skipping: dumpcap: %v", err)
	}
	time.Sleep(time.Second) // dumpcap has no readiness signal
	l.start(ours, image(t, 256, 0))
	tg := l.target()
	ctx := ctxT(t, 10*time.Second)
	data := make([]byte, 64*512)
	rand.Read(data)
	if err := l.client.WriteAt(ctx, tg, data, 0); err != nil {
		t.Fatal(err)
	}
	if err := l.client.ReadAt(ctx, tg, data, 0); err != nil {
		t.Fatal(err)
	}
	l.client.ATA(ctx, tg, aoe.ATA{Flags: aoe.ATAExtended, SectorCount: 1, CmdStatus: aoe.ATAReadSectorsExt, LBA: 1 << 40})
	time.Sleep(500 * time.Millisecond)
	capture.Process.Signal(syscall.SIGTERM)
	capture.Wait()
	out, err := exec.Command(tshark, "-2", "-r", pcap, "-Y", "aoe", "-T", "fields",
		"-e", "aoe.response", "-e", "aoe.cmd", "-e", "aoe.ata.status", "-e", "_ws.malformed", "-e", "aoe.response_in").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	// Only ATA requests are checked for answers: the test's first Query
	// Config broadcasts may go out before the target is up.
	var reqs, resps, unanswered int
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		f := strings.Split(line, "\t")
		if len(f) < 5 {
			t.Fatalf("tshark line %q", line)
		}
		if f[3] != "" {
			t.Fatalf("tshark finds a malformed frame: %q", line)
		}
		if f[1] != "0" { // not ATA
			continue
		}
		if f[0] == "1" || f[0] == "True" {
			resps++
			continue
		}
		reqs++
		if f[4] == "" {
			unanswered++
			t.Logf("unanswered: %q", line)
		}
	}
	t.Logf("tshark: %d ATA requests, %d responses, %d unanswered", reqs, resps, unanswered)
	if reqs < 33 || resps < reqs || unanswered > 0 {
		t.Fatalf("tshark: %d ATA requests, %d responses, %d unanswered\n%s", reqs, resps, unanswered, out)
	}
}

// TestIntegrationDirectSync runs the round trip with -d (O_DIRECT) and -s
// (O_DSYNC) together and apart, on frames that straddle pages.
func TestIntegrationDirectSync(t *testing.T) {
	for _, flags := range [][]string{{"-d"}, {"-s"}, {"-ds"}, {"--writeback"}} {
		t.Run(strings.Join(flags, " "), func(t *testing.T) {
			t.Parallel()
			l := newLab(t, 9000)
			file := image(t, 4096, 0)
			l.start(ours, file, flags...)
			data := l.roundTrip(l.target(), 7, 333*512, 20*time.Second)
			disk, _ := os.ReadFile(file)
			if !bytes.Equal(disk[7*512:7*512+len(data)], data) {
				t.Fatal("file does not hold the data")
			}
		})
	}
}

// TestIntegrationShrink truncates the backing file under a running
// target: reads past the new end fail with an ATA error, the target keeps
// serving the rest.
func TestIntegrationShrink(t *testing.T) {
	l := newLab(t, 1500)
	file := image(t, 1024, 0x11)
	p := l.start(ours, file)
	tg := l.target()
	if err := os.Truncate(file, 256*512); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 10*time.Second)
	buf := make([]byte, 1024)
	err := l.client.ReadAt(ctx, tg, buf, 900)
	if st, _ := ataErr(t, err); st&aoe.ATAStatusERR == 0 {
		t.Fatalf("read past the shrunk end: status %#x", st)
	}
	if err := l.client.ReadAt(ctx, tg, buf, 10); err != nil || !bytes.Equal(buf, bytes.Repeat([]byte{0x11}, 1024)) {
		t.Fatalf("read inside: %v", err)
	}
	select {
	case err := <-p.done:
		t.Fatalf("target exited: %v", err)
	default:
	}
}

// TestIntegrationQueues runs the binary with three receive queues (a
// PACKET_FANOUT group) and moves a MiB through it.
func TestIntegrationQueues(t *testing.T) {
	l := newLab(t, 1500)
	file := image(t, 8192, 0)
	p := l.start(ours, file, "--queues", "3")
	l.roundTrip(l.target(), 3, 1<<20, 30*time.Second)
	if !strings.Contains(p.out.String(), "queues=3") {
		t.Fatalf("the target did not report three queues:\n%s", p.out.String())
	}
}

// TestIntegrationDiskFull exports a sparse file on a tiny tmpfs: once the
// filesystem is full, writes must fail with an ATA error at once (the
// Linux initiator then fails the I/O and md can fail the leg), reads and
// the target go on, and nothing acknowledged is lost.
func TestIntegrationDiskFull(t *testing.T) {
	l := newLab(t, 1500)
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "aoetarget-test", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	file := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(file, 4<<20); err != nil { // 4 MiB, sparse, on 256 KiB
		t.Fatal(err)
	}
	p := l.start(ours, file)
	tg := l.target()
	ctx := ctxT(t, 30*time.Second)
	acked := map[uint64][]byte{}
	var full error
	for lba := uint64(0); lba < 8192; lba += 64 { // 32 KiB at a time
		data := make([]byte, 64*512)
		rand.Read(data)
		if err := l.client.WriteAt(ctx, tg, data, lba); err != nil {
			full = err
			break
		}
		acked[lba] = data
	}
	if full == nil {
		t.Fatal("4 MiB fitted on a 256 KiB filesystem")
	}
	if st, errReg := ataErr(t, full); st&aoe.ATAStatusERR == 0 || errReg&aoe.ATAErrorABRT == 0 {
		t.Fatalf("write to a full filesystem: status %#x error %#x, want ERR and ABRT", st, errReg)
	}
	if len(acked) == 0 {
		t.Fatal("no write fitted at all")
	}
	for lba, data := range acked {
		got := make([]byte, len(data))
		if err := l.client.ReadAt(ctx, tg, got, lba); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("acknowledged write at %d: %v, equal %v", lba, err, bytes.Equal(got, data))
		}
	}
	select {
	case err := <-p.done:
		t.Fatalf("target exited: %v", err)
	default:
	}
	t.Logf("%d writes of 32 KiB acknowledged before the filesystem filled, then: %v", len(acked), full)
}
