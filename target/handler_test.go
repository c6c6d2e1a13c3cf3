package target

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/aoetarget/aoetarget/aoe"
	"github.com/aoetarget/aoetarget/blockstore"
)

var (
	targetMAC = aoe.MAC{0x02, 0, 0, 0, 0, 0x01}
	hostA     = aoe.MAC{0x02, 0, 0, 0, 0, 0xaa}
	hostB     = aoe.MAC{0x02, 0, 0, 0, 0, 0xbb}
	port1500  = Port{MAC: targetMAC, MTU: 1500}
	port9000  = Port{MAC: targetMAC, MTU: 9000}
)

const testSectors = 1024

// newTestHandler returns a handler for e1.2 over a fresh in-memory store.
func newTestHandler(t testing.TB, cfg Config) (*Handler, *blockstore.Memory) {
	t.Helper()
	mem := blockstore.NewMemory(testSectors)
	if cfg.Major == 0 && cfg.Minor == 0 {
		cfg.Major, cfg.Minor = 1, 2
	}
	h, err := NewHandler(cfg, mem)
	if err != nil {
		t.Fatal(err)
	}
	return h, mem
}

// request builds a request frame from src to the target.
func request(src aoe.MAC, hdr aoe.Header, arg []byte) []byte {
	if hdr.Version == 0 {
		hdr.Version = aoe.Version
	}
	f := aoe.Frame{Dst: targetMAC, Src: src, Header: hdr, Arg: arg}
	b, err := f.MarshalBinary()
	if err != nil {
		panic(err)
	}
	return b
}

func ataRequest(src aoe.MAC, tag uint32, a aoe.ATA) []byte {
	arg, err := a.MarshalBinary()
	if err != nil {
		panic(err)
	}
	return request(src, aoe.Header{Major: 1, Minor: 2, Command: aoe.CommandATA, Tag: tag}, arg)
}

func marshal(m interface{ MarshalBinary() ([]byte, error) }) []byte {
	b, err := m.MarshalBinary()
	if err != nil {
		panic(err)
	}
	return b
}

// do runs one request through h and parses the reply.
func do(t testing.TB, h *Handler, p Port, req []byte) (aoe.Frame, Verdict) {
	t.Helper()
	resp := make([]byte, p.MTU+aoe.EthernetHeaderLen)
	n, v := h.Handle(p, req, resp)
	if v != Reply {
		if n != 0 {
			t.Fatalf("verdict %v with %d bytes", v, n)
		}
		return aoe.Frame{}, v
	}
	if n > p.MTU+aoe.EthernetHeaderLen || n < MinFrameLen {
		t.Fatalf("reply of %d bytes: exceeds MTU %d or shorter than %d", n, p.MTU, MinFrameLen)
	}
	f, err := aoe.ParseFrame(resp[:n])
	if err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	rf, _ := aoe.ParseFrame(req)
	if f.Header.Tag != rf.Header.Tag || f.Header.Command != rf.Header.Command {
		t.Fatalf("reply tag/command %#x/%v, request %#x/%v", f.Header.Tag, f.Header.Command, rf.Header.Tag, rf.Header.Command)
	}
	if !f.Header.Response() || f.Header.Version != aoe.Version || f.Header.Major != 1 || f.Header.Minor != 2 {
		t.Fatalf("bad reply header %+v", f.Header)
	}
	if f.Dst != rf.Src || f.Src != p.MAC {
		t.Fatalf("reply addressed %v from %v", f.Dst, f.Src)
	}
	return f, v
}

func doATA(t testing.TB, h *Handler, p Port, src aoe.MAC, a aoe.ATA) (aoe.ATA, aoe.Frame) {
	t.Helper()
	f, v := do(t, h, p, ataRequest(src, 0x1234, a))
	if v != Reply {
		t.Fatalf("verdict %v, want reply", v)
	}
	if f.Header.Flags&aoe.FlagError != 0 {
		t.Fatalf("AoE error %v", f.Header.Error)
	}
	r, err := aoe.ParseATA(f.Arg)
	if err != nil {
		t.Fatal(err)
	}
	return r, f
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed
	}
	return b
}

