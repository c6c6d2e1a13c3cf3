package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/aoetarget/aoetarget/aoe"
	"github.com/aoetarget/aoetarget/blockstore"
	"github.com/aoetarget/aoetarget/netconf"
	"github.com/aoetarget/aoetarget/target"
)

// version is the program's version, set at build time with
// -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// minProcs is the least GOMAXPROCS the target runs with (see run).
const minProcs = 16

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1 // a failure while serving
	exitUsage = 2 // bad arguments, as getopt-style tools use
)

// usageError is a bad command line: one line on stderr and exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return usageError{fmt.Sprintf(format, args...)}
}

// DefaultIOTimeout is the default I/O deadline (--io-timeout): the Linux
// SCSI layer's default command timeout, well under the Linux aoe
// initiator's aoe_deadsecs (60 s), after which it fails the whole device.
const DefaultIOTimeout = 30 * time.Second

// options is the parsed command line.
type options struct {
	bufcnt     uint16
	direct     bool
	sync       bool
	readOnly   bool
	writeback  bool
	ioTimeout  time.Duration
	queues     int
	noRing     bool
	masks      []aoe.MAC
	offset     int64
	length     int64
	shelf      uint16
	slot       uint8
	netif      string
	filename   string
	cstring    string
	logFormat  string
	logLevel   slog.Level
	help, vers bool
}

const usageText = `Usage: aoetarget [options] shelf slot netif filename

Export filename (a regular file or a block device) as AoE target
e<shelf>.<slot> on network interface netif.

vblade's options:
  -b, --bufcnt N        advertised buffer count: outstanding requests the
                        initiator may send (default 16, at least 2)
  -d, --direct          open with O_DIRECT (bypass the page cache)
  -s, --sync            open with O_SYNC (every write synchronous)
  -r, --read-only       export read-only; writes fail with ATA ABRT
  -m, --mac MAC[,MAC]   initial MAC mask list: only these initiators are
                        served (with or without colons, any case)
  -o, --offset N        skip N 512-byte sectors at the start of filename
  -l, --length N        export N 512-byte sectors (default: to the end)

aoetarget's options:
      --writeback       acknowledge writes before they are on stable
                        storage (faster; a power failure of this host can
                        lose writes the initiator counted as done)
      --io-timeout D    answer a request whose read, write or flush takes
                        longer than D with an ATA error, and fail requests
                        that need the disk at once until it returns, so
                        that the initiator (and md) fail them instead of
                        retransmitting for a minute (default 30s; 0: never)
      --queues N        receive loops on the interface, each on its own
                        socket of a PACKET_FANOUT group that splits the
                        requests by disk region, to use N cores on the
                        receive path (default 1)
      --no-io-uring     do disk I/O on threads (pread/pwrite) even where
                        io_uring is available
      --config-string S initial AoE config string (at most 1024 bytes)
      --log-format F    text (default) or json
      --log-level L     debug, info (default), warn or error
  -h, --help            show this help
      --version         show the version

By default every write is durable (fdatasync, or O_SYNC with -s) before it
is acknowledged: the Linux aoe initiator never sends FLUSH CACHE.
`

