package sdnotify

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// listen opens a notification socket like systemd's and returns its
// address and a function that reads the next datagram.
func listen(t *testing.T, abstract bool) (string, func() string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	name := path
	if abstract {
		path = "@aoetarget-test-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		name = "\x00" + path[1:]
	}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return path, func() string {
		t.Helper()
		buf := make([]byte, 4096)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		return string(buf[:n])
	}
}

func TestMessages(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		path, next := listen(t, abstract)
		n := NewAddr(path)
		if err := n.Ready("serving 2 exports\nsecond line"); err != nil {
			t.Fatal(err)
		}
		if got, want := next(), "READY=1\nSTATUS=serving 2 exports second line"; got != want {
			t.Errorf("Ready sent %q, want %q", got, want)
		}
		if err := n.Reloading(); err != nil {
			t.Fatal(err)
		}
		got := next()
		lines := strings.Split(got, "\n")
		if len(lines) != 2 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
			t.Fatalf("Reloading sent %q", got)
		}
		if usec, err := strconv.ParseUint(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64); err != nil || usec == 0 {
			t.Errorf("MONOTONIC_USEC not a positive number in %q", got)
		}
		n.Watchdog()
		if got := next(); got != "WATCHDOG=1" {
			t.Errorf("Watchdog sent %q", got)
		}
		n.Stopping()
		if got := next(); got != "STOPPING=1" {
			t.Errorf("Stopping sent %q", got)
		}
	}
}

func TestNil(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n := New()
	if n != nil {
		t.Fatal("New without NOTIFY_SOCKET returned a Notifier")
	}
	if err := n.Ready("x"); err != nil {
		t.Errorf("nil Notifier: %v", err)
	}
}

func TestSendFails(t *testing.T) {
	n := NewAddr(filepath.Join(t.TempDir(), "nobody-listens"))
	if err := n.Ready("x"); err == nil {
		t.Error("sending to a socket nobody listens on did not fail")
	}
}

func TestWatchdogInterval(t *testing.T) {
	self := strconv.Itoa(syscallGetpid())
	for _, tc := range []struct {
		usec, pid string
		want      time.Duration
		ok        bool
	}{
		{"", "", 0, false},
		{"30000000", "", 30 * time.Second, true},
		{"30000000", self, 30 * time.Second, true},
		{"30000000", "1", 0, false},
		{"0", "", 0, false},
		{"x", "", 0, false},
	} {
		t.Setenv("WATCHDOG_USEC", tc.usec)
		t.Setenv("WATCHDOG_PID", tc.pid)
		got, err := WatchdogInterval()
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: got %v, %v; want %v, ok %v", tc.usec, tc.pid, got, err, tc.want, tc.ok)
		}
	}
}

func syscallGetpid() int { return os.Getpid() }
