package main

import (
	"strings"
	"testing"
	"time"

	"github.com/aoetarget/aoetarget/aoe"
)

// fakeTarget is an in-memory AoE target behind the link interface: it
// answers each request when it is sent, from a sparse store of sectors.
type fakeTarget struct {
	t       *testing.T
	store   map[uint64][]byte
	queue   [][]byte // replies not yet received
	out     [][]byte
	seen    int // requests
	dropN   int // drop every dropN'th request without a reply (0: none)
	dupN    int // answer every dupN'th request twice (0: never)
	lying   bool
	failLBA uint64 // answer requests for this sector with ABRT (0: none)
	clock   *int64
}

func newFakeTarget(t *testing.T) *fakeTarget {
	return &fakeTarget{t: t, store: map[uint64][]byte{}, clock: new(int64)}
}

func (f *fakeTarget) now() int64 {
	*f.clock += int64(10 * time.Microsecond)
	return *f.clock
}

func (f *fakeTarget) send(frames [][]byte) (int, error) {
	for _, b := range frames {
		f.seen++
		if f.dropN > 0 && f.seen%f.dropN == 0 {
			continue
		}
		r := f.answer(b)
		f.queue = append(f.queue, r)
		if f.dupN > 0 && f.seen%f.dupN == 0 {
			f.queue = append(f.queue, r)
		}
	}
	return 0, nil
}

func (f *fakeTarget) answer(b []byte) []byte {
	fr, err := aoe.ParseFrame(b)
	if err != nil {
		f.t.Fatalf("target got a bad frame: %v", err)
	}
	a, err := aoe.ParseATA(fr.Arg)
	if err != nil {
		f.t.Fatalf("target got a bad ATA argument: %v", err)
	}
	h := fr.Header
	h.Flags |= aoe.FlagResponse
	r := aoe.ATA{Flags: a.Flags, SectorCount: a.SectorCount, CmdStatus: aoe.ATAStatusDRDY, LBA: a.LBA}
	switch {
	case f.failLBA != 0 && a.LBA <= f.failLBA && f.failLBA < a.LBA+uint64(a.SectorCount):
		r.CmdStatus |= aoe.ATAStatusERR
		r.ErrFeature = aoe.ATAErrorABRT
	case a.Write():
		if len(a.Data) < int(a.SectorCount)*512 {
			f.t.Fatalf("write of %d sectors carries %d bytes", a.SectorCount, len(a.Data))
		}
		if !f.lying {
			for i := range uint64(a.SectorCount) {
				f.store[a.LBA+i] = append([]byte(nil), a.Data[i*512:(i+1)*512]...)
			}
		}
	default:
		r.Data = make([]byte, int(a.SectorCount)*512)
		for i := range uint64(a.SectorCount) {
			if s, ok := f.store[a.LBA+i]; ok {
				copy(r.Data[i*512:], s)
			}
		}
	}
	out, err := aoe.Frame{Dst: fr.Src, Src: fr.Dst, Header: h}.AppendHeaders(nil)
	if err != nil {
		f.t.Fatal(err)
	}
	out, err = r.AppendBinary(out)
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}

func (f *fakeTarget) recv() ([][]byte, error) {
	n := min(len(f.queue), 7) // batches of a few, like recvmmsg
	f.out = append(f.out[:0], f.queue[:n]...)
	f.queue = f.queue[n:]
	return f.out, nil
}

