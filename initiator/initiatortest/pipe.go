// Package initiatortest provides an in-memory Ethernet link and a small fake
// AoE target, for unit tests of code that uses package initiator without a
// network or root.
package initiatortest

import (
	"net"
	"os"
	"sync"
	"time"

	"github.com/mdlayher/packet"
)

// pipeDepth is how many frames a Conn holds before it drops new ones.
const pipeDepth = 1024

// Pipe returns the two ends of an in-memory link that carries whole
// Ethernet frames: what one end writes, the other reads, in order. Each
// end queues up to 1024 frames and drops frames written to it beyond that,
// like a full socket receive queue.
func Pipe() (*Conn, *Conn) {
	a, b := newConn(), newConn()
	a.peer, b.peer = b, a
	return a, b
}

// Conn is one end of a Pipe. It implements net.PacketConn; ReadFrom
// returns the source MAC of the frame as a *packet.Addr, and WriteTo
// ignores its address, since the frame carries its own.
type Conn struct {
	peer   *Conn
	rx     chan []byte
	closed chan struct{}
	once   sync.Once

	mu       sync.Mutex
	deadline time.Time
	changed  chan struct{} // closed and replaced when the read deadline changes
}

var _ net.PacketConn = (*Conn)(nil)

func newConn() *Conn {
	return &Conn{
		rx:      make(chan []byte, pipeDepth),
		closed:  make(chan struct{}),
		changed: make(chan struct{}),
	}
}

// ReadFrom reads the next frame into b, truncating it to len(b).
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		c.mu.Lock()
		deadline, changed := c.deadline, c.changed
		c.mu.Unlock()
		var expired <-chan time.Time
		var timer *time.Timer
		if !deadline.IsZero() {
			d := time.Until(deadline)
			if d <= 0 {
				return 0, nil, os.ErrDeadlineExceeded
			}
			timer = time.NewTimer(d)
			expired = timer.C
		}
		n, addr, again, err := c.read(b, changed, expired)
		if timer != nil {
			timer.Stop()
		}
		if !again {
			return n, addr, err
		}
	}
}

// read waits for a frame, the end being closed, the deadline changing
// (again) or expiring.
func (c *Conn) read(b []byte, changed <-chan struct{}, expired <-chan time.Time) (n int, addr net.Addr, again bool, err error) {
	select {
	case <-c.closed:
		return 0, nil, false, net.ErrClosed
	default:
	}
	select {
	case f := <-c.rx:
		n := copy(b, f)
		var src net.HardwareAddr
		if len(f) >= 12 {
			src = net.HardwareAddr(f[6:12])
		}
		return n, &packet.Addr{HardwareAddr: src}, false, nil
	case <-c.closed:
		return 0, nil, false, net.ErrClosed
	case <-changed:
		return 0, nil, true, nil
	case <-expired:
		return 0, nil, false, os.ErrDeadlineExceeded
	}
}

// WriteTo sends a copy of the frame b to the other end, or drops it if the
// other end is closed or its queue is full.
func (c *Conn) WriteTo(b []byte, _ net.Addr) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	select {
	case <-c.peer.closed:
	case c.peer.rx <- append([]byte(nil), b...):
	default:
	}
	return len(b), nil
}

// Close closes this end; its blocked reads return net.ErrClosed.
func (c *Conn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

// LocalAddr returns an empty *packet.Addr.
func (c *Conn) LocalAddr() net.Addr { return &packet.Addr{} }

// SetDeadline sets the read deadline; writes never block.
func (c *Conn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

// SetReadDeadline sets the read deadline, waking blocked reads.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
	return nil
}

// SetWriteDeadline does nothing: writes never block.
func (c *Conn) SetWriteDeadline(time.Time) error { return nil }
