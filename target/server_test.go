package target

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/aoetarget/aoetarget/aoe"
	"github.com/aoetarget/aoetarget/initiator"
	"github.com/aoetarget/aoetarget/initiator/initiatortest"
	"github.com/aoetarget/aoetarget/netconf"
)

// TestServer runs a Server over an in-memory link with the project's
// initiator on the other end: the announcement, requests, and a clean stop
// on cancel. The same paths run over real sockets in cmd/aoetarget's
// integration tests.
func TestServer(t *testing.T) {
	h, _ := newTestHandler(t, Config{BufferCount: 8})
	tconn, iconn := initiatortest.Pipe()
	ifi := &net.Interface{Index: 1, Name: "fake0", MTU: 9000, HardwareAddr: targetMAC.HardwareAddr(), Flags: net.FlagUp}
	var gotCfg netconf.Config
	srv := NewServer(h, ServerConfig{
		Interfaces: []string{"fake0"},
		Lookup:     func(string) (*net.Interface, error) { return ifi, nil },
		Listen: func(_ *net.Interface, c netconf.Config) (net.PacketConn, error) {
			gotCfg = c
			return tconn, nil
		},
		MonitorInterval: time.Hour,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()

	// The announcement comes first.
	buf := make([]byte, 9100)
	iconn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := iconn.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	f, err := aoe.ParseFrame(buf[:n])
	if err != nil || f.Dst != aoe.BroadcastMAC || f.Header.Command != aoe.CommandQueryConfig || !f.Header.Response() {
		t.Fatalf("first frame %+v (%v): want the announcement", f, err)
	}
	iconn.SetReadDeadline(time.Time{})
	<-srv.Ready()
	if want := 8 * (9000 + 14); gotCfg.RecvBuffer != want || gotCfg.Filter.Major != 1 || gotCfg.Filter.Minor != 2 || gotCfg.Filter.Responses {
		t.Fatalf("socket config %+v: want buffers of %d and a filter for requests to 1.2", gotCfg, want)
	}

	c := initiator.New(iconn, hostA, 9000)
	defer c.Close()
	rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
	defer rcancel()
	tg, err := c.Lookup(rctx, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	data := pattern(100*512, 4)
	if err := c.WriteAt(rctx, tg, data, 3); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	if err := c.ReadAt(rctx, tg, got, 3); err != nil || string(got) != string(data) {
		t.Fatalf("read back: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}

// TestServerOpenError checks that Serve fails when an interface cannot be
// opened at startup.
func TestServerOpenError(t *testing.T) {
	h, _ := newTestHandler(t, Config{})
	srv := NewServer(h, ServerConfig{
		Interfaces: []string{"nope0"},
		Lookup:     func(name string) (*net.Interface, error) { return nil, netconf.ErrNotFound },
	})
	if err := srv.Serve(context.Background()); err == nil {
		t.Fatal("Serve succeeded without an interface")
	}
}
