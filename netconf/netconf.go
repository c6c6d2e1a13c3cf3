package netconf

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
)

// Errors returned by Lookup, MTU and Rebind, wrapped with %w together with the
// interface name; test for them with errors.Is.
var (
	// ErrNotFound means no interface has the given name (in the caller's
	// network namespace).
	ErrNotFound = errors.New("netconf: no such interface")

	// ErrLinkDown means the interface exists but is administratively down.
	ErrLinkDown = errors.New("netconf: interface is down")

	// ErrNoHardwareAddr means the interface has no 6-byte Ethernet hardware
	// address (loopback, tun, WireGuard, InfiniBand ...), so it cannot carry
	// AoE.
	ErrNoHardwareAddr = errors.New("netconf: interface has no Ethernet hardware address")
)

// Lookup finds the interface called name and checks that it can carry AoE: it
// exists (else ErrNotFound), is administratively up (else ErrLinkDown) and has
// a 6-byte Ethernet hardware address (else ErrNoHardwareAddr). The returned
// interface's MTU and HardwareAddr are the values at the time of the call;
// use MTU or Rebind to read them again later. With ErrLinkDown the interface
// is returned too, for callers that bind to it anyway and serve once it
// comes up.
//
// Carrier is not checked: an interface that is up without a link partner
// (net.FlagRunning clear) is usable and starts passing frames once the cable
// or peer comes up.
func Lookup(name string) (*net.Interface, error) {
	ifi, err := lookup(name)
	if err != nil {
		return nil, err
	}
	if ifi.Flags&net.FlagUp == 0 {
		return ifi, fmt.Errorf("%w: %s", ErrLinkDown, name)
	}
	return ifi, nil
}

// lookup is Lookup without the "is up" check: it finds name and requires an
// Ethernet hardware address. Rebind uses it, since binding to an interface
// that is down is fine (the socket starts receiving when it comes up).
func lookup(name string) (*net.Interface, error) {
	ifi, err := interfaceByName(name)
	if err != nil {
		return nil, err
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("%w: %s (has %d-byte address %q)", ErrNoHardwareAddr, name, len(ifi.HardwareAddr), ifi.HardwareAddr)
	}
	return ifi, nil
}

// interfaceByName wraps net.InterfaceByName, turning "no such interface" into
// ErrNotFound and keeping other failures (netlink errors) as they are.
func interfaceByName(name string) (*net.Interface, error) {
	if name == "" {
		return nil, fmt.Errorf("%w: empty name", ErrNotFound)
	}
	ifi, err := net.InterfaceByName(name)
	if err == nil {
		return ifi, nil
	}
	var se *os.SyscallError
	if errors.As(err, &se) {
		return nil, fmt.Errorf("netconf: look up interface %s: %w", name, err)
	}
	return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
}

// MTU returns the current MTU of the interface called name (ErrNotFound if it
// does not exist). The interface does not have to be up.
//
// The MTU counts the Ethernet payload: the largest frame a socket from Listen
// can write is MTU+14 bytes. A larger write fails with EMSGSIZE.
func MTU(name string) (int, error) {
	ifi, err := interfaceByName(name)
	if err != nil {
		return 0, err
	}
	return ifi.MTU, nil
}

// Config configures a socket opened by Listen. The zero value is a target's
// socket for shelf 0, slot 0 with the kernel's default buffer sizes.
type Config struct {
	// Filter selects the frames the kernel passes to the socket.
	Filter Filter

	// RecvBuffer is the receive buffer size in bytes; 0 keeps the kernel
	// default (net.core.rmem_default). It is set with SO_RCVBUFFORCE,
	// which ignores net.core.rmem_max but needs CAP_NET_ADMIN, falling back
	// to SO_RCVBUF (capped by net.core.rmem_max) without it. Forcing
	// matters in a child network namespace, which cannot change
	// net.core.rmem_*. The kernel doubles the value for bookkeeping and
	// charges each queued frame its buffer's true size, not its length
	// (vblade's README measured 16 KiB per jumbo frame on Intel NICs), so
	// size it as frames to absorb × that. BufferSizes reads the result.
	RecvBuffer int

	// SendBuffer is the send buffer size in bytes; 0 keeps the kernel
	// default. It is set like RecvBuffer, with SO_SNDBUFFORCE or SO_SNDBUF.
	SendBuffer int
}

// Transient reports whether err, returned by ReadFrom or WriteTo on a socket
// from Listen, is one a serve loop should log and survive (keep the socket,
// drop the frame or let the peer retransmit), as opposed to one that means the
// socket is no longer usable. It returns false for nil, for a closed socket
// (EBADF, net.ErrClosed, os.ErrClosed, "use of closed file"), for an expired
// deadline (os.ErrDeadlineExceeded), which a loop that uses deadlines for
// shutdown checks for itself, and for anything else (EINVAL from a bad
// address is a bug).
//
// The errors it accepts, and what they mean on Linux (the package
// documentation has the measurements behind this):
//
//   - ENETDOWN: the interface went down or was deleted. The kernel reports
//     that once, to whichever ReadFrom or WriteTo comes next (a write that
//     gets it did not send its frame); after that, writes fail with ENETDOWN
//     while the interface is down and reads block. Once the interface is up
//     again the same socket works.
//   - ENXIO: a write to an interface index that no longer exists: the
//     interface was deleted. The socket will never work again; Rebind it.
//   - ENODEV: bind(2) to an index that no longer exists (Listen or Rebind,
//     when the interface disappears between lookup and bind). Try later.
//   - ENOBUFS, ENOMEM: the frame was dropped on transmit: queue full, memory
//     short, or (veth) the link partner is down.
//   - EMSGSIZE: the frame is longer than the interface's MTU plus the
//     14-byte Ethernet header. Only that frame failed; the MTU may have been
//     lowered, so read it again with MTU.
//   - EAGAIN, EWOULDBLOCK, EINTR: never returned by a *packet.Conn (the Go
//     runtime's poller retries them); accepted for sockets used directly.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	for _, e := range []syscall.Errno{
		syscall.ENETDOWN,
		syscall.ENXIO,
		syscall.ENODEV,
		syscall.ENOBUFS,
		syscall.ENOMEM,
		syscall.EMSGSIZE,
		syscall.EAGAIN,
		syscall.EWOULDBLOCK,
		syscall.EINTR,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
