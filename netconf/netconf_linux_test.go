//go:build linux

package netconf

// Privileged tests: real AF_PACKET sockets over a veth pair between two
// network namespaces. They skip unless run as root (internal/netns).
//
// No assertion depends on timing. "This frame was not delivered" is proved
// by ordering instead: the sender pins itself to one CPU, so its frames reach
// the receiving sockets in the order sent, and a final marker frame that must
// pass shows that every earlier frame has been filtered or delivered. Reads
// have a generous safety deadline only so that a bug fails instead of hanging.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aoetarget/aoetarget/internal/netns"
	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// safety bounds every blocking wait, so that a broken test fails rather than
// hangs. It is not an expectation of speed.
const safety = 30 * time.Second

// pair is a veth pair between namespaces a and b.
type pair struct {
	a, b         *netns.NS
	nameA, nameB string
	macA, macB   net.HardwareAddr
}

func newPair(t *testing.T, mtu int) *pair {
	t.Helper()
	p := &pair{a: netns.New(t), b: netns.New(t)}
	p.nameA, p.nameB = netns.Veth(t, p.a, p.b, mtu)
	p.macA = p.a.HardwareAddr(t, p.nameA)
	p.macB = p.b.HardwareAddr(t, p.nameB)
	p.ready(t)
	return p
}

// probe is the address of the readiness probes: no test socket's filter
// passes a request to it.
const probeMajor, probeMinor = 0x1234, 0x12

