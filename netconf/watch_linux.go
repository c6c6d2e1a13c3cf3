//go:build linux

package netconf

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/mdlayher/socket"
	"golang.org/x/sys/unix"
)

// A LinkWatcher reports changes to network interfaces as the kernel announces
// them (rtnetlink RTM_NEWLINK and RTM_DELLINK on the RTNLGRP_LINK group): up
// and down, carrier, MTU and MAC changes, creation and deletion. It watches
// the network namespace of the thread that called WatchLinks.
//
// A serve loop uses it to react at once to a deleted and recreated interface
// (call Rebind) or a changed MTU, instead of polling.
type LinkWatcher struct {
	c       *socket.Conn
	buf     []byte
	pending []LinkEvent
}

// WatchLinks opens a LinkWatcher on the caller's network namespace.
func WatchLinks() (*LinkWatcher, error) {
	c, err := socket.Socket(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE, "netlink", nil)
	if err != nil {
		return nil, fmt.Errorf("netconf: watch links: %w", err)
	}
	if err := c.Bind(&unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: unix.RTMGRP_LINK}); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("netconf: watch links: %w", err)
	}
	// A link message with all its attributes is a few KiB; one datagram may
	// carry several.
	return &LinkWatcher{c: c, buf: make([]byte, 64<<10)}, nil
}

// Next returns the next interface change. It blocks until one arrives, ctx is
// done (the error then wraps ctx.Err()) or w is closed. An error wrapping
// ErrEventsLost means changes were missed; w stays usable. Next must not be
// called from several goroutines at once.
func (w *LinkWatcher) Next(ctx context.Context) (LinkEvent, error) {
	for len(w.pending) == 0 {
		n, _, err := w.c.Recvfrom(ctx, w.buf, 0)
		if errors.Is(err, unix.ENOBUFS) {
			return LinkEvent{}, fmt.Errorf("%w: %w", ErrEventsLost, err)
		}
		if err != nil {
			return LinkEvent{}, fmt.Errorf("netconf: watch links: %w", err)
		}
		w.pending = parseLinkMessages(w.pending, w.buf[:n])
	}
	ev := w.pending[0]
	w.pending = w.pending[1:]
	return ev, nil
}

// Close closes the watcher, unblocking a pending Next.
func (w *LinkWatcher) Close() error { return w.c.Close() }

// parseLinkMessages appends the link events found in the netlink datagram b
// to evs. Malformed or unrelated messages are skipped.
func parseLinkMessages(evs []LinkEvent, b []byte) []LinkEvent {
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err != nil {
		return evs
	}
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWLINK && m.Header.Type != unix.RTM_DELLINK {
			continue
		}
		if len(m.Data) < unix.SizeofIfInfomsg {
			continue
		}
		ev := LinkEvent{
			Index:   int(int32(binary.NativeEndian.Uint32(m.Data[4:8]))),
			Flags:   linkFlags(binary.NativeEndian.Uint32(m.Data[8:12])),
			Deleted: m.Header.Type == unix.RTM_DELLINK,
		}
		attrs, err := syscall.ParseNetlinkRouteAttr(&m)
		if err != nil {
			continue
		}
		for _, a := range attrs {
			switch a.Attr.Type {
			case unix.IFLA_IFNAME:
				ev.Name = cString(a.Value)
			case unix.IFLA_MTU:
				if len(a.Value) == 4 {
					ev.MTU = int(binary.NativeEndian.Uint32(a.Value))
				}
			case unix.IFLA_ADDRESS:
				ev.HardwareAddr = net.HardwareAddr(append([]byte(nil), a.Value...))
			}
		}
		evs = append(evs, ev)
	}
	return evs
}

// linkFlags converts IFF_* flags to net.Flags, as package net does.
func linkFlags(raw uint32) net.Flags {
	var f net.Flags
	for _, m := range []struct {
		iff  uint32
		flag net.Flags
	}{
		{unix.IFF_UP, net.FlagUp},
		{unix.IFF_BROADCAST, net.FlagBroadcast},
		{unix.IFF_LOOPBACK, net.FlagLoopback},
		{unix.IFF_POINTOPOINT, net.FlagPointToPoint},
		{unix.IFF_MULTICAST, net.FlagMulticast},
		{unix.IFF_RUNNING, net.FlagRunning},
	} {
		if raw&m.iff != 0 {
			f |= m.flag
		}
	}
	return f
}

// cString returns b up to its first NUL byte.
func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
