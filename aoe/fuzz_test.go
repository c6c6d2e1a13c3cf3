package aoe_test

import (
	"bytes"
	"reflect"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/aoetarget/aoetarget/aoe"
)

// The fuzz targets check that no input makes a parser panic, that every
// error belongs to ErrShort or ErrInvalid, and that whatever parses
// marshals, parses back to the same value and marshals to the same bytes.
// Their seeds are below; more, taken from the captures, are in
// testdata/fuzz/<FuzzName>/.

// frameOf returns an Ethernet frame from the initiator to the target with
// header h and argument arg.
func frameOf(h aoe.Header, arg []byte) []byte {
	f := aoe.Frame{Dst: targetMAC, Src: initiatorMAC, Header: h, Arg: arg}
	b, err := f.MarshalBinary()
	if err != nil {
		panic(err)
	}
	return b
}

// request returns the header of a request for e1.0 with command c.
func request(c aoe.Command, tag uint32) aoe.Header {
	return aoe.Header{Version: aoe.Version, Major: 1, Minor: 0, Command: c, Tag: tag}
}

// diffOpts compares parsed values: an empty and a nil slice are the same.
var diffOpts = cmp.Options{cmpopts.EquateEmpty()}

// The equal functions compare parsed values quickly (cmp walks byte
// slices element by element, which slows fuzzing down a hundredfold);
// cmp.Diff only explains a difference.

func equalFrame(x, y aoe.Frame) bool {
	return x.Dst == y.Dst && x.Src == y.Src && x.Header == y.Header && bytes.Equal(x.Arg, y.Arg)
}

func equalATA(x, y aoe.ATA) bool {
	return x.Flags == y.Flags && x.ErrFeature == y.ErrFeature && x.SectorCount == y.SectorCount &&
		x.CmdStatus == y.CmdStatus && x.LBA == y.LBA && bytes.Equal(x.Data, y.Data)
}

func equalConfig(x, y aoe.Config) bool {
	return x.BufferCount == y.BufferCount && x.FirmwareVersion == y.FirmwareVersion &&
		x.SectorCount == y.SectorCount && x.Version == y.Version && x.Command == y.Command &&
		bytes.Equal(x.String, y.String)
}

func equalMacMask(x, y aoe.MacMask) bool {
	return x.Command == y.Command && x.Error == y.Error && slices.Equal(x.Directives, y.Directives)
}

func equalReserve(x, y aoe.Reserve) bool {
	return x.Command == y.Command && slices.Equal(x.MACs, y.MACs)
}

// checkFuzzErr fails the test if err is not one of the package's classes.
func checkFuzzErr(t *testing.T, what string, err error) {
	t.Helper()
	if !isParseError(err) {
		t.Fatalf("%s: error %v wraps neither ErrShort nor ErrInvalid", what, err)
	}
}

