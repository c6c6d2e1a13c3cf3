package target

import (
	"bytes"
	"testing"
	"time"

	"github.com/mdlayher/packet"

	"github.com/aoetarget/aoetarget/aoe"
	"github.com/aoetarget/aoetarget/blockstore"
)

// TestCountersAcrossSocket sends the known mix to a Server over a real
// socket (veth pair), from the initiator's own MAC and two forged ones:
// replies go out in batches (sendmmsg), reads that miss the cache and
// writes through the workers and the committer. The counters must match
// the traffic exactly, every reply timed once.
func TestCountersAcrossSocket(t *testing.T) {
	for _, store := range []string{"cached", "uncached"} {
		t.Run(store, func(t *testing.T) {
			v := newVethPair(t)
			start := time.Now()
			var s Store = mixStore()
			if store == "uncached" {
				s = blockingStore{s.(*blockstore.Memory)}
			}
			h, err := NewHandler(Config{Major: 1, Minor: 2}, s)
			if err != nil {
				t.Fatal(err)
			}
			v.drain()
			v.serve(h, ServerConfig{})
			x := newTrafficMix(v.tmac, v.imac, hostB, aoe.MAC{0x02, 0, 0, 0, 0, 0xcc}, false)
			buf := make([]byte, 1600)
			dst := &packet.Addr{HardwareAddr: v.tifi.HardwareAddr}
			x.run(t, func(b []byte) {
				if _, err := v.iconn.WriteTo(b, dst); err != nil {
					t.Fatal(err)
				}
			}, func() []byte {
				v.iconn.SetReadDeadline(time.Now().Add(10 * time.Second))
				for {
					n, _, err := v.iconn.ReadFrom(buf)
					if err != nil {
						return nil
					}
					// Only replies to the mix's initiators, from the target.
					if bytes.Equal(buf[6:12], v.tmac[:]) {
						return buf[:n]
					}
				}
			})
			x.settle(t, h)
			x.check(t, h, true, start)
		})
	}
}

// drain discards the frames queued on the target's socket (newVethPair's
// extra probes, if the first was slow), so that a server started next
// sees only the test's frames.
func (v *vethPair) drain() {
	buf := make([]byte, 1600)
	for {
		v.tconn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, _, err := v.tconn.ReadFrom(buf); err != nil {
			break
		}
	}
	v.tconn.SetReadDeadline(time.Time{})
}

// wantLatency checks that s's latency histograms timed the given number
// of replies by op.
func wantLatency(t *testing.T, s InitiatorStats, want [NumLatencyOps]uint64) {
	t.Helper()
	for op, l := range s.Latency {
		if l.Count != want[op] {
			t.Errorf("%v: %d %s replies timed, want %d", s.MAC, l.Count, LatencyOpName(op), want[op])
		}
	}
}
