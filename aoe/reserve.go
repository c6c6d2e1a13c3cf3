package aoe

import "fmt"

// ReserveArgLen is the length of the fixed part of the Reserve/Release
// argument (AoEr11, Section 3.4); NMacs addresses of six bytes follow:
//
//	 0               1               2
//	+---------------+---------------+-------------------------------+
//	|     RCmd      |     NMacs     |   Ethernet address ...        |
//	+---------------+---------------+-------------------------------+
const ReserveArgLen = 2

// ReserveCommand is the RCmd field of a Reserve/Release message.
type ReserveCommand uint8

// Reserve/Release commands.
const (
	// ReserveRead asks for the reserve list.
	ReserveRead ReserveCommand = 0
	// ReserveSet replaces the list, if it is empty or the sender is on it;
	// otherwise the reply carries ErrorTargetReserved. An empty list
	// releases the reservation.
	ReserveSet ReserveCommand = 1
	// ReserveForceSet replaces the list unconditionally.
	ReserveForceSet ReserveCommand = 2
)

// Reserve is the argument of a Reserve/Release message (AoEr11, Section
// 3.4).
type Reserve struct {
	Command ReserveCommand
	MACs    []MAC
}

// ParseReserve parses a Reserve/Release argument. It returns an error
// wrapping ErrShort if b is shorter than the fixed part or than NMacs
// addresses. Unknown command values are returned as they are, for the
// target to answer with ErrorBadArgument.
func ParseReserve(b []byte) (Reserve, error) {
	if len(b) < ReserveArgLen {
		return Reserve{}, fmt.Errorf("aoe: reserve argument is %d bytes, need %d: %w", len(b), ReserveArgLen, ErrShort)
	}
	n := int(b[1])
	if ReserveArgLen+n*6 > len(b) {
		return Reserve{}, fmt.Errorf("aoe: reserve list has %d addresses but only %d bytes follow: %w", n, len(b)-ReserveArgLen, ErrShort)
	}
	r := Reserve{Command: ReserveCommand(b[0])}
	if n > 0 {
		r.MACs = make([]MAC, n)
	}
	for i := range r.MACs {
		copy(r.MACs[i][:], b[ReserveArgLen+i*6:])
	}
	return r, nil
}

// AppendBinary appends the argument and its addresses to b. It returns an
// error wrapping ErrInvalid if there are more than 255 addresses.
func (r Reserve) AppendBinary(b []byte) ([]byte, error) {
	if len(r.MACs) > 255 {
		return b, fmt.Errorf("aoe: %d reserve addresses, at most 255: %w", len(r.MACs), ErrInvalid)
	}
	b = append(b, uint8(r.Command), uint8(len(r.MACs)))
	for _, m := range r.MACs {
		b = append(b, m[:]...)
	}
	return b, nil
}

// MarshalBinary returns the argument and its addresses.
func (r Reserve) MarshalBinary() ([]byte, error) {
	return r.AppendBinary(make([]byte, 0, ReserveArgLen+6*len(r.MACs)))
}
