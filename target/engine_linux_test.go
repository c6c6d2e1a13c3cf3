package target

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mdlayher/packet"

	"github.com/aoetarget/aoetarget/aoe"
	"github.com/aoetarget/aoetarget/blockstore"
	"github.com/aoetarget/aoetarget/internal/netns"
	"github.com/aoetarget/aoetarget/netconf"
)

// vethPair is a target socket and an initiator socket on the two ends of a
// veth pair in two network namespaces, ready to carry frames.
type vethPair struct {
	t            *testing.T
	tns          *netns.NS
	tifi         *net.Interface
	tconn, iconn *packet.Conn
	tmac, imac   aoe.MAC
}

func newVethPair(t *testing.T) *vethPair {
	netns.SkipUnlessRoot(t)
	tns, ins := netns.New(t), netns.New(t)
	tif, iif := netns.Veth(t, tns, ins, 1500)
	tns.WaitRunning(t, tif)
	ins.WaitRunning(t, iif)
	v := &vethPair{t: t, tns: tns, tifi: tns.Interface(t, tif)}
	iifi := ins.Interface(t, iif)
	v.tmac, _ = aoe.MACFrom(v.tifi.HardwareAddr)
	v.imac, _ = aoe.MACFrom(iifi.HardwareAddr)
	if err := tns.Do(func() (err error) {
		v.tconn, err = netconf.Listen(v.tifi, netconf.Config{Filter: netconf.Filter{Major: 1, Minor: 2}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := ins.Do(func() (err error) {
		v.iconn, err = netconf.Listen(iifi, netconf.Config{Filter: netconf.Filter{Responses: true, AnyAddress: true}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.iconn.Close() })
	// The link drops frames until its queues are attached: probe until
	// one gets through (a retry, not a timed expectation).
	probe := configRequest(v.imac, aoe.ConfigRead, "")
	for i := 0; ; i++ {
		v.send(probe)
		v.tconn.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		if _, _, err := v.tconn.ReadFrom(make([]byte, 1600)); err == nil {
			break
		}
		if i == 1000 {
			t.Fatal("no frame got through the veth pair")
		}
	}
	v.tconn.SetReadDeadline(time.Time{})
	return v
}

// send sends request b (built by the test helpers, from hostA) from the
// initiator's end, with the real addresses.
func (v *vethPair) send(b []byte) {
	v.t.Helper()
	copy(b[0:6], v.tmac[:])
	copy(b[6:12], v.imac[:])
	if _, err := v.iconn.WriteTo(b, &packet.Addr{HardwareAddr: v.tifi.HardwareAddr}); err != nil {
		v.t.Fatal(err)
	}
}

// serve runs h on the target's end until the test ends.
func (v *vethPair) serve(h *Handler, cfg ServerConfig) *Server {
	cfg.Interfaces = []string{v.tifi.Name}
	cfg.Lookup = func(string) (*net.Interface, error) { return v.tifi, nil }
	if cfg.Listen == nil {
		cfg.Listen = func(*net.Interface, netconf.Config) (net.PacketConn, error) { return v.tconn, nil }
	}
	cfg.MonitorInterval = time.Hour
	srv := NewServer(h, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	v.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			v.t.Error(err)
		}
	})
	<-srv.Ready()
	return srv
}

// reply returns the next ATA reply (skipping the announcement), waiting at
// most d; ok is false if none came.
func (v *vethPair) reply(d time.Duration) (f aoe.Frame, a aoe.ATA, ok bool) {
	v.t.Helper()
	buf := make([]byte, 1600)
	v.iconn.SetReadDeadline(time.Now().Add(d))
	for {
		n, _, err := v.iconn.ReadFrom(buf)
		if err != nil {
			return aoe.Frame{}, aoe.ATA{}, false
		}
		f, err := aoe.ParseFrame(bytes.Clone(buf[:n]))
		if err != nil || f.Header.Command != aoe.CommandATA {
			continue
		}
		a, err := aoe.ParseATA(f.Arg)
		if err != nil {
			v.t.Fatalf("reply does not parse: %v", err)
		}
		return f, a, true
	}
}

// TestEngineMergesAcrossSocket queues requests for adjacent sectors on a
// real AF_PACKET socket (veth pair) before the server starts, so that its
// first receive gets them in one batch: the engine must merge them into
// few I/Os, and a store error in the middle of a merged I/O must fail only
// the requests whose own sectors fail. Writes must be durable (flushed)
// before their replies.
func TestEngineMergesAcrossSocket(t *testing.T) {
	v := newVethPair(t)
	imac := v.imac
	send := v.send

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

	v.serve(h, ServerConfig{})
	for got := 0; got < 14; got++ {
		f, a, ok := v.reply(10 * time.Second)
		if !ok {
			t.Fatalf("after %d replies: no more", got)
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

// stallStore blocks every read and write while stalled is set, until
// release is closed.
type stallStore struct {
	*blockstore.Memory
	stalled atomic.Bool
	release chan struct{}
	blocked atomic.Int32
}

func (s *stallStore) wait() {
	if s.stalled.Load() {
		s.blocked.Add(1)
		<-s.release
	}
}

func (s *stallStore) ReadAt(p []byte, off int64) (int, error) {
	s.wait()
	return s.Memory.ReadAt(p, off)
}

func (s *stallStore) WriteAt(p []byte, off int64) (int, error) {
	s.wait()
	return s.Memory.WriteAt(p, off)
}

func (s *stallStore) Flush() error {
	s.wait()
	return s.Memory.Flush()
}

// TestEngineStalledStore stalls the store under a running server on a
// real socket: the stalled request must be answered with an ATA error
// once the I/O deadline passes (not left to the initiator's retransmits),
// requests that need the store must then fail at once while requests that
// do not are still answered, the stalled I/O's late result must not be
// sent, and the export must serve again once the store returns.
func TestEngineStalledStore(t *testing.T) {
	v := newVethPair(t)
	st := &stallStore{Memory: blockstore.NewMemory(testSectors), release: make(chan struct{})}
	h, err := NewHandler(Config{Major: 1, Minor: 2}, st)
	if err != nil {
		t.Fatal(err)
	}
	v.drain() // the counters are checked exactly
	v.serve(h, ServerConfig{IOTimeout: 200 * time.Millisecond})
	read := func(tag uint32, lba uint64) []byte {
		return ataRequest(hostA, tag, aoe.ATA{Flags: aoe.ATAExtended, SectorCount: 2, CmdStatus: aoe.ATAReadSectorsExt, LBA: lba})
	}
	expect := func(tag uint32, wantErr bool) {
		t.Helper()
		f, a, ok := v.reply(10 * time.Second)
		if !ok {
			t.Fatalf("no reply to tag %d", tag)
		}
		if f.Header.Tag != tag || f.Header.Flags&aoe.FlagError != 0 || (a.CmdStatus&aoe.ATAStatusERR != 0) != wantErr {
			t.Fatalf("reply tag %d flags %#x status %#x; want tag %d with ATA error %v", f.Header.Tag, f.Header.Flags, a.CmdStatus, tag, wantErr)
		}
	}
	v.send(read(1, 0))
	expect(1, false) // the store works

	st.stalled.Store(true)
	v.send(ataRequest(hostA, 2, aoe.ATA{Flags: aoe.ATAExtended | aoe.ATAWrite, SectorCount: 2, CmdStatus: aoe.ATAWriteSectorsExt, LBA: 4, Data: pattern(1024, 1)}))
	expect(2, true) // past the deadline: an ATA error, not silence
	if st.blocked.Load() == 0 {
		t.Fatal("the write never reached the store")
	}
	v.send(read(3, 8))
	expect(3, true) // stalled: fails at once
	v.send(ataRequest(hostA, 4, aoe.ATA{SectorCount: 1, CmdStatus: aoe.ATAIdentifyDevice}))
	expect(4, false) // needs no store
	if n := h.Stats().StalledIO.Load(); n != 2 {
		t.Errorf("StalledIO = %d, want 2", n)
	}

	st.stalled.Store(false)
	close(st.release)
	// The late write's reply must not be sent; the store serves again
	// once the watchdog sees it back (a retry, not a timed expectation).
	tag := uint32(100)
	for ; ; tag++ {
		v.send(read(tag, 0))
		f, a, ok := v.reply(10 * time.Second)
		if !ok {
			t.Fatal("no reply after the store came back")
		}
		if f.Header.Tag == 2 {
			t.Fatal("the stalled write's late result was sent too")
		}
		if a.CmdStatus&aoe.ATAStatusERR == 0 {
			break
		}
		if tag == 200 {
			t.Fatal("the export never served again")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Every request counted once: the write the watchdog answered (not
	// its late result too), the reads failed while stalled, and the k
	// reads of the loop, the last of which succeeded.
	k := uint64(tag - 100 + 1)
	x := &trafficMix{frames: int(4 + k)}
	x.settle(t, h)
	got := h.Initiators()
	want := InitiatorStats{MAC: v.imac, ReadBytes: 2 * 1024, ATAErrors: 1 + k}
	want.Requests[ReqATA] = 4 + k
	want.ATA[ATARead], want.ATA[ATAWrite], want.ATA[ATAIdentify] = 2+k, 1, 1
	want.ATAErrorsByOp[ATARead], want.ATAErrorsByOp[ATAWrite] = k, 1
	if d := countersDiff([]InitiatorStats{want}, got); d != "" {
		t.Errorf("counters (-want +got):\n%s", d)
	}
	if len(got) == 1 {
		wantLatency(t, got[0], [NumLatencyOps]uint64{2 + k, 1, 1})
	}
	// The late write completes after its answer: give it time to be
	// (wrongly) counted, and check again.
	time.Sleep(100 * time.Millisecond)
	if d := countersDiff([]InitiatorStats{want}, h.Initiators()); d != "" || h.InFlight() != 0 {
		t.Errorf("after the late write: %d in flight; counters (-want +got):\n%s", h.InFlight(), d)
	}
}

// markedSlowStore makes every write whose data starts with 0xee slow,
// outside the store's lock.
type markedSlowStore struct{ *blockstore.Memory }

func (s markedSlowStore) WriteAt(p []byte, off int64) (int, error) {
	if len(p) > 0 && p[0] == 0xee {
		time.Sleep(time.Millisecond)
	}
	return s.Memory.WriteAt(p, off)
}

// TestEngineOrderingAcrossSocket sends, in bursts over a real socket,
// rounds of writes to the same sectors, with writes to other sectors in
// between, to a server with many workers: an old write the store makes
// slow and a newer one (the newer must land last); or an old write, a
// newer one the store makes slow, and a late duplicate of the old one
// under a new tag, as the Linux initiator's retransmit sends it (the
// duplicate, the last to arrive, must land last). Overlapping writes must
// be applied in arrival order.
func TestEngineOrderingAcrossSocket(t *testing.T) {
	for _, noRecvRing := range []bool{false, true} {
		t.Run(map[bool]string{false: "ring", true: "recvmmsg"}[noRecvRing], func(t *testing.T) {
			testEngineOrdering(t, noRecvRing)
		})
	}
}

func testEngineOrdering(t *testing.T, noRecvRing bool) {
	v := newVethPair(t)
	mem := blockstore.NewMemory(testSectors)
	h, err := NewHandler(Config{Major: 1, Minor: 2, BufferCount: 64}, markedSlowStore{mem})
	if err != nil {
		t.Fatal(err)
	}
	v.serve(h, ServerConfig{NoRecvRing: noRecvRing})
	const rounds, ranges = 60, 12
	want := make(map[uint64][]byte)
	tag := uint32(0)
	sent := 0
	write := func(lba uint64, data []byte) {
		tag++
		v.send(ataRequest(hostA, tag, aoe.ATA{Flags: aoe.ATAExtended | aoe.ATAWrite, SectorCount: 2,
			CmdStatus: aoe.ATAWriteSectorsExt, LBA: lba, Data: data}))
		sent++
	}
	for r := range rounds {
		lba := uint64(r%ranges) * 4
		old := pattern(1024, byte(r))
		newer := pattern(1024, byte(r+100))
		old[0], newer[0] = 0x11, 0x22
		if r%2 == 0 {
			// The old write is slow: the newer one must still land last.
			old[0] = 0xee
			write(lba, old)
			write(512+lba, pattern(1024, byte(r+50))) // elsewhere, in between
			write(lba, newer)
			want[lba] = newer
		} else {
			// The newer write is slow: the late duplicate of the old one,
			// which arrives last, must land last.
			newer[0] = 0xee
			write(lba, old)
			write(lba, newer)
			write(512+lba, pattern(1024, byte(r+50)))
			write(lba, old)
			want[lba] = old
		}
		if sent >= 24 { // let replies drain now and then: the burst must fit the buffers
			for range sent {
				if _, a, ok := v.reply(10 * time.Second); !ok || a.CmdStatus&aoe.ATAStatusERR != 0 {
					t.Fatalf("write failed or unanswered (status %#x)", a.CmdStatus)
				}
			}
			sent = 0
		}
	}
	for range sent {
		if _, _, ok := v.reply(10 * time.Second); !ok {
			t.Fatal("a write was not answered")
		}
	}
	got := mem.Bytes()
	for lba, w := range want {
		if !bytes.Equal(got[lba*512:lba*512+1024], w) {
			t.Errorf("sectors %d-%d do not hold the last write to arrive", lba, lba+1)
		}
	}
}

// TestServerQueues serves with three receive queues (a PACKET_FANOUT
// group) over a real socket: requests for many regions of the disk are
// all answered correctly, and every queue's socket received some.
func TestServerQueues(t *testing.T) {
	v := newVethPair(t)
	h, mem := newTestHandler(t, Config{})
	var socks []*packet.Conn
	listen := func(ifi *net.Interface, cfg netconf.Config) (net.PacketConn, error) {
		if len(socks) == 0 {
			socks = append(socks, v.tconn)
			return v.tconn, nil
		}
		var c *packet.Conn
		err := v.tns.Do(func() (err error) {
			c, err = netconf.Listen(ifi, cfg)
			return err
		})
		if err == nil {
			socks = append(socks, c)
		}
		return c, err
	}
	v.serve(h, ServerConfig{Queues: 3, Listen: listen})
	const n = 12 // regions: testSectors/netconf.FanoutRegion is 4, so reuse them at offsets
	for i := range n {
		lba := uint64(i%4)*netconf.FanoutRegion + uint64(i/4)*8
		v.send(ataRequest(hostA, uint32(i), aoe.ATA{Flags: aoe.ATAExtended | aoe.ATAWrite, SectorCount: 2,
			CmdStatus: aoe.ATAWriteSectorsExt, LBA: lba, Data: pattern(1024, byte(i))}))
		if _, a, ok := v.reply(10 * time.Second); !ok || a.CmdStatus != aoe.ATAStatusDRDY {
			t.Fatalf("write %d: answered %v, status %#x", i, ok, a.CmdStatus)
		}
		v.send(ataRequest(hostA, uint32(100+i), aoe.ATA{Flags: aoe.ATAExtended, SectorCount: 2, CmdStatus: aoe.ATAReadSectorsExt, LBA: lba}))
		if _, a, ok := v.reply(10 * time.Second); !ok || !bytes.Equal(a.Data[:1024], pattern(1024, byte(i))) {
			t.Fatalf("read %d: answered %v, data differs", i, ok)
		}
	}
	if got := mem.Bytes()[0:1024]; !bytes.Equal(got, pattern(1024, 0)) {
		t.Fatal("the store does not hold the first write")
	}
	if len(socks) != 3 {
		t.Fatalf("%d sockets opened, want 3", len(socks))
	}
	for i, c := range socks {
		st, err := c.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if st.Packets == 0 {
			t.Errorf("queue %d received no frame", i)
		}
	}
}

// TestEngineRing serves a real file opened O_DIRECT through io_uring over
// a real socket: a burst of adjacent writes goes through the ring, merged,
// and so do the reads; a read the file can no longer satisfy (it was
// truncated) comes back short from the ring and must be redone on a worker
// and answered with an ATA error.
func TestEngineRing(t *testing.T) {
	v := newVethPair(t)
	path, f := ringFile(t, true) // O_DIRECT: reads and writes go to the ring
	h, err := NewHandler(Config{Major: 1, Minor: 2}, f)
	if err != nil {
		t.Fatal(err)
	}
	// Queued before the server starts: one batch, merged into chains.
	for lba := uint64(0); lba < 16; lba += 2 {
		v.send(ataRequest(hostA, uint32(lba), aoe.ATA{Flags: aoe.ATAExtended | aoe.ATAWrite, SectorCount: 2,
			CmdStatus: aoe.ATAWriteSectorsExt, LBA: lba, Data: pattern(1024, byte(lba))}))
	}
	v.serve(h, ServerConfig{})
	for range 8 {
		if _, a, ok := v.reply(10 * time.Second); !ok || a.CmdStatus != aoe.ATAStatusDRDY {
			t.Fatalf("write: answered %v, status %#x", ok, a.CmdStatus)
		}
	}
	// Reads bypass the page cache: they go to the ring.
	for lba := uint64(0); lba < 16; lba += 2 {
		v.send(ataRequest(hostA, uint32(100+lba), aoe.ATA{Flags: aoe.ATAExtended, SectorCount: 2, CmdStatus: aoe.ATAReadSectorsExt, LBA: lba}))
		f, a, ok := v.reply(10 * time.Second)
		if !ok || f.Header.Tag != uint32(100+lba) || !bytes.Equal(a.Data[:1024], pattern(1024, byte(lba))) {
			t.Fatalf("read of %d: answered %v, tag %d, data differs", lba, ok, f.Header.Tag)
		}
	}
	st := h.Stats()
	if st.WriteIOs.Load() == 0 || st.WriteIOs.Load() >= 8 {
		t.Errorf("%d writes through the ring for 8 requests, want fewer (merged) but some", st.WriteIOs.Load())
	}
	if st.ReadIOs.Load() != 8 {
		t.Errorf("%d reads through the ring for 8 requests sent one by one, want 8", st.ReadIOs.Load())
	}
	if err := f.Flush(); err != nil {
		t.Fatal(err)
	}
	disk, _ := os.ReadFile(path)
	for lba := 0; lba < 16; lba += 2 {
		if !bytes.Equal(disk[lba*512:(lba+2)*512], pattern(1024, byte(lba))) {
			t.Fatalf("file does not hold the write at %d", lba)
		}
	}
	// A read past the end of a truncated file: short from the ring.
	if err := os.Truncate(path, 100*512); err != nil {
		t.Fatal(err)
	}
	v.send(ataRequest(hostA, 999, aoe.ATA{Flags: aoe.ATAExtended, SectorCount: 2, CmdStatus: aoe.ATAReadSectorsExt, LBA: 200}))
	if f, a, ok := v.reply(10 * time.Second); !ok || f.Header.Tag != 999 || a.CmdStatus&aoe.ATAStatusERR == 0 || f.Header.Flags&aoe.FlagError != 0 {
		t.Fatalf("read past the truncated end: answered %v, status %#x, flags %#x; want an ATA error", ok, a.CmdStatus, f.Header.Flags)
	}
	t.Logf("ring: %d reads, %d writes", st.ReadIOs.Load(), st.WriteIOs.Load())
}

// TestEngineStopStalled stops a server whose store is stalled with a
// write stuck in it: Serve must return (after the I/O deadline), not wait
// for the store for ever.
func TestEngineStopStalled(t *testing.T) {
	v := newVethPair(t)
	st := &stallStore{Memory: blockstore.NewMemory(testSectors), release: make(chan struct{})}
	defer close(st.release) // let the stuck goroutine go at the end
	h, err := NewHandler(Config{Major: 1, Minor: 2}, st)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(h, ServerConfig{
		Interfaces:      []string{v.tifi.Name},
		Lookup:          func(string) (*net.Interface, error) { return v.tifi, nil },
		Listen:          func(*net.Interface, netconf.Config) (net.PacketConn, error) { return v.tconn, nil },
		MonitorInterval: time.Hour,
		IOTimeout:       200 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	<-srv.Ready()
	st.stalled.Store(true)
	v.send(ataRequest(hostA, 1, aoe.ATA{Flags: aoe.ATAExtended | aoe.ATAWrite, SectorCount: 2, CmdStatus: aoe.ATAWriteSectorsExt, LBA: 4, Data: pattern(1024, 1)}))
	if _, a, ok := v.reply(10 * time.Second); !ok || a.CmdStatus&aoe.ATAStatusERR == 0 {
		t.Fatalf("stalled write: answered %v, status %#x; want an ATA error", ok, a.CmdStatus)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return while a write was stuck in the store")
	}
}

// TestServerStuck makes the receive loop hang inside a request (a cached
// read that blocks in the store) and checks that Stuck reports it, and
// that a loop waiting for frames, however long, is not stuck.
func TestServerStuck(t *testing.T) {
	v := newVethPair(t)
	m := blockstore.NewMemory(testSectors)
	var hang atomic.Bool
	release := make(chan struct{})
	m.SetFault(func(op blockstore.Op, off int64, n int) error {
		if op == blockstore.OpRead && hang.Load() {
			<-release
		}
		return nil
	})
	h, err := NewHandler(Config{Major: 1, Minor: 2}, m)
	if err != nil {
		t.Fatal(err)
	}
	srv := v.serve(h, ServerConfig{NoRing: true})
	read := func(tag uint32) []byte {
		return ataRequest(hostA, tag, aoe.ATA{Flags: aoe.ATAExtended, SectorCount: 2, CmdStatus: aoe.ATAReadSectorsExt})
	}
	v.send(read(1))
	if _, _, ok := v.reply(5 * time.Second); !ok {
		t.Fatal("no reply")
	}
	time.Sleep(300 * time.Millisecond) // idle, waiting for frames
	if err := srv.Stuck(100 * time.Millisecond); err != nil {
		t.Fatalf("an idle server is stuck: %v", err)
	}
	hang.Store(true)
	v.send(read(2))
	deadline := time.Now().Add(10 * time.Second)
	for srv.Stuck(100*time.Millisecond) == nil {
		if time.Now().After(deadline) {
			t.Fatal("a receive loop hung in a request is never reported stuck")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("reported: %v", srv.Stuck(100*time.Millisecond))
	hang.Store(false)
	close(release)
	if _, _, ok := v.reply(5 * time.Second); !ok {
		t.Fatal("no reply after the store returned")
	}
	time.Sleep(200 * time.Millisecond)
	if err := srv.Stuck(100 * time.Millisecond); err != nil {
		t.Fatalf("still stuck after the store returned: %v", err)
	}
}

// cacheStore is a store whose cache the test controls: reads of sectors
// from uncachedFrom up are not cached (ReadAtNoWait and ReadvAtNoWait
// fail with ErrWouldBlock). It counts the calls.
type cacheStore struct {
	*blockstore.Memory
	uncachedFrom  int64 // byte offset
	vcalls, calls atomic.Int32
	maxBufs       atomic.Int32
}

func (s *cacheStore) ReadAtNoWait(p []byte, off int64) (int, error) {
	s.calls.Add(1)
	if off+int64(len(p)) > s.uncachedFrom {
		return 0, blockstore.ErrWouldBlock
	}
	return s.Memory.ReadAt(p, off)
}

func (s *cacheStore) ReadvAtNoWait(bufs [][]byte, off int64) (int, error) {
	s.vcalls.Add(1)
	if n := int32(len(bufs)); n > s.maxBufs.Load() {
		s.maxBufs.Store(n)
	}
	total := 0
	for _, b := range bufs {
		total += len(b)
	}
	if off+int64(total) > s.uncachedFrom {
		return 0, blockstore.ErrWouldBlock
	}
	for _, b := range bufs {
		if _, err := s.Memory.ReadAt(b, off); err != nil {
			return 0, err
		}
		off += int64(len(b))
	}
	return total, nil
}

// TestEngineCachedChain sends, in one burst across a veth pair, the four
// frames of a 4-KiB read of cached sectors, the four of a read that is not
// cached, a write, and a read of the sectors it writes: the cached block is
// read with one vectored call that does not wait, the other goes to the
// disk path, and the read after the write sees the write.
func TestEngineCachedChain(t *testing.T) {
	v := newVethPair(t)
	imac := v.imac
	mem := blockstore.NewMemory(testSectors)
	orig := pattern(testSectors*512, 9)
	if _, err := mem.WriteAt(orig, 0); err != nil || mem.Flush() != nil {
		t.Fatal("cannot fill the store")
	}
	store := &cacheStore{Memory: mem, uncachedFrom: 32 * 512}
	h, err := NewHandler(Config{Major: 1, Minor: 2}, store)
	if err != nil {
		t.Fatal(err)
	}
	read := func(lba uint64) []byte {
		return ataRequest(imac, uint32(lba), aoe.ATA{Flags: aoe.ATAExtended, SectorCount: 2, CmdStatus: aoe.ATAReadSectorsExt, LBA: lba})
	}
	for lba := uint64(8); lba < 16; lba += 2 { // cached
		v.send(read(lba))
	}
	for lba := uint64(40); lba < 48; lba += 2 { // not cached
		v.send(read(lba))
	}
	newData := pattern(1024, 77)
	v.send(ataRequest(imac, 100, aoe.ATA{Flags: aoe.ATAExtended | aoe.ATAWrite, SectorCount: 2,
		CmdStatus: aoe.ATAWriteSectorsExt, LBA: 20, Data: newData}))
	v.send(ataRequest(imac, 101, aoe.ATA{Flags: aoe.ATAExtended, SectorCount: 2, CmdStatus: aoe.ATAReadSectorsExt, LBA: 20}))

	v.serve(h, ServerConfig{})
	want := map[uint32][]byte{100: nil, 101: newData}
	for lba := 8; lba < 16; lba += 2 {
		want[uint32(lba)] = orig[lba*512 : (lba+2)*512]
	}
	for lba := 40; lba < 48; lba += 2 {
		want[uint32(lba)] = orig[lba*512 : (lba+2)*512]
	}
	for len(want) > 0 {
		f, a, ok := v.reply(10 * time.Second)
		if !ok {
			t.Fatalf("no reply; still waiting for tags %v", want)
		}
		w, seen := want[f.Header.Tag]
		if !seen {
			t.Fatalf("unexpected reply, tag %d", f.Header.Tag)
		}
		delete(want, f.Header.Tag)
		if a.CmdStatus&aoe.ATAStatusERR != 0 {
			t.Errorf("tag %d failed: status %#x", f.Header.Tag, a.CmdStatus)
		}
		if w != nil && !bytes.Equal(a.Data[:len(w)], w) {
			t.Errorf("tag %d: wrong data", f.Header.Tag)
		}
	}
	if m := store.maxBufs.Load(); m != 4 {
		t.Errorf("the longest cached read had %d buffers, want the 4 frames of the block", m)
	}
	// The cached block: one call; the uncached one: one failed call, then
	// the disk path. The read after the write waits for it: no attempt.
	if n := store.vcalls.Load(); n != 2 {
		t.Errorf("%d vectored reads from the cache, want 2", n)
	}
	if n := store.calls.Load(); n != 0 {
		t.Errorf("%d single reads from the cache, want none", n)
	}
}

// probeStore is a cacheStore that can say, without reading, what is
// cached (a CacheProber).
type probeStore struct {
	cacheStore
	probes atomic.Int32
}

func (s *probeStore) Cached(off int64, n int) (bool, error) {
	s.probes.Add(1)
	return off+int64(n) <= s.uncachedFrom, nil
}

// TestEngineCacheProbe reads, across a veth pair, blocks that are not
// cached and then blocks that are, from a store that can say what is
// cached: after a window of reads that missed, the reads the engine still
// tries (its samples) are probed first, and only the cached one is read
// with a call that does not wait (which, on a disk, would start the read
// of an uncached block on its own).
func TestEngineCacheProbe(t *testing.T) {
	v := newVethPair(t)
	mem := blockstore.NewMemory(testSectors)
	orig := pattern(testSectors*512, 4)
	if _, err := mem.WriteAt(orig, 0); err != nil || mem.Flush() != nil {
		t.Fatal("cannot fill the store")
	}
	const uncached = 64
	store := &probeStore{cacheStore: cacheStore{Memory: mem, uncachedFrom: uncached * 512}}
	h, err := NewHandler(Config{Major: 1, Minor: 2}, store)
	if err != nil {
		t.Fatal(err)
	}
	v.serve(h, ServerConfig{})
	tag := uint32(0)
	// reads sends n one-frame reads of separate blocks (one chain each)
	// from sector first on, 8 at a time, and checks their replies.
	reads := func(first, n int) {
		t.Helper()
		for i := 0; i < n; i += 8 {
			want := map[uint32]int{}
			for k := i; k < min(i+8, n); k++ {
				lba := first + 4*k
				tag++
				want[tag] = lba
				v.send(ataRequest(v.imac, tag, aoe.ATA{Flags: aoe.ATAExtended, SectorCount: 2,
					CmdStatus: aoe.ATAReadSectorsExt, LBA: uint64(lba)}))
			}
			for len(want) > 0 {
				f, a, ok := v.reply(10 * time.Second)
				if !ok {
					t.Fatalf("no reply; still waiting for tags %v", want)
				}
				lba, seen := want[f.Header.Tag]
				if !seen {
					continue
				}
				delete(want, f.Header.Tag)
				if a.CmdStatus&aoe.ATAStatusERR != 0 || !bytes.Equal(a.Data[:1024], orig[lba*512:lba*512+1024]) {
					t.Fatalf("read of sector %d: status %#x or wrong data", lba, a.CmdStatus)
				}
			}
		}
	}
	check := func(step string, vcalls, probes int32) {
		t.Helper()
		if n, p := store.vcalls.Load(), store.probes.Load(); n != vcalls || p != probes {
			t.Errorf("%s: %d reads from the cache and %d probes, want %d and %d", step, n, p, vcalls, probes)
		}
	}
	// While the cache serves (as at the start), reads are tried at once.
	reads(uncached, guessWindow)
	check("a window of misses", guessWindow, 0)
	// Then one chain in guessSample is tried, and probed first.
	reads(uncached, 2*guessSample)
	check("two samples that miss", guessWindow, 2)
	reads(0, guessSample)
	check("a sample that hits", guessWindow+1, 3)
}

// TestEngineRingFlush writes through a file store with a ring, buffered
// (its durable writes go to the disk directly, or with CachedWrites through
// the page cache) and O_DIRECT, the durable writes flushed on the ring's
// lanes: sixteen writes in one burst are acknowledged by fewer flushes,
// each write by one flush, and the file holds them all.
func TestEngineRingFlush(t *testing.T) {
	for _, tt := range []struct {
		name           string
		direct, cached bool
		ringWrites     bool // the writes go to the ring
	}{
		{"buffered", false, false, true},
		{"cached", false, true, false},
		{"direct", true, false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := newVethPair(t)
			path, f := ringFile(t, tt.direct)
			h, err := NewHandler(Config{Major: 1, Minor: 2}, f)
			if err != nil {
				t.Fatal(err)
			}
			// Sixteen 1-KiB writes, not adjacent: sixteen chains.
			const writes = 16
			for i := range writes {
				lba := uint64(i) * 16
				v.send(ataRequest(hostA, uint32(lba), aoe.ATA{Flags: aoe.ATAExtended | aoe.ATAWrite, SectorCount: 2,
					CmdStatus: aoe.ATAWriteSectorsExt, LBA: lba, Data: pattern(1024, byte(i))}))
			}
			v.serve(h, ServerConfig{CachedWrites: tt.cached})
			for range writes {
				if _, a, ok := v.reply(10 * time.Second); !ok || a.CmdStatus != aoe.ATAStatusDRDY {
					t.Fatalf("write: answered %v, status %#x", ok, a.CmdStatus)
				}
			}
			if n := h.Stats().WriteIOs.Load(); (n > 0) != tt.ringWrites {
				t.Errorf("%d writes through the ring, want some: %v", n, tt.ringWrites)
			}
			flushes := h.Stats().Flushes.Load()
			cs := h.CommitSizes()
			if flushes == 0 || flushes > writes || cs.Count != flushes || cs.Sum != writes {
				t.Errorf("%d flushes, commit sizes %d flushes acknowledging %v writes; want 1 to %d flushes acknowledging all %d",
					flushes, cs.Count, cs.Sum, writes, writes)
			}
			disk, _ := os.ReadFile(path)
			for i := range writes {
				if !bytes.Equal(disk[i*16*512:i*16*512+1024], pattern(1024, byte(i))) {
					t.Fatalf("file does not hold write %d", i)
				}
			}
			t.Logf("%d writes acknowledged by %d flushes", writes, flushes)
		})
	}
}

// TestEngineRingFlushErrors makes the ring's flushes fail: one cancelled
// by io_uring (ECANCELED: the flush did not run) is redone with a blocking
// fdatasync and the writes succeed, and so do later ones; one that failed
// (EIO: the kernel reports a write-back error once) fails its writes and
// every later one, as a failed fdatasync does.
func TestEngineRingFlushErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		ok   bool
	}{
		{"cancelled", syscall.ECANCELED, true},
		{"failed", syscall.EIO, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := newVethPair(t)
			path, f := ringFile(t, false)
			var ringFlushes atomic.Int32
			testRingFlushResult = func(err error) error {
				ringFlushes.Add(1)
				if err != nil {
					return err
				}
				return tt.err
			}
			defer func() { testRingFlushResult = nil }()
			h, err := NewHandler(Config{Major: 1, Minor: 2}, f)
			if err != nil {
				t.Fatal(err)
			}
			v.serve(h, ServerConfig{})
			for round := range 3 {
				for i := range 4 {
					lba := uint64(round*64 + i*16)
					v.send(ataRequest(hostA, uint32(lba), aoe.ATA{Flags: aoe.ATAExtended | aoe.ATAWrite, SectorCount: 2,
						CmdStatus: aoe.ATAWriteSectorsExt, LBA: lba, Data: pattern(1024, byte(lba))}))
				}
				for range 4 {
					_, a, ok := v.reply(10 * time.Second)
					if !ok {
						t.Fatalf("round %d: a write was not answered", round)
					}
					if failed := a.CmdStatus&aoe.ATAStatusERR != 0; failed == tt.ok {
						t.Fatalf("round %d: write status %#x, want success %v", round, a.CmdStatus, tt.ok)
					}
				}
			}
			if n := ringFlushes.Load(); n != 1 && tt.ok {
				t.Errorf("%d flushes on the ring, want 1 (then the blocking flush)", n)
			}
			if tt.ok {
				disk, _ := os.ReadFile(path)
				for round := range 3 {
					for i := range 4 {
						lba := round*64 + i*16
						if !bytes.Equal(disk[lba*512:lba*512+1024], pattern(1024, byte(lba))) {
							t.Fatalf("the file does not hold the write at %d", lba)
						}
					}
				}
			}
		})
	}
}

// ringFile returns a file store of testSectors (pattern seed 4), O_DIRECT
// if direct, closed at the end of the test, and its path; it skips the
// test where the file system has no O_DIRECT or the kernel no io_uring.
func ringFile(t *testing.T, direct bool) (string, *blockstore.File) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, pattern(testSectors*512, 4), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := blockstore.Open(path, blockstore.Options{Direct: direct})
	if errors.Is(err, blockstore.ErrNoDirect) {
		t.Skipf("no O_DIRECT in %s: %v", path, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if r, err := f.NewRing(8); err != nil {
		t.Skipf("no io_uring here: %v", err)
	} else {
		r.Close()
	}
	return path, f
}
