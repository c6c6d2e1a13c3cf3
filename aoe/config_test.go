package aoe_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/aoetarget/aoetarget/aoe"
)

// configArg returns a Query Config argument whose string length field is
// n, followed by body.
func configArg(vercmd uint8, n uint16, body []byte) []byte {
	b := []byte{
		0x00, 0x00, // buffer count 0
		0x00, 0x00, // firmware version 0
		0x00,                    // sector count 0
		vercmd,                  // aoe ver, ccmd
		uint8(n >> 8), uint8(n), // config string length
	}
	return append(b, body...)
}

// aoecfgQuery is what aoecfg sends for "aoecfg -c test foo": the
// sub-command without the version nibble, then the whole 1024-byte string
// buffer whatever the string's length.
func aoecfgQuery() []byte {
	body := make([]byte, aoe.MaxConfigStringLen)
	copy(body, "foo")
	return configArg(0x01, 3, body) // ver 0, ccmd 1 (test); length 3
}

func TestParseConfig(t *testing.T) {
	long := bytes.Repeat([]byte{'x'}, aoe.MaxConfigStringLen+1)
	tests := []struct {
		name string
		b    []byte
		want aoe.Config
		err  error
	}{
		{
			name: "linux query, all zeros",
			b:    make([]byte, aoe.ConfigArgLen),
			want: aoe.Config{String: []byte{}},
		},
		{
			name: "vblade response at MTU 1500",
			b: []byte{
				0x00, 0x10, // buffer count 16
				0x40, 0x19, // firmware version 0x4019
				0x02,       // sector count 2
				0x10,       // aoe ver 1, ccmd 0 (read)
				0x00, 0x00, // config string length 0
			},
			want: aoe.Config{BufferCount: 16, FirmwareVersion: 0x4019, SectorCount: 2, Version: 1, String: []byte{}},
		},
		{
			name: "response with a string and ethernet padding",
			b: []byte{
				0x01, 0x00, // buffer count 256
				0x00, 0x01, // firmware version 1
				0x11,       // sector count 17
				0x10,       // aoe ver 1, ccmd 0 (read)
				0x00, 0x05, // config string length 5
				'h', 'e', 'l', 'l', 'o', // config string
				0x00, 0x00, 0x00, 0x00, // padding
			},
			want: aoe.Config{
				BufferCount: 256, FirmwareVersion: 1, SectorCount: 17, Version: 1,
				String: []byte("hello"),
			},
		},
		{
			name: "aoecfg test query, padded to the whole buffer, version nibble 0",
			b:    aoecfgQuery(),
			want: aoe.Config{Command: aoe.ConfigTest, String: []byte("foo")},
		},
		{
			name: "version nibble and force-set",
			b:    configArg(0xf4, 1, []byte{'z'}), // ver 15, ccmd 4 (force set); length 1
			want: aoe.Config{Version: 15, Command: aoe.ConfigForceSet, String: []byte("z")},
		},
		{
			name: "set, prefix test",
			b:    configArg(0x12, 2, []byte("ab")), // ver 1, ccmd 2 (test prefix); length 2
			want: aoe.Config{Version: 1, Command: aoe.ConfigTestPrefix, String: []byte("ab")},
		},
		{
			name: "string of 1024 bytes",
			b:    configArg(0x13, 1024, long[:1024]), // ver 1, ccmd 3 (set); length 1024
			want: aoe.Config{Version: 1, Command: aoe.ConfigSet, String: long[:1024]},
		},
		{
			name: "string of 1025 bytes",
			b:    configArg(0x13, 1025, long), // ver 1, ccmd 3 (set); length 1025
			err:  aoe.ErrInvalid,
		},
		{
			name: "length 0xffff",
			b:    configArg(0x10, 0xffff, nil), // ver 1, ccmd 0; length 65535
			err:  aoe.ErrInvalid,
		},
		{
			name: "length past the end",
			b:    configArg(0x10, 6, []byte("hello")), // length 6, 5 bytes follow
			err:  aoe.ErrShort,
		},
		{
			name: "length 1024 past the end",
			b:    configArg(0x13, 1024, long[:1023]),
			err:  aoe.ErrShort,
		},
		{name: "sub-command 5", b: configArg(0x15, 0, nil), err: aoe.ErrInvalid},
		{name: "sub-command 15", b: configArg(0x0f, 0, nil), err: aoe.ErrInvalid},
		{name: "empty", b: nil, err: aoe.ErrShort},
		{name: "7 bytes", b: make([]byte, aoe.ConfigArgLen-1), err: aoe.ErrShort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := aoe.ParseConfig(tt.b)
			checkErr(t, err, tt.err)
			if tt.err != nil {
				return
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseConfig (-want +got):\n%s", diff)
			}
			if len(got.String) > 0 && &got.String[0] != &tt.b[aoe.ConfigArgLen] {
				t.Error("String does not alias the parsed buffer")
			}
		})
	}
}

func TestParseConfigSubCommandError(t *testing.T) {
	// The fields are still returned, so that a target can answer the
	// request with ErrorBadArgument.
	c, err := aoe.ParseConfig(configArg(0x17, 0, nil))
	checkErr(t, err, aoe.ErrInvalid)
	if c.Version != 1 || c.Command != 7 {
		t.Errorf("ParseConfig = %+v, want version 1, command 7", c)
	}
}

