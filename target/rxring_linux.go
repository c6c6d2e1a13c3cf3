package target

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rxRing is an AF_PACKET socket's receive ring (PACKET_RX_RING,
// TPACKET_V2): the kernel copies each frame into the next free slot as it
// arrives, on the CPU that receives it, and a receive loop copies it out
// without a system call (no recvmmsg, and no socket buffer to free, per
// batch). Only one goroutine takes frames from it.
type rxRing struct {
	mem      []byte
	slotSize int
	slots    int
	head     int      // the next slot to look at
	early    [][]byte // frames queued before the ring, which go first

	// The ring is unmapped by the receive loop that used it, once it has
	// moved on, or when the socket closes if no loop ever used it.
	mu                       sync.Mutex
	attached, closed, unmapd bool
}

// newRxRing sets up a receive ring of at least slots frames of up to
// frameLen bytes on conn's socket (longer frames are cut, as a buffer of
// frameLen bytes cuts them). Making the ring drops the frames queued in
// the socket, so it takes them first; one that arrives during the call is
// lost, as on the wire (the initiator sends it again). Call it when the
// socket opens, before any receive.
func newRxRing(conn syscall.Conn, slots, frameLen int) (*rxRing, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	// A slot holds the header, the padding that aligns the frame, and
	// the frame; a power of two, so that slots never straddle a block.
	slotSize := 2048
	for slotSize < unix.SizeofTpacket2Hdr+64+frameLen {
		slotSize *= 2
	}
	blockSize := max(slotSize, 1<<16)
	perBlock := blockSize / slotSize
	blocks := (slots + perBlock - 1) / perBlock
	req := unix.TpacketReq{Block_size: uint32(blockSize), Block_nr: uint32(blocks),
		Frame_size: uint32(slotSize), Frame_nr: uint32(blocks * perBlock)}
	r := &rxRing{slotSize: slotSize, slots: blocks * perBlock}
	cerr := raw.Control(func(fd uintptr) {
		if err = unix.SetsockoptInt(int(fd), unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V2); err != nil {
			err = fmt.Errorf("PACKET_VERSION: %w", err)
			return
		}
		for {
			b := make([]byte, frameLen)
			n, _, rerr := unix.Recvfrom(int(fd), b, unix.MSG_DONTWAIT)
			if rerr != nil {
				break
			}
			r.early = append(r.early, b[:n])
		}
		if err = unix.SetsockoptTpacketReq(int(fd), unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
			// The frames taken above are dropped with r: the socket
			// goes on with recvmmsg, and the initiator sends them again.
			err = fmt.Errorf("PACKET_RX_RING: %w", err)
			return
		}
		r.mem, err = unix.Mmap(int(fd), 0, blocks*blockSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			err = fmt.Errorf("mmap: %w", err)
			// Unmapped, the ring would fill and then drop every frame:
			// take it down.
			unix.SetsockoptTpacketReq(int(fd), unix.SOL_PACKET, unix.PACKET_RX_RING, &unix.TpacketReq{})
		}
	})
	if cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, err
	}
	return r, nil
}

// take copies the frames waiting in the ring into bufs, as many as fit,
// sets their lengths in lens, hands their slots back to the kernel, and
// returns how many it took.
func (r *rxRing) take(bufs [][]byte, lens []int) int {
	if len(r.early) > 0 {
		n := 0
		for ; n < len(bufs) && n < len(r.early); n++ {
			lens[n] = copy(bufs[n], r.early[n])
		}
		r.early = r.early[n:]
		return n
	}
	n := 0
	for n < len(bufs) {
		slot := r.mem[r.head*r.slotSize : (r.head+1)*r.slotSize]
		h := (*unix.Tpacket2Hdr)(unsafe.Pointer(&slot[0]))
		if atomic.LoadUint32(&h.Status)&unix.TP_STATUS_USER == 0 {
			break
		}
		off := min(int(h.Mac), len(slot))
		lens[n] = copy(bufs[n], slot[off:min(off+int(h.Snaplen), len(slot))])
		atomic.StoreUint32(&h.Status, unix.TP_STATUS_KERNEL)
		n++
		r.head++
		if r.head == r.slots {
			r.head = 0
		}
	}
	return n
}

// attach claims the ring for a receive loop; false if the socket has
// closed (the loop then receives with recvmmsg, and fails as the socket
// does).
func (r *rxRing) attach() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.attached {
		return false
	}
	r.attached = true
	return true
}

// detach is the receive loop's last use of the ring: it unmaps it.
func (r *rxRing) detach() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unmap()
}

// socketClosed unmaps the ring if no receive loop took it.
func (r *rxRing) socketClosed() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if !r.attached {
		r.unmap()
	}
}

func (r *rxRing) unmap() {
	if !r.unmapd {
		unix.Munmap(r.mem)
		r.unmapd = true
	}
}

// ringConn is a socket with a receive ring. Receive loops take frames
// from the ring (reader.recv); everything else is the socket's.
type ringConn struct {
	net.PacketConn
	sc   syscall.Conn
	ring *rxRing
}

// SyscallConn returns the socket's raw connection.
func (c *ringConn) SyscallConn() (syscall.RawConn, error) { return c.sc.SyscallConn() }

// Close closes the socket, and unmaps the ring unless a receive loop has
// it.
func (c *ringConn) Close() error {
	err := c.PacketConn.Close()
	c.ring.socketClosed()
	return err
}

// withRecvRing returns conn with a receive ring for slots frames of up to
// frameLen bytes, or conn as it is (and why) if it cannot have one.
func withRecvRing(conn net.PacketConn, slots, frameLen int) (net.PacketConn, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return conn, nil // not a socket: tests' in-memory conns
	}
	ring, err := newRxRing(sc, slots, frameLen)
	if err != nil {
		return conn, err
	}
	return &ringConn{PacketConn: conn, sc: sc, ring: ring}, nil
}
