package initiatortest

import (
	"bytes"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/mdlayher/packet"
)

func TestPipe(t *testing.T) {
	a, b := Pipe()
	defer a.Close()
	frame := []byte{1, 2, 3, 4, 5, 6, 0xa, 0xb, 0xc, 0xd, 0xe, 0xf, 0x88, 0xa2, 0x10}
	if n, err := a.WriteTo(frame, nil); err != nil || n != len(frame) {
		t.Fatalf("WriteTo = %d, %v", n, err)
	}
	frame[0] = 0xff // the pipe carries a copy
	buf := make([]byte, 100)
	n, addr, err := b.ReadFrom(buf)
	if err != nil || !bytes.Equal(buf[:n], append([]byte{1}, frame[1:]...)) {
		t.Fatalf("ReadFrom = % x, %v", buf[:n], err)
	}
	if got := addr.(*packet.Addr).HardwareAddr.String(); got != "0a:0b:0c:0d:0e:0f" {
		t.Errorf("ReadFrom address %s, want the frame's source", got)
	}

	// A deadline in the past fails at once; a blocked read wakes up when
	// the deadline moves into the past, and when the end is closed.
	b.SetReadDeadline(time.Unix(1, 0))
	if _, _, err := b.ReadFrom(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("ReadFrom after the deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	b.SetReadDeadline(time.Time{})
	errc := make(chan error)
	go func() {
		_, _, err := b.ReadFrom(buf)
		errc <- err
	}()
	b.SetReadDeadline(time.Unix(1, 0))
	if err := <-errc; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("blocked ReadFrom after SetReadDeadline: %v, want os.ErrDeadlineExceeded", err)
	}
	b.SetReadDeadline(time.Time{})
	go func() {
		_, _, err := b.ReadFrom(buf)
		errc <- err
	}()
	b.Close()
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Errorf("blocked ReadFrom after Close: %v, want net.ErrClosed", err)
	}
	if _, err := b.WriteTo(frame, nil); !errors.Is(err, net.ErrClosed) {
		t.Errorf("WriteTo after Close: %v, want net.ErrClosed", err)
	}
	if _, err := a.WriteTo(frame, nil); err != nil {
		t.Errorf("WriteTo a closed peer: %v, want the frame dropped silently", err)
	}
}
