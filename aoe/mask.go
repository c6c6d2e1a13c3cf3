package aoe

import "fmt"

// MacMaskArgLen is the length of the fixed part of the Mac Mask List
// argument (AoEr11, Section 3.3); DirCount directives of
// DirectiveLen bytes follow:
//
//	 0               1               2               3
//	+---------------+---------------+---------------+---------------+
//	|   reserved    |     MCmd      |    MError     |   Dir Count   |
//	+---------------+---------------+---------------+---------------+
//	|   reserved    |     DCmd      |      Ethernet address ...     |
//	+---------------+---------------+-------------------------------+
const MacMaskArgLen = 4

// DirectiveLen is the length of one Mac Mask List directive.
const DirectiveLen = 8

// MaskCommand is the MCmd field of a Mac Mask List message.
type MaskCommand uint8

// Mac Mask List commands.
const (
	MaskRead MaskCommand = 0 // read the list
	MaskEdit MaskCommand = 1 // apply the directives, in order
)

// MaskError is the MError field of a Mac Mask List response.
type MaskError uint8

// Mac Mask List errors.
const (
	MaskErrorNone         MaskError = 0
	MaskErrorUnspecified  MaskError = 1 // unspecified error
	MaskErrorBadDirective MaskError = 2 // bad DCmd directive
	MaskErrorListFull     MaskError = 3 // mask list full
)

// DirectiveCommand is the DCmd field of a directive.
type DirectiveCommand uint8

// Directive commands.
const (
	DirectiveNone   DirectiveCommand = 0 // no directive
	DirectiveAdd    DirectiveCommand = 1 // add MAC to the list
	DirectiveDelete DirectiveCommand = 2 // delete MAC from the list
)

// Directive is one entry of a Mac Mask List message: a command and a MAC.
// In a response the list holds the current mask, each with DirectiveAdd.
type Directive struct {
	Command DirectiveCommand
	MAC     MAC
}

// MacMask is the argument of a Mac Mask List message (AoEr11, Section 3.3).
type MacMask struct {
	Command    MaskCommand
	Error      MaskError
	Directives []Directive
}

// ParseMacMask parses a Mac Mask List argument. It returns an error
// wrapping ErrShort if b is shorter than the fixed part or than DirCount
// directives. Unknown command values are returned as they are, for the
// target to answer with ErrorBadArgument.
func ParseMacMask(b []byte) (MacMask, error) {
	if len(b) < MacMaskArgLen {
		return MacMask{}, fmt.Errorf("aoe: mac mask argument is %d bytes, need %d: %w", len(b), MacMaskArgLen, ErrShort)
	}
	n := int(b[3])
	if MacMaskArgLen+n*DirectiveLen > len(b) {
		return MacMask{}, fmt.Errorf("aoe: mac mask has %d directives but only %d bytes follow: %w", n, len(b)-MacMaskArgLen, ErrShort)
	}
	m := MacMask{Command: MaskCommand(b[1]), Error: MaskError(b[2])}
	if n > 0 {
		m.Directives = make([]Directive, n)
	}
	for i := range m.Directives {
		d := b[MacMaskArgLen+i*DirectiveLen:]
		m.Directives[i].Command = DirectiveCommand(d[1])
		copy(m.Directives[i].MAC[:], d[2:8])
	}
	return m, nil
}

// AppendBinary appends the argument and its directives to b. It returns an
// error wrapping ErrInvalid if there are more than 255 directives.
func (m MacMask) AppendBinary(b []byte) ([]byte, error) {
	if len(m.Directives) > 255 {
		return b, fmt.Errorf("aoe: %d mac mask directives, at most 255: %w", len(m.Directives), ErrInvalid)
	}
	b = append(b, 0, uint8(m.Command), uint8(m.Error), uint8(len(m.Directives)))
	for _, d := range m.Directives {
		b = append(b, 0, uint8(d.Command))
		b = append(b, d.MAC[:]...)
	}
	return b, nil
}

// MarshalBinary returns the argument and its directives.
func (m MacMask) MarshalBinary() ([]byte, error) {
	return m.AppendBinary(make([]byte, 0, MacMaskArgLen+len(m.Directives)*DirectiveLen))
}
