package target

import (
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsgConn receives and sends frames in batches with recvmmsg(2) (or
// from a receive ring, without a system call) and sendmmsg(2) on an
// AF_PACKET socket, so that one system call carries many frames. Its
// buffers and the functions it hands to the RawConn are made once, so a
// batch allocates nothing.
type mmsgConn struct {
	raw    syscall.RawConn
	hdrs   []unix.Mmsghdr
	iovs   []unix.Iovec
	cnt    int // messages to receive or send
	done   int // messages received or sent
	err    error
	nowait bool // recv returns 0 instead of waiting

	// ring, if set, is the socket's receive ring: recv takes frames
	// from it, and recvmmsg is not used.
	ring   *rxRing
	rbufs  [][]byte // recv's, for ringFn
	rlens  []int
	ringFn func(fd uintptr) bool

	recvFn, sendFn func(fd uintptr) bool
}

// newMmsgConn returns a batching view of conn, or nil if conn is not a
// socket (tests use in-memory conns).
func newMmsgConn(conn any, batch int) *mmsgConn {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	m := &mmsgConn{
		raw:  raw,
		hdrs: make([]unix.Mmsghdr, batch),
		iovs: make([]unix.Iovec, batch),
	}
	for i := range m.hdrs {
		m.hdrs[i].Hdr.Iov = &m.iovs[i]
		m.hdrs[i].Hdr.Iovlen = 1
	}
	m.recvFn = m.recvmmsg
	m.sendFn = m.sendmmsg
	m.ringFn = m.recvRing
	return m
}

func (m *mmsgConn) recvmmsg(fd uintptr) bool {
	for {
		// Raw system calls here: MSG_DONTWAIT never blocks, and a
		// plain one would wake the runtime's monitor thread whenever the
		// process had been idle (a context switch per frame at window 1).
		n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&m.hdrs[0])),
			uintptr(m.cnt), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if m.nowait {
				m.done, m.err = 0, nil
				return true
			}
			return false // wait until readable
		case 0:
			m.done, m.err = int(n), nil
		default:
			m.done, m.err = 0, e
		}
		return true
	}
}

// ringSpin is how long a receive loop watches its ring for the next frame
// before it sleeps: a request that follows a reply that closely (an
// initiator with one request in flight, or a few) costs no sleep and
// wake-up, which on a virtual machine cost tens of microseconds of CPU
// (a halt, and an interrupt between processors). It is what a recvmmsg
// call that finds nothing costs, give or take: watching the ring is
// cheaper than the call was.
const ringSpin = 5 * time.Microsecond

// recvRing copies the frames waiting in the ring into m.rbufs; before it
// reports none to a receive that waits, it watches the ring for ringSpin.
func (m *mmsgConn) recvRing(uintptr) bool {
	m.done = m.ring.take(m.rbufs, m.rlens)
	if m.done == 0 && !m.nowait {
		until := mono() + int64(ringSpin)
		for m.done == 0 && mono() < until {
			m.done = m.ring.take(m.rbufs, m.rlens)
		}
	}
	return m.done > 0 || m.nowait
}

// recv receives up to len(bufs) frames, waiting for the first if wait is
// set (else returning 0 when none is queued), and returns how many
// arrived; lens[i] is the length of frame i.
func (m *mmsgConn) recv(bufs [][]byte, lens []int, wait bool) (int, error) {
	m.nowait = !wait
	if m.ring != nil {
		m.rbufs, m.rlens = bufs[:min(len(bufs), len(m.hdrs))], lens
		err := m.raw.Read(m.ringFn)
		m.rbufs, m.rlens = nil, nil
		n := m.done
		m.done = 0
		if err != nil {
			return 0, err
		}
		return n, nil
	}
	m.cnt = min(len(bufs), len(m.hdrs))
	for i := range m.cnt {
		m.iovs[i].Base = &bufs[i][0]
		m.iovs[i].SetLen(len(bufs[i]))
		m.hdrs[i].Hdr.Flags = 0
	}
	err := m.raw.Read(m.recvFn)
	n := m.done
	m.done = 0
	for i := range m.cnt {
		m.iovs[i].Base = nil
	}
	if err != nil {
		return 0, err
	}
	if m.err != nil {
		return 0, m.err
	}
	for i := range n {
		lens[i] = int(m.hdrs[i].Len)
	}
	return n, nil
}

func (m *mmsgConn) sendmmsg(fd uintptr) bool {
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&m.hdrs[m.done])),
			uintptr(m.cnt-m.done), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // wait until writable
		case 0:
			m.done += int(n)
			if m.done < m.cnt {
				continue
			}
			m.err = nil
		default:
			m.err = e
		}
		return true
	}
}

// send sends every frame of frames and returns the first error; a frame
// that fails (e.g. the link is down) is skipped and the rest are sent.
func (m *mmsgConn) send(frames [][]byte) error {
	var first error
	for len(frames) > 0 {
		m.cnt = min(len(frames), len(m.hdrs))
		for i := range m.cnt {
			m.iovs[i].Base = &frames[i][0]
			m.iovs[i].SetLen(len(frames[i]))
		}
		m.done, m.err = 0, nil
		err := m.raw.Write(m.sendFn)
		sent := m.done
		for i := range m.cnt {
			m.iovs[i].Base = nil
		}
		if err == nil {
			err = m.err
		}
		if err != nil {
			if first == nil {
				first = err
			}
			sent++ // skip the frame that failed
		}
		frames = frames[min(sent, len(frames)):]
	}
	return first
}
