//go:build !linux

package target

import "net"

// rxRing is a receive ring, on Linux only.
type rxRing struct{}

func (r *rxRing) attach() bool { return false }

func (r *rxRing) detach() {}

// ringConn is a socket with a receive ring, on Linux only.
type ringConn struct {
	net.PacketConn
	ring *rxRing
}

func withRecvRing(conn net.PacketConn, slots, frameLen int) (net.PacketConn, error) { return conn, nil }