func FuzzFrame(f *testing.F) {
	f.Add(linuxConfigQuery)                                                                    // the kernel's broadcast Query Config (mtu1500 frame 1)
	f.Add(linuxIdentifyRequest)                                                                // the kernel's IDENTIFY DEVICE (mtu1500 frame 5)
	f.Add(linuxReadRequest)                                                                    // the kernel's 36-byte READ EXT of 2 sectors (mtu1500 frame 8)
	f.Add(writeRequest(2, 0))                                                                  // a WRITE EXT of 2 sectors, as at MTU 1500
	f.Add(writeRequest(17, 0))                                                                 // a WRITE EXT of 17 sectors, as at MTU 9000
	f.Add(frameOf(request(aoe.CommandQueryConfig, 0x80000001), aoecfgQuery()))                 // aoecfg's test query, padded to 1024 bytes of string
	f.Add(frameOf(request(aoe.CommandMacMask, 0x80000002), maskEdit))                          // a Mac Mask List edit
	f.Add(frameOf(request(aoe.CommandReserve, 0x80000003), reserveSet))                        // a Reserve/Release set
	f.Add(frameOf(request(aoe.CommandReserve, 0), []byte{0x02, 0xff}))                         // reserve: NMacs 255 past the end
	f.Add(frameOf(request(aoe.CommandMacMask, 0), []byte{0x00, 0x01, 0x00, 0xff}))             // mac mask: DirCount 255 past the end
	f.Add(frameOf(request(aoe.CommandQueryConfig, 0), configArg(0x10, 0x0401, nil)))           // config string length 1025
	f.Add(frameOf(request(aoe.CommandQueryConfig, 0), configArg(0x15, 0, nil)))                // config sub-command 5
	f.Add(frameOf(request(0xf0, 0), []byte("vendor")))                                         // a vendor command
	f.Add(frameOf(aoe.Header{Version: 2, Flags: 0xf, Command: aoe.CommandATA}, nil))           // version 2, every flag, no argument
	f.Add(append(append([]byte(nil), linuxReadRequest...), make([]byte, 60-36)...))            // a read padded to 60 bytes
	f.Add(linuxReadRequest[:aoe.FrameHeaderLen])                                               // headers only
	f.Add(linuxReadRequest[:aoe.FrameHeaderLen-1])                                             // one byte short
	f.Add(append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 0x08, 0x06}, 0)) // ARP, not AoE
	f.Add([]byte{})                                                                            // nothing

	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := aoe.ParseFrame(b)
		if err != nil {
			checkFuzzErr(t, "ParseFrame", err)
			return
		}
		// Headers and argument marshal back to the input, padding and all.
		out, err := fr.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary of a parsed frame: %v", err)
		}
		if !bytes.Equal(b, out) {
			t.Fatalf("MarshalBinary (-input +marshalled):\n%s", cmp.Diff(b, out))
		}
		hdrs, err := fr.AppendHeaders(nil)
		if err != nil {
			t.Fatalf("AppendHeaders of a parsed frame: %v", err)
		}
		if !bytes.Equal(b[:aoe.FrameHeaderLen], hdrs) {
			t.Fatalf("AppendHeaders (-input +marshalled):\n%s", cmp.Diff(b[:aoe.FrameHeaderLen], hdrs))
		}
		fr2, err := aoe.ParseFrame(out)
		if err != nil {
			t.Fatalf("ParseFrame of a marshalled frame: %v", err)
		}
		if !equalFrame(fr, fr2) {
			t.Fatalf("frame round trip (-first +second):\n%s", cmp.Diff(fr, fr2, diffOpts))
		}
		out2, err := fr2.MarshalBinary()
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("second MarshalBinary: %v\n%s", err, cmp.Diff(out, out2))
		}

		switch fr.Header.Command {
		case aoe.CommandATA:
			roundTripATA(t, fr.Arg)
		case aoe.CommandQueryConfig:
			roundTripConfig(t, fr.Arg)
		case aoe.CommandMacMask:
			roundTripMacMask(t, fr.Arg)
		case aoe.CommandReserve:
			roundTripReserve(t, fr.Arg)
		}
	})
}

func FuzzATA(f *testing.F) {
	f.Add(linuxReadRequest[aoe.FrameHeaderLen:])                                                                       // the kernel's READ EXT of 2 sectors at LBA 0
	f.Add(linuxIdentifyRequest[aoe.FrameHeaderLen:])                                                                   // the kernel's IDENTIFY, lba3 0xa0
	f.Add(writeRequest(2, 0x1c000)[aoe.FrameHeaderLen:])                                                               // a WRITE EXT of 2 sectors with its data
	f.Add(append([]byte{0x41, 0x00, 0x00, 0x40, 0x00, 0xc0, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00}, make([]byte, 24)...)) // vblade's write reply: DRDY, padded to a 60-byte frame
	f.Add([]byte{0x01, 0x00, 0x01, 0x30, 0x78, 0x56, 0x34, 0xe2, 0x00, 0x00, 0x00, 0x00})                              // an LBA28 WRITE, 0xe0 in lba3
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})                              // all ones: every flag, LBA 2^48-1, reserved bytes set
	f.Add([]byte{0x40, 0x00, 0x02, 0x24, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00})                                    // one byte short
	f.Add([]byte{})                                                                                                    // nothing

	f.Fuzz(func(t *testing.T, b []byte) { roundTripATA(t, b) })
}

func FuzzConfig(f *testing.F) {
	f.Add(make([]byte, aoe.ConfigArgLen))                                        // the kernel's all-zero query
	f.Add([]byte{0x00, 0x10, 0x40, 0x19, 0x02, 0x10, 0x00, 0x00})                // vblade's reply at MTU 1500
	f.Add([]byte{0x00, 0x10, 0x40, 0x19, 0x11, 0x10, 0x00, 0x00})                // vblade's reply at MTU 9000
	f.Add(aoecfgQuery())                                                         // aoecfg's test query: version nibble 0, 1024 bytes of string buffer
	f.Add(configArg(0x13, 5, []byte("hello\x00\x00\x00")))                       // a set with a string and padding
	f.Add(configArg(0x14, 1024, bytes.Repeat([]byte{'x'}, 1024)))                // the longest string
	f.Add(configArg(0x14, 1025, bytes.Repeat([]byte{'x'}, 1025)))                // one byte too long
	f.Add(configArg(0x10, 6, []byte("hello")))                                   // length past the end
	f.Add(configArg(0x1f, 0, nil))                                               // sub-command 15
	f.Add([]byte{0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00})                      // one byte short
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xf4, 0x00, 0x01, 'z', 'z', 'z'}) // version 15, force set, trailing bytes

	f.Fuzz(func(t *testing.T, b []byte) { roundTripConfig(t, b) })
}

