//go:build linux

package netconf

import (
	"errors"
	"fmt"
	"net"

	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// Listen opens an AF_PACKET SOCK_RAW socket (github.com/mdlayher/packet,
// packet.Raw) bound to ifi for ethertype EtherType, with cfg.Filter's program
// attached before bind(2) (packet.Config.Filter, which calls SetBPF), so not a
// single unfiltered frame is queued. It then sizes the buffers as cfg asks.
//
// The socket sees only frames the interface receives. Frames that this host
// sends out of the interface, from this socket or any other (a local
// initiator's requests, another target's replies), are never delivered to
// it: the kernel copies outgoing frames only to sockets bound to ETH_P_ALL,
// not to one bound to a single ethertype.
//
// The returned *packet.Conn is a net.PacketConn whose ReadFrom and WriteTo
// carry whole Ethernet frames (destination, source and ethertype included);
// its addresses are *packet.Addr, and WriteTo sends to the interface ifi
// had at Listen time. ifi only needs Index (and Name for errors): it may come
// from Lookup or net.InterfaceByName, and the interface may be down (reads
// then return ENETDOWN once and wait for it to come up).
//
// Deadlines are real (the socket is non-blocking and driven by the Go
// runtime's poller), so SetReadDeadline(time.Now()) from another goroutine
// unblocks ReadFrom; see "Deadlines and shutdown" in the package documentation
// for that, for Close, and for what the kernel does when the interface goes
// down or away.
func Listen(ifi *net.Interface, cfg Config) (*packet.Conn, error) {
	if ifi == nil {
		return nil, errors.New("netconf: listen: nil interface")
	}
	prog, err := cfg.Filter.Program()
	if err != nil {
		return nil, err
	}
	c, err := packet.Listen(ifi, packet.Raw, EtherType, &packet.Config{Filter: prog})
	if err != nil {
		return nil, fmt.Errorf("netconf: listen on %s (index %d): %w", ifi.Name, ifi.Index, err)
	}
	if err := configure(c, cfg); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("netconf: listen on %s: %w", ifi.Name, err)
	}
	return c, nil
}

// configure applies cfg's socket options to c.
func configure(c *packet.Conn, cfg Config) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var opErr error
	err = rc.Control(func(fd uintptr) {
		s := int(fd)
		if cfg.RecvBuffer > 0 {
			if err := setBuffer(s, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, cfg.RecvBuffer); err != nil {
				opErr = fmt.Errorf("set receive buffer to %d bytes: %w", cfg.RecvBuffer, err)
				return
			}
		}
		if cfg.SendBuffer > 0 {
			if err := setBuffer(s, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, cfg.SendBuffer); err != nil {
				opErr = fmt.Errorf("set send buffer to %d bytes: %w", cfg.SendBuffer, err)
				return
			}
		}
	})
	return errors.Join(err, opErr)
}

// setBuffer sets a socket buffer with the forcing option, falling back to the
// plain one (capped by net.core.[rw]mem_max) without CAP_NET_ADMIN.
func setBuffer(fd, force, plain, n int) error {
	err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, n)
	if errors.Is(err, unix.EPERM) {
		err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, plain, n)
	}
	return err
}

// BufferSizes returns the receive and send buffer sizes of c as the kernel
// reports them (SO_RCVBUF, SO_SNDBUF): twice what was asked for, or less if
// SO_RCVBUF's fallback was capped by net.core.rmem_max. Log them at startup.
func BufferSizes(c *packet.Conn) (recv, send int, err error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var rerr, serr error
	err = rc.Control(func(fd uintptr) {
		recv, rerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
		send, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
	})
	if err := errors.Join(err, rerr, serr); err != nil {
		return 0, 0, fmt.Errorf("netconf: get buffer sizes: %w", err)
	}
	return recv, send, nil
}

// BoundIndex returns the index of the interface c is bound to, as the kernel
// reports it now (getsockname(2)). It is -1 once that interface has been
// deleted: the kernel then unbinds the socket for good, and it will never
// receive again, even if an interface with the same name reappears. A down
// interface keeps its index and binding.
func BoundIndex(c *packet.Conn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var (
		sa    unix.Sockaddr
		saErr error
	)
	if err := rc.Control(func(fd uintptr) { sa, saErr = unix.Getsockname(int(fd)) }); err != nil {
		return 0, err
	}
	if saErr != nil {
		return 0, fmt.Errorf("netconf: getsockname: %w", saErr)
	}
	sll, ok := sa.(*unix.SockaddrLinklayer)
	if !ok {
		return 0, fmt.Errorf("netconf: getsockname: not a packet socket (%T)", sa)
	}
	return sll.Ifindex, nil
}

// Rebind makes sure a socket is bound to the interface currently called
// name, for a serve loop that must survive the interface being deleted and
// created again (a new index; see the package documentation).
//
// It looks name up (the interface may be down, but must exist and have an
// Ethernet address). If c is still bound to that interface's index, Rebind
// returns c itself. Otherwise it opens a new socket on the interface with
// Listen(ifi, cfg) and returns it; the caller switches its readers and
// writers to the new socket and closes c. Either way the returned interface
// carries the current MTU and hardware address.
//
// If name does not exist (ErrNotFound, wrapped) or cannot carry AoE, Rebind
// returns c unchanged along with the error, so the caller can keep c and try
// again later, for example on the next LinkWatcher event.
func Rebind(c *packet.Conn, name string, cfg Config) (*packet.Conn, *net.Interface, error) {
	ifi, err := lookup(name)
	if err != nil {
		return c, nil, err
	}
	bound, err := BoundIndex(c)
	if err == nil && bound == ifi.Index {
		return c, ifi, nil
	}
	// Rebind also when c is unusable (closed): a new socket is what the
	// caller needs either way.
	nc, err := Listen(ifi, cfg)
	if err != nil {
		return c, nil, err
	}
	return nc, ifi, nil
}
