//go:build !linux

package netconf

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"syscall"

	"github.com/mdlayher/packet"
)

// errUnimplemented is returned by the socket functions off Linux.
var errUnimplemented = fmt.Errorf("netconf: not implemented on %s", runtime.GOOS)

// Listen returns an error: AF_PACKET sockets exist only on Linux.
func Listen(ifi *net.Interface, cfg Config) (*packet.Conn, error) { return nil, errUnimplemented }

// BufferSizes returns an error: AF_PACKET sockets exist only on Linux.
func BufferSizes(c *packet.Conn) (recv, send int, err error) { return 0, 0, errUnimplemented }

// BoundIndex returns an error: AF_PACKET sockets exist only on Linux.
func BoundIndex(c *packet.Conn) (int, error) { return 0, errUnimplemented }

// Rebind returns c and an error: AF_PACKET sockets exist only on Linux.
func Rebind(c *packet.Conn, name string, cfg Config) (*packet.Conn, *net.Interface, error) {
	return c, nil, errUnimplemented
}

// A LinkWatcher reports interface changes. Off Linux it cannot be opened.
type LinkWatcher struct{}

// WatchLinks returns an error: rtnetlink exists only on Linux.
func WatchLinks() (*LinkWatcher, error) { return nil, errUnimplemented }

// Next returns an error: rtnetlink exists only on Linux.
func (w *LinkWatcher) Next(ctx context.Context) (LinkEvent, error) {
	return LinkEvent{}, errUnimplemented
}

// Close returns an error: rtnetlink exists only on Linux.
func (w *LinkWatcher) Close() error { return errUnimplemented }

// Fanout returns an error: PACKET_FANOUT exists only on Linux.
func Fanout(conns []syscall.Conn) error { return errUnimplemented }
