package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/aoetarget/aoetarget/aoe"
	"github.com/aoetarget/aoetarget/target"
)

// The control socket: a client connects, sends one command line
// ("status"), and reads one JSON document; the daemon then closes the
// connection.

// statusReply is the daemon's answer to "status".
type statusReply struct {
	PID             int            `json:"pid"`
	Version         string         `json:"version"`
	Config          string         `json:"config,omitempty"`
	Started         time.Time      `json:"started"`
	Loaded          time.Time      `json:"loaded"`
	Reloads         int            `json:"reloads"`
	LastReloadError string         `json:"last_reload_error,omitempty"`
	Time            time.Time      `json:"time"`
	Exports         []exportStatus `json:"exports"`
}

// exportStatus is one export in a statusReply. Counters count since the
// export (re)started.
type exportStatus struct {
	Name       string            `json:"name"`
	Target     string            `json:"target"`
	File       string            `json:"file"`
	Interfaces []string          `json:"interfaces"`
	State      string            `json:"state"`
	Error      string            `json:"error,omitempty"`
	Since      time.Time         `json:"since"`
	Sectors    uint64            `json:"sectors"`
	ReadOnly   bool              `json:"read_only"`
	Writeback  bool              `json:"writeback"`
	Reads      uint64            `json:"reads"`
	Writes     uint64            `json:"writes"`
	ReadBytes  uint64            `json:"read_bytes"`
	WriteBytes uint64            `json:"write_bytes"`
	ATAErrors  uint64            `json:"ata_errors"`
	AoEErrors  uint64            `json:"aoe_errors"`
	IOErrors   uint64            `json:"io_errors"`
	Dropped    map[string]uint64 `json:"dropped"`
	Flushes    uint64            `json:"flushes"`
	InFlight   int64             `json:"in_flight"`
	Initiators []initiatorStatus `json:"initiators"`
}

// initiatorStatus is one initiator an export has heard from.
type initiatorStatus struct {
	MAC        string    `json:"mac"`
	FirstSeen  time.Time `json:"first_seen"`
	LastSeen   time.Time `json:"last_seen"`
	Requests   uint64    `json:"requests"`
	ReadBytes  uint64    `json:"read_bytes"`
	WriteBytes uint64    `json:"write_bytes"`
	Errors     uint64    `json:"errors"`
	Dropped    uint64    `json:"dropped"`
}

// status returns the daemon's status.
func (d *daemon) status() statusReply {
	d.mu.Lock()
	runners := slices.Clone(d.runners)
	rep := statusReply{
		PID: os.Getpid(), Version: version, Config: d.configPath,
		Started: d.started, Loaded: d.loaded, Reloads: d.reloads, Time: time.Now(),
	}
	if d.lastErr != nil {
		rep.LastReloadError = d.lastErr.Error()
	}
	d.mu.Unlock()
	rep.Exports = []exportStatus{}
	for _, r := range runners {
		rep.Exports = append(rep.Exports, r.status())
	}
	return rep
}

func (r *exportRunner) status() exportStatus {
	r.mu.Lock()
	h, st, err, since, sectors := r.h, r.state, r.err, r.since, r.sectors
	r.mu.Unlock()
	e := r.cfg
	s := exportStatus{
		Name: e.Name, Target: e.Address(), File: e.File, Interfaces: e.Interfaces,
		State: st, Since: since, Sectors: sectors, ReadOnly: e.ReadOnly, Writeback: e.Writeback,
		Dropped: map[string]uint64{}, Initiators: []initiatorStatus{},
	}
	if err != nil {
		s.Error = err.Error()
	}
	if h == nil {
		return s
	}
	c := h.Stats()
	s.Reads, s.Writes = c.Reads.Load(), c.Writes.Load()
	s.ReadBytes, s.WriteBytes = c.ReadBytes.Load(), c.WriteBytes.Load()
	s.ATAErrors, s.AoEErrors, s.IOErrors = c.ATAErrors.Load(), c.AoEErrors.Load(), c.IOErrors.Load()
	s.Flushes = c.Flushes.Load()
	for v := target.Verdict(0); v < target.Verdict(len(c.Verdicts)); v++ {
		if v != target.Reply {
			s.Dropped[v.String()] = c.Verdicts[v].Load()
		}
	}
	s.InFlight, s.Initiators = handlerExtras(h)
	return s
}

// serveControl answers the control socket at path until ctx is done. A
// socket file left by a process that is gone is replaced; one that a
// live process answers on is an error.
func serveControl(ctx context.Context, path string, d *daemon) (func(), error) {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another aoetarget is using it", path)
	}
	os.Remove(path)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go d.control(c)
		}
	}()
	stop := func() {
		ln.Close() // removes the socket file
		<-done
	}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	return stop, nil
}

// control answers one control connection.
func (d *daemon) control(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(io.LimitReader(c, 256)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return
	}
	enc := json.NewEncoder(c)
	enc.SetIndent("", "  ")
	switch cmd := strings.TrimSpace(line); cmd {
	case "status":
		enc.Encode(d.status())
	default:
		enc.Encode(map[string]string{"error": fmt.Sprintf("unknown command %q (want: status)", cmd)})
	}
}

// queryStatus asks the daemon at path for its status.
func queryStatus(path string) (*statusReply, error) {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "status\n"); err != nil {
		return nil, err
	}
	var rep statusReply
	if err := json.NewDecoder(c).Decode(&rep); err != nil {
		return nil, fmt.Errorf("%s: bad reply: %w", path, err)
	}
	return &rep, nil
}

