package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/aoetarget/aoetarget/aoe"
	"github.com/spf13/pflag"
)

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1 // the run failed, or saw errors or corrupt data
	exitUsage = 2 // the command line is wrong
)

// rwMode is what the I/Os do.
type rwMode int

const (
	modeRead   rwMode = iota // READ SECTORS EXT
	modeWrite                // WRITE SECTORS EXT of a fixed pattern
	modeVerify               // write stamped sectors, read them back, compare
)

func (m rwMode) String() string {
	switch m {
	case modeWrite:
		return "write"
	case modeVerify:
		return "verify"
	}
	return "read"
}

// options is the command line of a run.
type options struct {
	ifname      string
	shelf       uint16
	slot        uint8
	window      int           // frames in flight
	sectors     int           // sectors per frame; 0: the most the target and MTU allow
	bs          int64         // bytes per I/O; 0: one frame of the full sector count
	mode        rwMode        //
	random      bool          // random block order; else sequential
	duration    time.Duration // measured phase (unless count is set)
	warmup      time.Duration // before the measured phase
	count       int64         // I/Os in the measured phase; 0: run for duration
	timeout     time.Duration // retransmit a frame after this long without reply
	offset      int64         // bytes: start of the region used
	size        int64         // bytes: length of the region; 0: to the end
	pid         int           // target process, for its CPU time; 0: none
	json        bool          // print JSON instead of text
	caseName    string        // labels carried into the JSON for `aoebench report`
	targetName  string        //
	seed        uint64        // 0: from the clock
	discover    time.Duration // how long to wait for the target to answer
	overBufcnt  bool          // allow a window beyond the target's buffer count
	ioText      string        // ring or mmsg
	spin        bool          // busy-poll for replies
	help        bool          //
	bsText      string        // the -b argument as given, for the report
	patternText string        //
}

const usageText = `usage: aoebench -i netif [flags] shelf slot
       aoebench report [--svg file] [--goal spec]... results.jsonl...

aoebench is a load generator for AoE targets: it finds shelf.slot on netif,
then keeps a fixed window of ATA frames in flight from one thread (batched
sendmmsg/recvmmsg on its own AF_PACKET socket, pre-built frames, no
allocation per frame), and reports IOPS, MB/s, frames/s, latency
percentiles, retransmits, errors and the target's CPU time.

An I/O is one block of --bs bytes (default 4k) at a block-aligned offset,
split into frames of --sectors sectors (default: what the target advertises,
capped by the MTU): at MTU 1500 that is 2 sectors, so a 4-KiB I/O is 4
frames; at MTU 9000, 17 sectors, so one frame. --bs frame makes every I/O a
single frame of the full sector count. The window counts frames, not I/Os.
IOPS counts I/Os whose frames were all answered; MB/s is data bytes moved
(10^6 bytes per MB); latency is per I/O, from its first frame sent to its
last frame answered (frame latencies are in the JSON).

--rw verify writes every block with a stamp per sector (LBA, I/O sequence
number, run seed, pseudo-random filler), reads it back after the write is
acknowledged, and counts any sector that differs; an I/O is the pair.

The report subcommand reads the JSON lines of several runs (--json, with
--case and --name) and prints a Markdown table per case: the median of the
runs with their minimum and maximum, and the ratios --goal asks for.

Flags:
`

// rawFlags are the flags parsed as text and checked after parsing.
type rawFlags struct{ rw, offset, size *string }

// defineFlags returns the run's flag set, writing into o.
func defineFlags(o *options) (*pflag.FlagSet, rawFlags) {
	fs := pflag.NewFlagSet("aoebench", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.SortFlags = false
	var r rawFlags
	fs.StringVarP(&o.ifname, "interface", "i", "", "network interface the target is on (required)")
	fs.IntVarP(&o.window, "window", "w", 32, "frames in flight (at most the target's buffer count unless --over-bufcnt)")
	fs.IntVar(&o.sectors, "sectors", 0, "sectors per frame; 0 = the target's advertised count, capped by the MTU")
	fs.StringVarP(&o.bsText, "bs", "b", "4k", "bytes per I/O (k, m, g suffixes; a multiple of 512), or \"frame\" for one full frame")
	r.rw = fs.String("rw", "read", "read, write or verify")
	fs.StringVar(&o.patternText, "pattern", "random", "random or seq (sequential blocks, wrapping at the end of the region)")
	fs.DurationVarP(&o.duration, "duration", "d", 10*time.Second, "length of the measured phase")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "run this long before measuring")
	fs.Int64VarP(&o.count, "count", "n", 0, "stop after this many I/Os in the measured phase instead of after --duration")
	fs.DurationVar(&o.timeout, "timeout", time.Second, "resend a frame (with a new tag) after this long without a reply")
	r.offset = fs.String("offset", "0", "start of the region used, in bytes (k, m, g, s suffixes)")
	r.size = fs.String("size", "0", "length of the region used, in bytes; 0 = to the end of the target")
	fs.IntVar(&o.pid, "pid", 0, "the target's process id, to report its CPU time (from /proc/PID/stat)")
	fs.BoolVar(&o.json, "json", false, "print the result as one JSON object")
	fs.StringVar(&o.caseName, "case", "", "case label for the JSON (aoebench report groups by it)")
	fs.StringVar(&o.targetName, "name", "", "target label for the JSON (aoebench report's rows)")
	fs.Uint64Var(&o.seed, "seed", 0, "random seed for offsets and stamps; 0 = from the clock")
	fs.DurationVar(&o.discover, "discover-timeout", 10*time.Second, "how long to wait for the target to answer Query Config")
	fs.BoolVar(&o.overBufcnt, "over-bufcnt", false, "allow a window larger than the buffer count the target advertises")
	fs.StringVar(&o.ioText, "io", "mmsg", "how replies are received: mmsg (recvmmsg) or ring (PACKET_RX_RING: no system call while frames wait, but the kernel copies each reply into the ring on the sender's CPU, i.e. the target's)")
	fs.BoolVar(&o.spin, "spin", false, "never sleep waiting for replies: poll without blocking (costs a whole core, saves the target the wake-ups)")
	fs.BoolVarP(&o.help, "help", "h", false, "show this help")
	return fs, r
}