func TestATA(t *testing.T) {
	const statusErr = aoe.ATAStatusDRDY | aoe.ATAStatusERR
	tests := []struct {
		name       string
		port       Port
		ata        aoe.ATA
		readOnly   bool
		status     uint8
		errReg     uint8
		dataLen    int
		sectorsOut uint8
	}{
		{name: "read ext 2 sectors", port: port1500, ata: aoe.ATA{Flags: aoe.ATAExtended, SectorCount: 2, CmdStatus: aoe.ATAReadSectorsExt, LBA: 10}, status: 0x40, dataLen: 1024},
		{name: "read 28 masks lba", port: port1500, ata: aoe.ATA{SectorCount: 1, CmdStatus: aoe.ATAReadSectors, LBA: 0xe0<<24 | 5}, status: 0x40, dataLen: 512},
		{name: "read jumbo 17", port: port9000, ata: aoe.ATA{Flags: aoe.ATAExtended, SectorCount: 17, CmdStatus: aoe.ATAReadSectorsExt}, status: 0x40, dataLen: 17 * 512},
		{name: "read 3 at MTU 1500 does not fit", port: port1500, ata: aoe.ATA{Flags: aoe.ATAExtended, SectorCount: 3, CmdStatus: aoe.ATAReadSectorsExt}, status: statusErr, errReg: aoe.ATAErrorABRT},
		{name: "read last sector", port: port1500, ata: aoe.ATA{Flags: aoe.ATAExtended, SectorCount: 1, CmdStatus: aoe.ATAReadSectorsExt, LBA: testSectors - 1}, status: 0x40, dataLen: 512},
		{name: "read across end", port: port1500, ata: aoe.ATA{Flags: aoe.ATAExtended, SectorCount: 2, CmdStatus: aoe.ATAReadSectorsExt, LBA: testSectors - 1}, status: statusErr, errReg: aoe.ATAErrorIDNF},
		{name: "read past end", port: port1500, ata: aoe.ATA{Flags: aoe.ATAExtended, SectorCount: 1, CmdStatus: aoe.ATAReadSectorsExt, LBA: testSectors}, status: statusErr, errReg: aoe.ATAErrorIDNF},
		{name: "read at 2^48-1", port: port1500, ata: aoe.ATA{Flags: aoe.ATAExtended, SectorCount: 2, CmdStatus: aoe.ATAReadSectorsExt, LBA: aoe.MaxLBA48}, status: statusErr, errReg: aoe.ATAErrorIDNF},
		{name: "read zero sectors", port: port1500, ata: aoe.ATA{Flags: aoe.ATAExtended, CmdStatus: aoe.ATAReadSectorsExt}, status: 0x40},
		{name: "identify", port: port1500, ata: aoe.ATA{SectorCount: 1, CmdStatus: aoe.ATAIdentifyDevice, LBA: 0xa0 << 24}, status: 0x40, dataLen: 512},
		{name: "check power mode", port: port1500, ata: aoe.ATA{CmdStatus: aoe.ATACheckPowerMode}, status: 0x40, sectorsOut: 0xff},
		{name: "flush cache", port: port1500, ata: aoe.ATA{CmdStatus: aoe.ATAFlushCache}, status: 0x40},
		{name: "flush cache ext", port: port1500, ata: aoe.ATA{CmdStatus: aoe.ATAFlushCacheExt}, status: 0x40},
		{name: "smart is aborted", port: port1500, ata: aoe.ATA{CmdStatus: 0xb0, ErrFeature: 0xd0}, status: statusErr, errReg: aoe.ATAErrorABRT},
		{name: "set features is aborted", port: port1500, ata: aoe.ATA{CmdStatus: 0xef}, status: statusErr, errReg: aoe.ATAErrorABRT},
		{name: "write ext", port: port1500, ata: aoe.ATA{Flags: aoe.ATAExtended | aoe.ATAWrite, SectorCount: 2, CmdStatus: aoe.ATAWriteSectorsExt, LBA: 8, Data: pattern(1024, 1)}, status: 0x40},
		{name: "write short data", port: port1500, ata: aoe.ATA{Flags: aoe.ATAExtended | aoe.ATAWrite, SectorCount: 2, CmdStatus: aoe.ATAWriteSectorsExt, LBA: 8, Data: pattern(1000, 1)}, status: statusErr, errReg: aoe.ATAErrorABRT},
		{name: "write past end", port: port1500, ata: aoe.ATA{Flags: aoe.ATAExtended | aoe.ATAWrite, SectorCount: 2, CmdStatus: aoe.ATAWriteSectorsExt, LBA: testSectors - 1, Data: pattern(1024, 1)}, status: statusErr, errReg: aoe.ATAErrorIDNF},
		{name: "write read-only", port: port1500, readOnly: true, ata: aoe.ATA{Flags: aoe.ATAExtended | aoe.ATAWrite, SectorCount: 1, CmdStatus: aoe.ATAWriteSectorsExt, Data: pattern(512, 1)}, status: statusErr, errReg: aoe.ATAErrorABRT},
		{name: "read read-only", port: port1500, readOnly: true, ata: aoe.ATA{Flags: aoe.ATAExtended, SectorCount: 1, CmdStatus: aoe.ATAReadSectorsExt}, status: 0x40, dataLen: 512},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, mem := newTestHandler(t, Config{})
			mem.SetReadOnly(tt.readOnly)
			before := mem.Bytes()
			r, f := doATA(t, h, tt.port, hostA, tt.ata)
			if r.CmdStatus != tt.status || r.ErrFeature != tt.errReg {
				t.Fatalf("status %#x error %#x, want %#x %#x", r.CmdStatus, r.ErrFeature, tt.status, tt.errReg)
			}
			if got := len(f.Arg) - aoe.ATAArgLen; got != tt.dataLen && (tt.dataLen != 0 || got != MinFrameLen-aoe.FrameHeaderLen-aoe.ATAArgLen) {
				t.Fatalf("reply carries %d data bytes, want %d (or padding to %d)", got, tt.dataLen, MinFrameLen)
			}
			want := tt.ata.SectorCount
			if tt.sectorsOut != 0 {
				want = tt.sectorsOut
			}
			if r.SectorCount != want || r.LBA != tt.ata.LBA || r.Flags != tt.ata.Flags {
				t.Fatalf("reply argument %+v does not echo request %+v", r, tt.ata)
			}
			if tt.status&aoe.ATAStatusERR != 0 || tt.ata.CmdStatus != aoe.ATAWriteSectorsExt {
				if !bytes.Equal(before, mem.Bytes()) {
					t.Fatal("store changed")
				}
			}
		})
	}
}