// parseArgs parses the command line. It returns a usageError for every
// problem that is the caller's fault.
func parseArgs(args []string) (*options, error) {
	o := &options{}
	fs := pflag.NewFlagSet("aoetarget", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.SortFlags = false
	bufcnt := fs.Int64P("bufcnt", "b", target.DefaultBufferCount, "")
	fs.BoolVarP(&o.direct, "direct", "d", false, "")
	fs.BoolVarP(&o.sync, "sync", "s", false, "")
	fs.BoolVarP(&o.readOnly, "read-only", "r", false, "")
	macs := fs.StringSliceP("mac", "m", nil, "")
	fs.Int64VarP(&o.offset, "offset", "o", 0, "")
	fs.Int64VarP(&o.length, "length", "l", 0, "")
	fs.BoolVar(&o.writeback, "writeback", false, "")
	fs.DurationVar(&o.ioTimeout, "io-timeout", DefaultIOTimeout, "")
	fs.IntVar(&o.queues, "queues", 1, "")
	fs.BoolVar(&o.noRing, "no-io-uring", false, "")
	fs.StringVar(&o.cstring, "config-string", "", "")
	fs.StringVar(&o.logFormat, "log-format", "text", "")
	level := fs.String("log-level", "info", "")
	fs.BoolVarP(&o.help, "help", "h", false, "")
	fs.BoolVar(&o.vers, "version", false, "")
	if err := fs.Parse(args); err != nil {
		return nil, usagef("%v", err)
	}
	if o.help || o.vers {
		return o, nil
	}
	if *bufcnt < 2 {
		return nil, usagef("-b %d: the buffer count must be at least 2 (the Linux initiator never brings up a target that advertises fewer)", *bufcnt)
	}
	if *bufcnt > 65535 {
		return nil, usagef("-b %d: the buffer count must be at most 65535", *bufcnt)
	}
	o.bufcnt = uint16(*bufcnt)
	if o.queues < 1 || o.queues > 64 {
		return nil, usagef("--queues %d: must be from 1 to 64", o.queues)
	}
	if o.ioTimeout < 0 {
		return nil, usagef("--io-timeout %v: must not be negative", o.ioTimeout)
	}
	if o.offset < 0 || o.length < 0 {
		return nil, usagef("-o and -l must not be negative")
	}
	if o.sync && o.writeback {
		return nil, usagef("-s (every write synchronous) and --writeback contradict each other")
	}
	for _, s := range *macs {
		if s == "" {
			continue
		}
		m, err := aoe.ParseMAC(s)
		if err != nil {
			return nil, usagef("-m %s: not a MAC address", s)
		}
		o.masks = append(o.masks, m)
	}
	if len(o.masks) > target.MaxMasks {
		return nil, usagef("-m: %d MACs, the mask list holds at most %d", len(o.masks), target.MaxMasks)
	}
	if len(o.cstring) > aoe.MaxConfigStringLen {
		return nil, usagef("--config-string: %d bytes, at most %d", len(o.cstring), aoe.MaxConfigStringLen)
	}
	switch o.logFormat {
	case "text", "json":
	default:
		return nil, usagef("--log-format %s: use text or json", o.logFormat)
	}
	if err := o.logLevel.UnmarshalText([]byte(*level)); err != nil {
		return nil, usagef("--log-level %s: use debug, info, warn or error", *level)
	}
	pos := fs.Args()
	if len(pos) != 4 {
		return nil, usagef("need 4 arguments (shelf slot netif filename), got %d; see --help", len(pos))
	}
	shelf, err := strconv.ParseUint(pos[0], 10, 32)
	switch {
	case err != nil || shelf > 65534:
		return nil, usagef("shelf %s: must be a number from 0 to 65534", pos[0])
	case shelf == 4095:
		return nil, usagef("shelf 4095: the Linux initiator ignores it (\"shelf address is all ones\"); pick another shelf")
	}
	slot, err := strconv.ParseUint(pos[1], 10, 32)
	if err != nil || slot > 254 {
		return nil, usagef("slot %s: must be a number from 0 to 254", pos[1])
	}
	o.shelf, o.slot = uint16(shelf), uint8(slot)
	o.netif, o.filename = pos[2], pos[3]
	return o, nil
}

// newLogger returns the program's logger: text or JSON on stderr, without
// timestamps when the journal adds its own (JOURNAL_STREAM is set).
func newLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if os.Getenv("JOURNAL_STREAM") != "" {
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// run is the whole program; it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseArgs(args)
	if err != nil {
		fmt.Fprintf(stderr, "aoetarget: %v\n", err)
		return exitUsage
	}
	if o.help {
		io.WriteString(stdout, usageText)
		return exitOK
	}
	if o.vers {
		fmt.Fprintf(stdout, "aoetarget %s\n", version)
		return exitOK
	}
	log := newLogger(stderr, o.logFormat, o.logLevel)
	if os.Getenv("GOMAXPROCS") == "" {
		// Workers block in disk system calls (pread, fdatasync); each holds
		// its P until the runtime takes it back, which can take
		// milliseconds. Spare Ps keep the receive loop running meanwhile:
		// on one core this more than doubles O_DIRECT and cold-cache reads.
		runtime.GOMAXPROCS(max(runtime.NumCPU(), minProcs))
	}
	if err := serve(ctx, o, log); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "aoetarget: %v\n", err)
			return exitUsage
		}
		log.Error("aoetarget failed", "err", err)
		return exitError
	}
	return exitOK
}

