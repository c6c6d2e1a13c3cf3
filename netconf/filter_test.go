package netconf

import (
	"encoding/binary"
	"strconv"
	"testing"

	"golang.org/x/net/bpf"
)

// aoeFrame returns a 60-byte (minimum Ethernet size) frame with the given
// ethertype, ver/flags byte, major and minor, and a recognisable rest.
func aoeFrame(etype uint16, verFlags byte, major uint16, minor byte) []byte {
	b := make([]byte, 60)
	copy(b[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(b[6:12], []byte{0x02, 0, 0, 0, 0, 0x01})
	binary.BigEndian.PutUint16(b[12:14], etype)
	b[14] = verFlags
	b[15] = 0 // error
	binary.BigEndian.PutUint16(b[16:18], major)
	b[18] = minor
	b[19] = 1 // command: query config
	return b
}

const (
	request  = 0x10 // version 1, no flags
	response = 0x18 // version 1, R
	respErr  = 0x1c // version 1, R and E
	reqErr   = 0x14 // version 1, E (not a response)
)

// vm runs the assembled program exactly as the kernel gets it: assemble,
// disassemble, then load into the x/net/bpf VM.
func vm(t *testing.T, f Filter) *bpf.VM {
	t.Helper()
	raw, err := f.Program()
	if err != nil {
		t.Fatalf("Program(%v): %v", f, err)
	}
	insts, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatalf("Program(%v) does not disassemble: %v", f, insts)
	}
	v, err := bpf.NewVM(insts)
	if err != nil {
		t.Fatalf("NewVM(%v): %v", f, err)
	}
	return v
}

func TestFilterProgram(t *testing.T) {
	target := Filter{Major: 7, Minor: 3}
	initiator := Filter{Responses: true, AnyAddress: true}
	initiatorOne := Filter{Responses: true, Major: 7, Minor: 3}
	anyTarget := Filter{AnyAddress: true}
	zero := Filter{}
	high := Filter{Major: 0xfffe, Minor: 0xfe}

	type row struct {
		name  string
		f     Filter
		frame []byte
		pass  bool
	}
	tests := []row{
		{"target: request to us", target, aoeFrame(EtherType, request, 7, 3), true},
		{"target: request with E flag to us", target, aoeFrame(EtherType, reqErr, 7, 3), true},
		{"target: request, version 2 (target answers error 5)", target, aoeFrame(EtherType, 0x20, 7, 3), true},
		{"target: broadcast shelf and slot", target, aoeFrame(EtherType, request, 0xffff, 0xff), true},
		{"target: broadcast shelf, our slot", target, aoeFrame(EtherType, request, 0xffff, 3), true},
		{"target: our shelf, broadcast slot", target, aoeFrame(EtherType, request, 7, 0xff), true},
		{"target: broadcast shelf, other slot", target, aoeFrame(EtherType, request, 0xffff, 4), false},
		{"target: other shelf, broadcast slot", target, aoeFrame(EtherType, request, 8, 0xff), false},
		{"target: other shelf", target, aoeFrame(EtherType, request, 8, 3), false},
		{"target: other slot", target, aoeFrame(EtherType, request, 7, 4), false},
		{"target: shelf differs in high byte", target, aoeFrame(EtherType, request, 0x0107, 3), false},
		{"target: response to us (R set)", target, aoeFrame(EtherType, response, 7, 3), false},
		{"target: error response to us", target, aoeFrame(EtherType, respErr, 7, 3), false},
		{"target: broadcast response", target, aoeFrame(EtherType, response, 0xffff, 0xff), false},
		{"target: IPv4 ethertype", target, aoeFrame(0x0800, request, 7, 3), false},
		{"target: byte-swapped ethertype", target, aoeFrame(0xA288, request, 7, 3), false},
		{"target: VLAN-tagged frame", target, aoeFrame(0x8100, request, 7, 3), false},

		{"zero filter: request to 0.0", zero, aoeFrame(EtherType, request, 0, 0), true},
		{"zero filter: request to 0.1", zero, aoeFrame(EtherType, request, 0, 1), false},
		{"zero filter: broadcast", zero, aoeFrame(EtherType, request, 0xffff, 0xff), true},
		{"high address: ours", high, aoeFrame(EtherType, request, 0xfffe, 0xfe), true},
		{"high address: other", high, aoeFrame(EtherType, request, 0xfffe, 0xfd), false},

		{"any-address target: request to anyone", anyTarget, aoeFrame(EtherType, request, 123, 45), true},
		{"any-address target: response", anyTarget, aoeFrame(EtherType, response, 123, 45), false},

		{"initiator: response from anyone", initiator, aoeFrame(EtherType, response, 123, 45), true},
		{"initiator: error response", initiator, aoeFrame(EtherType, respErr, 1, 1), true},
		{"initiator: request (another initiator's)", initiator, aoeFrame(EtherType, request, 7, 3), false},
		{"initiator: wrong ethertype", initiator, aoeFrame(0x86dd, response, 7, 3), false},
		{"initiator for 7.3: response from 7.3", initiatorOne, aoeFrame(EtherType, response, 7, 3), true},
		{"initiator for 7.3: response from 7.4", initiatorOne, aoeFrame(EtherType, response, 7, 4), false},
		{"initiator for 7.3: request to 7.3", initiatorOne, aoeFrame(EtherType, request, 7, 3), false},
	}

	// Truncated frames: every length below 19 bytes is rejected even when
	// the bytes present would match, and 19 bytes is enough.
	for n := range 20 {
		for _, f := range []Filter{target, initiator, anyTarget} {
			vf := byte(request)
			if f.Responses {
				vf = response
			}
			tests = append(tests, row{
				name:  "truncated to " + strconv.Itoa(n) + " bytes, " + f.String(),
				f:     f,
				frame: aoeFrame(EtherType, vf, 7, 3)[:n],
				pass:  n >= 19,
			})
		}
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := vm(t, tt.f).Run(tt.frame)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if pass := got != 0; pass != tt.pass {
				t.Fatalf("filter %v on % x: returned %d, want pass=%v", tt.f, tt.frame, got, tt.pass)
			}
			if tt.pass && got < len(tt.frame) {
				t.Fatalf("filter keeps %d bytes of a %d-byte frame", got, len(tt.frame))
			}
		})
	}
}