func TestWriteThenRead(t *testing.T) {
	for _, p := range []Port{port1500, port9000} {
		t.Run(fmt.Sprint(p.MTU), func(t *testing.T) {
			h, mem := newTestHandler(t, Config{})
			n := MaxSectors(p.MTU)
			data := pattern(n*512, 9)
			r, _ := doATA(t, h, p, hostA, aoe.ATA{Flags: aoe.ATAExtended | aoe.ATAWrite, SectorCount: uint8(n), CmdStatus: aoe.ATAWriteSectorsExt, LBA: 100, Data: data})
			if r.CmdStatus != 0x40 {
				t.Fatalf("write status %#x", r.CmdStatus)
			}
			if got := mem.Bytes()[100*512 : 100*512+len(data)]; !bytes.Equal(got, data) {
				t.Fatal("store does not hold the written data")
			}
			if !bytes.Equal(mem.Stable()[100*512:100*512+len(data)], data) {
				t.Fatal("write acknowledged before it was flushed")
			}
			r, _ = doATA(t, h, p, hostA, aoe.ATA{Flags: aoe.ATAExtended, SectorCount: uint8(n), CmdStatus: aoe.ATAReadSectorsExt, LBA: 100})
			if !bytes.Equal(r.Data, data) {
				t.Fatal("read back differs")
			}
			// The same sectors through LBA28 commands.
			r, _ = doATA(t, h, p, hostA, aoe.ATA{SectorCount: uint8(n), CmdStatus: aoe.ATAReadSectors, LBA: 0xe0<<24 | 100})
			if !bytes.Equal(r.Data, data) {
				t.Fatal("LBA28 read back differs")
			}
		})
	}
}

func TestDurability(t *testing.T) {
	write := aoe.ATA{Flags: aoe.ATAExtended | aoe.ATAWrite, SectorCount: 1, CmdStatus: aoe.ATAWriteSectorsExt, LBA: 3, Data: pattern(512, 3)}
	tests := []struct {
		name        string
		writeback   bool
		durable     bool
		wantFlushes int
	}{
		{name: "default flushes each write", wantFlushes: 1},
		{name: "durable store needs no flush", durable: true, wantFlushes: 0},
		{name: "writeback does not flush", writeback: true, wantFlushes: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, mem := newTestHandler(t, Config{Writeback: tt.writeback})
			mem.SetDurable(tt.durable)
			r, _ := doATA(t, h, port1500, hostA, write)
			if r.CmdStatus != 0x40 {
				t.Fatalf("status %#x", r.CmdStatus)
			}
			if got := mem.Flushes(); got != tt.wantFlushes {
				t.Fatalf("%d flushes, want %d", got, tt.wantFlushes)
			}
			stable := bytes.Equal(mem.Stable()[3*512:4*512], write.Data)
			if want := !tt.writeback; stable != want {
				t.Fatalf("data stable at acknowledgement: %v, want %v", stable, want)
			}
		})
	}
}

func TestStoreErrors(t *testing.T) {
	eio := errors.New("EIO")
	read := aoe.ATA{Flags: aoe.ATAExtended, SectorCount: 1, CmdStatus: aoe.ATAReadSectorsExt}
	write := aoe.ATA{Flags: aoe.ATAExtended | aoe.ATAWrite, SectorCount: 1, CmdStatus: aoe.ATAWriteSectorsExt, Data: pattern(512, 0)}
	flush := aoe.ATA{CmdStatus: aoe.ATAFlushCacheExt}
	tests := []struct {
		name   string
		inject func(*blockstore.Memory)
		ata    aoe.ATA
	}{
		{"read error", func(m *blockstore.Memory) { m.SetReadErr(eio) }, read},
		{"write error", func(m *blockstore.Memory) { m.SetWriteErr(eio) }, write},
		{"EIO on read", func(m *blockstore.Memory) { m.SetReadErr(syscall.EIO) }, read},
		{"short read (file shrank)", func(m *blockstore.Memory) { m.SetReadErr(io.ErrUnexpectedEOF) }, read},
		{"ENOSPC on write", func(m *blockstore.Memory) { m.SetWriteErr(syscall.ENOSPC) }, write},
		{"EIO on write", func(m *blockstore.Memory) { m.SetWriteErr(syscall.EIO) }, write},
		{"flush error fails the write", func(m *blockstore.Memory) { m.SetFlushErr(eio) }, write},
		{"flush error", func(m *blockstore.Memory) { m.SetFlushErr(eio) }, flush},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, mem := newTestHandler(t, Config{})
			tt.inject(mem)
			r, f := doATA(t, h, port1500, hostA, tt.ata)
			if r.CmdStatus&aoe.ATAStatusERR == 0 || f.Header.Flags&aoe.FlagError != 0 {
				t.Fatalf("status %#x flags %#x: want an ATA error, not an AoE error", r.CmdStatus, f.Header.Flags)
			}
			wantErr := uint8(aoe.ATAErrorABRT) // command aborted
			if tt.ata.CmdStatus == aoe.ATAReadSectorsExt {
				wantErr |= aoe.ATAErrorUNC // and uncorrectable data
			}
			if r.ErrFeature != wantErr {
				t.Fatalf("error register %#x, want %#x", r.ErrFeature, wantErr)
			}
			if len(r.Data) != 0 && !bytes.Equal(r.Data, make([]byte, len(r.Data))) {
				t.Fatalf("failed command carries %d data bytes", len(r.Data))
			}
			if h.Stats().IOErrors.Load() != 1 {
				t.Fatalf("IOErrors = %d", h.Stats().IOErrors.Load())
			}
		})
	}
}