// serve opens the export and serves it until ctx is done.
func serve(ctx context.Context, o *options, log *slog.Logger) error {
	store, err := blockstore.Open(o.filename, blockstore.Options{
		Offset:   o.offset,
		Length:   o.length,
		ReadOnly: o.readOnly,
		Direct:   o.direct,
		Sync:     o.sync,
	})
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, blockstore.ErrWindow) ||
			errors.Is(err, blockstore.ErrTooSmall) {
			return usagef("%v", err)
		}
		return err
	}
	defer func() {
		// Closing flushes; on a stalled disk that could block for
		// ever: give up after the I/O deadline.
		closed := make(chan error, 1)
		go func() { closed <- store.Close() }()
		var timeout <-chan time.Time
		if o.ioTimeout > 0 {
			timeout = time.After(o.ioTimeout)
		}
		select {
		case err := <-closed:
			if err != nil {
				log.Error("closing the store failed", "err", err)
			}
		case <-timeout:
			log.Error("the store did not close within the I/O deadline; exiting anyway", "waited", o.ioTimeout)
		}
	}()
	if _, err := netconf.Lookup(o.netif); err != nil && !errors.Is(err, netconf.ErrLinkDown) {
		return usagef("%v", err)
	}
	host, _ := os.Hostname()
	log = log.With("target", fmt.Sprintf("e%d.%d", o.shelf, o.slot))
	h, err := target.NewHandler(target.Config{
		Major:        o.shelf,
		Minor:        o.slot,
		BufferCount:  o.bufcnt,
		Writeback:    o.writeback,
		Masks:        o.masks,
		ConfigString: []byte(o.cstring),
		Hostname:     host,
		Firmware:     strings.SplitN(strings.TrimPrefix(version, "v"), "-", 2)[0],
		Logger:       log,
	}, store)
	if err != nil {
		return usagef("%v", err)
	}
	durability := "durable: each write is on stable storage before it is acknowledged"
	switch {
	case o.readOnly:
		durability = "read-only"
	case o.writeback:
		durability = "WRITEBACK: writes are acknowledged before they are on stable storage; a power failure can lose them"
	}
	log.Info("exporting", "file", o.filename, "sectors", store.Sectors(),
		"offset", o.offset, "direct", o.direct, "sync", o.sync, "bufcnt", o.bufcnt,
		"masks", len(o.masks), "writes", durability, "io_timeout", o.ioTimeout, "queues", o.queues, "version", version)
	srv := target.NewServer(h, target.ServerConfig{Interfaces: []string{o.netif}, Logger: log, IOTimeout: o.ioTimeout, Queues: o.queues, NoRing: o.noRing})
	if err := srv.Serve(ctx); err != nil {
		return err
	}
	st := h.Stats()
	log.Info("stopping", "replies", st.Verdicts[target.Reply].Load(),
		"reads", st.Reads.Load(), "writes", st.Writes.Load(), "flushes", st.Flushes.Load(), "merged", st.Merged.Load(), "ring_reads", st.ReadIOs.Load(), "ring_writes", st.WriteIOs.Load(), "stalled_io", st.StalledIO.Load(),
		"ata_errors", st.ATAErrors.Load(), "aoe_errors", st.AoEErrors.Load(), "io_errors", st.IOErrors.Load(),
		slog.Group("dropped", dropped(st)...))
	return nil
}

// dropped lists the requests dropped without a reply, by reason.
func dropped(st *target.Stats) []any {
	var attrs []any
	for v := target.Verdict(0); v < target.Verdict(len(st.Verdicts)); v++ {
		if v != target.Reply {
			attrs = append(attrs, v.String(), st.Verdicts[v].Load())
		}
	}
	return attrs
}