// parseArgs parses the command line of a run.
func parseArgs(args []string) (*options, error) {
	o := &options{}
	fs, r := defineFlags(o)
	rw, offset, size := r.rw, r.offset, r.size
	if err := fs.Parse(args); err != nil {
		return nil, usagef("%v", err)
	}
	if o.help {
		return o, nil
	}
	var err error
	switch *rw {
	case "read":
		o.mode = modeRead
	case "write":
		o.mode = modeWrite
	case "verify":
		o.mode = modeVerify
	default:
		return nil, usagef("--rw %s: use read, write or verify", *rw)
	}
	switch o.patternText {
	case "random", "rand":
		o.random, o.patternText = true, "random"
	case "seq", "sequential":
		o.patternText = "seq"
	default:
		return nil, usagef("--pattern %s: use random or seq", o.patternText)
	}
	if o.ioText != "ring" && o.ioText != "mmsg" {
		return nil, usagef("--io %s: use ring or mmsg", o.ioText)
	}
	if o.bsText == "frame" {
		o.bs = 0
	} else {
		if o.bs, err = parseSize(o.bsText); err != nil {
			return nil, usagef("--bs: %v", err)
		}
		if o.bs <= 0 || o.bs%aoe.SectorSize != 0 || o.bs > 1<<30 {
			return nil, usagef("--bs %s: must be a positive multiple of 512 bytes, at most 1g", o.bsText)
		}
	}
	if o.offset, err = parseSize(*offset); err != nil {
		return nil, usagef("--offset: %v", err)
	}
	if o.size, err = parseSize(*size); err != nil {
		return nil, usagef("--size: %v", err)
	}
	if o.offset%aoe.SectorSize != 0 || o.size%aoe.SectorSize != 0 {
		return nil, usagef("--offset and --size must be multiples of 512 bytes")
	}
	switch {
	case o.window < 1 || o.window > 65535:
		return nil, usagef("--window %d: must be from 1 to 65535", o.window)
	case o.sectors < 0 || o.sectors > 255:
		return nil, usagef("--sectors %d: must be from 0 (automatic) to 255", o.sectors)
	case o.count < 0:
		return nil, usagef("--count must not be negative")
	case o.count == 0 && o.duration <= 0:
		return nil, usagef("--duration must be positive (or give --count)")
	case o.warmup < 0:
		return nil, usagef("--warmup must not be negative")
	case o.timeout <= 0:
		return nil, usagef("--timeout must be positive")
	case o.discover <= 0:
		return nil, usagef("--discover-timeout must be positive")
	case o.pid < 0:
		return nil, usagef("--pid must not be negative")
	}
	pos := fs.Args()
	if len(pos) != 2 {
		return nil, usagef("need 2 arguments (shelf slot), got %d", len(pos))
	}
	shelf, err := strconv.ParseUint(pos[0], 10, 16)
	if err != nil || shelf >= aoe.BroadcastMajor {
		return nil, usagef("shelf %s: must be a number from 0 to 65534", pos[0])
	}
	slot, err := strconv.ParseUint(pos[1], 10, 8)
	if err != nil || slot >= aoe.BroadcastMinor {
		return nil, usagef("slot %s: must be a number from 0 to 254", pos[1])
	}
	o.shelf, o.slot = uint16(shelf), uint8(slot)
	if o.ifname == "" {
		return nil, usagef("no interface: use -i netif")
	}
	return o, nil
}

// parseSize parses a byte count: a decimal number with an optional binary
// suffix k, m, g or t (any case, optionally followed by "iB" or "B"), or s
// for 512-byte sectors.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	lower := strings.ToLower(t)
	for _, suf := range []string{"ib", "b"} {
		if strings.HasSuffix(lower, suf) && len(lower) > len(suf) {
			c := lower[len(lower)-len(suf)-1]
			if c == 'k' || c == 'm' || c == 'g' || c == 't' {
				lower = lower[:len(lower)-len(suf)]
				break
			}
		}
	}
	if n := len(lower); n > 0 {
		switch lower[n-1] {
		case 'k':
			mult = 1 << 10
		case 'm':
			mult = 1 << 20
		case 'g':
			mult = 1 << 30
		case 't':
			mult = 1 << 40
		case 's':
			mult = aoe.SectorSize
		}
		if mult != 1 {
			lower = lower[:n-1]
		}
	}
	v, err := strconv.ParseInt(lower, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%q is not a size (a number with an optional k, m, g, t or s suffix)", s)
	}
	if v > (1<<62)/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return v * mult, nil
}

// usageError is a mistake on the command line: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// flagUsages returns the help text of the run flags.
func flagUsages() string {
	fs, _ := defineFlags(&options{})
	return fs.FlagUsages()
}
