//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/aoetarget/aoetarget/aoe"
	"github.com/aoetarget/aoetarget/initiator"
	"github.com/aoetarget/aoetarget/netconf"
	"golang.org/x/sys/unix"
)

// bench finds the target, runs the measurement and returns its result.
// Warnings go to logw.
func bench(ctx context.Context, o *options, logw io.Writer) (*Result, error) {
	ifi, err := netconf.Lookup(o.ifname)
	if err != nil {
		return nil, err
	}
	src, _ := aoe.MACFrom(ifi.HardwareAddr) // Lookup checked the length

	tgt, capacity, err := discover(ctx, o)
	if err != nil {
		return nil, err
	}
	maxSectors := tgt.MaxSectors(ifi.MTU)
	frameSectors := min(maxSectors, 255)
	if o.sectors > 0 {
		if o.sectors > maxSectors {
			return nil, usagef("--sectors %d: %d.%d takes at most %d sectors per frame at MTU %d",
				o.sectors, o.shelf, o.slot, maxSectors, ifi.MTU)
		}
		frameSectors = o.sectors
	}
	window := o.window
	if bc := int(tgt.Config.BufferCount); bc > 0 && window > bc && !o.overBufcnt {
		fmt.Fprintf(logw, "aoebench: window %d lowered to the target's buffer count %d (--over-bufcnt keeps it)\n", window, bc)
		window = bc
	}
	lay, err := newLayout(capacity, o.offset, o.size, o.bs, frameSectors)
	if err != nil {
		return nil, usagef("%v", err)
	}
	seed := o.seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}

	r := &Result{Case: o.caseName, Name: o.targetName}
	r.Target.Shelf, r.Target.Slot = tgt.Major, tgt.Minor
	r.Target.MAC = tgt.MAC.String()
	r.Target.BufferCount = int(tgt.Config.BufferCount)
	r.Target.Sectors = int(tgt.Config.SectorCount)
	r.Target.Capacity = capacity
	r.Target.PID = o.pid
	c := &r.Config
	c.Interface, c.MTU = o.ifname, ifi.MTU
	c.RW, c.Pattern = o.mode.String(), o.patternText
	c.BlockSize = lay.blockSectors * aoe.SectorSize
	c.FrameSectors, c.FramesPerIO = frameSectors, lay.framesPerBlock()
	c.Window = window
	c.Warmup = o.warmup.Seconds()
	if o.count == 0 {
		c.Duration = o.duration.Seconds()
	}
	c.Count = o.count
	c.Timeout = o.timeout.Seconds()
	c.RegionStart, c.RegionBlocks = lay.start, lay.blocks
	c.Seed = seed

	// One thread does all the work; keep it, and the socket, to itself.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	bufLen := max(ifi.MTU+aoe.EthernetHeaderLen+4, offData+frameSectors*aoe.SectorSize)
	mode := ioRing
	if o.ioText == "mmsg" {
		mode = ioMmsg
	}
	l, err := openLink(ifi, tgt.Major, tgt.Minor, window, bufLen, mode, o.spin)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", o.ifname, err)
	}
	defer l.close()

	base := time.Now()
	e, err := newEngine(engineConfig{
		dst: tgt.MAC, src: src, major: tgt.Major, minor: tgt.Minor,
		window: window, layout: lay, mode: o.mode, random: o.random,
		timeout: o.timeout, seed: seed, frameBufLen: bufLen,
		maxStampErrs: 10, keepFrameLat: true,
	}, l, func() int64 { return int64(time.Since(base)) })
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			e.Stop()
		case <-done:
		}
	}()

	var m meter
	m.pid = o.pid
	var rxDrops uint64
	rr, err := e.run(phases{
		warmup: o.warmup, duration: o.duration, count: o.count,
		onStart: func() { m.start(); l.drops() },
		onEnd:   func() { m.end(); rxDrops = l.drops() },
	})
	if err != nil {
		return nil, err
	}
	r.Time = time.Now().Format(time.RFC3339)
	r.fill(rr)
	r.RecvDrops = rxDrops
	r.Config.IO = o.ioText
	if o.spin {
		r.Config.IO += "+spin"
	}
	m.fill(r)
	if rr.c.frames == 0 && ctx.Err() == nil {
		return r, fmt.Errorf("no frame was answered in %.1f s", rr.elapsed.Seconds())
	}
	return r, nil
}

// discover finds the target with the initiator and returns it with its
// capacity in sectors.
func discover(ctx context.Context, o *options) (initiator.Target, uint64, error) {
	c, err := initiator.Dial(o.ifname)
	if err != nil {
		return initiator.Target{}, 0, err
	}
	defer c.Close()
	c.SetTimeout(100 * time.Millisecond) // resend the query quickly while the target starts
	ctx, cancel := context.WithTimeout(ctx, o.discover)
	defer cancel()
	t, err := c.Lookup(ctx, o.shelf, o.slot)
	if err != nil {
		return t, 0, fmt.Errorf("looking for %d.%d on %s: %w", o.shelf, o.slot, o.ifname, err)
	}
	c.SetTimeout(0)
	id, _, err := c.Identify(ctx, t)
	if err != nil {
		return t, 0, fmt.Errorf("IDENTIFY DEVICE %d.%d: %w", o.shelf, o.slot, err)
	}
	if id.Sectors == 0 {
		return t, 0, fmt.Errorf("%d.%d reports a capacity of 0 sectors", o.shelf, o.slot)
	}
	return t, id.Sectors, nil
}

// meter takes the CPU readings at the start and the end of the measured
// phase.
type meter struct {
	pid              int
	started, ended   bool
	t0, t1           time.Time
	tgt0, tgt1       float64
	tgtErr           error
	self0, self1     float64
	steal0, steal1   float64
	others0, others1 procSnapshot
}

func (m *meter) sample() (tgt, self, steal float64, others procSnapshot) {
	if m.pid > 0 {
		var err error
		if tgt, err = procCPU(m.pid); err != nil && m.tgtErr == nil {
			m.tgtErr = err
		}
	}
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) == nil {
		self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	}
	return tgt, self, stealSeconds(), snapshotProcs(os.Getpid(), m.pid)
}

func (m *meter) start() {
	m.tgt0, m.self0, m.steal0, m.others0 = m.sample()
	m.t0, m.started = time.Now(), true
}

func (m *meter) end() {
	if !m.started {
		return
	}
	m.t1 = time.Now()
	m.tgt1, m.self1, m.steal1, m.others1 = m.sample()
	m.ended = true
}

// fill puts the CPU figures into r.
func (m *meter) fill(r *Result) {
	if !m.ended {
		return
	}
	secs := m.t1.Sub(m.t0).Seconds()
	if secs <= 0 {
		return
	}
	if m.pid > 0 && m.tgtErr == nil {
		t := m.tgt1 - m.tgt0
		cores := t / secs
		r.TargetCPU, r.TargetCores = &t, &cores
		if r.Frames > 0 {
			per := t / (float64(r.Frames) / 1e6)
			r.TargetCPUPerMFrame = &per
		}
	}
	r.GenCPU = m.self1 - m.self0
	r.GenCores = r.GenCPU / secs
	o := diffProcs(m.others0, m.others1)
	r.OtherCores, r.OtherTop = o.Seconds/secs, o.Top
	r.StealCores = (m.steal1 - m.steal0) / secs
}
