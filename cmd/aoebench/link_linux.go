//go:build linux

package main

import (
	"fmt"
	"net"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/aoetarget/aoetarget/aoe"
	"github.com/aoetarget/aoetarget/netconf"
	"golang.org/x/sys/unix"
)

// recvWait is how long one recv waits for a frame before the engine looks
// at its clock again (stop, timeouts).
const recvWait = 5 * time.Millisecond

// ioMode is how the link receives: a memory-mapped ring or recvmmsg.
type ioMode int

const (
	ioRing ioMode = iota // PACKET_RX_RING (TPACKET_V2); poll(2) only when it is empty
	ioMmsg               // recvmmsg(2) with MSG_WAITFORONE
)

// rawLink is a blocking AF_PACKET socket driven from one locked thread,
// bypassing the Go runtime's poller. It sends with sendmmsg (one system
// call per batch) and receives from a PACKET_RX_RING, where the kernel
// writes every frame into shared memory and a system call is needed only
// to wait when the ring is empty, or with recvmmsg.
type rawLink struct {
	fd   int
	mode ioMode

	sendv []unix.Mmsghdr
	siov  []unix.Iovec

	// recvmmsg
	recvv []unix.Mmsghdr
	riov  []unix.Iovec
	rbufs [][]byte

	// ring
	ring      []byte
	frameSize int
	frames    int
	head      int
	held      []int // ring frames handed out by the last recv

	out   [][]byte
	batch int
	spin  bool // poll without blocking
}

// openLink opens the socket on ifi for replies from major.minor: frames of
// up to bufLen bytes, a window of frames in flight.
func openLink(ifi *net.Interface, major uint16, minor uint8, window, bufLen int, mode ioMode, spin bool) (*rawLink, error) {
	prog, err := netconf.Filter{Responses: true, Major: major, Minor: minor}.Program()
	if err != nil {
		return nil, err
	}
	// Protocol 0 first: no frame is queued before the filter is attached
	// and the socket bound to ifi.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	l := &rawLink{fd: fd, mode: mode, batch: min(window, 64), spin: spin}
	fail := func(what string, err error) (*rawLink, error) {
		l.close()
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	filter := make([]unix.SockFilter, len(prog))
	for i, ins := range prog {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		return fail("attach filter", err)
	}
	// Room for every frame of the window several times over: the kernel
	// charges a frame's truesize, about twice its length for jumbo frames.
	buf := 4<<20 + window*4*bufLen
	for _, o := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[0], buf); err != nil {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[1], buf); err != nil {
				return fail("set socket buffer", err)
			}
		}
	}
	// Frames go straight to the driver, skipping the queueing discipline
	// (a veth has none anyway); best effort.
	_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1)
	tv := unix.NsecToTimeval(int64(recvWait))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fail("set receive timeout", err)
	}
	if mode == ioRing {
		if err := l.setupRing(window, bufLen); err != nil {
			return fail("set up the receive ring", err)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(aoe.EtherType), Ifindex: ifi.Index}); err != nil {
		return fail(fmt.Sprintf("bind to %s", ifi.Name), err)
	}

	l.sendv = make([]unix.Mmsghdr, window)
	l.siov = make([]unix.Iovec, window)
	for i := range l.sendv {
		l.sendv[i].Hdr.Iov = &l.siov[i]
		l.sendv[i].Hdr.SetIovlen(1)
	}
	l.out = make([][]byte, 0, l.batch)
	if mode == ioMmsg {
		l.recvv = make([]unix.Mmsghdr, l.batch)
		l.riov = make([]unix.Iovec, l.batch)
		l.rbufs = make([][]byte, l.batch)
		for i := range l.recvv {
			l.rbufs[i] = make([]byte, bufLen)
			l.riov[i].Base = &l.rbufs[i][0]
			l.riov[i].SetLen(bufLen)
			l.recvv[i].Hdr.Iov = &l.riov[i]
			l.recvv[i].Hdr.SetIovlen(1)
		}
	}
	return l, nil
}

