package netconf

import (
	"syscall"
	"testing"

	"github.com/mdlayher/packet"
)

// TestFanout joins three sockets into a fanout group and checks the
// steering: ATA requests go by the region of their first sector, the same
// region always to the same socket, and other commands to the first.
func TestFanout(t *testing.T) {
	p := newPair(t, 1500)
	const n = 3
	conns := make([]*packet.Conn, n)
	for i := range conns {
		if err := p.a.Do(func() error {
			ifi, err := Lookup(p.nameA)
			if err == nil {
				conns[i], err = Listen(ifi, Config{Filter: Filter{Major: 1, Minor: 2}})
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer conns[i].Close()
	}
	sc := make([]syscall.Conn, n)
	for i, c := range conns {
		sc[i] = c
	}
	if err := Fanout(sc); err != nil {
		t.Fatal(err)
	}
	var b *packet.Conn
	if err := p.b.Do(func() error {
		ifi, err := Lookup(p.nameB)
		if err == nil {
			b, err = Listen(ifi, Config{Filter: Filter{Responses: true, AnyAddress: true}})
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	want := make([]map[uint32]bool, n) // tags each socket must get
	for i := range want {
		want[i] = map[uint32]bool{}
	}
	send := func(tag uint32, cmd byte, lba uint64, to int) {
		f := frame(p.macA, p.macB, EtherType, 0x10, 1, 2, tag, 60)
		f[19] = cmd
		for k := range 6 {
			f[28+k] = byte(lba >> (8 * k))
		}
		mustWrite(t, b, f)
		want[to][tag] = true
	}
	tag := uint32(1)
	for region := uint64(0); region < 12; region++ {
		for _, within := range []uint64{0, 7, FanoutRegion - 2} {
			send(tag, 0, region*FanoutRegion+within, int(region%n))
			tag++
		}
	}
	send(tag, 0, 1<<24+FanoutRegion, 1) // bits above 23 do not count
	tag++
	for range 4 {
		send(tag, 1, 5*FanoutRegion, 0) // Query Config: the first socket
		tag++
	}
	for i, c := range conns {
		for len(want[i]) > 0 {
			f, err := read(t, c)
			if err != nil {
				t.Fatalf("socket %d: still waiting for tags %v: %v", i, want[i], err)
			}
			if !want[i][tagOf(f)] {
				t.Fatalf("socket %d got tag %d, which belongs to another socket", i, tagOf(f))
			}
			delete(want[i], tagOf(f))
		}
	}
}
