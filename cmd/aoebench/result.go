package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Result is the outcome of one run, as --json prints it and `aoebench
// report` reads it.
type Result struct {
	Case   string `json:"case,omitempty"`
	Name   string `json:"name,omitempty"`
	Time   string `json:"time"` // RFC 3339, when the run ended
	Target struct {
		Shelf       uint16 `json:"shelf"`
		Slot        uint8  `json:"slot"`
		MAC         string `json:"mac"`
		BufferCount int    `json:"bufcnt"`
		Sectors     int    `json:"sectors_per_frame"` // as advertised
		Capacity    uint64 `json:"capacity_sectors"`
		PID         int    `json:"pid,omitempty"`
	} `json:"target"`
	Config struct {
		Interface    string  `json:"interface"`
		MTU          int     `json:"mtu"`
		RW           string  `json:"rw"`
		Pattern      string  `json:"pattern"`
		BlockSize    int     `json:"bs"`
		FrameSectors int     `json:"frame_sectors"`
		FramesPerIO  int     `json:"frames_per_io"`
		Window       int     `json:"window"`
		Warmup       float64 `json:"warmup_s"`
		Duration     float64 `json:"duration_s,omitempty"`
		Count        int64   `json:"count,omitempty"`
		Timeout      float64 `json:"timeout_s"`
		RegionStart  uint64  `json:"region_start_sector"`
		RegionBlocks uint64  `json:"region_blocks"`
		Seed         uint64  `json:"seed"`
		IO           string  `json:"io"`
	} `json:"config"`

	Elapsed     float64  `json:"elapsed_s"`
	IOs         uint64   `json:"ios"`
	Frames      uint64   `json:"frames"`
	Bytes       uint64   `json:"bytes"`
	IOPS        float64  `json:"iops"`
	MBps        float64  `json:"mb_s"` // 10^6 bytes per second
	FramesPerS  float64  `json:"frames_s"`
	Latency     Latency  `json:"latency_us"`       // per I/O
	FrameLat    Latency  `json:"frame_latency_us"` // per frame, from its latest sending
	Retransmits uint64   `json:"retransmits"`
	SendDrops   uint64   `json:"send_drops"`
	RecvDrops   uint64   `json:"recv_drops"` // replies the kernel dropped: socket queue or ring full
	AoEErrors   uint64   `json:"aoe_errors"`
	ATAErrors   uint64   `json:"ata_errors"`
	ShortReads  uint64   `json:"short_reads"`
	VerifyErrs  uint64   `json:"verify_errors"`
	FailedIOs   uint64   `json:"failed_ios"`
	Stale       uint64   `json:"stale_replies"`
	Unanswered  int      `json:"unanswered_at_end"`
	SendBatch   float64  `json:"frames_per_send"` // frames per send call (sendmmsg)
	RecvBatch   float64  `json:"frames_per_recv"` // frames per receive call, empty ones included
	ErrorNotes  []string `json:"error_notes,omitempty"`

	// CPU during the measured phase, in seconds and in cores (seconds per
	// second of run).
	TargetCPU          *float64 `json:"target_cpu_s,omitempty"`
	TargetCores        *float64 `json:"target_cores,omitempty"`
	TargetCPUPerMFrame *float64 `json:"target_cpu_s_per_mframes,omitempty"`
	GenCPU             float64  `json:"gen_cpu_s"`
	GenCores           float64  `json:"gen_cores"`
	OtherCores         float64  `json:"other_cores"` // every other process on the machine
	OtherTop           string   `json:"other_top,omitempty"`
	StealCores         float64  `json:"steal_cores"`
}

// Latency is a latency distribution in microseconds.
type Latency struct {
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99.9"`
	Max  float64 `json:"max"`
}

func latencyOf(h *histogram) Latency {
	us := func(ns uint64) float64 { return float64(ns) / 1e3 }
	return Latency{
		Mean: h.mean() / 1e3,
		P50:  us(h.quantile(0.5)),
		P99:  us(h.quantile(0.99)),
		P999: us(h.quantile(0.999)),
		Max:  us(h.max),
	}
}

