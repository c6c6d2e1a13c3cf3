package aoe

import (
	"encoding/binary"
	"fmt"
	"net"
	"strings"
)

// MAC is an Ethernet hardware address. It is a comparable value type, so it
// can be a map key and is copied without allocating.
type MAC [6]byte

// BroadcastMAC is the Ethernet broadcast address.
var BroadcastMAC = MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// ParseMAC parses a MAC address written with or without separators (colons,
// hyphens or dots), in either case: "00:11:22:aa:bb:cc", "001122AABBCC".
// This is the form vblade's -m flag accepts.
func ParseMAC(s string) (MAC, error) {
	var m MAC
	hex := strings.Map(func(r rune) rune {
		if r == ':' || r == '-' || r == '.' {
			return -1
		}
		return r
	}, s)
	if len(hex) != 12 {
		return m, fmt.Errorf("aoe: MAC address %q: need 12 hex digits: %w", s, ErrInvalid)
	}
	for i := 0; i < 6; i++ {
		hi, ok1 := unhex(hex[2*i])
		lo, ok2 := unhex(hex[2*i+1])
		if !ok1 || !ok2 {
			return MAC{}, fmt.Errorf("aoe: MAC address %q: not a hex digit: %w", s, ErrInvalid)
		}
		m[i] = hi<<4 | lo
	}
	return m, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// MACFrom converts a net.HardwareAddr of 6 bytes to a MAC; ok is false for
// any other length.
func MACFrom(a net.HardwareAddr) (m MAC, ok bool) {
	if len(a) != len(m) {
		return m, false
	}
	copy(m[:], a)
	return m, true
}

// HardwareAddr returns m as a newly allocated net.HardwareAddr.
func (m MAC) HardwareAddr() net.HardwareAddr { return append(net.HardwareAddr(nil), m[:]...) }

// String returns m in the colon-separated lower-case form.
func (m MAC) String() string { return net.HardwareAddr(m[:]).String() }

// IsBroadcast reports whether m is ff:ff:ff:ff:ff:ff.
func (m MAC) IsBroadcast() bool { return m == BroadcastMAC }

// IsMulticast reports whether m is a group address (broadcast included).
func (m MAC) IsMulticast() bool { return m[0]&1 != 0 }

// IsZero reports whether m is 00:00:00:00:00:00.
func (m MAC) IsZero() bool { return m == MAC{} }

// Frame is an AoE frame: the Ethernet addresses, the AoE header and the
// command's argument. Arg aliases the buffer the frame was parsed from and
// includes any trailing bytes and Ethernet padding; the argument parsers
// take what their count fields say and ignore the rest.
type Frame struct {
	Dst    MAC
	Src    MAC
	Header Header
	Arg    []byte
}

// ParseFrame parses an untagged Ethernet frame carrying AoE. It returns an
// error wrapping ErrShort if b is shorter than FrameHeaderLen and one
// wrapping ErrInvalid if the Ethernet type is not EtherType. It does not
// allocate: f.Arg aliases b.
func ParseFrame(b []byte) (Frame, error) {
	if len(b) < FrameHeaderLen {
		return Frame{}, fmt.Errorf("aoe: frame is %d bytes, need %d: %w", len(b), FrameHeaderLen, ErrShort)
	}
	if t := binary.BigEndian.Uint16(b[12:14]); t != EtherType {
		return Frame{}, fmt.Errorf("aoe: ethernet type %#04x is not %#04x: %w", t, EtherType, ErrInvalid)
	}
	var f Frame
	copy(f.Dst[:], b[0:6])
	copy(f.Src[:], b[6:12])
	f.Header, _ = ParseHeader(b[EthernetHeaderLen:]) // length checked above
	f.Arg = b[FrameHeaderLen:]
	return f, nil
}

// AppendHeaders appends the Ethernet header (f.Dst, f.Src, EtherType) and
// the AoE header of f to b, but not f.Arg: callers append the argument
// with its own AppendBinary. It allocates nothing when b has room for
// FrameHeaderLen more bytes. On error it returns b unchanged.
func (f Frame) AppendHeaders(b []byte) ([]byte, error) {
	n := len(b)
	b = append(b, f.Dst[:]...)
	b = append(b, f.Src[:]...)
	b = append(b, EtherType>>8, EtherType&0xff)
	b, err := f.Header.AppendBinary(b)
	if err != nil {
		return b[:n], err
	}
	return b, nil
}

// AppendBinary appends the whole frame, headers and f.Arg, to b.
func (f Frame) AppendBinary(b []byte) ([]byte, error) {
	b, err := f.AppendHeaders(b)
	if err != nil {
		return b, err
	}
	return append(b, f.Arg...), nil
}

// MarshalBinary returns the whole frame.
func (f Frame) MarshalBinary() ([]byte, error) {
	return f.AppendBinary(make([]byte, 0, FrameHeaderLen+len(f.Arg)))
}