// ready waits until frames get through the pair in both directions. After
// `ip link set up` the kernel attaches the transmit queues asynchronously and
// silently drops what is sent before, so tests must not start earlier. It
// resends a probe until one arrives (a retry, not a timed expectation).
func (p *pair) ready(t *testing.T) {
	t.Helper()
	p.a.WaitRunning(t, p.nameA)
	p.b.WaitRunning(t, p.nameB)
	cfg := Config{Filter: Filter{Major: probeMajor, Minor: probeMinor}}
	var ca, cb *packet.Conn
	if err := p.a.Do(func() error {
		ifi, err := Lookup(p.nameA)
		if err == nil {
			ca, err = Listen(ifi, cfg)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	if err := p.b.Do(func() error {
		ifi, err := Lookup(p.nameB)
		if err == nil {
			cb, err = Listen(ifi, cfg)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer cb.Close()

	for _, d := range []struct {
		from, to *packet.Conn
		dst, src net.HardwareAddr
	}{
		{ca, cb, p.macB, p.macA},
		{cb, ca, p.macA, p.macB},
	} {
		deadline := time.Now().Add(safety)
		for {
			if err := write(d.from, frame(d.dst, d.src, EtherType, 0x10, probeMajor, probeMinor, 0, 60)); err != nil && !Transient(err) {
				t.Fatalf("probe: %v", err)
			}
			_ = d.to.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
			_, _, err := d.to.ReadFrom(make([]byte, 100))
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no probe got through %s-%s after %v: %v", p.nameA, p.nameB, safety, err)
			}
		}
	}
}

// listen looks name up and opens a socket on it inside ns; the socket is
// closed at the end of the test.
func listen(t *testing.T, ns *netns.NS, name string, cfg Config) *packet.Conn {
	t.Helper()
	var c *packet.Conn
	err := ns.Do(func() error {
		ifi, err := Lookup(name)
		if err != nil {
			return err
		}
		c, err = Listen(ifi, cfg)
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s in %s: %v", name, ns.Name, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

var (
	targetCfg    = Config{Filter: Filter{Major: 7, Minor: 3}}
	initiatorCfg = Config{Filter: Filter{Responses: true, AnyAddress: true}}
)

// frame builds an AoE frame of size bytes (at least 19) from src to dst with a
// 32-bit tag in bytes 20-23 when it fits.
func frame(dst, src net.HardwareAddr, etype uint16, verFlags byte, major uint16, minor byte, tag uint32, size int) []byte {
	b := make([]byte, max(size, 24))
	copy(b[0:6], dst)
	copy(b[6:12], src)
	binary.BigEndian.PutUint16(b[12:14], etype)
	b[14] = verFlags
	binary.BigEndian.PutUint16(b[16:18], major)
	b[18] = minor
	binary.BigEndian.PutUint32(b[20:24], tag)
	return b[:size]
}

func tagOf(b []byte) uint32 {
	if len(b) < 24 {
		return 0
	}
	return binary.BigEndian.Uint32(b[20:24])
}

func write(c *packet.Conn, b []byte) error {
	_, err := c.WriteTo(b, &packet.Addr{HardwareAddr: net.HardwareAddr(b[0:6])})
	return err
}

func mustWrite(t *testing.T, c *packet.Conn, b []byte) {
	t.Helper()
	if err := write(c, b); err != nil {
		t.Fatalf("WriteTo (%d bytes): %v", len(b), err)
	}
}

// read reads one frame, failing t if none arrives within the safety bound.
func read(t *testing.T, c *packet.Conn) ([]byte, error) {
	t.Helper()
	buf := make([]byte, 16<<10)
	if err := c.SetReadDeadline(time.Now().Add(safety)); err != nil {
		t.Fatal(err)
	}
	defer c.SetReadDeadline(time.Time{})
	n, _, err := c.ReadFrom(buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadFrom: nothing after %v: %v", safety, err)
	}
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

func mustRead(t *testing.T, c *packet.Conn) []byte {
	t.Helper()
	b, err := read(t, c)
	if err != nil {
		t.Fatalf("ReadFrom: %v", err)
	}
	return b
}

// pinCPU locks the calling goroutine to its thread and the thread to one CPU,
// so that consecutive sends enter the same per-CPU receive backlog and arrive
// in order. The returned func undoes both.
func pinCPU(t *testing.T) (unpin func()) {
	t.Helper()
	runtime.LockOSThread()
	var old, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("sched_getaffinity: %v", err)
	}
	for cpu := 0; cpu < 1024; cpu++ {
		if old.IsSet(cpu) {
			one.Set(cpu)
			break
		}
	}
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("sched_setaffinity: %v", err)
	}
	return func() {
		if err := unix.SchedSetaffinity(0, &old); err != nil {
			t.Errorf("restore affinity: %v", err) // the thread stays locked and is dropped
			return
		}
		runtime.UnlockOSThread()
	}
}

func TestLookupInNamespace(t *testing.T) {
	t.Parallel()
	p := newPair(t, 4000)
	err := p.b.Do(func() error {
		ifi, err := Lookup(p.nameB)
		if err != nil {
			return err
		}
		if ifi.MTU != 4000 || ifi.HardwareAddr.String() != p.macB.String() {
			return fmt.Errorf("Lookup(%s) = MTU %d MAC %v, want 4000 %v", p.nameB, ifi.MTU, ifi.HardwareAddr, p.macB)
		}
		if _, err := Lookup("lo"); !errors.Is(err, ErrNoHardwareAddr) {
			return fmt.Errorf("Lookup(lo) error = %v, want ErrNoHardwareAddr", err)
		}
		if _, err := Lookup(p.nameA); !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("Lookup(peer in other namespace) error = %v, want ErrNotFound", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	p.b.LinkDown(t, p.nameB)
	p.b.SetMTU(t, p.nameB, 1400)
	err = p.b.Do(func() error {
		ifi, err := Lookup(p.nameB)
		if !errors.Is(err, ErrLinkDown) {
			return fmt.Errorf("Lookup(down link) error = %v, want ErrLinkDown", err)
		}
		if ifi == nil || ifi.Name != p.nameB {
			return fmt.Errorf("Lookup(down link) interface = %v, want %s", ifi, p.nameB)
		}
		if mtu, err := MTU(p.nameB); err != nil || mtu != 1400 {
			return fmt.Errorf("MTU(down link) = %d, %v; want 1400", mtu, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestFilterOnTheWire sends a table of frames from a to b and checks that a
// target socket and an initiator socket on b each receive exactly the frames
// their filter passes, whole.
func TestFilterOnTheWire(t *testing.T) {
	t.Parallel()
	p := newPair(t, 1500)
	tx := listen(t, p.a, p.nameA, Config{Filter: Filter{Responses: true, Major: 0xfffe, Minor: 0xfe}})
	target := listen(t, p.b, p.nameB, targetCfg)
	initiator := listen(t, p.b, p.nameB, initiatorCfg)

	const (
		req  = 0x10
		resp = 0x18
	)
	dst, src := p.macB, p.macA
	tests := []wireRow{
		{"request to 7.3", EtherType, req, 7, 3, 60, true, false},
		{"request to broadcast", EtherType, req, 0xffff, 0xff, 60, true, false},
		{"request to 7.255", EtherType, req, 7, 0xff, 60, true, false},
		{"request to 65535.3", EtherType, req, 0xffff, 3, 60, true, false},
		{"request to 7.4", EtherType, req, 7, 4, 60, false, false},
		{"request to 8.3", EtherType, req, 8, 3, 60, false, false},
		{"request to 263.3 (major high byte)", EtherType, req, 0x0107, 3, 60, false, false},
		{"response from 7.3", EtherType, resp, 7, 3, 60, false, true},
		{"response from 9.9", EtherType, resp, 9, 9, 60, false, true},
		{"request, IPv4 ethertype", 0x0800, req, 7, 3, 60, false, false},
		{"response, other ethertype", 0x88A3, resp, 7, 3, 60, false, false},
		{"request to 7.3, 19 bytes", EtherType, req, 7, 3, 19, true, false},
		{"request to 7.3, truncated to 18 bytes", EtherType, req, 7, 3, 18, false, false},
		{"request to 7.3, truncated to 16 bytes", EtherType, req, 7, 3, 16, false, false},
		{"response, truncated to 18 bytes", EtherType, resp, 7, 3, 18, false, false},
		{"request to 7.3, full 1514 bytes", EtherType, req, 7, 3, 1514, true, false},
	}

	const (
		targetMarker    = 0xAAAA0001
		initiatorMarker = 0xAAAA0002
	)
	unpin := pinCPU(t)
	for i, tt := range tests {
		mustWrite(t, tx, frame(dst, src, tt.etype, tt.vf, tt.major, tt.minor, uint32(i+1), tt.size))
	}
	mustWrite(t, tx, frame(dst, src, EtherType, req, 7, 3, targetMarker, 60))
	mustWrite(t, tx, frame(dst, src, EtherType, resp, 1, 1, initiatorMarker, 60))
	unpin()

	for _, sock := range []struct {
		name   string
		c      *packet.Conn
		marker uint32
		want   func(i int) bool
	}{
		{"target", target, targetMarker, func(i int) bool { return tests[i].target }},
		{"initiator", initiator, initiatorMarker, func(i int) bool { return tests[i].initiator }},
	} {
		t.Run(sock.name, func(t *testing.T) {
			got := map[uint32][]byte{}
			for {
				b := mustRead(t, sock.c)
				if len(b) < 19 || binary.BigEndian.Uint16(b[12:14]) != EtherType {
					t.Fatalf("received a frame the filter must reject: % x", b)
				}
				if len(b) == 19 { // too short for a tag: the 19-byte row
					got[uint32(indexOf(tests, "request to 7.3, 19 bytes")+1)] = b
					continue
				}
				tag := tagOf(b)
				if tag == sock.marker {
					break
				}
				got[tag] = b
			}
			for i, tt := range tests {
				b, ok := got[uint32(i+1)]
				if ok != sock.want(i) {
					t.Errorf("%s: delivered = %v, want %v", tt.name, ok, sock.want(i))
				}
				if ok && len(b) != tt.size {
					t.Errorf("%s: received %d bytes, sent %d", tt.name, len(b), tt.size)
				}
				delete(got, uint32(i+1))
			}
			for tag, b := range got {
				t.Errorf("unexpected frame with tag %#x: % x", tag, b)
			}
		})
	}
}

// wireRow is a frame sent by TestFilterOnTheWire.
type wireRow struct {
	name              string
	etype             uint16
	vf                byte
	major             uint16
	minor             byte
	size              int
	target, initiator bool // delivered to each socket?
}

func indexOf(tests []wireRow, name string) int {
	for i, tt := range tests {
		if tt.name == name {
			return i
		}
	}
	panic("no row " + name)
}

// TestLocalOutgoingNotSeen checks that a socket does not see frames other
// sockets of the same host send out of its interface: a target never answers
// a local initiator's requests meant for the wire.
func TestLocalOutgoingNotSeen(t *testing.T) {
	t.Parallel()
	p := newPair(t, 1500)
	peer := listen(t, p.a, p.nameA, targetCfg)
	sender := listen(t, p.b, p.nameB, Config{Filter: Filter{AnyAddress: true}})
	local := listen(t, p.b, p.nameB, targetCfg)

	// A request to 7.3 out of b: the peer on a receives it.
	mustWrite(t, sender, frame(p.macA, p.macB, EtherType, 0x10, 7, 3, 42, 60))
	if got := tagOf(mustRead(t, peer)); got != 42 {
		t.Fatalf("peer received tag %d, want 42", got)
	}
	// The peer has the frame, so the outgoing taps (which run before the
	// driver transmits) are done: neither socket on b got a copy.
	for name, c := range map[string]*packet.Conn{"target": local, "sender": sender} {
		st, err := c.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if st.Packets != 0 {
			t.Errorf("%s socket on the sending side received %d frames, want 0", name, st.Packets)
		}
	}
}

func TestBuffers(t *testing.T) {
	t.Parallel()
	p := newPair(t, 1500)
	const size = 3 << 20 // above the default net.core.rmem_max of 208 KiB
	c := listen(t, p.b, p.nameB, Config{Filter: targetCfg.Filter, RecvBuffer: size, SendBuffer: size})
	recv, send, err := BufferSizes(c)
	if err != nil {
		t.Fatal(err)
	}
	// The kernel reports twice the size set (SO_RCVBUFFORCE, as root).
	if recv != 2*size || send != 2*size {
		t.Errorf("BufferSizes = %d, %d; want %d, %d", recv, send, 2*size, 2*size)
	}

	d := listen(t, p.b, p.nameB, targetCfg)
	recv, send, err = BufferSizes(d)
	if err != nil || recv <= 0 || send <= 0 {
		t.Errorf("default BufferSizes = %d, %d, %v", recv, send, err)
	}
}

// TestLinkDownUp pins down what a bound socket sees when its interface goes
// down and comes back (see the package documentation).
func TestLinkDownUp(t *testing.T) {
	t.Parallel()
	p := newPair(t, 1500)
	ca := listen(t, p.a, p.nameA, initiatorCfg)
	cb := listen(t, p.b, p.nameB, targetCfg)
	req := func(tag uint32) []byte { return frame(p.macB, p.macA, EtherType, 0x10, 7, 3, tag, 60) }
	resp := func(tag uint32) []byte { return frame(p.macA, p.macB, EtherType, 0x18, 7, 3, tag, 60) }

	mustWrite(t, ca, req(1))
	if got := tagOf(mustRead(t, cb)); got != 1 {
		t.Fatalf("before down: tag %d, want 1", got)
	}

	// A reader blocked in ReadFrom wakes up with ENETDOWN.
	errc := make(chan error, 1)
	go func() {
		_, _, err := cb.ReadFrom(make([]byte, 2000))
		errc <- err
	}()
	p.b.LinkDown(t, p.nameB)
	select {
	case err := <-errc:
		if !errors.Is(err, syscall.ENETDOWN) || !Transient(err) {
			t.Fatalf("ReadFrom when the link went down: %v, want transient ENETDOWN", err)
		}
	case <-time.After(safety):
		t.Fatal("ReadFrom still blocked after the link went down")
	}

	// While down: writes fail with ENETDOWN. The peer's writes fail with
	// ENOBUFS until the kernel's link watcher has processed the carrier
	// loss, and are dropped silently after that.
	if err := write(cb, resp(2)); !errors.Is(err, syscall.ENETDOWN) || !Transient(err) {
		t.Errorf("WriteTo on a down link: %v, want transient ENETDOWN", err)
	}
	if err := write(ca, req(3)); err != nil && (!errors.Is(err, syscall.ENOBUFS) || !Transient(err)) {
		t.Errorf("WriteTo towards a down veth peer: %v, want nil or transient ENOBUFS", err)
	}

	// Up again: the same socket works; the ENETDOWN was reported once.
	p.b.LinkUp(t, p.nameB)
	p.ready(t)
	mustWrite(t, ca, req(4))
	if got := tagOf(mustRead(t, cb)); got != 4 {
		t.Fatalf("after up: tag %d, want 4", got)
	}
	mustWrite(t, cb, resp(5))
	if got := tagOf(mustRead(t, ca)); got != 5 {
		t.Fatalf("after up, reply: tag %d, want 5", got)
	}

	// A frame queued before a down/up flap is still delivered, after the
	// pending ENETDOWN.
	if _, err := cb.Stats(); err != nil { // resets the counters
		t.Fatal(err)
	}
	mustWrite(t, ca, req(6))
	waitQueued(t, cb, 1)
	p.b.LinkDown(t, p.nameB)
	p.b.LinkUp(t, p.nameB)
	p.ready(t)
	if _, err := read(t, cb); !errors.Is(err, syscall.ENETDOWN) {
		t.Fatalf("first read after flap: %v, want ENETDOWN", err)
	}
	if got := tagOf(mustRead(t, cb)); got != 6 {
		t.Fatalf("second read after flap: tag %d, want the queued 6", got)
	}

	// The pending ENETDOWN goes to whichever call comes first: here a
	// write, whose frame is then not sent.
	p.b.LinkDown(t, p.nameB)
	p.b.LinkUp(t, p.nameB)
	p.ready(t)
	if err := write(cb, resp(7)); !errors.Is(err, syscall.ENETDOWN) {
		t.Fatalf("first write after flap: %v, want ENETDOWN", err)
	}
	mustWrite(t, cb, resp(8))
	if got := tagOf(mustRead(t, ca)); got != 8 {
		t.Fatalf("peer received tag %d, want 8 (7 must not have been sent)", got)
	}
	mustWrite(t, ca, req(9)) // and the error is not reported to the reader again
	if got := tagOf(mustRead(t, cb)); got != 9 {
		t.Fatalf("read after the write took the error: tag %d, want 9", got)
	}
}

func TestListenOnDownLink(t *testing.T) {
	t.Parallel()
	p := newPair(t, 1500)
	ca := listen(t, p.a, p.nameA, initiatorCfg)
	p.b.LinkDown(t, p.nameB)
	var cb *packet.Conn
	err := p.b.Do(func() error {
		ifi, err := net.InterfaceByName(p.nameB) // Lookup would refuse: ErrLinkDown
		if err != nil {
			return err
		}
		cb, err = Listen(ifi, targetCfg)
		return err
	})
	if err != nil {
		t.Fatalf("Listen on a down link: %v", err)
	}
	defer cb.Close()
	p.b.LinkUp(t, p.nameB)
	p.ready(t)
	if _, err := read(t, cb); !errors.Is(err, syscall.ENETDOWN) {
		t.Fatalf("first read: %v, want ENETDOWN", err)
	}
	mustWrite(t, ca, frame(p.macB, p.macA, EtherType, 0x10, 7, 3, 1, 60))
	if got := tagOf(mustRead(t, cb)); got != 1 {
		t.Fatalf("tag %d, want 1", got)
	}
}

func TestMTUAndMessageSize(t *testing.T) {
	t.Parallel()
	p := newPair(t, 1500)
	ca := listen(t, p.a, p.nameA, initiatorCfg)
	cb := listen(t, p.b, p.nameB, targetCfg)
	req := func(tag uint32, size int) []byte {
		return frame(p.macB, p.macA, EtherType, 0x10, 7, 3, tag, size)
	}

	mustWrite(t, ca, req(1, 1514))
	if b := mustRead(t, cb); len(b) != 1514 || tagOf(b) != 1 {
		t.Fatalf("got %d bytes tag %d, want 1514 tag 1", len(b), tagOf(b))
	}
	if err := write(ca, req(2, 1515)); !errors.Is(err, syscall.EMSGSIZE) || !Transient(err) {
		t.Fatalf("1515-byte write on MTU 1500: %v, want transient EMSGSIZE", err)
	}

	p.a.SetMTU(t, p.nameA, 9000)
	p.b.SetMTU(t, p.nameB, 9000)
	if err := p.a.Do(func() error {
		if mtu, err := MTU(p.nameA); err != nil || mtu != 9000 {
			return fmt.Errorf("MTU = %d, %v; want 9000", mtu, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, ca, req(3, 9014))
	if b := mustRead(t, cb); len(b) != 9014 || tagOf(b) != 3 {
		t.Fatalf("got %d bytes tag %d, want 9014 tag 3", len(b), tagOf(b))
	}
}

// TestInterfaceDeletedAndRecreated shows that a socket whose interface was
// deleted is dead for good, and that Rebind and LinkWatcher recover.
func TestInterfaceDeletedAndRecreated(t *testing.T) {
	t.Parallel()
	p := newPair(t, 1500)
	ca := listen(t, p.a, p.nameA, initiatorCfg)
	cb := listen(t, p.b, p.nameB, targetCfg)
	oldIndex := p.b.Interface(t, p.nameB).Index

	if idx, err := BoundIndex(cb); err != nil || idx != oldIndex {
		t.Fatalf("BoundIndex = %d, %v; want %d", idx, err, oldIndex)
	}
	// Rebind of a healthy socket is a no-op.
	if err := p.b.Do(func() error {
		nc, ifi, err := Rebind(cb, p.nameB, targetCfg)
		if err != nil || nc != cb || ifi.Index != oldIndex {
			return fmt.Errorf("Rebind(healthy) = %p, %v, %v; want the same socket", nc, ifi, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	var w *LinkWatcher
	if err := p.b.Do(func() (err error) { w, err = WatchLinks(); return err }); err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	p.a.DeleteLink(t, p.nameA) // deletes both ends

	if _, err := read(t, cb); !errors.Is(err, syscall.ENETDOWN) || !Transient(err) {
		t.Fatalf("read after delete: %v, want transient ENETDOWN", err)
	}
	if idx, err := BoundIndex(cb); err != nil || idx != -1 {
		t.Fatalf("BoundIndex after delete = %d, %v; want -1", idx, err)
	}
	if err := write(cb, frame(p.macA, p.macB, EtherType, 0x18, 7, 3, 1, 60)); !errors.Is(err, syscall.ENXIO) || !Transient(err) {
		t.Fatalf("write after delete: %v, want transient ENXIO", err)
	}
	if err := p.b.Do(func() error {
		nc, _, err := Rebind(cb, p.nameB, targetCfg)
		if !errors.Is(err, ErrNotFound) || nc != cb {
			return fmt.Errorf("Rebind(deleted) = %p, %v; want the old socket and ErrNotFound", nc, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The kernel announces the link going down, then its deletion.
	ev := nextFor(t, w, p.nameB)
	for !ev.Deleted {
		if ev.Index != oldIndex || ev.Flags&net.FlagUp != 0 {
			t.Fatalf("event before deletion %+v, want index %d going down", ev, oldIndex)
		}
		ev = nextFor(t, w, p.nameB)
	}
	if ev.Index != oldIndex {
		t.Fatalf("deletion event %+v, want index %d", ev, oldIndex)
	}

	netns.VethNamed(t, p.a, p.nameA, p.b, p.nameB, 1400)
	p.macA, p.macB = p.a.HardwareAddr(t, p.nameA), p.b.HardwareAddr(t, p.nameB)
	p.ready(t)
	newIndex := p.b.Interface(t, p.nameB).Index

	// The watcher sees the new interface under the same name.
	for {
		ev = nextFor(t, w, p.nameB)
		if ev.Deleted {
			t.Fatalf("unexpected deletion event %+v", ev)
		}
		if ev.Flags&net.FlagUp != 0 {
			break // created, then set up
		}
	}
	if ev.Index != newIndex || ev.Index == oldIndex || ev.MTU != 1400 || ev.HardwareAddr.String() != p.macB.String() {
		t.Fatalf("event %+v, want index %d (not %d), MTU 1400, MAC %v", ev, newIndex, oldIndex, p.macB)
	}

	// The old socket stays unbound.
	if idx, err := BoundIndex(cb); err != nil || idx != -1 {
		t.Fatalf("old socket's BoundIndex after recreate = %d, %v; want -1", idx, err)
	}
	var nb, na *packet.Conn
	if err := p.b.Do(func() error {
		var ifi *net.Interface
		var err error
		nb, ifi, err = Rebind(cb, p.nameB, targetCfg)
		if err != nil || nb == cb || ifi.Index != newIndex || ifi.MTU != 1400 {
			return fmt.Errorf("Rebind(recreated) = %p (old %p), %+v, %v; want a new socket on index %d, MTU 1400", nb, cb, ifi, err, newIndex)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	defer nb.Close()
	if err := p.a.Do(func() (err error) { na, _, err = Rebind(ca, p.nameA, initiatorCfg); return err }); err != nil || na == ca {
		t.Fatalf("Rebind on a: %v (same socket: %v)", err, na == ca)
	}
	defer na.Close()
	if idx, err := BoundIndex(nb); err != nil || idx != newIndex {
		t.Fatalf("new socket's BoundIndex = %d, %v; want %d", idx, err, newIndex)
	}

	mustWrite(t, na, frame(p.macB, p.macA, EtherType, 0x10, 7, 3, 2, 60))
	if got := tagOf(mustRead(t, nb)); got != 2 {
		t.Fatalf("new socket: tag %d, want 2", got)
	}
	// The frame reached every socket bound on the new interface; the old
	// one is not among them.
	if st, err := cb.Stats(); err != nil || st.Packets != 0 {
		t.Fatalf("old socket Stats = %+v, %v; want 0 packets", st, err)
	}
}

// waitQueued waits until the kernel has queued n frames on c since the last
// call to c.Stats (delivery may finish after WriteTo returned, in softirq).
func waitQueued(t *testing.T, c *packet.Conn, n uint32) {
	t.Helper()
	deadline := time.Now().Add(safety)
	var got uint32
	for got < n {
		st, err := c.Stats() // resets the counters, so sum them
		if err != nil {
			t.Fatal(err)
		}
		got += st.Packets
		if time.Now().After(deadline) {
			t.Fatalf("%d frames queued after %v, want %d", got, safety, n)
		}
		runtime.Gosched()
	}
	if got != n {
		t.Fatalf("%d frames queued, want %d", got, n)
	}
}

// nextFor returns the next LinkWatcher event for the interface called name.
func nextFor(t *testing.T, w *LinkWatcher, name string) LinkEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), safety)
	defer cancel()
	for {
		ev, err := w.Next(ctx)
		if err != nil {
			t.Fatalf("LinkWatcher.Next: %v", err)
		}
		if ev.Name == name {
			return ev
		}
	}
}

func TestReadDeadlineAndClose(t *testing.T) {
	t.Parallel()
	p := newPair(t, 1500)
	ca := listen(t, p.a, p.nameA, initiatorCfg)
	cb := listen(t, p.b, p.nameB, targetCfg)

	// A past deadline set from another goroutine unblocks ReadFrom.
	errc := make(chan error, 1)
	go func() {
		_, _, err := cb.ReadFrom(make([]byte, 2000))
		errc <- err
	}()
	ctx, cancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, func() { _ = cb.SetReadDeadline(time.Now()) })
	defer stop()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, os.ErrDeadlineExceeded) || Transient(err) {
			t.Fatalf("ReadFrom after deadline: %v, want non-transient os.ErrDeadlineExceeded", err)
		}
	case <-time.After(safety):
		t.Fatal("ReadFrom still blocked after SetReadDeadline(now)")
	}

	// After resetting the deadline the socket reads again.
	if err := cb.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, ca, frame(p.macB, p.macA, EtherType, 0x10, 7, 3, 1, 60))
	if got := tagOf(mustRead(t, cb)); got != 1 {
		t.Fatalf("tag %d, want 1", got)
	}

	// Close unblocks ReadFrom too; later calls fail with EBADF.
	go func() {
		_, _, err := cb.ReadFrom(make([]byte, 2000))
		errc <- err
	}()
	if err := cb.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err == nil || Transient(err) {
			t.Fatalf("ReadFrom after Close: %v, want a non-transient error", err)
		}
	case <-time.After(safety):
		t.Fatal("ReadFrom still blocked after Close")
	}
	if _, _, err := cb.ReadFrom(make([]byte, 100)); !errors.Is(err, syscall.EBADF) || Transient(err) {
		t.Fatalf("ReadFrom on a closed socket: %v, want non-transient EBADF", err)
	}
}

// TestServeLoopSurvivesRecreate runs the serve loop outlined in the package
// documentation: an echo server on b that must keep answering a client on a
// across a link flap, the veth pair being deleted and recreated (new
// indexes), and an MTU change it has to notice.
func TestServeLoopSurvivesRecreate(t *testing.T) {
	t.Parallel()
	p := newPair(t, 1500)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Server on b.
	first := listen(t, p.b, p.nameB, targetCfg)
	var (
		cur     atomic.Pointer[packet.Conn]
		mtu     atomic.Int64
		rebinds atomic.Int64
		w       *LinkWatcher
		wg      sync.WaitGroup
	)
	cur.Store(first)
	mtu.Store(1500)
	if err := p.b.Do(func() (err error) { w, err = WatchLinks(); return err }); err != nil {
		t.Fatal(err)
	}
	// Shutdown: cancelling ctx wakes the watcher and the reader.
	context.AfterFunc(ctx, func() {
		_ = w.Close()
		_ = cur.Load().SetReadDeadline(time.Now())
	})

	wg.Go(func() { // watcher
		for {
			ev, err := w.Next(ctx)
			if ctx.Err() != nil {
				return
			}
			if err != nil && !errors.Is(err, ErrEventsLost) {
				t.Errorf("watcher: %v", err)
				return
			}
			if err == nil && ev.Name != p.nameB {
				continue
			}
			old := cur.Load()
			var nc *packet.Conn
			var ifi *net.Interface
			err = p.b.Do(func() (err error) { nc, ifi, err = Rebind(old, p.nameB, targetCfg); return err })
			if err != nil {
				continue // gone for now
			}
			mtu.Store(int64(ifi.MTU))
			if nc != old {
				rebinds.Add(1)
				cur.Store(nc)
				_ = old.Close()
			}
		}
	})

	wg.Go(func() { // reader: echo requests back as responses carrying our MTU
		buf := make([]byte, 16<<10)
		for {
			c := cur.Load()
			n, _, err := c.ReadFrom(buf)
			switch {
			case ctx.Err() != nil:
				return
			case err != nil && cur.Load() != c:
				continue // replaced by the watcher
			case Transient(err):
				t.Logf("server: transient read error: %v", err)
				continue
			case err != nil:
				t.Errorf("server: read: %v", err)
				return
			}
			reply := append([]byte(nil), buf[:n]...)
			copy(reply[0:6], buf[6:12])
			copy(reply[6:12], buf[0:6])
			reply[14] |= 0x08
			if len(reply) >= 28 {
				binary.BigEndian.PutUint32(reply[24:28], uint32(mtu.Load()))
			}
			if err := write(c, reply); err != nil && !Transient(err) && cur.Load() == c {
				t.Errorf("server: write: %v", err)
			}
		}
	})
	defer func() {
		cancel()
		wg.Wait()
	}()

	// Client on a, retransmitting like an initiator until it gets an answer
	// that satisfies ok.
	client := listen(t, p.a, p.nameA, initiatorCfg)
	ping := func(tag uint32, size int, ok func(reply []byte) bool) {
		t.Helper()
		deadline := time.Now().Add(safety)
		buf := make([]byte, 16<<10)
		for {
			if time.Now().After(deadline) {
				t.Fatalf("no satisfying answer to tag %d after %v", tag, safety)
			}
			err := write(client, frame(p.macB, p.macA, EtherType, 0x10, 7, 3, tag, size))
			if err != nil && !Transient(err) {
				t.Fatalf("client write: %v", err)
			}
			_ = client.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			for {
				n, _, err := client.ReadFrom(buf)
				if err != nil {
					break // resend
				}
				if tagOf(buf[:n]) == tag && n == size && ok(buf[:n]) {
					_ = client.SetReadDeadline(time.Time{})
					return
				}
			}
		}
	}
	anyReply := func([]byte) bool { return true }

	ping(1, 60, anyReply)

	p.b.LinkDown(t, p.nameB)
	p.b.LinkUp(t, p.nameB)
	p.ready(t)
	ping(2, 60, anyReply)
	if cur.Load() != first {
		t.Errorf("a link flap replaced the socket; it should have been kept")
	}

	p.a.DeleteLink(t, p.nameA)
	netns.VethNamed(t, p.a, p.nameA, p.b, p.nameB, 1500)
	p.macA, p.macB = p.a.HardwareAddr(t, p.nameA), p.b.HardwareAddr(t, p.nameB)
	p.ready(t)
	if err := p.a.Do(func() error {
		nc, _, err := Rebind(client, p.nameA, initiatorCfg)
		if err == nil {
			t.Cleanup(func() { _ = nc.Close() })
			client = nc
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	ping(3, 60, anyReply)
	if rebinds.Load() < 1 || cur.Load() == first {
		t.Errorf("server answered after the interface was recreated without rebinding (rebinds %d)", rebinds.Load())
	}

	p.a.SetMTU(t, p.nameA, 9000)
	p.b.SetMTU(t, p.nameB, 9000)
	ping(4, 9014, func(reply []byte) bool { return binary.BigEndian.Uint32(reply[24:28]) == 9000 })
}
