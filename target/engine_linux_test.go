package target

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/mdlayher/packet"

	"github.com/aoetarget/aoetarget/aoe"
	"github.com/aoetarget/aoetarget/blockstore"
	"github.com/aoetarget/aoetarget/internal/netns"
	"github.com/aoetarget/aoetarget/netconf"
)

// TestEngineMergesAcrossSocket queues requests for adjacent sectors on a
// real AF_PACKET socket (veth pair) before the server starts, so that its
// first receive gets them in one batch: the engine must merge them into
// few I/Os, and a store error in the middle of a merged I/O must fail only
// the requests whose own sectors fail. Writes must be durable (flushed)
// before their replies.
func TestEngineMergesAcrossSocket(t *testing.T) {
	netns.SkipUnlessRoot(t)
	tns, ins := netns.New(t), netns.New(t)
	tif, iif := netns.Veth(t, tns, ins, 1500)
	tns.WaitRunning(t, tif)
	ins.WaitRunning(t, iif)
	tifi, iifi := tns.Interface(t, tif), ins.Interface(t, iif)
	tmac, _ := aoe.MACFrom(tifi.HardwareAddr)
	imac, _ := aoe.MACFrom(iifi.HardwareAddr)

	var tconn, iconn *packet.Conn
	if err := tns.Do(func() (err error) {
		tconn, err = netconf.Listen(tifi, netconf.Config{Filter: netconf.Filter{Major: 1, Minor: 2}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := ins.Do(func() (err error) {
		iconn, err = netconf.Listen(iifi, netconf.Config{Filter: netconf.Filter{Responses: true, AnyAddress: true}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer iconn.Close()
	send := func(b []byte) {
		t.Helper()
		copy(b[0:6], tmac[:]) // the requests' Dst and Src
		copy(b[6:12], imac[:])
		if _, err := iconn.WriteTo(b, &packet.Addr{HardwareAddr: tifi.HardwareAddr}); err != nil {
			t.Fatal(err)
		}
	}
	// The link drops frames until its queues are attached: probe until
	// one gets through (a retry, not a timed expectation).
	probe := configRequest(imac, aoe.ConfigRead, "")
	for i := 0; ; i++ {
		send(probe)
		tconn.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		if _, _, err := tconn.ReadFrom(make([]byte, 1600)); err == nil {
			break
		}
		if i == 1000 {
			t.Fatal("no frame got through the veth pair")
		}
	}
	tconn.SetReadDeadline(time.Time{})

	mem := blockstore.NewMemory(testSectors)
	orig := pattern(testSectors*512, 5)
	if _, err := mem.WriteAt(orig, 0); err != nil || mem.Flush() != nil {
		t.Fatal("cannot fill the store")
	}
	eio := errors.New("injected EIO")
	touches := func(off int64, n int, sector int64) bool { return off <= sector*512 && off+int64(n) > sector*512 }
	mem.SetFault(func(op blockstore.Op, off int64, n int) error {
		if (op == blockstore.OpWrite && touches(off, n, 9)) || (op == blockstore.OpRead && touches(off, n, 21)) {
			return eio
		}
		return nil
	})
	h, err := NewHandler(Config{Major: 1, Minor: 2}, blockingStore{mem}) // no cache: every read goes to the disk path
	if err != nil {
		t.Fatal(err)
	}

	// Eight writes of sectors 0-15 and six reads of sectors 16-27, two
	// sectors each; tags are the first sector.
	for lba := uint64(0); lba < 16; lba += 2 {
		send(ataRequest(imac, uint32(lba), aoe.ATA{Flags: aoe.ATAExtended | aoe.ATAWrite, SectorCount: 2,
			CmdStatus: aoe.ATAWriteSectorsExt, LBA: lba, Data: pattern(1024, byte(lba))}))
	}
	for lba := uint64(16); lba < 28; lba += 2 {
		send(ataRequest(imac, uint32(lba), aoe.ATA{Flags: aoe.ATAExtended, SectorCount: 2, CmdStatus: aoe.ATAReadSectorsExt, LBA: lba}))
	}

	srv := NewServer(h, ServerConfig{
		Interfaces:      []string{tif},
		Lookup:          func(string) (*net.Interface, error) { return tifi, nil },
		Listen:          func(*net.Interface, netconf.Config) (net.PacketConn, error) { return tconn, nil },
		MonitorInterval: time.Hour,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	buf := make([]byte, 1600)
	iconn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for got := 0; got < 14; {
		n, _, err := iconn.ReadFrom(buf)
		if err != nil {
			t.Fatalf("after %d replies: %v", got, err)
		}
		f, err := aoe.ParseFrame(buf[:n])
		if err != nil || f.Header.Command != aoe.CommandATA {
			continue // the announcement
		}
		got++
		a, err := aoe.ParseATA(f.Arg)
		if err != nil {
			t.Fatal(err)
		}
		lba := f.Header.Tag
		failed := a.CmdStatus&aoe.ATAStatusERR != 0
		if wantFail := lba == 8 || lba == 20; failed != wantFail {
			t.Errorf("request for sectors %d-%d: status %#x, want failure %v", lba, lba+1, a.CmdStatus, wantFail)
		}
		if lba >= 16 && !failed && !bytes.Equal(a.Data[:1024], orig[lba*512:(lba+2)*512]) {
			t.Errorf("read of sectors %d-%d returned wrong data", lba, lba+1)
		}
	}
	stable := mem.Stable()
	for lba := 0; lba < 16; lba += 2 {
		want := pattern(1024, byte(lba))
		if lba == 8 {
			want = orig[8*512 : 10*512]
		}
		if !bytes.Equal(stable[lba*512:(lba+2)*512], want) {
			t.Errorf("sectors %d-%d: stable contents are not what was acknowledged", lba, lba+1)
		}
	}
	if m := h.Stats().Merged.Load(); m < 6 {
		t.Errorf("%d requests merged into the I/O of the one before, want most of the 12 that could be", m)
	} else {
		t.Logf("%d of 12 requests merged", m)
	}
}
