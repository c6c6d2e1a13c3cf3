package metrics

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/aoetarget/aoetarget/aoe"
	"github.com/aoetarget/aoetarget/blockstore"
	"github.com/aoetarget/aoetarget/initiator/initiatortest"
	"github.com/aoetarget/aoetarget/netconf"
	"github.com/aoetarget/aoetarget/target"
)

var (
	targetMAC = aoe.MAC{0x02, 0, 0, 0, 0, 0x01}
	hostA     = aoe.MAC{0x02, 0, 0, 0, 0, 0xaa}
	hostB     = aoe.MAC{0x02, 0, 0, 0, 0, 0xbb}
)

func frame(src aoe.MAC, major uint16, cmd aoe.Command, tag uint32, arg []byte) []byte {
	f := aoe.Frame{Dst: targetMAC, Src: src, Header: aoe.Header{Version: aoe.Version, Major: major, Minor: 0, Command: cmd, Tag: tag}, Arg: arg}
	b, err := f.MarshalBinary()
	if err != nil {
		panic(err)
	}
	return b
}

func marshal(m interface{ MarshalBinary() ([]byte, error) }) []byte {
	b, err := m.MarshalBinary()
	if err != nil {
		panic(err)
	}
	return b
}

// served is a handler for e1.0 served by a Server over an in-memory link,
// so that its requests are timed.
type served struct {
	h     *target.Handler
	iconn *initiatortest.Conn
}