// defaultControlGlob finds the control sockets of the daemons running
// with the default settings (aoetarget.service and aoetarget@.service).
const defaultControlGlob = "/run/aoetarget/*.sock"

const statusUsage = `Usage: aoetarget status [--control SOCKET]... [--json] [--interval D]

Show the exports of running aoetarget daemons: state, size, the initiators
seen, I/O rates (measured over --interval) and errors.

      --control SOCKET  a daemon's control socket (repeatable; default: every
                        socket matching ` + defaultControlGlob + `)
      --json            print the daemons' raw status documents
      --interval D      measure rates over D (default 1s; 0: no rates)
  -h, --help            show this help
`

// runStatus is the status subcommand.
func runStatus(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("aoetarget status", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	socks := fs.StringArray("control", nil, "")
	asJSON := fs.Bool("json", false, "")
	interval := fs.Duration("interval", time.Second, "")
	help := fs.BoolP("help", "h", false, "")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		if err == nil {
			err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
		}
		fmt.Fprintf(stderr, "aoetarget status: %v\n", err)
		return exitUsage
	}
	if *help {
		io.WriteString(stdout, statusUsage)
		return exitOK
	}
	paths := *socks
	if len(paths) == 0 {
		paths, _ = filepath.Glob(defaultControlGlob)
		if len(paths) == 0 {
			fmt.Fprintf(stderr, "aoetarget status: no control socket matches %s: is aoetarget running (with a control socket)?\n", defaultControlGlob)
			return exitError
		}
	}
	first := make([]*statusReply, len(paths))
	code := exitOK
	for i, p := range paths {
		rep, err := queryStatus(p)
		if err != nil {
			fmt.Fprintf(stderr, "aoetarget status: %s: %v\n", p, err)
			code = exitError
			continue
		}
		first[i] = rep
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(slices.DeleteFunc(first, func(r *statusReply) bool { return r == nil }))
		return code
	}
	var second []*statusReply
	if *interval > 0 {
		time.Sleep(*interval)
		second = make([]*statusReply, len(paths))
		for i, p := range paths {
			if first[i] != nil {
				second[i], _ = queryStatus(p)
			}
		}
	}
	for i, p := range paths {
		if first[i] == nil {
			continue
		}
		var now *statusReply
		if second != nil {
			now = second[i]
		}
		printStatus(stdout, p, first[i], now)
	}
	return code
}

// printStatus prints one daemon's status as a table; with a second sample
// it adds the rates between the two.
func printStatus(w io.Writer, path string, a, b *statusReply) {
	cur := a
	if b != nil {
		cur = b
	}
	fmt.Fprintf(w, "%s: aoetarget %s, pid %d, up %s", path, cur.Version, cur.PID, ago(cur.Time, cur.Started))
	if cur.Config != "" {
		fmt.Fprintf(w, ", config %s (read %s ago, %d reloads)", cur.Config, ago(cur.Time, cur.Loaded), cur.Reloads)
	}
	fmt.Fprintln(w)
	if cur.LastReloadError != "" {
		fmt.Fprintf(w, "LAST RELOAD FAILED (the previous configuration is running): %s\n", cur.LastReloadError)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "EXPORT\tTARGET\tSTATE\tFOR\tFILE\tINTERFACES\tSIZE\tREAD/s\tWRITE/s\tMB/s\tIN FLIGHT\tERRORS\tDROPPED\tINITIATORS")
	for _, e := range cur.Exports {
		rates := "-\t-\t-"
		if b != nil {
			if i := slices.IndexFunc(a.Exports, func(x exportStatus) bool { return x.Name == e.Name && x.Since.Equal(e.Since) }); i >= 0 {
				p := a.Exports[i]
				dt := b.Time.Sub(a.Time).Seconds()
				if dt > 0 {
					rates = fmt.Sprintf("%.0f\t%.0f\t%.1f", float64(e.Reads-p.Reads)/dt, float64(e.Writes-p.Writes)/dt,
						float64(e.ReadBytes+e.WriteBytes-p.ReadBytes-p.WriteBytes)/dt/1e6)
				}
			}
		}
		var drops uint64
		for _, n := range e.Dropped {
			drops += n
		}
		state := e.State
		if e.ReadOnly {
			state += " (ro)"
		} else if e.Writeback {
			state += " (writeback)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\n", e.Name, e.Target, state, ago(cur.Time, e.Since),
			e.File, strings.Join(e.Interfaces, ","), size(e.Sectors), rates, e.InFlight,
			e.ATAErrors+e.AoEErrors+e.IOErrors, drops, len(e.Initiators))
	}
	tw.Flush()
	for _, e := range cur.Exports {
		if e.Error != "" {
			fmt.Fprintf(w, "  %s: %s\n", e.Name, e.Error)
		}
		for _, in := range e.Initiators {
			fmt.Fprintf(w, "  %s: initiator %s, last seen %s ago, %d requests, read %s, written %s, %d errors, %d dropped\n",
				e.Name, in.MAC, ago(cur.Time, in.LastSeen), in.Requests, bytesText(in.ReadBytes), bytesText(in.WriteBytes), in.Errors, in.Dropped)
		}
	}
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return d.Round(time.Minute).String()
	default:
		return d.Round(time.Hour).String()
	}
}

func size(sectors uint64) string {
	if sectors == 0 {
		return "-"
	}
	return bytesText(sectors * aoe.SectorSize)
}

func bytesText(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, i := float64(n), 0
	for f >= unit && i < 5 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGTP"[i-1])
}