// setupRing maps a TPACKET_V2 receive ring with room for several windows
// of frames of up to bufLen bytes.
func (l *rawLink) setupRing(window, bufLen int) error {
	if err := unix.SetsockoptInt(l.fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V2); err != nil {
		return err
	}
	// A frame slot holds the header, padding to align the MAC header, and
	// the frame; a power of two so slots never straddle a block.
	need := unix.SizeofTpacket2Hdr + 64 + bufLen
	frameSize := 2048
	for frameSize < need {
		frameSize *= 2
	}
	blockSize := max(frameSize, 1<<16)
	frames := max(4*window, 256, (4<<20)/frameSize)
	blocks := (frames*frameSize + blockSize - 1) / blockSize
	frames = blocks * (blockSize / frameSize)
	req := unix.TpacketReq{
		Block_size: uint32(blockSize), Block_nr: uint32(blocks),
		Frame_size: uint32(frameSize), Frame_nr: uint32(frames),
	}
	if err := unix.SetsockoptTpacketReq(l.fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return err
	}
	ring, err := unix.Mmap(l.fd, 0, blocks*blockSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("mmap: %w", err)
	}
	l.ring, l.frameSize, l.frames = ring, frameSize, frames
	l.held = make([]int, 0, l.batch)
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (l *rawLink) send(frames [][]byte) (dropped int, err error) {
	for i, f := range frames {
		l.siov[i].Base = &f[0]
		l.siov[i].SetLen(len(f))
	}
	sent, n := 0, len(frames)
	for sent < n {
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(l.fd),
			uintptr(unsafe.Pointer(&l.sendv[sent])), uintptr(n-sent), 0, 0, 0)
		switch errno {
		case 0:
			sent += int(r)
		case unix.EINTR:
		case unix.ENOBUFS, unix.ENOMEM, unix.ENETDOWN, unix.EAGAIN:
			// This frame is lost; the timeout sends it again.
			sent++
			dropped++
		default:
			return dropped, fmt.Errorf("sendmmsg: %w", errno)
		}
	}
	return dropped, nil
}

func (l *rawLink) recv() ([][]byte, error) {
	if l.mode == ioRing {
		return l.recvRing()
	}
	for i := range l.recvv {
		l.recvv[i].Hdr.Flags = 0
	}
	flags := uintptr(unix.MSG_WAITFORONE)
	if l.spin {
		flags = unix.MSG_DONTWAIT
	}
	r, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(l.fd),
		uintptr(unsafe.Pointer(&l.recvv[0])), uintptr(len(l.recvv)), flags, 0, 0)
	switch errno {
	case 0:
	case unix.EAGAIN, unix.EINTR, unix.ENETDOWN:
		return nil, nil
	default:
		return nil, fmt.Errorf("recvmmsg: %w", errno)
	}
	l.out = l.out[:0]
	for i := range int(r) {
		l.out = append(l.out, l.rbufs[i][:l.recvv[i].Len])
	}
	return l.out, nil
}

// status returns the tp_status word of ring frame i.
func (l *rawLink) status(i int) *uint32 {
	return (*uint32)(unsafe.Pointer(&l.ring[i*l.frameSize]))
}

// recvRing hands back the frames of the previous call to the kernel and
// returns the ones the kernel has filled since, waiting in poll(2) only
// when there are none.
func (l *rawLink) recvRing() ([][]byte, error) {
	for _, i := range l.held {
		atomic.StoreUint32(l.status(i), unix.TP_STATUS_KERNEL)
	}
	l.held = l.held[:0]
	l.out = l.out[:0]
	for try := 0; try < 2; try++ {
		for len(l.out) < l.batch {
			st := atomic.LoadUint32(l.status(l.head))
			if st&unix.TP_STATUS_USER == 0 {
				break
			}
			h := (*unix.Tpacket2Hdr)(unsafe.Pointer(&l.ring[l.head*l.frameSize]))
			off := l.head*l.frameSize + int(h.Mac)
			l.out = append(l.out, l.ring[off:off+int(h.Snaplen)])
			l.held = append(l.held, l.head)
			l.head++
			if l.head == l.frames {
				l.head = 0
			}
		}
		if len(l.out) > 0 || try == 1 || l.spin {
			break
		}
		fds := [1]unix.PollFd{{Fd: int32(l.fd), Events: unix.POLLIN}}
		_, _, errno := unix.Syscall(unix.SYS_POLL, uintptr(unsafe.Pointer(&fds[0])), 1, uintptr(recvWait/time.Millisecond))
		if errno != 0 && errno != unix.EINTR {
			return nil, fmt.Errorf("poll: %w", errno)
		}
	}
	return l.out, nil
}

// drops returns how many frames the kernel dropped for want of room in
// the socket's queue or ring since the last call (PACKET_STATISTICS).
func (l *rawLink) drops() uint64 {
	st, err := unix.GetsockoptTpacketStats(l.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return 0
	}
	return uint64(st.Drops)
}

func (l *rawLink) close() error {
	if l.ring != nil {
		_ = unix.Munmap(l.ring)
		l.ring = nil
	}
	if l.fd < 0 {
		return nil
	}
	err := unix.Close(l.fd)
	l.fd = -1
	return err
}
