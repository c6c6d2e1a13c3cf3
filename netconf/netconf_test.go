package netconf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
)

func TestTransient(t *testing.T) {
	// wrap builds the error chain a *packet.Conn returns:
	// *net.OpError > *os.SyscallError > syscall.Errno.
	wrap := func(op string, e error) error {
		return &net.OpError{Op: op, Net: "packet", Err: os.NewSyscallError(op+"to", e)}
	}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"read ENETDOWN (link went down)", wrap("read", syscall.ENETDOWN), true},
		{"write ENETDOWN (link is down)", wrap("write", syscall.ENETDOWN), true},
		{"write ENXIO (interface deleted)", wrap("write", syscall.ENXIO), true},
		{"listen ENODEV", wrap("listen", syscall.ENODEV), true},
		{"write ENOBUFS", wrap("write", syscall.ENOBUFS), true},
		{"write ENOMEM", wrap("write", syscall.ENOMEM), true},
		{"write EMSGSIZE", wrap("write", syscall.EMSGSIZE), true},
		{"EAGAIN", wrap("read", syscall.EAGAIN), true},
		{"EINTR", wrap("read", syscall.EINTR), true},
		{"fmt-wrapped ENETDOWN", fmt.Errorf("serve: %w", wrap("read", syscall.ENETDOWN)), true},
		{"bare errno", syscall.ENETDOWN, true},

		{"EBADF (closed before the call)", wrap("read", syscall.EBADF), false},
		{"net.ErrClosed", &net.OpError{Op: "read", Err: net.ErrClosed}, false},
		{"os.ErrClosed", os.ErrClosed, false},
		{"use of closed file (closed during the call)", &net.OpError{Op: "read", Err: errors.New("use of closed file")}, false},
		{"deadline", &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, false},
		{"context canceled", os.NewSyscallError("recvfrom", context.Canceled), false},
		{"EINVAL (bad address)", wrap("write", syscall.EINVAL), false},
		{"EPERM", wrap("listen", syscall.EPERM), false},
		{"other", errors.New("something else"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Transient(tt.err); got != tt.want {
				t.Errorf("Transient(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

// TestLookupMissing needs no privileges: it only reads the interface list.
func TestLookupMissing(t *testing.T) {
	for _, name := range []string{"", "aoet-nonexistent0"} {
		if _, err := Lookup(name); !errors.Is(err, ErrNotFound) {
			t.Errorf("Lookup(%q) error = %v, want ErrNotFound", name, err)
		}
		if _, err := MTU(name); !errors.Is(err, ErrNotFound) {
			t.Errorf("MTU(%q) error = %v, want ErrNotFound", name, err)
		}
	}
}
