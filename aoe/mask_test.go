package aoe_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/aoetarget/aoetarget/aoe"
)

// maskEdit is a Mac Mask List edit that adds the initiator and deletes the
// target address.
var maskEdit = []byte{
	0x00,                               // reserved
	0x01,                               // mcmd 1 (edit)
	0x00,                               // merror 0
	0x02,                               // dir count 2
	0x00,                               // reserved
	0x01,                               // dcmd 1 (add)
	0x52, 0x54, 0x00, 0xae, 0x00, 0x01, // mac 52:54:00:ae:00:01
	0x00,                               // reserved
	0x02,                               // dcmd 2 (delete)
	0x46, 0xba, 0xdb, 0x73, 0xf3, 0x48, // mac 46:ba:db:73:f3:48
}

func TestParseMacMask(t *testing.T) {
	full := make([]byte, aoe.MacMaskArgLen+255*aoe.DirectiveLen)
	full[3] = 255 // dir count 255
	tests := []struct {
		name string
		b    []byte
		want aoe.MacMask
		err  error
	}{
		{
			name: "read",
			b: []byte{
				0x00, // reserved
				0x00, // mcmd 0 (read)
				0x00, // merror 0
				0x00, // dir count 0
			},
			want: aoe.MacMask{Command: aoe.MaskRead},
		},
		{
			name: "edit",
			b:    maskEdit,
			want: aoe.MacMask{
				Command: aoe.MaskEdit,
				Directives: []aoe.Directive{
					{Command: aoe.DirectiveAdd, MAC: initiatorMAC},
					{Command: aoe.DirectiveDelete, MAC: targetMAC},
				},
			},
		},
		{
			name: "list-full response, reserved bytes ignored, padding ignored",
			b: []byte{
				0xff,                               // reserved, nonzero
				0x01,                               // mcmd 1 (edit)
				0x03,                               // merror 3 (list full)
				0x01,                               // dir count 1
				0xff,                               // reserved, nonzero
				0x00,                               // dcmd 0 (none)
				0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // mac ff:ff:ff:ff:ff:ff
				0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // padding
			},
			want: aoe.MacMask{
				Command:    aoe.MaskEdit,
				Error:      aoe.MaskErrorListFull,
				Directives: []aoe.Directive{{Command: aoe.DirectiveNone, MAC: aoe.BroadcastMAC}},
			},
		},
		{
			name: "unknown commands are returned as they are",
			b: []byte{
				0x00,                               // reserved
				0x07,                               // mcmd 7 (unknown)
				0x09,                               // merror 9 (unknown)
				0x01,                               // dir count 1
				0x00,                               // reserved
				0x05,                               // dcmd 5 (unknown)
				0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // mac 00:00:00:00:00:00
			},
			want: aoe.MacMask{Command: 7, Error: 9, Directives: []aoe.Directive{{Command: 5}}},
		},
		{
			name: "255 directives",
			b:    full,
			want: aoe.MacMask{Directives: make([]aoe.Directive, 255)},
		},
		{name: "dir count 255, one byte short", b: full[:len(full)-1], err: aoe.ErrShort},
		{name: "dir count 255, only the fixed part", b: full[:aoe.MacMaskArgLen], err: aoe.ErrShort},
		{name: "dir count 2, one directive", b: maskEdit[:aoe.MacMaskArgLen+aoe.DirectiveLen], err: aoe.ErrShort},
		{name: "empty", b: nil, err: aoe.ErrShort},
		{name: "3 bytes", b: []byte{0, 0, 0}, err: aoe.ErrShort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := aoe.ParseMacMask(tt.b)
			checkErr(t, err, tt.err)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseMacMask (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseMacMaskShort(t *testing.T) {
	for n := 0; n < len(maskEdit); n++ {
		if _, err := aoe.ParseMacMask(maskEdit[:n]); !errors.Is(err, aoe.ErrShort) {
			t.Errorf("ParseMacMask(%d bytes): error %v, want ErrShort", n, err)
		}
	}
	if _, err := aoe.ParseMacMask(maskEdit); err != nil {
		t.Errorf("ParseMacMask(%d bytes): %v", len(maskEdit), err)
	}
}

func TestMacMaskAppendBinary(t *testing.T) {
	tests := []struct {
		name string
		m    aoe.MacMask
		want []byte
		err  error
	}{
		{
			name: "empty read reply",
			m:    aoe.MacMask{},
			want: []byte{
				0x00, // reserved
				0x00, // mcmd 0 (read)
				0x00, // merror 0
				0x00, // dir count 0
			},
		},
		{
			name: "edit",
			m: aoe.MacMask{
				Command: aoe.MaskEdit,
				Directives: []aoe.Directive{
					{Command: aoe.DirectiveAdd, MAC: initiatorMAC},
					{Command: aoe.DirectiveDelete, MAC: targetMAC},
				},
			},
			want: maskEdit,
		},
		{
			name: "bad directive reply",
			m:    aoe.MacMask{Command: aoe.MaskEdit, Error: aoe.MaskErrorBadDirective},
			want: []byte{
				0x00, // reserved
				0x01, // mcmd 1 (edit)
				0x02, // merror 2 (bad directive)
				0x00, // dir count 0
			},
		},
		{
			name: "255 directives",
			m:    aoe.MacMask{Directives: make([]aoe.Directive, 255)},
			want: append([]byte{
				0x00, // reserved
				0x00, // mcmd 0 (read)
				0x00, // merror 0
				0xff, // dir count 255
			}, make([]byte, 255*aoe.DirectiveLen)...),
		},
		{name: "256 directives", m: aoe.MacMask{Directives: make([]aoe.Directive, 256)}, err: aoe.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte{0x55}
			got, err := tt.m.AppendBinary(append([]byte(nil), prefix...))
			checkErr(t, err, tt.err)
			if tt.err != nil {
				if diff := cmp.Diff(prefix, got); diff != "" {
					t.Errorf("AppendBinary on error (-want +got):\n%s", diff)
				}
				_, err = tt.m.MarshalBinary()
				checkErr(t, err, tt.err)
				return
			}
			if diff := cmp.Diff(append(prefix, tt.want...), got); diff != "" {
				t.Errorf("AppendBinary (-want +got):\n%s", diff)
			}
			got, err = tt.m.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("MarshalBinary (-want +got):\n%s", diff)
			}
			back, err := aoe.ParseMacMask(got)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.m, back, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}