func newTestEngine(t *testing.T, f *fakeTarget, mode rwMode, window int, bs int64, frameSectors int) *engine {
	t.Helper()
	lay, err := newLayout(1<<16, 0, 0, bs, frameSectors)
	if err != nil {
		t.Fatal(err)
	}
	e, err := newEngine(engineConfig{
		dst: macB, src: macA, major: 1, minor: 2, window: window, layout: lay, mode: mode, random: true,
		timeout: 5 * time.Millisecond, seed: 1, maxStampErrs: 5, keepFrameLat: true,
	}, f, f.now)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestEngine(t *testing.T) {
	tests := []struct {
		name         string
		mode         rwMode
		window       int
		bs           int64
		frameSectors int
		setup        func(*fakeTarget)
		check        func(t *testing.T, r runResult)
	}{
		{name: "read 4k at MTU 1500", mode: modeRead, window: 32, bs: 4096, frameSectors: 2},
		{name: "write 4k at MTU 9000", mode: modeWrite, window: 32, bs: 4096, frameSectors: 17},
		{name: "verify 4k at MTU 1500", mode: modeVerify, window: 32, bs: 4096, frameSectors: 2},
		{name: "verify one-frame I/Os, window 1", mode: modeVerify, window: 1, bs: 0, frameSectors: 17},
		{name: "verify with lost frames", mode: modeVerify, window: 8, bs: 8192, frameSectors: 2,
			setup: func(f *fakeTarget) { f.dropN = 13 },
			check: func(t *testing.T, r runResult) {
				if r.c.retransmits == 0 {
					t.Error("no retransmits although every 13th frame was lost")
				}
			}},
		{name: "duplicate replies are stale", mode: modeRead, window: 16, bs: 4096, frameSectors: 2,
			setup: func(f *fakeTarget) { f.dupN = 5 },
			check: func(t *testing.T, r runResult) {
				if r.c.stale == 0 {
					t.Error("no stale replies although every 5th reply came twice")
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeTarget(t)
			if tt.setup != nil {
				tt.setup(f)
			}
			e := newTestEngine(t, f, tt.mode, tt.window, tt.bs, tt.frameSectors)
			var started, ended int
			r, err := e.run(phases{warmup: time.Millisecond, count: 500,
				onStart: func() { started++ }, onEnd: func() { ended++ }})
			if err != nil {
				t.Fatal(err)
			}
			if started != 1 || ended != 1 {
				t.Errorf("hooks called %d and %d times, want once each", started, ended)
			}
			c := r.c
			if c.ios < 500 {
				t.Errorf("%d I/Os measured, want at least 500", c.ios)
			}
			if n := c.aoeErrors + c.ataErrors + c.short + c.verifyErrors + c.failedIOs; n != 0 {
				t.Errorf("%d errors: %+v %v", n, c, r.errs)
			}
			lay := e.cfg.layout
			perIO := uint64(lay.framesPerBlock())
			if tt.mode == modeVerify {
				perIO *= 2
			}
			// Frames answered during the measured phase belong to I/Os
			// that completed in it (some of whose frames may have been
			// answered in the warmup) or are still in progress at its end.
			slack := uint64(tt.window) * perIO
			if c.frames+slack < c.ios*perIO || c.frames > c.ios*perIO+slack {
				t.Errorf("%d frames for %d I/Os of %d frames", c.frames, c.ios, perIO)
			}
			if c.ioLat.count() != c.ios || c.frameLat.count() != c.frames {
				t.Errorf("latencies: %d for %d I/Os, %d for %d frames", c.ioLat.count(), c.ios, c.frameLat.count(), c.frames)
			}
			if r.inDrain != 0 && f.dropN == 0 {
				t.Errorf("%d frames unanswered at the end", r.inDrain)
			}
			if r.elapsed <= 0 {
				t.Errorf("elapsed %v", r.elapsed)
			}
			if tt.mode == modeVerify && len(f.store) == 0 {
				t.Error("verify wrote nothing")
			}
			if tt.check != nil {
				tt.check(t, r)
			}
		})
	}
}

func TestEngineVerifyCatchesLostWrites(t *testing.T) {
	f := newFakeTarget(t)
	f.lying = true // acknowledges writes, keeps nothing
	e := newTestEngine(t, f, modeVerify, 4, 4096, 2)
	r, err := e.run(phases{count: 20})
	if err != nil {
		t.Fatal(err)
	}
	if r.c.verifyErrors == 0 || r.c.failedIOs == 0 {
		t.Fatalf("verify found no errors on a target that drops writes: %+v", r.c)
	}
	if len(r.errs) == 0 || len(r.errs) > 5 || !strings.Contains(r.errs[0], "no stamp") {
		t.Errorf("error notes = %q", r.errs)
	}
}

func TestEngineCountsATAErrors(t *testing.T) {
	f := newFakeTarget(t)
	e := newTestEngine(t, f, modeRead, 4, 512, 1)
	e.cfg.layout.blocks = 2 // LBAs 0 and 1 only
	e.pick = newPicker(true, 2, 1)
	f.failLBA = 1
	r, err := e.run(phases{count: 100})
	if err != nil {
		t.Fatal(err)
	}
	if r.c.ataErrors == 0 || r.c.failedIOs != r.c.ataErrors {
		t.Errorf("ATA errors %d, failed I/Os %d", r.c.ataErrors, r.c.failedIOs)
	}
}

func TestEngineStop(t *testing.T) {
	f := newFakeTarget(t)
	e := newTestEngine(t, f, modeRead, 8, 4096, 2)
	calls := 0
	now := f.now
	e.now = func() int64 {
		calls++
		if calls == 1000 {
			e.Stop()
		}
		return now()
	}
	r, err := e.run(phases{warmup: time.Millisecond, duration: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if r.c.ios == 0 || r.elapsed >= time.Hour {
		t.Errorf("stopped run: %d I/Os in %v", r.c.ios, r.elapsed)
	}
}

// TestEngineSteadyStateDoesNotAllocate runs the loop's per-frame work,
// issue and receive, and checks that it allocates nothing.
func TestEngineSteadyStateDoesNotAllocate(t *testing.T) {
	f := newFakeTarget(t)
	e := newTestEngine(t, f, modeRead, 32, 4096, 2)
	// Replies built in advance, so the fake target does not allocate.
	var replies [][]byte
	link := &replayLink{}
	e.link = link
	var now int64
	step := func() {
		now += 1000
		if err := e.issue(now); err != nil {
			t.Fatal(err)
		}
		replies = replies[:0]
		for _, b := range link.sent {
			replies = append(replies, link.reply(t, b))
		}
		for _, r := range replies {
			e.receive(r, now, true)
		}
	}
	for range 100 { // warm up: buffers reach their size
		step()
	}
	if n := testing.AllocsPerRun(200, step); n != 0 {
		t.Errorf("the loop allocates %v times per step", n)
	}
	if e.c.frames == 0 || e.c.aoeErrors+e.c.ataErrors+e.c.short != 0 {
		t.Errorf("counters %+v", e.c)
	}
}

// replayLink answers read requests with replies it turns around in place
// in preallocated buffers.
type replayLink struct {
	sent [][]byte
	bufs [][]byte
	next int
}

func (l *replayLink) send(frames [][]byte) (int, error) {
	l.sent = append(l.sent[:0], frames...)
	return 0, nil
}

func (l *replayLink) recv() ([][]byte, error) { return nil, nil }

func (l *replayLink) reply(t *testing.T, req []byte) []byte {
	if l.bufs == nil {
		for range 64 {
			l.bufs = append(l.bufs, make([]byte, 1514))
		}
	}
	b := l.bufs[l.next%len(l.bufs)]
	l.next++
	copy(b, req[:offData])
	copy(b[0:6], req[6:12])
	copy(b[6:12], req[0:6])
	b[offVerFlag] |= byte(aoe.FlagResponse)
	b[offStatus] = aoe.ATAStatusDRDY
	return b[:offData+int(req[offCount])*512]
}