func FuzzMacMask(f *testing.F) {
	f.Add([]byte{0x00, 0x00, 0x00, 0x00})                                                             // read
	f.Add(maskEdit)                                                                                   // an edit: add one MAC, delete another
	f.Add([]byte{0xff, 0x01, 0x03, 0x01, 0xff, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00}) // list-full reply, reserved bytes set, padding
	f.Add(append([]byte{0x00, 0x01, 0x00, 0xff}, make([]byte, 255*aoe.DirectiveLen)...))              // 255 directives
	f.Add(append([]byte{0x00, 0x01, 0x00, 0xff}, make([]byte, 254*aoe.DirectiveLen)...))              // DirCount 255, 254 directives
	f.Add([]byte{0x00, 0x00, 0x00})                                                                   // one byte short

	f.Fuzz(func(t *testing.T, b []byte) { roundTripMacMask(t, b) })
}

func FuzzReserve(f *testing.F) {
	f.Add([]byte{0x00, 0x00})                                                 // read
	f.Add(reserveSet)                                                         // set two MACs
	f.Add([]byte{0x02, 0x01, 0x02, 0x52, 0x08, 0x80, 0x4f, 0x18, 0x00, 0x00}) // force set, padded
	f.Add(append([]byte{0x01, 0xff}, make([]byte, 255*6)...))                 // 255 addresses
	f.Add(append([]byte{0x01, 0xff}, make([]byte, 254*6+5)...))               // NMacs 255, one byte short
	f.Add([]byte{0x09})                                                       // one byte short

	f.Fuzz(func(t *testing.T, b []byte) { roundTripReserve(t, b) })
}

// roundTripATA parses b as an ATA argument and checks the round trips.
func roundTripATA(t *testing.T, b []byte) {
	t.Helper()
	a, err := aoe.ParseATA(b)
	if err != nil {
		checkFuzzErr(t, "ParseATA", err)
		return
	}
	if a.LBA > aoe.MaxLBA48 {
		t.Fatalf("ParseATA: LBA %#x over 48 bits", a.LBA)
	}
	out, err := a.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary of a parsed argument: %v", err)
	}
	// The input comes back but for the reserved bytes, which are zeroed.
	want := bytes.Clone(b)
	want[10], want[11] = 0, 0
	if !bytes.Equal(want, out) {
		t.Fatalf("MarshalBinary (-input +marshalled):\n%s", cmp.Diff(want, out))
	}
	hdr, err := a.AppendHeader(nil)
	if err != nil || !bytes.Equal(hdr, out[:aoe.ATAArgLen]) {
		t.Fatalf("AppendHeader: %v\n%s", err, cmp.Diff(out[:aoe.ATAArgLen], hdr))
	}
	a2, err := aoe.ParseATA(out)
	if err != nil {
		t.Fatalf("ParseATA of a marshalled argument: %v", err)
	}
	if !equalATA(a, a2) {
		t.Fatalf("ATA round trip (-first +second):\n%s", cmp.Diff(a, a2, diffOpts))
	}
	out2, err := a2.MarshalBinary()
	if err != nil || !bytes.Equal(out, out2) {
		t.Fatalf("second MarshalBinary: %v\n%s", err, cmp.Diff(out, out2))
	}
}

// roundTripConfig parses b as a Query Config argument and checks the
// round trips.
func roundTripConfig(t *testing.T, b []byte) {
	t.Helper()
	c, err := aoe.ParseConfig(b)
	if err != nil {
		checkFuzzErr(t, "ParseConfig", err)
		return
	}
	if len(c.String) > aoe.MaxConfigStringLen || c.Version > 0xf || c.Command > aoe.ConfigForceSet {
		t.Fatalf("ParseConfig returned an out-of-range value without an error: %+v", c)
	}
	out, err := c.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary of a parsed argument: %v", err)
	}
	// The argument comes back exactly; the bytes after the string do not.
	if want := b[:aoe.ConfigArgLen+len(c.String)]; !bytes.Equal(want, out) {
		t.Fatalf("MarshalBinary (-input +marshalled):\n%s", cmp.Diff(want, out))
	}
	c2, err := aoe.ParseConfig(out)
	if err != nil {
		t.Fatalf("ParseConfig of a marshalled argument: %v", err)
	}
	if !equalConfig(c, c2) {
		t.Fatalf("Config round trip (-first +second):\n%s", cmp.Diff(c, c2, diffOpts))
	}
	out2, err := c2.MarshalBinary()
	if err != nil || !bytes.Equal(out, out2) {
		t.Fatalf("second MarshalBinary: %v\n%s", err, cmp.Diff(out, out2))
	}
}