// fill sets the rates and counters of r from a run's result.
func (r *Result) fill(rr runResult) {
	c := &rr.c
	r.Elapsed = rr.elapsed.Seconds()
	r.IOs, r.Frames, r.Bytes = c.ios, c.frames, c.bytes
	if s := r.Elapsed; s > 0 {
		r.IOPS = float64(c.ios) / s
		r.MBps = float64(c.bytes) / s / 1e6
		r.FramesPerS = float64(c.frames) / s
	}
	r.Latency = latencyOf(&c.ioLat)
	r.FrameLat = latencyOf(&c.frameLat)
	r.Retransmits, r.SendDrops = c.retransmits, c.dropped
	r.AoEErrors, r.ATAErrors, r.ShortReads = c.aoeErrors, c.ataErrors, c.short
	r.VerifyErrs, r.FailedIOs, r.Stale = c.verifyErrors, c.failedIOs, c.stale
	r.Unanswered = rr.inDrain
	if c.sendCalls > 0 {
		r.SendBatch = float64(c.frames+c.retransmits) / float64(c.sendCalls)
	}
	if c.recvCalls > 0 {
		r.RecvBatch = float64(c.recvFrames) / float64(c.recvCalls)
	}
	r.ErrorNotes = rr.errs
}

// failed reports whether the run saw errors or wrong data.
func (r *Result) failed() bool {
	return r.AoEErrors+r.ATAErrors+r.ShortReads+r.VerifyErrs > 0
}

// writeText prints r for a person.
func (r *Result) writeText(w io.Writer) {
	c := &r.Config
	bs := fmt.Sprintf("%d bytes", c.BlockSize)
	if c.BlockSize%1024 == 0 {
		bs = fmt.Sprintf("%d KiB", c.BlockSize/1024)
	}
	fmt.Fprintf(w, "aoebench: %s %s, %s per I/O = %d frame(s) of up to %d sectors, window %d frames, MTU %d\n",
		c.Pattern, c.RW, bs, c.FramesPerIO, c.FrameSectors, c.Window, c.MTU)
	fmt.Fprintf(w, "target %d.%d at %s on %s: bufcnt %d, %d sectors per frame, %d sectors\n",
		r.Target.Shelf, r.Target.Slot, r.Target.MAC, c.Interface, r.Target.BufferCount, r.Target.Sectors, r.Target.Capacity)
	fmt.Fprintf(w, "measured %.2f s after %v warmup\n", r.Elapsed, time.Duration(c.Warmup*float64(time.Second)))
	fmt.Fprintf(w, "  IOPS      %12s\n", thousands(r.IOPS))
	fmt.Fprintf(w, "  MB/s      %12.1f   (10^6 bytes)\n", r.MBps)
	fmt.Fprintf(w, "  frames/s  %12s\n", thousands(r.FramesPerS))
	fmt.Fprintf(w, "  latency   per I/O   p50 %s  p99 %s  p99.9 %s  max %s\n",
		us(r.Latency.P50), us(r.Latency.P99), us(r.Latency.P999), us(r.Latency.Max))
	fmt.Fprintf(w, "            per frame p50 %s  p99 %s  p99.9 %s  max %s\n",
		us(r.FrameLat.P50), us(r.FrameLat.P99), us(r.FrameLat.P999), us(r.FrameLat.Max))
	fmt.Fprintf(w, "  retransmits %d, send drops %d, receive drops %d, stale replies %d, unanswered at the end %d\n",
		r.Retransmits, r.SendDrops, r.RecvDrops, r.Stale, r.Unanswered)
	fmt.Fprintf(w, "  batches: %.1f frames per send call, %.1f per receive call\n", r.SendBatch, r.RecvBatch)
	fmt.Fprintf(w, "  errors: AoE %d, ATA %d, short reads %d, verify %d (failed I/Os %d)\n",
		r.AoEErrors, r.ATAErrors, r.ShortReads, r.VerifyErrs, r.FailedIOs)
	for _, n := range r.ErrorNotes {
		fmt.Fprintf(w, "    %s\n", n)
	}
	if r.TargetCPU != nil {
		per := "-"
		if r.TargetCPUPerMFrame != nil {
			per = fmt.Sprintf("%.2f s", *r.TargetCPUPerMFrame)
		}
		fmt.Fprintf(w, "  target CPU %.2f s (%.0f %% of a core), %s per million frames\n",
			*r.TargetCPU, *r.TargetCores*100, per)
	}
	fmt.Fprintf(w, "  aoebench CPU %.2f s (%.0f %% of a core); other processes %.2f cores%s; steal %.2f cores\n",
		r.GenCPU, r.GenCores*100, r.OtherCores, paren(r.OtherTop), r.StealCores)
}

func paren(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

// us formats microseconds with a unit that keeps three digits or so.
func us(v float64) string {
	switch {
	case v >= 10000:
		return fmt.Sprintf("%.1f ms", v/1000)
	case v >= 1000:
		return fmt.Sprintf("%.2f ms", v/1000)
	}
	return fmt.Sprintf("%.0f µs", v)
}

// thousands formats v rounded to an integer with comma separators.
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, ch := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(ch)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
