package target

import (
	"bytes"
	"testing"
	"time"

	"github.com/aoetarget/aoetarget/aoe"
)

// TestRecvRing receives frames across a veth pair through a receive ring
// and with recvmmsg: frames queued before the ring existed come first,
// then the ring's, in order, with their lengths, cut to the buffer when
// longer; more frames than one call takes wait for the next; an empty
// ring returns 0 without waiting, or waits for the next frame.
func TestRecvRing(t *testing.T) {
	for _, ring := range []bool{true, false} {
		t.Run(map[bool]string{true: "ring", false: "recvmmsg"}[ring], func(t *testing.T) {
			v := newVethPair(t)
			const batch = 8
			m := newMmsgConn(v.tconn, batch)
			if m == nil {
				t.Fatal("no batching view of a packet socket")
			}
			// frame i: a Query Config request whose config string has i+1
			// bytes (i == 63: longer than the receive buffers). send
			// fills in the addresses.
			frames := map[int][]byte{}
			frame := func(i int) []byte {
				if frames[i] == nil {
					frames[i] = configRequest(v.imac, aoe.ConfigRead, string(bytes.Repeat([]byte{byte('a' + i%26)}, i+1)))
				}
				return frames[i]
			}
			const bufLen = 64
			bufs := make([][]byte, batch)
			for i := range bufs {
				bufs[i] = make([]byte, bufLen)
			}
			lens := make([]int, batch)
			// Two frames before the ring.
			v.send(frame(0))
			v.send(frame(1))
			time.Sleep(50 * time.Millisecond) // let them reach the socket
			if ring {
				r, err := newRxRing(v.tconn, 64, bufLen)
				if err != nil {
					t.Fatal(err)
				}
				if !r.attach() {
					t.Fatal("a new ring cannot be attached")
				}
				defer r.detach()
				m.ring = r
			}
			for i := 2; i < 20; i++ {
				v.send(frame(i))
			}
			v.send(frame(63))
			var got []int // frame numbers, from the config string's length
			deadline := time.Now().Add(10 * time.Second)
			for len(got) < 21 && time.Now().Before(deadline) {
				n, err := m.recv(bufs, lens, false)
				if err != nil {
					t.Fatal(err)
				}
				if n > batch {
					t.Fatalf("%d frames into %d buffers", n, batch)
				}
				for k := range n {
					f := bufs[k][:lens[k]]
					want := frame(len(got))
					if len(got) == 20 {
						want = frame(63)[:bufLen]
					}
					if !bytes.Equal(f, want) {
						t.Fatalf("frame %d: got %d bytes %x, want %d bytes %x", len(got), len(f), f, len(want), want)
					}
					got = append(got, len(got))
				}
				if n == 0 {
					time.Sleep(time.Millisecond)
				}
			}
			if len(got) != 21 {
				t.Fatalf("received %d frames, want 21", len(got))
			}
			if n, err := m.recv(bufs, lens, false); n != 0 || err != nil {
				t.Fatalf("empty: %d, %v; want 0 at once", n, err)
			}
			// A receive that waits gets the next frame.
			want := frame(5) // sent before: its addresses are filled in
			go func() {
				time.Sleep(20 * time.Millisecond)
				v.send(bytes.Clone(want))
			}()
			n, err := m.recv(bufs, lens, true)
			if err != nil || n != 1 || !bytes.Equal(bufs[0][:lens[0]], want) {
				t.Fatalf("waiting receive: %d, %v", n, err)
			}
			if ring && m.ring.unmapd {
				t.Fatal("the ring is gone")
			}
		})
	}
}

// TestRecvRingAfterClose checks that a ring's receive fails once the
// socket is closed, instead of waiting forever.
func TestRecvRingAfterClose(t *testing.T) {
	v := newVethPair(t)
	conn, err := withRecvRing(v.tconn, 16, 1600)
	if err != nil {
		t.Fatal(err)
	}
	rc := conn.(*ringConn)
	m := newMmsgConn(conn, 4)
	if !rc.ring.attach() {
		t.Fatal("a new ring cannot be attached")
	}
	m.ring = rc.ring
	defer rc.ring.detach()
	bufs := [][]byte{make([]byte, 1600)}
	lens := make([]int, 1)
	done := make(chan error, 1)
	go func() {
		_, err := m.recv(bufs, lens, true)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	conn.Close()
	if rc.ring.unmapd {
		t.Fatal("closing the socket unmapped the ring a receive loop has")
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a receive on a closed socket succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a receive on a closed socket still waits")
	}
}