func TestIdentify(t *testing.T) {
	h, _ := newTestHandler(t, Config{Hostname: "replica1"})
	r, _ := doATA(t, h, port1500, hostA, aoe.ATA{SectorCount: 1, CmdStatus: aoe.ATAIdentifyDevice})
	id, ok := aoe.ParseIdentity(r.Data)
	if !ok {
		t.Fatal("short identify")
	}
	want := aoe.Identity{Sectors: testSectors, Serial: "1.2:replica1", Firmware: "aoet1", Model: "aoetarget"}
	if diff := cmp.Diff(want, id); diff != "" {
		t.Fatalf("identity (-want +got):\n%s", diff)
	}
}

func TestDefaultSerial(t *testing.T) {
	a := DefaultSerial(1, 0, "a-very-long-hostname.example.org")
	b := DefaultSerial(1, 0, "a-very-long-hostname.example.net")
	if len(a) > 20 || len(b) > 20 || a == b {
		t.Fatalf("serials %q %q: want distinct and at most 20 characters", a, b)
	}
	if DefaultSerial(65534, 254, "h") != "65534.254:h" {
		t.Fatal(DefaultSerial(65534, 254, "h"))
	}
}

func TestDrops(t *testing.T) {
	h, _ := newTestHandler(t, Config{})
	read := marshal(aoe.ATA{Flags: aoe.ATAExtended, SectorCount: 1, CmdStatus: aoe.ATAReadSectorsExt})
	valid := request(hostA, aoe.Header{Major: 1, Minor: 2, Command: aoe.CommandATA}, read)
	tests := []struct {
		name string
		req  []byte
		want Verdict
	}{
		{"empty", nil, DropMalformed},
		{"ethernet only", valid[:14], DropMalformed},
		{"header cut", valid[:aoe.FrameHeaderLen-1], DropMalformed},
		{"other ethertype", append(append(append([]byte{}, valid[:12]...), 0x08, 0x00), valid[14:]...), DropMalformed},
		{"response flag", request(hostA, aoe.Header{Flags: aoe.FlagResponse, Major: 1, Minor: 2}, read), DropResponse},
		{"response with error", request(hostA, aoe.Header{Flags: aoe.FlagResponse | aoe.FlagError, Major: 1, Minor: 2}, read), DropResponse},
		{"other shelf", request(hostA, aoe.Header{Major: 2, Minor: 2}, read), DropNotAddressed},
		{"other slot", request(hostA, aoe.Header{Major: 1, Minor: 3}, read), DropNotAddressed},
		{"broadcast source", request(aoe.BroadcastMAC, aoe.Header{Major: 1, Minor: 2}, read), DropBadSource},
		{"multicast source", request(aoe.MAC{0x01, 0, 0x5e, 0, 0, 1}, aoe.Header{Major: 1, Minor: 2}, read), DropBadSource},
		{"zero source", request(aoe.MAC{}, aoe.Header{Major: 1, Minor: 2}, read), DropBadSource},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, v := do(t, h, port1500, tt.req); v != tt.want {
				t.Fatalf("verdict %v, want %v", v, tt.want)
			}
		})
	}
}

func TestAoEErrors(t *testing.T) {
	h, _ := newTestHandler(t, Config{})
	tests := []struct {
		name string
		req  []byte
		want aoe.Error
	}{
		{"version 2", request(hostA, aoe.Header{Version: 2, Major: 1, Minor: 2, Command: aoe.CommandQueryConfig}, make([]byte, 8)), aoe.ErrorUnsupportedVersion},
		{"version 0", request(hostA, aoe.Header{Version: 15, Major: 1, Minor: 2}, nil), aoe.ErrorUnsupportedVersion},
		{"command 4", request(hostA, aoe.Header{Major: 1, Minor: 2, Command: 4}, nil), aoe.ErrorUnrecognizedCommand},
		{"vendor command", request(hostA, aoe.Header{Major: 1, Minor: 2, Command: 0xf0}, nil), aoe.ErrorUnrecognizedCommand},
		{"short ATA", request(hostA, aoe.Header{Major: 1, Minor: 2, Command: aoe.CommandATA}, make([]byte, 11)), aoe.ErrorBadArgument},
		{"short config", request(hostA, aoe.Header{Major: 1, Minor: 2, Command: aoe.CommandQueryConfig}, make([]byte, 7)), aoe.ErrorBadArgument},
		{"config string 1025", request(hostA, aoe.Header{Major: 1, Minor: 2, Command: aoe.CommandQueryConfig}, append([]byte{0, 0, 0, 0, 0, 4, 0x04, 0x01}, make([]byte, 1025)...)), aoe.ErrorBadArgument},
		{"config string past frame", request(hostA, aoe.Header{Major: 1, Minor: 2, Command: aoe.CommandQueryConfig}, []byte{0, 0, 0, 0, 0, 4, 0, 10, 'a'}), aoe.ErrorBadArgument},
		{"config sub-command 5", request(hostA, aoe.Header{Major: 1, Minor: 2, Command: aoe.CommandQueryConfig}, []byte{0, 0, 0, 0, 0, 5, 0, 0}), aoe.ErrorBadArgument},
		{"mask command 2", request(hostA, aoe.Header{Major: 1, Minor: 2, Command: aoe.CommandMacMask}, []byte{0, 2, 0, 0}), aoe.ErrorBadArgument},
		{"mask directives past frame", request(hostA, aoe.Header{Major: 1, Minor: 2, Command: aoe.CommandMacMask}, []byte{0, 1, 0, 2, 0, 1, 1, 2, 3, 4, 5, 6}), aoe.ErrorBadArgument},
		{"reserve command 3", request(hostA, aoe.Header{Major: 1, Minor: 2, Command: aoe.CommandReserve}, []byte{3, 0}), aoe.ErrorBadArgument},
		{"reserve list past frame", request(hostA, aoe.Header{Major: 1, Minor: 2, Command: aoe.CommandReserve}, []byte{1, 2, 1, 2, 3, 4, 5, 6}), aoe.ErrorBadArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, v := do(t, h, port1500, tt.req)
			if v != Reply {
				t.Fatalf("verdict %v", v)
			}
			if f.Header.Flags&aoe.FlagError == 0 || f.Header.Error != tt.want {
				t.Fatalf("flags %#x error %v, want %v", f.Header.Flags, f.Header.Error, tt.want)
			}
		})
	}
}

