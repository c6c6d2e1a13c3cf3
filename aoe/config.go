package aoe

import (
	"encoding/binary"
	"fmt"
)

// ConfigArgLen is the length of the fixed part of the Query Config
// Information argument (AoEr11, Section 3.2); the config string follows:
//
//	 0               1               2               3
//	+---------------+---------------+---------------+---------------+
//	|         Buffer Count          |       Firmware Version        |
//	+---------------+---------------+---------------+---------------+
//	| Sector Count  | AoE Ver|CCmd  |   Config String Length        |
//	+---------------+---------------+---------------+---------------+
const ConfigArgLen = 8

// MaxConfigStringLen is the longest config string AoEr11 allows.
const MaxConfigStringLen = 1024

// ConfigCommand is the CCmd field of a Query Config request.
type ConfigCommand uint8

// Query Config sub-commands.
const (
	// ConfigRead asks for the configuration.
	ConfigRead ConfigCommand = 0
	// ConfigTest asks for a reply only if the string matches exactly.
	ConfigTest ConfigCommand = 1
	// ConfigTestPrefix asks for a reply only if the request's string is a
	// prefix of the target's.
	ConfigTestPrefix ConfigCommand = 2
	// ConfigSet sets the string if the target has none; otherwise the
	// reply carries ErrorConfigStringPresent.
	ConfigSet ConfigCommand = 3
	// ConfigForceSet sets the string unconditionally.
	ConfigForceSet ConfigCommand = 4
)

// String returns the sub-command's name.
func (c ConfigCommand) String() string {
	switch c {
	case ConfigRead:
		return "read"
	case ConfigTest:
		return "test"
	case ConfigTestPrefix:
		return "test-prefix"
	case ConfigSet:
		return "set"
	case ConfigForceSet:
		return "force-set"
	}
	return fmt.Sprintf("ConfigCommand(%d)", uint8(c))
}

// Config is the argument of a Query Config Information message (AoEr11,
// Section 3.2).
type Config struct {
	// BufferCount is how many outstanding messages the target can queue.
	BufferCount uint16
	// FirmwareVersion is the target's firmware version.
	FirmwareVersion uint16
	// SectorCount is the most sectors one ATA command may carry; 0 means 2.
	SectorCount uint8
	// Version is the AoE protocol version the target speaks (4 bits). In
	// requests it is often 0 (aoecfg sends only the sub-command).
	Version uint8
	// Command is the sub-command (4 bits).
	Command ConfigCommand
	// String is the config string, at most MaxConfigStringLen bytes. After
	// ParseConfig it aliases the parsed buffer.
	String []byte
}

// ParseConfig parses a Query Config argument. It returns an error wrapping
// ErrShort if b is shorter than ConfigArgLen or than the string length
// says, and one wrapping ErrInvalid if the string length exceeds
// MaxConfigStringLen or the sub-command is not one of the five defined.
// Bytes after the string are ignored. c.String aliases b.
func ParseConfig(b []byte) (Config, error) {
	if len(b) < ConfigArgLen {
		return Config{}, fmt.Errorf("aoe: config argument is %d bytes, need %d: %w", len(b), ConfigArgLen, ErrShort)
	}
	n := int(binary.BigEndian.Uint16(b[6:8]))
	if n > MaxConfigStringLen {
		return Config{}, fmt.Errorf("aoe: config string length %d exceeds %d: %w", n, MaxConfigStringLen, ErrInvalid)
	}
	if ConfigArgLen+n > len(b) {
		return Config{}, fmt.Errorf("aoe: config string length %d but only %d bytes follow: %w", n, len(b)-ConfigArgLen, ErrShort)
	}
	c := Config{
		BufferCount:     binary.BigEndian.Uint16(b[0:2]),
		FirmwareVersion: binary.BigEndian.Uint16(b[2:4]),
		SectorCount:     b[4],
		Version:         b[5] >> 4,
		Command:         ConfigCommand(b[5] & 0x0f),
		String:          b[ConfigArgLen : ConfigArgLen+n : ConfigArgLen+n],
	}
	if c.Command > ConfigForceSet {
		return c, fmt.Errorf("aoe: config sub-command %d: %w", c.Command, ErrInvalid)
	}
	return c, nil
}

// AppendBinary appends the argument and its string to b. It returns an
// error wrapping ErrInvalid if the string is too long, or Version or
// Command do not fit in four bits.
func (c Config) AppendBinary(b []byte) ([]byte, error) {
	if len(c.String) > MaxConfigStringLen {
		return b, fmt.Errorf("aoe: config string is %d bytes, at most %d: %w", len(c.String), MaxConfigStringLen, ErrInvalid)
	}
	if c.Version > 0x0f || c.Command > ConfigForceSet {
		return b, fmt.Errorf("aoe: config version %d or sub-command %d out of range: %w", c.Version, c.Command, ErrInvalid)
	}
	n := len(c.String)
	b = append(b,
		uint8(c.BufferCount>>8), uint8(c.BufferCount),
		uint8(c.FirmwareVersion>>8), uint8(c.FirmwareVersion),
		c.SectorCount,
		c.Version<<4|uint8(c.Command),
		uint8(n>>8), uint8(n),
	)
	return append(b, c.String...), nil
}

// MarshalBinary returns the argument and its string.
func (c Config) MarshalBinary() ([]byte, error) {
	return c.AppendBinary(make([]byte, 0, ConfigArgLen+len(c.String)))
}