func serve(t *testing.T, cfg target.Config) *served {
	t.Helper()
	mem := blockstore.NewMemory(1024)
	cfg.Major = 1
	h, err := target.NewHandler(cfg, mem)
	if err != nil {
		t.Fatal(err)
	}
	tconn, iconn := initiatortest.Pipe()
	ifi := &net.Interface{Index: 1, Name: "fake0", MTU: 1500, HardwareAddr: targetMAC.HardwareAddr(), Flags: net.FlagUp}
	srv := target.NewServer(h, target.ServerConfig{
		Interfaces:      []string{"fake0"},
		Lookup:          func(string) (*net.Interface, error) { return ifi, nil },
		Listen:          func(*net.Interface, netconf.Config) (net.PacketConn, error) { return tconn, nil },
		MonitorInterval: time.Hour,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	<-srv.Ready()
	return &served{h: h, iconn: iconn}
}

// send sends the frames and waits until the handler counted them all and
// none is in flight.
func (s *served) send(t *testing.T, frames ...[]byte) {
	t.Helper()
	var before uint64
	for _, in := range s.h.Initiators() {
		before += total(in)
	}
	for _, f := range frames {
		s.iconn.WriteTo(f, nil)
	}
	for i := 0; ; i++ {
		var n uint64
		for _, in := range s.h.Initiators() {
			n += total(in)
		}
		if n == before+uint64(len(frames)) && s.h.InFlight() == 0 {
			return
		}
		if i == 2000 {
			t.Fatalf("%d of %d frames counted", n-before, len(frames))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func total(in target.InitiatorStats) uint64 {
	var n uint64
	for _, v := range in.Requests {
		n += v
	}
	for _, v := range in.Dropped {
		n += v
	}
	return n
}

// knownTraffic sends, to e1.0: 3 reads of 2 sectors from A, 2 writes of
// 1 sector from B, a read past the end from A (an ATA error), a request
// for another shelf from B, and, while A holds a reservation, a read from
// B (refused).
func knownTraffic(t *testing.T, s *served) {
	read := func(lba uint64, n uint8) []byte {
		return marshal(aoe.ATA{Flags: aoe.ATAExtended, SectorCount: n, CmdStatus: aoe.ATAReadSectorsExt, LBA: lba})
	}
	write := marshal(aoe.ATA{Flags: aoe.ATAExtended | aoe.ATAWrite, SectorCount: 1, CmdStatus: aoe.ATAWriteSectorsExt, LBA: 40, Data: make([]byte, 512)})
	s.send(t,
		frame(hostA, 1, aoe.CommandATA, 1, read(0, 2)),
		frame(hostA, 1, aoe.CommandATA, 2, read(8, 2)),
		frame(hostA, 1, aoe.CommandATA, 3, read(16, 2)),
		frame(hostB, 1, aoe.CommandATA, 4, write),
		frame(hostB, 1, aoe.CommandATA, 5, write),
		frame(hostA, 1, aoe.CommandATA, 6, read(1023, 2)),
		frame(hostB, 7, aoe.CommandATA, 7, read(0, 1)),
	)
	s.send(t, frame(hostA, 1, aoe.CommandReserve, 8, marshal(aoe.Reserve{Command: aoe.ReserveSet, MACs: []aoe.MAC{hostA}})))
	s.send(t, frame(hostB, 1, aoe.CommandATA, 9, read(0, 1)))
}

func TestCollector(t *testing.T) {
	s := serve(t, target.Config{})
	knownTraffic(t, s)
	c := NewCollector()
	c.Add("disk0", "e1.0", s.h)

	const want = `
# HELP aoetarget_requests_total Requests answered, by AoE command (with or without an error).
# TYPE aoetarget_requests_total counter
aoetarget_requests_total{command="ata",export="disk0",initiator="02:00:00:00:00:aa",target="e1.0"} 4
aoetarget_requests_total{command="config",export="disk0",initiator="02:00:00:00:00:aa",target="e1.0"} 0
aoetarget_requests_total{command="mac-mask",export="disk0",initiator="02:00:00:00:00:aa",target="e1.0"} 0
aoetarget_requests_total{command="other",export="disk0",initiator="02:00:00:00:00:aa",target="e1.0"} 0
aoetarget_requests_total{command="reserve",export="disk0",initiator="02:00:00:00:00:aa",target="e1.0"} 1
aoetarget_requests_total{command="ata",export="disk0",initiator="02:00:00:00:00:bb",target="e1.0"} 3
aoetarget_requests_total{command="config",export="disk0",initiator="02:00:00:00:00:bb",target="e1.0"} 0
aoetarget_requests_total{command="mac-mask",export="disk0",initiator="02:00:00:00:00:bb",target="e1.0"} 0
aoetarget_requests_total{command="other",export="disk0",initiator="02:00:00:00:00:bb",target="e1.0"} 0
aoetarget_requests_total{command="reserve",export="disk0",initiator="02:00:00:00:00:bb",target="e1.0"} 0
# HELP aoetarget_ata_commands_total ATA commands run, by op.
# TYPE aoetarget_ata_commands_total counter
aoetarget_ata_commands_total{export="disk0",initiator="02:00:00:00:00:aa",op="check-power",target="e1.0"} 0
aoetarget_ata_commands_total{export="disk0",initiator="02:00:00:00:00:aa",op="flush",target="e1.0"} 0
aoetarget_ata_commands_total{export="disk0",initiator="02:00:00:00:00:aa",op="identify",target="e1.0"} 0
aoetarget_ata_commands_total{export="disk0",initiator="02:00:00:00:00:aa",op="other",target="e1.0"} 0
aoetarget_ata_commands_total{export="disk0",initiator="02:00:00:00:00:aa",op="read",target="e1.0"} 4
aoetarget_ata_commands_total{export="disk0",initiator="02:00:00:00:00:aa",op="write",target="e1.0"} 0
aoetarget_ata_commands_total{export="disk0",initiator="02:00:00:00:00:bb",op="check-power",target="e1.0"} 0
aoetarget_ata_commands_total{export="disk0",initiator="02:00:00:00:00:bb",op="flush",target="e1.0"} 0
aoetarget_ata_commands_total{export="disk0",initiator="02:00:00:00:00:bb",op="identify",target="e1.0"} 0
aoetarget_ata_commands_total{export="disk0",initiator="02:00:00:00:00:bb",op="other",target="e1.0"} 0
aoetarget_ata_commands_total{export="disk0",initiator="02:00:00:00:00:bb",op="read",target="e1.0"} 0
aoetarget_ata_commands_total{export="disk0",initiator="02:00:00:00:00:bb",op="write",target="e1.0"} 2
# HELP aoetarget_read_bytes_total Data read by successful ATA reads.
# TYPE aoetarget_read_bytes_total counter
aoetarget_read_bytes_total{export="disk0",initiator="02:00:00:00:00:aa",target="e1.0"} 3072
aoetarget_read_bytes_total{export="disk0",initiator="02:00:00:00:00:bb",target="e1.0"} 0
# HELP aoetarget_written_bytes_total Data written by successful ATA writes.
# TYPE aoetarget_written_bytes_total counter
aoetarget_written_bytes_total{export="disk0",initiator="02:00:00:00:00:aa",target="e1.0"} 0
aoetarget_written_bytes_total{export="disk0",initiator="02:00:00:00:00:bb",target="e1.0"} 1024
# HELP aoetarget_reserved_refusals_total Requests refused because another initiator holds the reservation.
# TYPE aoetarget_reserved_refusals_total counter
aoetarget_reserved_refusals_total{export="disk0",initiator="02:00:00:00:00:aa",target="e1.0"} 0
aoetarget_reserved_refusals_total{export="disk0",initiator="02:00:00:00:00:bb",target="e1.0"} 1
# HELP aoetarget_in_flight_requests Requests received and not answered yet.
# TYPE aoetarget_in_flight_requests gauge
aoetarget_in_flight_requests{export="disk0",target="e1.0"} 0
# HELP aoetarget_export_sectors Size of the export in 512-byte sectors.
# TYPE aoetarget_export_sectors gauge
aoetarget_export_sectors{export="disk0",target="e1.0"} 1024
# HELP aoetarget_export_info Facts about the export, as labels; the value is 1.
# TYPE aoetarget_export_info gauge
aoetarget_export_info{export="disk0",read_only="false",target="e1.0",writeback="false"} 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want),
		"aoetarget_requests_total", "aoetarget_ata_commands_total", "aoetarget_read_bytes_total", "aoetarget_written_bytes_total",
		"aoetarget_reserved_refusals_total", "aoetarget_in_flight_requests", "aoetarget_export_sectors", "aoetarget_export_info"); err != nil {
		t.Error(err)
	}

	// The rest, sample by sample.
	reg := prometheus.NewPedanticRegistry() // checks the metrics against Describe
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	get := func(name string, labels map[string]string) *dto.Metric {
		t.Helper()
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
		metric:
			for _, m := range mf.GetMetric() {
				for _, lp := range m.GetLabel() {
					if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
						continue metric
					}
				}
				return m
			}
		}
		t.Fatalf("no %s%v", name, labels)
		return nil
	}
	a, b := map[string]string{"initiator": "02:00:00:00:00:aa"}, map[string]string{"initiator": "02:00:00:00:00:bb"}
	with := func(m map[string]string, k, v string) map[string]string {
		out := map[string]string{k: v}
		for kk, vv := range m {
			out[kk] = vv
		}
		return out
	}
	for _, tt := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"aoetarget_ata_errors_total", with(a, "op", "read"), 1},
		{"aoetarget_ata_errors_total", with(b, "op", "write"), 0},
		{"aoetarget_aoe_errors_total", with(b, "code", "target-reserved"), 1},
		{"aoetarget_aoe_errors_total", with(a, "code", "target-reserved"), 0},
		{"aoetarget_dropped_total", with(b, "reason", "not-addressed"), 1},
		{"aoetarget_dropped_total", with(b, "reason", "masked"), 0},
	} {
		if got := get(tt.name, tt.labels).GetCounter().GetValue(); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
	for _, tt := range []struct {
		labels map[string]string
		want   uint64
	}{
		{with(a, "op", "read"), 4},
		{with(a, "op", "other"), 1},
		{with(b, "op", "write"), 2},
		{with(b, "op", "other"), 1}, // the refused read
		{with(b, "op", "read"), 0},
	} {
		h := get("aoetarget_request_duration_seconds", tt.labels).GetHistogram()
		if h.GetSampleCount() != tt.want || (h.GetSampleSum() > 0) != (tt.want > 0) {
			t.Errorf("duration%v: %d samples, sum %v; want %d", tt.labels, h.GetSampleCount(), h.GetSampleSum(), tt.want)
		}
		if bs := h.GetBucket(); len(bs) != 13 || bs[len(bs)-1].GetCumulativeCount() > h.GetSampleCount() {
			t.Errorf("duration%v: buckets %v", tt.labels, bs)
		}
	}
	gc := get("aoetarget_group_commit_writes", nil).GetHistogram()
	if gc.GetSampleSum() != 2 || gc.GetSampleCount() == 0 || gc.GetSampleCount() > 2 {
		t.Errorf("group commits: %d flushes for %v writes, want 1 or 2 for 2", gc.GetSampleCount(), gc.GetSampleSum())
	}
	if f := get("aoetarget_flushes_total", nil).GetCounter().GetValue(); f != float64(gc.GetSampleCount()) {
		t.Errorf("%v flushes, want %d (one per group commit)", f, gc.GetSampleCount())
	}
	last := get("aoetarget_initiator_last_seen_timestamp_seconds", a).GetGauge().GetValue()
	if now := float64(time.Now().UnixNano()) / 1e9; last > now || last < now-60 {
		t.Errorf("last seen %v, now %v", last, now)
	}

	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) != 0 {
		t.Errorf("lint: %v %v", err, problems)
	}
}

// TestCollectorAddRemove: an export added again under its name (a
// restart during a reload) replaces the old one in the exposition, and
// the old one's Remove does not remove the new one.
func TestCollectorAddRemove(t *testing.T) {
	h1, err := target.NewHandler(target.Config{Major: 1}, blockstore.NewMemory(8))
	if err != nil {
		t.Fatal(err)
	}
	h2, err := target.NewHandler(target.Config{Major: 1}, blockstore.NewMemory(16))
	if err != nil {
		t.Fatal(err)
	}
	c := NewCollector()
	sectors := func() string {
		t.Helper()
		b, err := testutil.CollectAndFormat(c, expfmt.TypeTextPlain, "aoetarget_export_sectors")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "aoetarget_") {
				out = append(out, l)
			}
		}
		return strings.Join(out, "\n")
	}
	c.Add("a", "e1.0", h1)
	c.Add("b", "e2.0", h1)
	c.Add("a", "e1.0", h2)
	if got, want := sectors(), `aoetarget_export_sectors{export="a",target="e1.0"} 16
aoetarget_export_sectors{export="b",target="e2.0"} 8`; got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	c.Remove("a") // the first a stopped
	c.Remove("b")
	if got, want := sectors(), `aoetarget_export_sectors{export="a",target="e1.0"} 16`; got != want {
		t.Fatalf("after removing the old a and b: got\n%s\nwant\n%s", got, want)
	}
	c.Remove("a")
	c.Remove("nope")
	if got := sectors(); got != "" {
		t.Fatalf("after removing all: %s", got)
	}
}

// TestServe scrapes Serve's endpoint: the exports' metrics with the Go
// runtime's and the process's; an address in use fails at once; the
// server stops with its context.
func TestServe(t *testing.T) {
	s := serve(t, target.Config{})
	knownTraffic(t, s)
	c := NewCollector()
	c.Add("disk0", "e1.0", s.h)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, err := Serve(ctx, "127.0.0.1:0", Handler(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s", resp.Status)
	}
	for _, want := range []string{
		`aoetarget_ata_commands_total{export="disk0",initiator="02:00:00:00:00:aa",op="read",target="e1.0"} 4`,
		`aoetarget_request_duration_seconds_count{export="disk0",initiator="02:00:00:00:00:bb",op="write",target="e1.0"} 2`,
		"go_goroutines ",
		"process_cpu_seconds_total ",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("the exposition lacks %q", want)
		}
	}

	if _, err := Serve(ctx, addr.String(), Handler(c), nil); err == nil {
		t.Error("Serve on an address in use succeeded")
	}

	cancel()
	for i := 0; ; i++ {
		conn, err := net.Dial("tcp", addr.String())
		if err != nil {
			break
		}
		conn.Close()
		if i == 200 {
			t.Fatal("the server still listens after its context is done")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