func TestBroadcastAddressing(t *testing.T) {
	h, _ := newTestHandler(t, Config{})
	for _, hdr := range []aoe.Header{{Major: 0xffff, Minor: 0xff}, {Major: 1, Minor: 0xff}, {Major: 0xffff, Minor: 2}} {
		hdr.Command = aoe.CommandQueryConfig
		hdr.Tag = 77
		f, v := do(t, h, port1500, request(hostA, hdr, make([]byte, 8)))
		if v != Reply {
			t.Fatalf("%d.%d: verdict %v", hdr.Major, hdr.Minor, v)
		}
		// do checks that the reply carries our own address, 1.2.
		_ = f
	}
}

func configRequest(src aoe.MAC, cmd aoe.ConfigCommand, s string) []byte {
	return request(src, aoe.Header{Major: 1, Minor: 2, Command: aoe.CommandQueryConfig, Tag: 5},
		marshal(aoe.Config{Command: cmd, String: []byte(s)}))
}

func TestQueryConfig(t *testing.T) {
	type step struct {
		cmd     aoe.ConfigCommand
		s       string
		noReply bool
		err     aoe.Error
		want    string // the string in the reply
	}
	tests := []struct {
		name  string
		init  string
		steps []step
	}{
		{"read empty", "", []step{{cmd: aoe.ConfigRead}}},
		{"read", "abc", []step{{cmd: aoe.ConfigRead, want: "abc"}}},
		{"test match", "abc", []step{{cmd: aoe.ConfigTest, s: "abc", want: "abc"}}},
		{"test mismatch", "abc", []step{{cmd: aoe.ConfigTest, s: "ab", noReply: true}}},
		{"prefix match", "abcdef", []step{{cmd: aoe.ConfigTestPrefix, s: "abc", want: "abcdef"}}},
		{"empty prefix matches", "abc", []step{{cmd: aoe.ConfigTestPrefix, s: "", want: "abc"}}},
		{"prefix mismatch", "abc", []step{{cmd: aoe.ConfigTestPrefix, s: "abcd", noReply: true}}},
		{"set when empty", "", []step{{cmd: aoe.ConfigSet, s: "x", want: "x"}, {cmd: aoe.ConfigRead, want: "x"}}},
		{"set when present", "abc", []step{{cmd: aoe.ConfigSet, s: "x", err: aoe.ErrorConfigStringPresent, want: "abc"}, {cmd: aoe.ConfigRead, want: "abc"}}},
		{"set same string", "abc", []step{{cmd: aoe.ConfigSet, s: "abc", want: "abc"}}},
		{"force set", "abc", []step{{cmd: aoe.ConfigForceSet, s: "x", want: "x"}, {cmd: aoe.ConfigTest, s: "x", want: "x"}}},
		{"force set 1024", "", []step{{cmd: aoe.ConfigForceSet, s: string(pattern(1024, 0)), want: string(pattern(1024, 0))}}},
		{"force set empty", "abc", []step{{cmd: aoe.ConfigForceSet, s: "", want: ""}, {cmd: aoe.ConfigSet, s: "y", want: "y"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var changes []State
			h, _ := newTestHandler(t, Config{ConfigString: []byte(tt.init), BufferCount: 24,
				OnStateChange: func(s State) { changes = append(changes, s) }})
			for i, s := range tt.steps {
				p := port1500
				f, v := do(t, h, p, configRequest(hostA, s.cmd, s.s))
				if s.noReply {
					if v != DropNoMatch {
						t.Fatalf("step %d: verdict %v, want no reply", i, v)
					}
					continue
				}
				if v != Reply {
					t.Fatalf("step %d: verdict %v", i, v)
				}
				if s.err != 0 && (f.Header.Flags&aoe.FlagError == 0 || f.Header.Error != s.err) {
					t.Fatalf("step %d: error %v, want %v", i, f.Header.Error, s.err)
				}
				if s.err == 0 && f.Header.Flags&aoe.FlagError != 0 {
					t.Fatalf("step %d: unexpected error %v", i, f.Header.Error)
				}
				c, err := aoe.ParseConfig(f.Arg)
				if err != nil {
					t.Fatal(err)
				}
				want := aoe.Config{BufferCount: 24, FirmwareVersion: FirmwareVersion, SectorCount: uint8(MaxSectors(p.MTU)),
					Version: 1, Command: s.cmd, String: []byte(s.want)}
				if diff := cmp.Diff(want, c, cmp.Comparer(bytes.Equal)); diff != "" {
					t.Fatalf("step %d: reply (-want +got):\n%s", i, diff)
				}
			}
			if got := string(h.State().ConfigString); len(changes) > 0 && string(changes[len(changes)-1].ConfigString) != got {
				t.Fatalf("last change %q, state %q", changes[len(changes)-1].ConfigString, got)
			}
		})
	}
}

func TestMaxSectors(t *testing.T) {
	for mtu, want := range map[int]int{1500: 2, 9000: 17, 1036: 1, 35: 0, 1000000: 255, 4096: 7} {
		if got := MaxSectors(mtu); got != want {
			t.Errorf("MaxSectors(%d) = %d, want %d", mtu, got, want)
		}
	}
}

func maskRequest(src aoe.MAC, m aoe.MacMask) []byte {
	return request(src, aoe.Header{Major: 1, Minor: 2, Command: aoe.CommandMacMask, Tag: 9}, marshal(m))
}

func maskReply(t *testing.T, h *Handler, src aoe.MAC, m aoe.MacMask) aoe.MacMask {
	t.Helper()
	f, v := do(t, h, port1500, maskRequest(src, m))
	if v != Reply || f.Header.Flags&aoe.FlagError != 0 {
		t.Fatalf("verdict %v flags %#x", v, f.Header.Flags)
	}
	r, err := aoe.ParseMacMask(f.Arg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestMacMask(t *testing.T) {
	add := func(m aoe.MAC) aoe.Directive { return aoe.Directive{Command: aoe.DirectiveAdd, MAC: m} }
	del := func(m aoe.MAC) aoe.Directive { return aoe.Directive{Command: aoe.DirectiveDelete, MAC: m} }
	h, _ := newTestHandler(t, Config{})

	if r := maskReply(t, h, hostA, aoe.MacMask{Command: aoe.MaskRead}); len(r.Directives) != 0 {
		t.Fatalf("initial list %v", r.Directives)
	}
	// Add hostA (twice: idempotent) and hostB, delete hostB.
	r := maskReply(t, h, hostA, aoe.MacMask{Command: aoe.MaskEdit, Directives: []aoe.Directive{add(hostA), add(hostA), add(hostB), {}, del(hostB)}})
	if diff := cmp.Diff(aoe.MacMask{Command: aoe.MaskEdit, Directives: []aoe.Directive{add(hostA)}}, r); diff != "" {
		t.Fatalf("edit reply (-want +got):\n%s", diff)
	}
	// hostB is now masked out: every command is dropped, config included.
	if _, v := do(t, h, port1500, configRequest(hostB, aoe.ConfigRead, "")); v != DropMasked {
		t.Fatalf("masked config: verdict %v", v)
	}
	if _, v := do(t, h, port1500, ataRequest(hostB, 1, aoe.ATA{SectorCount: 1, CmdStatus: aoe.ATAIdentifyDevice})); v != DropMasked {
		t.Fatalf("masked identify: verdict %v", v)
	}
	// A bad directive stops the edit at its index; earlier ones stay applied.
	r = maskReply(t, h, hostA, aoe.MacMask{Command: aoe.MaskEdit, Directives: []aoe.Directive{add(hostB), {Command: 7, MAC: hostB}, del(hostB)}})
	if r.Error != aoe.MaskErrorBadDirective || len(r.Directives) != 1 {
		t.Fatalf("bad directive reply %+v", r)
	}
	if got := h.State().Masks; len(got) != 2 {
		t.Fatalf("mask list %v, want hostA and hostB", got)
	}
	// Fill the list: the 33rd entry fails with list full.
	var ds []aoe.Directive
	for i := 0; i < MaxMasks; i++ {
		ds = append(ds, add(aoe.MAC{0x02, 1, 0, 0, 0, byte(i)}))
	}
	r = maskReply(t, h, hostA, aoe.MacMask{Command: aoe.MaskEdit, Directives: ds})
	if r.Error != aoe.MaskErrorListFull || len(r.Directives) != MaxMasks-2 {
		t.Fatalf("list full reply: error %v after %d directives", r.Error, len(r.Directives))
	}
	if n := len(h.State().Masks); n != MaxMasks {
		t.Fatalf("%d masks", n)
	}
	// Emptying the list lets everyone in again.
	var dels []aoe.Directive
	for _, m := range h.State().Masks {
		dels = append(dels, del(m))
	}
	if r := maskReply(t, h, hostA, aoe.MacMask{Command: aoe.MaskEdit, Directives: dels}); len(r.Directives) != 0 {
		t.Fatalf("list after deleting all: %v", r.Directives)
	}
	if _, v := do(t, h, port1500, configRequest(hostB, aoe.ConfigRead, "")); v != Reply {
		t.Fatalf("after clearing: verdict %v", v)
	}
}

func TestInitialMask(t *testing.T) {
	h, _ := newTestHandler(t, Config{Masks: []aoe.MAC{hostB}})
	if _, v := do(t, h, port1500, configRequest(hostA, aoe.ConfigRead, "")); v != DropMasked {
		t.Fatalf("verdict %v", v)
	}
	if _, v := do(t, h, port1500, configRequest(hostB, aoe.ConfigRead, "")); v != Reply {
		t.Fatalf("verdict %v", v)
	}
	if got := h.AnnounceTo(); !cmp.Equal(got, []aoe.MAC{hostB}) {
		t.Fatalf("announce to %v", got)
	}
}

func reserveReply(t *testing.T, h *Handler, src aoe.MAC, r aoe.Reserve) (aoe.Reserve, aoe.Error) {
	t.Helper()
	f, v := do(t, h, port1500, request(src, aoe.Header{Major: 1, Minor: 2, Command: aoe.CommandReserve, Tag: 3}, marshal(r)))
	if v != Reply {
		t.Fatalf("verdict %v", v)
	}
	out, err := aoe.ParseReserve(f.Arg)
	if err != nil {
		t.Fatal(err)
	}
	if f.Header.Flags&aoe.FlagError == 0 {
		return out, 0
	}
	return out, f.Header.Error
}

func TestReserveRelease(t *testing.T) {
	h, _ := newTestHandler(t, Config{})
	read := aoe.ATA{Flags: aoe.ATAExtended, SectorCount: 1, CmdStatus: aoe.ATAReadSectorsExt}
	if r, e := reserveReply(t, h, hostA, aoe.Reserve{Command: aoe.ReserveSet, MACs: []aoe.MAC{hostA}}); e != 0 || !cmp.Equal(r.MACs, []aoe.MAC{hostA}) {
		t.Fatalf("set: %v %v", r, e)
	}
	// hostB: reads refused with error 6, IDENTIFY and config still served.
	f, _ := do(t, h, port1500, ataRequest(hostB, 1, read))
	if f.Header.Error != aoe.ErrorTargetReserved || f.Header.Flags&aoe.FlagError == 0 {
		t.Fatalf("reserved read from other host: %+v", f.Header)
	}
	if r, _ := doATA(t, h, port1500, hostB, aoe.ATA{SectorCount: 1, CmdStatus: aoe.ATAIdentifyDevice}); r.CmdStatus != 0x40 {
		t.Fatalf("identify while reserved: %#x", r.CmdStatus)
	}
	if _, v := do(t, h, port1500, configRequest(hostB, aoe.ConfigRead, "")); v != Reply {
		t.Fatal("config while reserved")
	}
	// hostA is served.
	if r, _ := doATA(t, h, port1500, hostA, read); r.CmdStatus != 0x40 {
		t.Fatalf("read by holder %#x", r.CmdStatus)
	}
	// hostB cannot set, can read the list, can force-set.
	if _, e := reserveReply(t, h, hostB, aoe.Reserve{Command: aoe.ReserveSet, MACs: []aoe.MAC{hostB}}); e != aoe.ErrorTargetReserved {
		t.Fatalf("set by other host: error %v", e)
	}
	if r, e := reserveReply(t, h, hostB, aoe.Reserve{Command: aoe.ReserveRead}); e != 0 || !cmp.Equal(r.MACs, []aoe.MAC{hostA}) {
		t.Fatalf("read: %v %v", r, e)
	}
	if r, e := reserveReply(t, h, hostB, aoe.Reserve{Command: aoe.ReserveForceSet, MACs: []aoe.MAC{hostB}}); e != 0 || !cmp.Equal(r.MACs, []aoe.MAC{hostB}) {
		t.Fatalf("force set: %v %v", r, e)
	}
	f, _ = do(t, h, port1500, ataRequest(hostA, 1, read))
	if f.Header.Error != aoe.ErrorTargetReserved {
		t.Fatalf("old holder after force set: %+v", f.Header)
	}
	// The holder releases with an empty set.
	if r, e := reserveReply(t, h, hostB, aoe.Reserve{Command: aoe.ReserveSet}); e != 0 || len(r.MACs) != 0 {
		t.Fatalf("release: %v %v", r, e)
	}
	if r, _ := doATA(t, h, port1500, hostA, read); r.CmdStatus != 0x40 {
		t.Fatalf("read after release %#x", r.CmdStatus)
	}
}

func TestAnnouncement(t *testing.T) {
	h, _ := newTestHandler(t, Config{BufferCount: 32, ConfigString: []byte("hi")})
	buf := make([]byte, 9014)
	n := h.Announcement(port9000, aoe.BroadcastMAC, buf)
	f, err := aoe.ParseFrame(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	c, err := aoe.ParseConfig(f.Arg)
	if err != nil {
		t.Fatal(err)
	}
	if f.Dst != aoe.BroadcastMAC || f.Src != targetMAC || !f.Header.Response() || f.Header.Major != 1 || f.Header.Minor != 2 ||
		f.Header.Command != aoe.CommandQueryConfig || c.BufferCount != 32 || c.SectorCount != 17 || string(c.String) != "hi" {
		t.Fatalf("announcement %+v %+v", f, c)
	}
}

func TestNewHandlerErrors(t *testing.T) {
	mem := blockstore.NewMemory(8)
	for _, cfg := range []Config{
		{Major: 0xffff},
		{Minor: 0xff},
		{Masks: make([]aoe.MAC, MaxMasks+1)},
		{ConfigString: make([]byte, 1025)},
	} {
		if _, err := NewHandler(cfg, mem); err == nil {
			t.Errorf("NewHandler(%+v) succeeded", cfg)
		}
	}
}

func TestHandleAllocations(t *testing.T) {
	h, _ := newTestHandler(t, Config{})
	read := ataRequest(hostA, 1, aoe.ATA{Flags: aoe.ATAExtended, SectorCount: 2, CmdStatus: aoe.ATAReadSectorsExt, LBA: 4})
	write := ataRequest(hostA, 1, aoe.ATA{Flags: aoe.ATAExtended | aoe.ATAWrite, SectorCount: 2, CmdStatus: aoe.ATAWriteSectorsExt, LBA: 4, Data: pattern(1024, 0)})
	resp := make([]byte, 1514)
	for name, req := range map[string][]byte{"read": read, "write": write} {
		if a := testing.AllocsPerRun(100, func() { h.Handle(port1500, req, resp) }); a != 0 {
			t.Errorf("%s: %v allocations per request", name, a)
		}
	}
}

func BenchmarkHandleRead(b *testing.B) {
	h, _ := newTestHandler(b, Config{})
	req := ataRequest(hostA, 1, aoe.ATA{Flags: aoe.ATAExtended, SectorCount: 2, CmdStatus: aoe.ATAReadSectorsExt, LBA: 4})
	resp := make([]byte, 1514)
	b.ReportAllocs()
	b.SetBytes(1024)
	for b.Loop() {
		h.Handle(port1500, req, resp)
	}
}

// blockingStore hides Memory's ReadAtNoWait, like a store that cannot
// tell whether a read would block.
type blockingStore struct{ *blockstore.Memory }

func (blockingStore) ReadAtNoWait() {} // a different signature: not a NoWaitReader

func TestTryHandle(t *testing.T) {
	read := ataRequest(hostA, 1, aoe.ATA{Flags: aoe.ATAExtended, SectorCount: 1, CmdStatus: aoe.ATAReadSectorsExt})
	write := ataRequest(hostA, 2, aoe.ATA{Flags: aoe.ATAExtended | aoe.ATAWrite, SectorCount: 1, CmdStatus: aoe.ATAWriteSectorsExt, Data: pattern(512, 1)})
	flush := ataRequest(hostA, 3, aoe.ATA{CmdStatus: aoe.ATAFlushCacheExt})
	identify := ataRequest(hostA, 4, aoe.ATA{SectorCount: 1, CmdStatus: aoe.ATAIdentifyDevice})
	pastEnd := ataRequest(hostA, 5, aoe.ATA{Flags: aoe.ATAExtended, SectorCount: 1, CmdStatus: aoe.ATAReadSectorsExt, LBA: testSectors})
	cfg := configRequest(hostA, aoe.ConfigRead, "")
	mem := blockstore.NewMemory(testSectors)
	h, _ := NewHandler(Config{Major: 1, Minor: 2}, mem)
	hb, _ := NewHandler(Config{Major: 1, Minor: 2}, blockingStore{mem})
	tests := []struct {
		name   string
		h      *Handler
		req    []byte
		inline bool
	}{
		{"cached read", h, read, true},
		{"read, store cannot tell", hb, read, false},
		{"write", h, write, false},
		{"flush", h, flush, false},
		{"identify", hb, identify, true},
		{"read past the end", hb, pastEnd, true},
		{"config", hb, cfg, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := make([]byte, 1514)
			writes := mem.Writes()
			n, v, ok := tt.h.TryHandle(port1500, tt.req, resp)
			if ok != tt.inline {
				t.Fatalf("handled inline: %v, want %v", ok, tt.inline)
			}
			if !ok {
				if n != 0 || mem.Writes() != writes {
					t.Fatal("a deferred request did something")
				}
				n, v = tt.h.Handle(port1500, tt.req, resp)
			}
			if v != Reply || n < MinFrameLen {
				t.Fatalf("verdict %v, %d bytes", v, n)
			}
		})
	}
}

// TestCommitterGathers checks that the first writer to flush waits for
// the writes still in progress, so that one flush covers them all.
func TestCommitterGathers(t *testing.T) {
	c := committer{gatherMax: time.Minute} // no timing in the test
	var flushes atomic.Int32
	flush := func() error { flushes.Add(1); return nil }
	const writers = 8
	for range writers {
		c.begin() // all eight writes are in progress
	}
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() { defer wg.Done(); c.sync(flush) }()
	}
	wg.Wait()
	if n := flushes.Load(); n != 1 {
		t.Fatalf("%d flushes for %d writes in progress together, want 1", n, writers)
	}
	if c.writing != 0 {
		t.Fatalf("writing = %d", c.writing)
	}
	if h := c.commitSizes(); h.Count != 1 || h.Sum != writers || h.Counts[3] != 1 {
		t.Fatalf("group-commit histogram %+v, want one flush of %d writes (bucket 8)", h, writers)
	}
}

func TestCommitter(t *testing.T) {
	// Writers that arrive while a flush runs share the next one.
	var c committer
	var mu sync.Mutex
	flushes := 0
	release := make(chan struct{})
	flush := func() error {
		mu.Lock()
		flushes++
		first := flushes == 1
		mu.Unlock()
		if first {
			<-release // hold the first flush until every writer waits
		}
		return nil
	}
	const writers = 16
	var wg sync.WaitGroup
	wg.Add(1)
	c.begin()
	go func() { defer wg.Done(); c.sync(flush) }()
	for {
		c.mu.Lock()
		running := c.running
		c.mu.Unlock()
		if running {
			break
		}
		runtime.Gosched()
	}
	for range writers {
		wg.Add(1)
		c.begin()
		go func() { defer wg.Done(); c.sync(flush) }()
	}
	// Once every writer waits, release the first flush.
	for {
		c.mu.Lock()
		waiting := c.waiting
		c.mu.Unlock()
		if waiting == writers {
			break
		}
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	if flushes != 2 {
		t.Fatalf("%d flushes for %d concurrent writers, want 2", flushes, writers+1)
	}
	// A failed flush fails its writers.
	boom := errors.New("EIO")
	c.begin()
	if err := c.sync(func() error { return boom }); err != boom {
		t.Fatalf("sync error %v", err)
	}
}
