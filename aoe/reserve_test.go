package aoe_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/aoetarget/aoetarget/aoe"
)

// reserveSet is a Reserve/Release set of two addresses.
var reserveSet = []byte{
	0x01,                               // rcmd 1 (set)
	0x02,                               // nmacs 2
	0x52, 0x54, 0x00, 0xae, 0x00, 0x01, // mac 52:54:00:ae:00:01
	0x46, 0xba, 0xdb, 0x73, 0xf3, 0x48, // mac 46:ba:db:73:f3:48
}

func TestParseReserve(t *testing.T) {
	full := make([]byte, aoe.ReserveArgLen+255*6)
	full[1] = 255 // nmacs 255
	tests := []struct {
		name string
		b    []byte
		want aoe.Reserve
		err  error
	}{
		{
			name: "read",
			b: []byte{
				0x00, // rcmd 0 (read)
				0x00, // nmacs 0
			},
			want: aoe.Reserve{Command: aoe.ReserveRead},
		},
		{
			name: "set",
			b:    reserveSet,
			want: aoe.Reserve{Command: aoe.ReserveSet, MACs: []aoe.MAC{initiatorMAC, targetMAC}},
		},
		{
			name: "force set, padded",
			b: []byte{
				0x02,                               // rcmd 2 (force set)
				0x01,                               // nmacs 1
				0x02, 0x52, 0x08, 0x80, 0x4f, 0x18, // mac 02:52:08:80:4f:18
				0x00, 0x00, 0x00, 0x00, // padding
			},
			want: aoe.Reserve{
				Command: aoe.ReserveForceSet,
				MACs:    []aoe.MAC{{0x02, 0x52, 0x08, 0x80, 0x4f, 0x18}},
			},
		},
		{
			name: "release, an empty set",
			b: []byte{
				0x01, // rcmd 1 (set)
				0x00, // nmacs 0
			},
			want: aoe.Reserve{Command: aoe.ReserveSet},
		},
		{
			name: "unknown command is returned as it is",
			b: []byte{
				0x09, // rcmd 9 (unknown)
				0x00, // nmacs 0
			},
			want: aoe.Reserve{Command: 9},
		},
		{name: "255 addresses", b: full, want: aoe.Reserve{MACs: make([]aoe.MAC, 255)}},
		{name: "nmacs 255, one byte short", b: full[:len(full)-1], err: aoe.ErrShort},
		{name: "nmacs 255, only the fixed part", b: full[:aoe.ReserveArgLen], err: aoe.ErrShort},
		{name: "nmacs 2, one address", b: reserveSet[:aoe.ReserveArgLen+6], err: aoe.ErrShort},
		{name: "empty", b: nil, err: aoe.ErrShort},
		{name: "1 byte", b: []byte{0x01}, err: aoe.ErrShort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := aoe.ParseReserve(tt.b)
			checkErr(t, err, tt.err)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseReserve (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseReserveShort(t *testing.T) {
	for n := 0; n < len(reserveSet); n++ {
		if _, err := aoe.ParseReserve(reserveSet[:n]); !errors.Is(err, aoe.ErrShort) {
			t.Errorf("ParseReserve(%d bytes): error %v, want ErrShort", n, err)
		}
	}
	if _, err := aoe.ParseReserve(reserveSet); err != nil {
		t.Errorf("ParseReserve(%d bytes): %v", len(reserveSet), err)
	}
}

func TestReserveAppendBinary(t *testing.T) {
	tests := []struct {
		name string
		r    aoe.Reserve
		want []byte
		err  error
	}{
		{
			name: "empty list",
			r:    aoe.Reserve{},
			want: []byte{
				0x00, // rcmd 0 (read)
				0x00, // nmacs 0
			},
		},
		{
			name: "set",
			r:    aoe.Reserve{Command: aoe.ReserveSet, MACs: []aoe.MAC{initiatorMAC, targetMAC}},
			want: reserveSet,
		},
		{
			name: "255 addresses",
			r:    aoe.Reserve{Command: aoe.ReserveForceSet, MACs: make([]aoe.MAC, 255)},
			want: append([]byte{
				0x02, // rcmd 2 (force set)
				0xff, // nmacs 255
			}, make([]byte, 255*6)...),
		},
		{name: "256 addresses", r: aoe.Reserve{MACs: make([]aoe.MAC, 256)}, err: aoe.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte{0x33}
			got, err := tt.r.AppendBinary(append([]byte(nil), prefix...))
			checkErr(t, err, tt.err)
			if tt.err != nil {
				if diff := cmp.Diff(prefix, got); diff != "" {
					t.Errorf("AppendBinary on error (-want +got):\n%s", diff)
				}
				_, err = tt.r.MarshalBinary()
				checkErr(t, err, tt.err)
				return
			}
			if diff := cmp.Diff(append(prefix, tt.want...), got); diff != "" {
				t.Errorf("AppendBinary (-want +got):\n%s", diff)
			}
			got, err = tt.r.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("MarshalBinary (-want +got):\n%s", diff)
			}
			back, err := aoe.ParseReserve(got)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.r, back, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}
