package aoe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
)

// EtherType is the Ethernet type of AoE frames (AoEr11, Section 2).
const EtherType = 0x88A2

// Version is the AoE protocol version this package speaks (AoEr11, Section 2.1).
const Version = 1

// Broadcast addresses: a request to BroadcastMajor or BroadcastMinor is for
// every shelf or every slot (AoEr11, Section 2.3).
const (
	BroadcastMajor = 0xffff
	BroadcastMinor = 0xff
)

// SectorSize is the size of an ATA sector as AoE carries it.
const SectorSize = 512

// HeaderLen is the length of the AoE header that follows the Ethernet header:
//
//	 0               1               2               3
//	+-------+-------+---------------+-------------------------------+
//	|  Ver  | Flags |     Error     |             Major             |
//	+-------+-------+---------------+-------------------------------+
//	|     Minor     |    Command    |              Tag ...          |
//	+---------------+---------------+-------------------------------+
//	|           ... Tag             |
//	+-------------------------------+
const HeaderLen = 1 + 1 + 2 + 1 + 1 + 4

// EthernetHeaderLen is the length of an untagged Ethernet header.
const EthernetHeaderLen = 6 + 6 + 2

// FrameHeaderLen is the length of the Ethernet and AoE headers together.
const FrameHeaderLen = EthernetHeaderLen + HeaderLen

// Sentinel errors for frames that cannot be parsed or marshalled. The
// errors returned wrap one of these with the details.
var (
	// ErrShort means a frame or argument is shorter than its fixed part or
	// than a count field says it is.
	ErrShort = errors.New("aoe: short frame")
	// ErrInvalid means a field holds a value the protocol does not allow.
	ErrInvalid = errors.New("aoe: invalid field")
)

// Flags are the four flag bits of the AoE header (AoEr11, Section 2.2).
type Flags uint8

// Header flags.
const (
	// FlagResponse (R) marks a message sent by a target.
	FlagResponse Flags = 0x8
	// FlagError (E) marks a response that carries an Error code.
	FlagError Flags = 0x4
)

// Command is the AoE command code (AoEr11, Section 2.5).
type Command uint8

// AoE commands.
const (
	CommandATA           Command = 0 // Issue ATA Command, Section 3.1
	CommandQueryConfig   Command = 1 // Query Config Information, Section 3.2
	CommandMacMask       Command = 2 // Mac Mask List, Section 3.3
	CommandReserve       Command = 3 // Reserve/Release, Section 3.4
	CommandVendorMinimum Command = 0xf0
)

// String returns the command's name.
func (c Command) String() string {
	switch c {
	case CommandATA:
		return "ATA"
	case CommandQueryConfig:
		return "QueryConfig"
	case CommandMacMask:
		return "MacMask"
	case CommandReserve:
		return "Reserve"
	}
	if c >= CommandVendorMinimum {
		return "Vendor(" + strconv.Itoa(int(c)) + ")"
	}
	return "Command(" + strconv.Itoa(int(c)) + ")"
}

// Error is an AoE error code, carried in a response with FlagError set
// (AoEr11, Section 2.4). It implements error so that parsers can return the
// code a target should put in its reply.
type Error uint8

// AoE error codes.
const (
	ErrorUnrecognizedCommand Error = 1 // Unrecognized command code
	ErrorBadArgument         Error = 2 // Bad argument parameter
	ErrorDeviceUnavailable   Error = 3 // Device unavailable
	ErrorConfigStringPresent Error = 4 // Config string present
	ErrorUnsupportedVersion  Error = 5 // Unsupported version
	ErrorTargetReserved      Error = 6 // Target is reserved (AoEr11)
)

// Error returns the text of the code as the specification names it.
func (e Error) Error() string {
	switch e {
	case ErrorUnrecognizedCommand:
		return "aoe: unrecognized command code"
	case ErrorBadArgument:
		return "aoe: bad argument parameter"
	case ErrorDeviceUnavailable:
		return "aoe: device unavailable"
	case ErrorConfigStringPresent:
		return "aoe: config string present"
	case ErrorUnsupportedVersion:
		return "aoe: unsupported version"
	case ErrorTargetReserved:
		return "aoe: target is reserved"
	}
	return "aoe: error " + strconv.Itoa(int(e))
}

// Header is the AoE header (AoEr11, Section 2).
type Header struct {
	Version uint8   // protocol version, 4 bits; Version for every valid frame
	Flags   Flags   // R and E, 4 bits
	Error   Error   // error code, meaningful when Flags has FlagError
	Major   uint16  // shelf address
	Minor   uint8   // slot address
	Command Command // command code
	Tag     uint32  // chosen by the initiator, echoed by the target
}

// Response reports whether the header has the response flag.
func (h Header) Response() bool { return h.Flags&FlagResponse != 0 }

// IsBroadcast reports whether the header addresses every shelf or every slot.
func (h Header) IsBroadcast() bool {
	return h.Major == BroadcastMajor || h.Minor == BroadcastMinor
}

// Addressed reports whether a frame with this header is for the target at
// major.minor: its own address, or a broadcast in either field.
func (h Header) Addressed(major uint16, minor uint8) bool {
	return (h.Major == major || h.Major == BroadcastMajor) &&
		(h.Minor == minor || h.Minor == BroadcastMinor)
}

// ParseHeader parses the AoE header at the start of b. It returns an error
// wrapping ErrShort when b is shorter than HeaderLen. A version other than
// Version is returned in the header without an error; callers answer it
// with ErrorUnsupportedVersion.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, fmt.Errorf("aoe: header is %d bytes, need %d: %w", len(b), HeaderLen, ErrShort)
	}
	return Header{
		Version: b[0] >> 4,
		Flags:   Flags(b[0] & 0x0f),
		Error:   Error(b[1]),
		Major:   binary.BigEndian.Uint16(b[2:4]),
		Minor:   b[4],
		Command: Command(b[5]),
		Tag:     binary.BigEndian.Uint32(b[6:10]),
	}, nil
}

// AppendBinary appends the HeaderLen bytes of h to b. It returns an error
// wrapping ErrInvalid if Version or Flags do not fit in four bits.
func (h Header) AppendBinary(b []byte) ([]byte, error) {
	if h.Version > 0x0f || h.Flags > 0x0f {
		return b, fmt.Errorf("aoe: version %d or flags %#x do not fit in 4 bits: %w", h.Version, h.Flags, ErrInvalid)
	}
	return append(b,
		h.Version<<4|uint8(h.Flags),
		uint8(h.Error),
		uint8(h.Major>>8), uint8(h.Major),
		h.Minor,
		uint8(h.Command),
		uint8(h.Tag>>24), uint8(h.Tag>>16), uint8(h.Tag>>8), uint8(h.Tag),
	), nil
}

// MarshalBinary returns the HeaderLen bytes of h.
func (h Header) MarshalBinary() ([]byte, error) {
	return h.AppendBinary(make([]byte, 0, HeaderLen))
}
