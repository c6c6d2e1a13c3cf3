package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// crashCuts is how many times TestIntegrationCrash kills the target;
// AOETARGET_CRASH_CUTS overrides it.
const crashCuts = 20

// TestIntegrationCrash writes with verification while the target is
// killed with SIGKILL at random moments and restarted, many times: every
// write the target acknowledged must read back intact after every restart
// (a write in flight at the kill may have landed or not, sector by sector).
// A process kill leaves the page cache in place; the lab's VM power cut
// (hack/lab) covers losing it.
func TestIntegrationCrash(t *testing.T) {
	cuts := crashCuts
	if s := os.Getenv("AOETARGET_CRASH_CUTS"); s != "" {
		var err error
		if cuts, err = strconv.Atoi(s); err != nil {
			t.Fatal(err)
		}
	}
	if testing.Short() {
		cuts = 3
	}
	l := newLab(t, 1500)
	const sectors, region, blk = 4096, 2048, 32
	file := image(t, sectors, 0)
	// ok[s] are the contents sector s may hold: what the last acknowledged
	// write put there, and what unacknowledged writes since may have.
	ok := make([][][]byte, region)
	for s := range ok {
		ok[s] = [][]byte{make([]byte, 512)}
	}
	rng := rand.New(rand.NewPCG(7, 11))
	acked, checked := 0, 0
	for cut := 0; cut <= cuts; cut++ {
		p := l.start(ours, file)
		tg := l.target()
		// Verify everything acknowledged so far.
		got := make([]byte, region*512)
		vctx, vcancel := context.WithTimeout(context.Background(), 60*time.Second)
		if err := l.client.ReadAt(vctx, tg, got, 0); err != nil {
			t.Fatalf("after cut %d: read back: %v", cut, err)
		}
		vcancel()
		for s := range ok {
			sec := got[s*512 : (s+1)*512]
			found := false
			for _, c := range ok[s] {
				if bytes.Equal(sec, c) {
					found = true
					break
				}
			}
			if !found {
				t.Fatalf("after cut %d: sector %d holds neither its last acknowledged write nor a later unacknowledged one", cut, s)
			}
			checked++
			ok[s] = [][]byte{bytes.Clone(sec)} // what it holds now is settled
		}
		if cut == cuts {
			break
		}
		// Write until the kill: a random moment 20-200 ms from now.
		kill := time.AfterFunc(time.Duration(20+rng.IntN(180))*time.Millisecond, func() {
			p.cmd.Process.Signal(syscall.SIGKILL)
		})
		seq := uint64(cut) << 32
		for {
			lba := rng.IntN(region-blk) &^ 1
			buf := make([]byte, blk*512)
			for s := 0; s < blk; s++ {
				binary.LittleEndian.PutUint64(buf[s*512:], seq)
				binary.LittleEndian.PutUint64(buf[s*512+8:], uint64(lba+s))
				for i := 16; i < 512; i += 8 {
					binary.LittleEndian.PutUint64(buf[s*512+i:], rng.Uint64())
				}
			}
			seq++
			for s := 0; s < blk; s++ { // may land from now on
				ok[lba+s] = append(ok[lba+s], buf[s*512:(s+1)*512])
			}
			wctx, wcancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			err := l.client.WriteAt(wctx, tg, buf, uint64(lba))
			wcancel()
			if err != nil {
				break // the target is gone
			}
			acked++
			for s := 0; s < blk; s++ {
				ok[lba+s] = [][]byte{buf[s*512 : (s+1)*512]}
			}
		}
		kill.Stop()
		<-p.done
		p.done <- nil // for the cleanup
	}
	t.Logf("%d SIGKILLs at random moments; %d acknowledged %d-sector writes, %d sector checks, none lost", cuts, acked, blk, checked)
}