// TestFilterProgramJumbo checks that whole jumbo frames are kept.
func TestFilterProgramJumbo(t *testing.T) {
	b := make([]byte, 9014)
	copy(b, aoeFrame(EtherType, request, 7, 3))
	got, err := vm(t, Filter{Major: 7, Minor: 3}).Run(b)
	if err != nil || got < len(b) {
		t.Fatalf("Run(9014-byte frame) = %d, %v; want at least %d", got, err, len(b))
	}
}

func FuzzFilterProgram(f *testing.F) {
	f.Add(aoeFrame(EtherType, request, 7, 3), uint16(7), uint8(3), false, false)      // passes
	f.Add(aoeFrame(EtherType, response, 1, 1), uint16(0), uint8(0), true, true)       // initiator
	f.Add(aoeFrame(EtherType, request, 7, 3)[:18], uint16(7), uint8(3), false, false) // one byte short
	f.Fuzz(func(t *testing.T, frame []byte, major uint16, minor uint8, responses, any bool) {
		flt := Filter{Responses: responses, Major: major, Minor: minor, AnyAddress: any}
		got, err := vm(t, flt).Run(frame)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if want := reference(flt, frame); (got != 0) != want {
			t.Fatalf("filter %v on % x: returned %d, reference says pass=%v", flt, frame, got, want)
		}
	})
}

// reference is the filter written as plain Go, for the fuzz test.
func reference(f Filter, b []byte) bool {
	if len(b) < 19 || binary.BigEndian.Uint16(b[12:14]) != EtherType {
		return false
	}
	if (b[14]&0x08 != 0) != f.Responses {
		return false
	}
	if f.AnyAddress {
		return true
	}
	major, minor := binary.BigEndian.Uint16(b[16:18]), b[18]
	return (major == f.Major || major == 0xffff) && (minor == f.Minor || minor == 0xff)
}

func TestFilterString(t *testing.T) {
	for _, tt := range []struct {
		f    Filter
		want string
	}{
		{Filter{Major: 1, Minor: 2}, "requests for 1.2 (or broadcast)"},
		{Filter{Responses: true, AnyAddress: true}, "responses for any address"},
	} {
		if got := tt.f.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.f, got, tt.want)
		}
	}
}