func TestParseConfigShort(t *testing.T) {
	full := configArg(0x10, 5, []byte("hello"))
	for n := 0; n < len(full); n++ {
		if _, err := aoe.ParseConfig(full[:n]); !errors.Is(err, aoe.ErrShort) {
			t.Errorf("ParseConfig(%d bytes): error %v, want ErrShort", n, err)
		}
	}
	if _, err := aoe.ParseConfig(full); err != nil {
		t.Errorf("ParseConfig(%d bytes): %v", len(full), err)
	}
}

func TestParseConfigStringCapacity(t *testing.T) {
	// Appending to String must not overwrite the bytes after it.
	b := configArg(0x10, 2, []byte("ab!"))
	c, err := aoe.ParseConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	_ = append(c.String, '?')
	if b[len(b)-1] != '!' {
		t.Error("appending to Config.String overwrote the parsed buffer")
	}
}

func TestConfigAppendBinary(t *testing.T) {
	long := bytes.Repeat([]byte{'x'}, aoe.MaxConfigStringLen+1)
	tests := []struct {
		name string
		c    aoe.Config
		want []byte
		err  error
	}{
		{
			name: "target reply at MTU 9000",
			c:    aoe.Config{BufferCount: 64, FirmwareVersion: 0x4019, SectorCount: 17, Version: aoe.Version},
			want: []byte{
				0x00, 0x40, // buffer count 64
				0x40, 0x19, // firmware version 0x4019
				0x11,       // sector count 17
				0x10,       // aoe ver 1, ccmd 0 (read)
				0x00, 0x00, // config string length 0
			},
		},
		{
			name: "with a string",
			c: aoe.Config{
				BufferCount: 0xabcd, FirmwareVersion: 0x1234, SectorCount: 0xff,
				Version: aoe.Version, Command: aoe.ConfigSet, String: []byte("replica-a"),
			},
			want: []byte{
				0xab, 0xcd, // buffer count 0xabcd
				0x12, 0x34, // firmware version 0x1234
				0xff,       // sector count 255
				0x13,       // aoe ver 1, ccmd 3 (set)
				0x00, 0x09, // config string length 9
				'r', 'e', 'p', 'l', 'i', 'c', 'a', '-', 'a', // config string
			},
		},
		{
			name: "aoecfg style, version 0",
			c:    aoe.Config{Command: aoe.ConfigForceSet},
			want: []byte{
				0x00, 0x00, // buffer count 0
				0x00, 0x00, // firmware version 0
				0x00,       // sector count 0
				0x04,       // aoe ver 0, ccmd 4 (force set)
				0x00, 0x00, // config string length 0
			},
		},
		{
			name: "string of 1024 bytes",
			c:    aoe.Config{Version: 1, String: long[:1024]},
			want: append([]byte{
				0x00, 0x00, // buffer count 0
				0x00, 0x00, // firmware version 0
				0x00,       // sector count 0
				0x10,       // aoe ver 1, ccmd 0 (read)
				0x04, 0x00, // config string length 1024
			}, long[:1024]...),
		},
		{name: "string of 1025 bytes", c: aoe.Config{Version: 1, String: long}, err: aoe.ErrInvalid},
		{name: "version over 4 bits", c: aoe.Config{Version: 16}, err: aoe.ErrInvalid},
		{name: "sub-command 5", c: aoe.Config{Version: 1, Command: 5}, err: aoe.ErrInvalid},
		{name: "sub-command 16", c: aoe.Config{Version: 1, Command: 16}, err: aoe.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte{0x77}
			got, err := tt.c.AppendBinary(append([]byte(nil), prefix...))
			checkErr(t, err, tt.err)
			if tt.err != nil {
				if diff := cmp.Diff(prefix, got); diff != "" {
					t.Errorf("AppendBinary on error (-want +got):\n%s", diff)
				}
				_, err = tt.c.MarshalBinary()
				checkErr(t, err, tt.err)
				return
			}
			if diff := cmp.Diff(append(prefix, tt.want...), got); diff != "" {
				t.Errorf("AppendBinary (-want +got):\n%s", diff)
			}
			got, err = tt.c.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("MarshalBinary (-want +got):\n%s", diff)
			}
			back, err := aoe.ParseConfig(got)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.c, back, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConfigCommandString(t *testing.T) {
	tests := []struct {
		c    aoe.ConfigCommand
		want string
	}{
		{aoe.ConfigRead, "read"},
		{aoe.ConfigTest, "test"},
		{aoe.ConfigTestPrefix, "test-prefix"},
		{aoe.ConfigSet, "set"},
		{aoe.ConfigForceSet, "force-set"},
		{5, "ConfigCommand(5)"},
		{255, "ConfigCommand(255)"},
	}
	for _, tt := range tests {
		if got := tt.c.String(); got != tt.want {
			t.Errorf("ConfigCommand(%d).String() = %q, want %q", uint8(tt.c), got, tt.want)
		}
	}
}
