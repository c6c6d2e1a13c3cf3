// Package sdnotify implements the service side of systemd's notification
// protocol (sd_notify(3)): readiness, reloading, stopping, status text and
// watchdog keep-alives, sent as datagrams to $NOTIFY_SOCKET.
package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Notifier sends notifications to the service manager. The zero value and
// a nil *Notifier send nothing: a program not started by systemd runs
// unchanged.
type Notifier struct {
	addr *net.UnixAddr
}

// New returns a Notifier for $NOTIFY_SOCKET, or nil when it is not set.
// An address starting with '@' is an abstract socket.
func New() *Notifier {
	return NewAddr(os.Getenv("NOTIFY_SOCKET"))
}

// NewAddr returns a Notifier sending to the socket at path, or nil when
// path is empty.
func NewAddr(path string) *Notifier {
	if path == "" {
		return nil
	}
	name := path
	if strings.HasPrefix(name, "@") {
		name = "\x00" + name[1:]
	}
	return &Notifier{addr: &net.UnixAddr{Name: name, Net: "unixgram"}}
}

// Send sends the given assignments (such as "READY=1") in one datagram.
func (n *Notifier) Send(assignments ...string) error {
	if n == nil {
		return nil
	}
	msg := strings.Join(assignments, "\n")
	// One socket per message, as sd_notify(3) does: nothing to keep
	// open, and a manager that re-creates its socket is still reached.
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(msg)); err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	return nil
}

// Ready tells the manager that start-up (or a reload) is complete, with a
// status line.
func (n *Notifier) Ready(status string) error {
	return n.Send("READY=1", "STATUS="+oneLine(status))
}

// Reloading tells the manager that a reload begins. It carries
// MONOTONIC_USEC, as Type=notify-reload services must; Ready ends it.
func (n *Notifier) Reloading() error {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	usec := ts.Nano() / 1000
	return n.Send("RELOADING=1", "MONOTONIC_USEC="+strconv.FormatInt(usec, 10))
}

// Stopping tells the manager that the service is shutting down.
func (n *Notifier) Stopping() error { return n.Send("STOPPING=1") }

// Status sets the status line systemctl status shows.
func (n *Notifier) Status(status string) error { return n.Send("STATUS=" + oneLine(status)) }

// Watchdog sends a keep-alive.
func (n *Notifier) Watchdog() error { return n.Send("WATCHDOG=1") }

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

// ErrNoWatchdog is returned by WatchdogInterval when the manager expects no
// keep-alives from this process.
var ErrNoWatchdog = errors.New("sdnotify: no watchdog")

// WatchdogInterval returns the watchdog timeout the manager set for this
// process ($WATCHDOG_USEC, if $WATCHDOG_PID is unset or this process's
// PID). Keep-alives should go at half of it.
func WatchdogInterval() (time.Duration, error) {
	s := os.Getenv("WATCHDOG_USEC")
	if s == "" {
		return 0, ErrNoWatchdog
	}
	if p := os.Getenv("WATCHDOG_PID"); p != "" {
		pid, err := strconv.Atoi(p)
		if err != nil {
			return 0, fmt.Errorf("sdnotify: WATCHDOG_PID=%q: %w", p, err)
		}
		if pid != os.Getpid() {
			return 0, ErrNoWatchdog
		}
	}
	usec, err := strconv.ParseUint(s, 10, 63)
	if err != nil || usec == 0 {
		return 0, fmt.Errorf("sdnotify: WATCHDOG_USEC=%q is not a positive number", s)
	}
	return time.Duration(usec) * time.Microsecond, nil
}
