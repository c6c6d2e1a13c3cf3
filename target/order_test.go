package target

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aoetarget/aoetarget/aoe"
	"github.com/aoetarget/aoetarget/blockstore"
	"github.com/aoetarget/aoetarget/initiator/initiatortest"
	"github.com/aoetarget/aoetarget/netconf"
)

func TestSpanConflicts(t *testing.T) {
	r := func(lba, n uint64) span { return span{lba: lba, n: n} }
	w := func(lba, n uint64) span { return span{lba: lba, n: n, write: true} }
	tests := []struct {
		a, b span
		want bool
	}{
		{r(0, 2), r(0, 2), false}, // reads never conflict
		{w(0, 2), r(1, 2), true},
		{r(0, 2), w(1, 2), true},
		{w(0, 2), w(2, 2), false}, // adjacent
		{w(2, 2), w(0, 2), false},
		{w(0, 2), w(1, 1), true},
		{w(10, 0), w(10, 2), false}, // empty
	}
	for _, tt := range tests {
		if got := tt.a.conflicts(tt.b); got != tt.want {
			t.Errorf("%+v conflicts %+v = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestScheduler(t *testing.T) {
	var s scheduler
	j := func(lba, n uint64, write bool) *job { return &job{span: span{lba, n, write}} }
	w1 := j(0, 8, true)
	r1 := j(100, 2, false)
	w2 := j(4, 2, true)   // waits for w1
	r2 := j(5, 1, false)  // waits for w1 and w2
	w3 := j(50, 1, true)  // free
	r3 := j(100, 2, true) // a write after r1: waits for it
	if !s.admit(w1) || !s.admit(r1) || s.admit(w2) || s.admit(r2) || !s.admit(w3) || s.admit(r3) {
		t.Fatal("admit")
	}
	if !s.busy(span{0, 1, false}) || s.busy(span{200, 1, true}) {
		t.Fatal("busy")
	}
	if got := s.done(w1, nil); len(got) != 1 || got[0] != w2 {
		t.Fatalf("after w1: %v, want w2", got)
	}
	if got := s.done(w2, nil); len(got) != 1 || got[0] != r2 {
		t.Fatalf("after w2: %v, want r2", got)
	}
	if got := s.done(r1, nil); len(got) != 1 || got[0] != r3 {
		t.Fatalf("after r1: %v, want r3", got)
	}
	for _, x := range []*job{r2, w3, r3} {
		if got := s.done(x, nil); len(got) != 0 {
			t.Fatalf("unexpected ready %v", got)
		}
	}
	if len(s.active) != 0 {
		t.Fatalf("%d jobs left", len(s.active))
	}
}

// slowStore makes every other write slow, outside the store's lock.
type slowStore struct {
	*blockstore.Memory
	n atomic.Int64
}

func (s *slowStore) WriteAt(p []byte, off int64) (int, error) {
	if s.n.Add(1)%2 == 1 {
		time.Sleep(2 * time.Millisecond) // the older write of each pair is slow
	}
	return s.Memory.WriteAt(p, off)
}

// TestServerOrdering sends pairs of writes to the same sectors, the older
// one made slow by the store, with many workers: the newer write must win
// every time, as the Linux initiator's retransmits require.
func TestServerOrdering(t *testing.T) {
	mem := blockstore.NewMemory(testSectors)
	h, err := NewHandler(Config{Major: 1, Minor: 2, BufferCount: 32, Writeback: true}, &slowStore{Memory: mem})
	if err != nil {
		t.Fatal(err)
	}
	iconn, stop := servePipe(t, h, ServerConfig{})

	const pairs = 50
	model := make([]byte, 10*512) // what arrival order gives
	for i := range pairs {
		lba := uint64(i % 8) // reuse sectors across pairs too
		for _, seed := range []byte{byte(2 * i), byte(2*i + 1)} {
			data := pattern(1024, seed)
			copy(model[lba*512:], data)
			req := ataRequest(hostA, uint32(i)<<8|uint32(seed&1), aoe.ATA{Flags: aoe.ATAExtended | aoe.ATAWrite,
				SectorCount: 2, CmdStatus: aoe.ATAWriteSectorsExt, LBA: lba, Data: data})
			if _, err := iconn.WriteTo(req, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Collect every reply (the announcement included).
	buf := make([]byte, 1600)
	iconn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for got := 0; got < 2*pairs; {
		n, _, err := iconn.ReadFrom(buf)
		if err != nil {
			t.Fatalf("after %d replies: %v", got, err)
		}
		if f, _ := aoe.ParseFrame(buf[:n]); f.Header.Command == aoe.CommandATA {
			got++
		}
	}
	if got := mem.Bytes()[:len(model)]; string(got) != string(model) {
		for lba := 0; lba < len(model)/512; lba++ {
			if string(got[lba*512:(lba+1)*512]) != string(model[lba*512:(lba+1)*512]) {
				t.Errorf("sector %d holds an older write", lba)
			}
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// servePipe serves h with cfg over an in-memory link (interface fake0, MTU
// 1500) and returns the initiator's end and a function that stops the
// server and returns Serve's error. The server is ready when it returns.
func servePipe(t *testing.T, h *Handler, cfg ServerConfig) (iconn net.PacketConn, stop func() error) {
	t.Helper()
	tconn, iconn := initiatortest.Pipe()
	ifi := &net.Interface{Index: 1, Name: "fake0", MTU: 1500, HardwareAddr: targetMAC.HardwareAddr(), Flags: net.FlagUp}
	cfg.Interfaces = []string{"fake0"}
	cfg.Lookup = func(string) (*net.Interface, error) { return ifi, nil }
	cfg.Listen = func(*net.Interface, netconf.Config) (net.PacketConn, error) { return tconn, nil }
	cfg.MonitorInterval = time.Hour
	srv := NewServer(h, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	<-srv.Ready()
	return iconn, func() error {
		cancel()
		return <-done
	}
}
