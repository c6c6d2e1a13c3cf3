package aoe_test

import (
	"errors"
	"net"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/aoetarget/aoetarget/aoe"
)

// checkErr fails t unless err matches want: nil for success, otherwise
// errors.Is(err, want) (want is ErrShort or ErrInvalid).
func checkErr(t *testing.T, err, want error) {
	t.Helper()
	if diff := cmp.Diff(want, err, cmpopts.EquateErrors()); diff != "" {
		t.Fatalf("unexpected error (-want +got):\n%s", diff)
	}
}

// isParseError reports whether err belongs to one of the package's two
// error classes, as every parse and marshal error must.
func isParseError(err error) bool {
	return errors.Is(err, aoe.ErrShort) || errors.Is(err, aoe.ErrInvalid)
}

func TestParseHeader(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
		want aoe.Header
		err  error
	}{
		{
			name: "linux config query",
			b: []byte{
				0x10,       // ver 1, flags 0
				0x00,       // error 0
				0xff, 0xff, // major 0xffff (broadcast)
				0xff,                   // minor 0xff (broadcast)
				0x01,                   // command 1 (query config)
				0x00, 0x00, 0x00, 0x00, // tag 0
			},
			want: aoe.Header{
				Version: 1, Major: aoe.BroadcastMajor, Minor: aoe.BroadcastMinor,
				Command: aoe.CommandQueryConfig,
			},
		},
		{
			name: "vblade read response",
			b: []byte{
				0x18,       // ver 1, flags R
				0x00,       // error 0
				0x00, 0x01, // major 1
				0x00,                   // minor 0
				0x00,                   // command 0 (ATA)
				0x00, 0x02, 0xdd, 0xe1, // tag 0x0002dde1
			},
			want: aoe.Header{
				Version: 1, Flags: aoe.FlagResponse, Major: 1, Minor: 0,
				Command: aoe.CommandATA, Tag: 0x0002dde1,
			},
		},
		{
			name: "error response, userland tag",
			b: []byte{
				0x1c,       // ver 1, flags R|E
				0x06,       // error 6 (target reserved)
				0x12, 0x34, // major 0x1234
				0x56,                   // minor 0x56
				0x03,                   // command 3 (reserve/release)
				0x80, 0x00, 0x00, 0x01, // tag 0x80000001
			},
			want: aoe.Header{
				Version: 1, Flags: aoe.FlagResponse | aoe.FlagError,
				Error: aoe.ErrorTargetReserved, Major: 0x1234, Minor: 0x56,
				Command: aoe.CommandReserve, Tag: 0x80000001,
			},
		},
		{
			name: "vblade startup announcement has version 0",
			b: []byte{
				0x08,       // ver 0, flags R (vblade's aoead sets only Resp)
				0x00,       // error 0
				0x00, 0x01, // major 1
				0x01,                   // minor 1
				0x01,                   // command 1 (query config)
				0x00, 0x00, 0x00, 0x00, // tag 0
			},
			want: aoe.Header{
				Version: 0, Flags: aoe.FlagResponse, Major: 1, Minor: 1,
				Command: aoe.CommandQueryConfig,
			},
		},
		{
			name: "unknown version, reserved flag bits and vendor command are returned as they are",
			b: []byte{
				0xf3,       // ver 15, flags 0x3 (the two must-be-zero bits)
				0xff,       // error 255
				0x00, 0x00, // major 0
				0x00,                   // minor 0
				0xf0,                   // command 0xf0 (vendor)
				0xff, 0xff, 0xff, 0xff, // tag 0xffffffff
			},
			want: aoe.Header{
				Version: 15, Flags: 0x3, Error: 255, Command: aoe.CommandVendorMinimum,
				Tag: 0xffffffff,
			},
		},
		{
			name: "trailing bytes are ignored",
			b: []byte{
				0x10,       // ver 1, flags 0
				0x00,       // error 0
				0x00, 0x07, // major 7
				0x03,                   // minor 3
				0x00,                   // command 0 (ATA)
				0x01, 0x02, 0x03, 0x04, // tag 0x01020304
				0xaa, 0xbb, // not part of the header
			},
			want: aoe.Header{Version: 1, Major: 7, Minor: 3, Tag: 0x01020304},
		},
		{name: "empty", b: nil, err: aoe.ErrShort},
		{name: "9 bytes", b: make([]byte, aoe.HeaderLen-1), err: aoe.ErrShort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := aoe.ParseHeader(tt.b)
			checkErr(t, err, tt.err)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseHeader (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseHeaderShort(t *testing.T) {
	full := []byte{0x10, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01}
	for n := 0; n < aoe.HeaderLen; n++ {
		if _, err := aoe.ParseHeader(full[:n]); !errors.Is(err, aoe.ErrShort) {
			t.Errorf("ParseHeader(%d bytes): error %v, want ErrShort", n, err)
		}
	}
	if _, err := aoe.ParseHeader(full); err != nil {
		t.Errorf("ParseHeader(%d bytes): %v", len(full), err)
	}
}

func TestHeaderAppendBinary(t *testing.T) {
	tests := []struct {
		name string
		h    aoe.Header
		want []byte
		err  error
	}{
		{
			name: "config response",
			h: aoe.Header{
				Version: aoe.Version, Flags: aoe.FlagResponse, Major: 1, Minor: 1,
				Command: aoe.CommandQueryConfig,
			},
			want: []byte{
				0x18,       // ver 1, flags R
				0x00,       // error 0
				0x00, 0x01, // major 1
				0x01,                   // minor 1
				0x01,                   // command 1 (query config)
				0x00, 0x00, 0x00, 0x00, // tag 0
			},
		},
		{
			name: "error response",
			h: aoe.Header{
				Version: aoe.Version, Flags: aoe.FlagResponse | aoe.FlagError,
				Error: aoe.ErrorUnrecognizedCommand, Major: 0xfffe, Minor: 0xfe,
				Command: 0x42, Tag: 0xdeadbeef,
			},
			want: []byte{
				0x1c,       // ver 1, flags R|E
				0x01,       // error 1 (unrecognized command)
				0xff, 0xfe, // major 0xfffe
				0xfe,                   // minor 0xfe
				0x42,                   // command 0x42
				0xde, 0xad, 0xbe, 0xef, // tag 0xdeadbeef
			},
		},
		{
			name: "all ones",
			h: aoe.Header{
				Version: 0xf, Flags: 0xf, Error: 0xff, Major: 0xffff, Minor: 0xff,
				Command: 0xff, Tag: 0xffffffff,
			},
			want: []byte{
				0xff,       // ver 15, flags 0xf
				0xff,       // error 255
				0xff, 0xff, // major 0xffff
				0xff,                   // minor 0xff
				0xff,                   // command 0xff
				0xff, 0xff, 0xff, 0xff, // tag 0xffffffff
			},
		},
		{name: "version over 4 bits", h: aoe.Header{Version: 16}, err: aoe.ErrInvalid},
		{name: "flags over 4 bits", h: aoe.Header{Version: 1, Flags: 0x10}, err: aoe.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte{0xaa, 0xbb}
			got, err := tt.h.AppendBinary(append([]byte(nil), prefix...))
			checkErr(t, err, tt.err)
			if diff := cmp.Diff(append(prefix, tt.want...), got); diff != "" {
				t.Errorf("AppendBinary (-want +got):\n%s", diff)
			}

			got, err = tt.h.MarshalBinary()
			checkErr(t, err, tt.err)
			if tt.err != nil {
				return
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("MarshalBinary (-want +got):\n%s", diff)
			}
			back, err := aoe.ParseHeader(got)
			if err != nil {
				t.Fatalf("ParseHeader: %v", err)
			}
			if diff := cmp.Diff(tt.h, back); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHeaderMethods(t *testing.T) {
	tests := []struct {
		name      string
		h         aoe.Header
		response  bool
		broadcast bool
		// addressed to the target at shelf 1, slot 2
		addressed bool
	}{
		{name: "directed request", h: aoe.Header{Major: 1, Minor: 2}, addressed: true},
		{name: "other slot", h: aoe.Header{Major: 1, Minor: 3}},
		{name: "other shelf", h: aoe.Header{Major: 2, Minor: 2}},
		{name: "broadcast both", h: aoe.Header{Major: 0xffff, Minor: 0xff}, broadcast: true, addressed: true},
		{name: "broadcast shelf", h: aoe.Header{Major: 0xffff, Minor: 2}, broadcast: true, addressed: true},
		{name: "broadcast slot", h: aoe.Header{Major: 1, Minor: 0xff}, broadcast: true, addressed: true},
		{name: "broadcast slot other shelf", h: aoe.Header{Major: 5, Minor: 0xff}, broadcast: true},
		{name: "broadcast shelf other slot", h: aoe.Header{Major: 0xffff, Minor: 9}, broadcast: true},
		{name: "response", h: aoe.Header{Flags: aoe.FlagResponse, Major: 1, Minor: 2}, response: true, addressed: true},
		{name: "error flag alone is not a response", h: aoe.Header{Flags: aoe.FlagError, Major: 1, Minor: 2}, addressed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.h.Response(); got != tt.response {
				t.Errorf("Response() = %v, want %v", got, tt.response)
			}
			if got := tt.h.IsBroadcast(); got != tt.broadcast {
				t.Errorf("IsBroadcast() = %v, want %v", got, tt.broadcast)
			}
			if got := tt.h.Addressed(1, 2); got != tt.addressed {
				t.Errorf("Addressed(1, 2) = %v, want %v", got, tt.addressed)
			}
		})
	}
}

func TestCommandString(t *testing.T) {
	tests := []struct {
		c    aoe.Command
		want string
	}{
		{aoe.CommandATA, "ATA"},
		{aoe.CommandQueryConfig, "QueryConfig"},
		{aoe.CommandMacMask, "MacMask"},
		{aoe.CommandReserve, "Reserve"},
		{4, "Command(4)"},
		{0xef, "Command(239)"},
		{aoe.CommandVendorMinimum, "Vendor(240)"},
		{0xff, "Vendor(255)"},
	}
	for _, tt := range tests {
		if got := tt.c.String(); got != tt.want {
			t.Errorf("Command(%d).String() = %q, want %q", uint8(tt.c), got, tt.want)
		}
	}
}

func TestErrorError(t *testing.T) {
	tests := []struct {
		e    aoe.Error
		want string
	}{
		{0, "aoe: error 0"},
		{aoe.ErrorUnrecognizedCommand, "aoe: unrecognized command code"},
		{aoe.ErrorBadArgument, "aoe: bad argument parameter"},
		{aoe.ErrorDeviceUnavailable, "aoe: device unavailable"},
		{aoe.ErrorConfigStringPresent, "aoe: config string present"},
		{aoe.ErrorUnsupportedVersion, "aoe: unsupported version"},
		{aoe.ErrorTargetReserved, "aoe: target is reserved"},
		{7, "aoe: error 7"},
		{255, "aoe: error 255"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error(%d).Error() = %q, want %q", uint8(tt.e), got, tt.want)
		}
	}
	// An Error is usable as an error value and can be found in a chain.
	var err error = aoe.ErrorBadArgument
	var code aoe.Error
	if !errors.As(err, &code) || code != aoe.ErrorBadArgument {
		t.Errorf("errors.As(%v) = %v, want ErrorBadArgument", err, code)
	}
}

func TestParseMAC(t *testing.T) {
	want := aoe.MAC{0x00, 0x11, 0x22, 0xaa, 0xbb, 0xcc}
	tests := []struct {
		s    string
		want aoe.MAC
		err  error
	}{
		{s: "00:11:22:aa:bb:cc", want: want},
		{s: "00:11:22:AA:BB:CC", want: want},
		{s: "00:11:22:Aa:bB:cC", want: want},
		{s: "001122aabbcc", want: want},
		{s: "001122AABBCC", want: want},
		{s: "00-11-22-aa-bb-cc", want: want},
		{s: "0011.22aa.bbcc", want: want},
		{s: "ff:ff:ff:ff:ff:ff", want: aoe.BroadcastMAC},
		{s: "52:54:00:ae:00:01", want: aoe.MAC{0x52, 0x54, 0x00, 0xae, 0x00, 0x01}},
		{s: "", err: aoe.ErrInvalid},
		{s: "00:11:22:aa:bb", err: aoe.ErrInvalid},        // 5 bytes
		{s: "00:11:22:aa:bb:cc:dd", err: aoe.ErrInvalid},  // 7 bytes
		{s: "001122aabbc", err: aoe.ErrInvalid},           // 11 digits
		{s: "001122aabbccd", err: aoe.ErrInvalid},         // 13 digits
		{s: "00:11:22:aa:bb:cg", err: aoe.ErrInvalid},     // not hex
		{s: "00 11 22 aa bb cc", err: aoe.ErrInvalid},     // spaces are not separators
		{s: "0x1122aabbcc", err: aoe.ErrInvalid},          // prefix
		{s: "00:11:22:aa:bb:c\xff", err: aoe.ErrInvalid},  // invalid UTF-8
		{s: "00:11:22:aa:bb:\u00e9", err: aoe.ErrInvalid}, // two-byte rune
		{s: "+0:11:22:aa:bb:cc", err: aoe.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.s, func(t *testing.T) {
			got, err := aoe.ParseMAC(tt.s)
			checkErr(t, err, tt.err)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseMAC(%q) (-want +got):\n%s", tt.s, diff)
			}
		})
	}
}

func TestMACMethods(t *testing.T) {
	tests := []struct {
		m         aoe.MAC
		str       string
		broadcast bool
		multicast bool
		zero      bool
	}{
		{m: aoe.MAC{}, str: "00:00:00:00:00:00", zero: true},
		{m: aoe.MAC{0x52, 0x54, 0x00, 0xae, 0x00, 0x01}, str: "52:54:00:ae:00:01"},
		{m: aoe.MAC{0x02, 0x52, 0x08, 0x80, 0x4f, 0x18}, str: "02:52:08:80:4f:18"},
		{m: aoe.MAC{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}, str: "01:00:5e:00:00:01", multicast: true},
		{m: aoe.BroadcastMAC, str: "ff:ff:ff:ff:ff:ff", broadcast: true, multicast: true},
		{m: aoe.MAC{0xfe, 0xff, 0xff, 0xff, 0xff, 0xff}, str: "fe:ff:ff:ff:ff:ff"},
	}
	for _, tt := range tests {
		t.Run(tt.str, func(t *testing.T) {
			if got := tt.m.String(); got != tt.str {
				t.Errorf("String() = %q, want %q", got, tt.str)
			}
			if got := tt.m.IsBroadcast(); got != tt.broadcast {
				t.Errorf("IsBroadcast() = %v, want %v", got, tt.broadcast)
			}
			if got := tt.m.IsMulticast(); got != tt.multicast {
				t.Errorf("IsMulticast() = %v, want %v", got, tt.multicast)
			}
			if got := tt.m.IsZero(); got != tt.zero {
				t.Errorf("IsZero() = %v, want %v", got, tt.zero)
			}

			// String and ParseMAC are inverses.
			back, err := aoe.ParseMAC(tt.m.String())
			if err != nil {
				t.Fatalf("ParseMAC(%q): %v", tt.m.String(), err)
			}
			if back != tt.m {
				t.Errorf("ParseMAC(String()) = %v, want %v", back, tt.m)
			}

			// HardwareAddr returns a fresh copy that MACFrom converts back.
			hw := tt.m.HardwareAddr()
			if diff := cmp.Diff(net.HardwareAddr(tt.m[:]), hw); diff != "" {
				t.Errorf("HardwareAddr() (-want +got):\n%s", diff)
			}
			hw[0] ^= 0xff
			if tt.m.HardwareAddr()[0] == hw[0] {
				t.Error("HardwareAddr() aliases the MAC")
			}
			hw[0] ^= 0xff
			m, ok := aoe.MACFrom(hw)
			if !ok || m != tt.m {
				t.Errorf("MACFrom(%v) = %v, %v; want %v, true", hw, m, ok, tt.m)
			}
		})
	}
}

func TestMACFromBadLength(t *testing.T) {
	for _, a := range []net.HardwareAddr{
		nil,
		{1, 2, 3, 4, 5},
		{1, 2, 3, 4, 5, 6, 7},
		{0, 0, 0, 0, 0, 0, 0, 0}, // EUI-64
	} {
		if m, ok := aoe.MACFrom(a); ok || !m.IsZero() {
			t.Errorf("MACFrom(%v) = %v, %v; want zero, false", a, m, ok)
		}
	}
}