// roundTripMacMask parses b as a Mac Mask List argument and checks the
// round trips.
func roundTripMacMask(t *testing.T, b []byte) {
	t.Helper()
	m, err := aoe.ParseMacMask(b)
	if err != nil {
		checkFuzzErr(t, "ParseMacMask", err)
		return
	}
	if len(m.Directives) != int(b[3]) {
		t.Fatalf("ParseMacMask: %d directives, DirCount %d", len(m.Directives), b[3])
	}
	out, err := m.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary of a parsed argument: %v", err)
	}
	// The argument comes back with its reserved bytes zeroed; the bytes
	// after the directives do not.
	want := bytes.Clone(b[:aoe.MacMaskArgLen+len(m.Directives)*aoe.DirectiveLen])
	want[0] = 0
	for i := aoe.MacMaskArgLen; i < len(want); i += aoe.DirectiveLen {
		want[i] = 0
	}
	if !bytes.Equal(want, out) {
		t.Fatalf("MarshalBinary (-input +marshalled):\n%s", cmp.Diff(want, out))
	}
	m2, err := aoe.ParseMacMask(out)
	if err != nil {
		t.Fatalf("ParseMacMask of a marshalled argument: %v", err)
	}
	if !equalMacMask(m, m2) {
		t.Fatalf("MacMask round trip (-first +second):\n%s", cmp.Diff(m, m2, diffOpts))
	}
	out2, err := m2.MarshalBinary()
	if err != nil || !bytes.Equal(out, out2) {
		t.Fatalf("second MarshalBinary: %v\n%s", err, cmp.Diff(out, out2))
	}
}

// roundTripReserve parses b as a Reserve/Release argument and checks the
// round trips.
func roundTripReserve(t *testing.T, b []byte) {
	t.Helper()
	r, err := aoe.ParseReserve(b)
	if err != nil {
		checkFuzzErr(t, "ParseReserve", err)
		return
	}
	if len(r.MACs) != int(b[1]) {
		t.Fatalf("ParseReserve: %d addresses, NMacs %d", len(r.MACs), b[1])
	}
	out, err := r.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary of a parsed argument: %v", err)
	}
	// The argument comes back exactly; the bytes after the list do not.
	if want := b[:aoe.ReserveArgLen+6*len(r.MACs)]; !bytes.Equal(want, out) {
		t.Fatalf("MarshalBinary (-input +marshalled):\n%s", cmp.Diff(want, out))
	}
	r2, err := aoe.ParseReserve(out)
	if err != nil {
		t.Fatalf("ParseReserve of a marshalled argument: %v", err)
	}
	if !equalReserve(r, r2) {
		t.Fatalf("Reserve round trip (-first +second):\n%s", cmp.Diff(r, r2, diffOpts))
	}
	out2, err := r2.MarshalBinary()
	if err != nil || !bytes.Equal(out, out2) {
		t.Fatalf("second MarshalBinary: %v\n%s", err, cmp.Diff(out, out2))
	}
}

// TestEqualFuncsCoverEveryField guards the equal functions above against
// a field added to a type they compare.
func TestEqualFuncsCoverEveryField(t *testing.T) {
	for _, tt := range []struct {
		typ    reflect.Type
		fields int // the number of fields the equal function compares
	}{
		{reflect.TypeFor[aoe.Frame](), 4},
		{reflect.TypeFor[aoe.Header](), 7}, // compared with ==
		{reflect.TypeFor[aoe.ATA](), 6},
		{reflect.TypeFor[aoe.Config](), 6},
		{reflect.TypeFor[aoe.MacMask](), 3},
		{reflect.TypeFor[aoe.Directive](), 2}, // compared with ==
		{reflect.TypeFor[aoe.Reserve](), 2},
	} {
		if n := tt.typ.NumField(); n != tt.fields {
			t.Errorf("%v has %d fields, the fuzz tests' equal function compares %d: update it", tt.typ, n, tt.fields)
		}
	}
}
