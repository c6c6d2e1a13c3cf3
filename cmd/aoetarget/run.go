package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/aoetarget/aoetarget/aoe"
	"github.com/aoetarget/aoetarget/config"
	"github.com/aoetarget/aoetarget/internal/sdnotify"
	"github.com/aoetarget/aoetarget/target"
)

// version is the program's version, set at build time with
// -ldflags "-X main.version=...".
var version = "0.1.0-dev"

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
	cached     bool
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

	// Modes and process-wide settings beyond vblade's.
	configPath  string                 // --config: serve the exports of this file
	checkConfig string                 // --check-config: validate this file and exit
	only        []string               // --export: only these exports of the file
	vbladeConf  string                 // --vblade-conf: a Debian vblade drop-in file
	stateDir    string                 // --state-dir
	control     string                 // --control
	metrics     string                 // --metrics
	set         func(name string) bool // whether a flag was given
}

const usageText = `Usage: aoetarget [options] shelf slot netif filename
       aoetarget --config FILE [--export NAME]... [options]
       aoetarget --check-config FILE
       aoetarget --vblade-conf FILE [options]
       aoetarget status [--control SOCKET]... [--json]

Export filename (a regular file or a block device) as AoE target
e<shelf>.<slot> on network interface netif. With --config, serve every
export of a config file (see aoetarget.toml(5)) in one process, and re-read
it on SIGHUP: unchanged exports keep serving untouched. --vblade-conf
serves a Debian vblade drop-in file (/etc/vblade.conf.d/NAME.conf) as it
is. The status subcommand shows what running daemons serve.

Modes:
      --config FILE     serve the exports of FILE (no positional arguments)
      --export NAME     with --config: serve only this export (repeatable)
      --check-config FILE  validate FILE, list its exports, and exit
      --vblade-conf FILE   serve the export of a vblade drop-in file

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
      --cached-writes   keep durable writes in the page cache, written
                        back by each flush, instead of writing them to the
                        disk directly (O_DIRECT) where the file allows it
      --config-string S initial AoE config string (at most 1024 bytes)
      --state-dir DIR   keep the config string, MAC mask list and reserve
                        list that initiators set across restarts, in DIR
                        (default with --config: the file's state_dir,
                        /var/lib/aoetarget; otherwise none, as vblade)
      --control SOCKET  answer aoetarget status on this unix socket
                        (default with --config: the file's control_socket,
                        /run/aoetarget/control.sock; otherwise none)
      --metrics ADDR    serve Prometheus metrics at http://ADDR/metrics
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
	fs.BoolVar(&o.cached, "cached-writes", false, "")
	fs.StringVar(&o.cstring, "config-string", "", "")
	fs.StringVar(&o.configPath, "config", "", "")
	fs.StringVar(&o.checkConfig, "check-config", "", "")
	fs.StringArrayVar(&o.only, "export", nil, "")
	fs.StringVar(&o.vbladeConf, "vblade-conf", "", "")
	fs.StringVar(&o.stateDir, "state-dir", "", "")
	fs.StringVar(&o.control, "control", "", "")
	fs.StringVar(&o.metrics, "metrics", "", "")
	fs.StringVar(&o.logFormat, "log-format", "text", "")
	level := fs.String("log-level", "info", "")
	fs.BoolVarP(&o.help, "help", "h", false, "")
	fs.BoolVar(&o.vers, "version", false, "")
	if err := fs.Parse(args); err != nil {
		return nil, usagef("%v", err)
	}
	o.set = func(name string) bool { return fs.Changed(name) }
	if o.help || o.vers {
		return o, nil
	}
	if o.checkConfig != "" || o.configPath != "" {
		// The file holds the exports: none of the one-export flags or
		// arguments apply.
		for _, name := range []string{"bufcnt", "direct", "sync", "read-only", "mac", "offset", "length",
			"writeback", "io-timeout", "queues", "no-io-uring", "cached-writes", "config-string", "vblade-conf"} {
			if fs.Changed(name) {
				return nil, usagef("--%s: set it in the config file (aoetarget.toml(5)), not with --config", name)
			}
		}
		if o.checkConfig != "" && o.configPath != "" {
			return nil, usagef("--config and --check-config: pick one")
		}
		if fs.NArg() != 0 {
			return nil, usagef("--config takes no other arguments (got %q)", fs.Arg(0))
		}
		if err := parseLogFlags(o, *level); err != nil {
			return nil, err
		}
		return o, nil
	}
	if len(o.only) > 0 {
		return nil, usagef("--export needs --config")
	}
	if o.vbladeConf != "" && fs.NArg() == 0 {
		// The file holds the arguments; run parses them with the
		// flags given here (vbladeArgs).
		if err := parseLogFlags(o, *level); err != nil {
			return nil, err
		}
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
	if err := parseLogFlags(o, *level); err != nil {
		return nil, err
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

func parseLogFlags(o *options, level string) error {
	switch o.logFormat {
	case "text", "json":
	default:
		return usagef("--log-format %s: use text or json", o.logFormat)
	}
	if err := o.logLevel.UnmarshalText([]byte(level)); err != nil {
		return usagef("--log-level %s: use debug, info, warn or error", level)
	}
	return nil
}

// export is the one export of the vblade-style command line.
func (o *options) export() config.Export {
	e := config.Export{
		Shelf:        o.shelf,
		Slot:         o.slot,
		File:         o.filename,
		Interfaces:   []string{o.netif},
		Offset:       o.offset,
		Length:       o.length,
		ReadOnly:     o.readOnly,
		Direct:       o.direct,
		Sync:         o.sync,
		Writeback:    o.writeback,
		MACs:         o.masks,
		BufferCount:  o.bufcnt,
		ConfigString: o.cstring,
		IOTimeout:    o.ioTimeout,
		Queues:       o.queues,
		IOUring:      !o.noRing,
		CachedWrites: o.cached,
	}
	e.Name = e.Address()
	return e
}

// newLogger returns the program's logger: text or JSON on stderr, without
// timestamps when the journal adds its own (JOURNAL_STREAM is set).
func newLogger(w io.Writer, format string, level slog.Leveler) *slog.Logger {
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
	if len(args) > 0 && args[0] == "status" {
		return runStatus(args[1:], stdout, stderr)
	}
	o, err := parseArgs(args)
	if err == nil && o.vbladeConf != "" && !o.help && !o.vers {
		o, err = vbladeArgs(o.vbladeConf, args)
	}
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
	if o.checkConfig != "" {
		return checkConfig(o.checkConfig, stdout, stderr)
	}
	if err := serve(ctx, o, stderr); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "aoetarget: %v\n", err)
			return exitUsage
		}
		fmt.Fprintf(stderr, "aoetarget: %v\n", err)
		return exitError
	}
	return exitOK
}

// vbladeArgs reads a vblade drop-in file and parses the command line it
// stands for, with the other flags of args (--state-dir, --log-level...).
func vbladeArgs(path string, args []string) (*options, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("--vblade-conf: %v", err)
	}
	v, err := config.ParseVblade(path, data)
	if err != nil {
		return nil, usagef("%v", err)
	}
	var rest []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--vblade-conf":
			i++
		case strings.HasPrefix(a, "--vblade-conf="):
		default:
			rest = append(rest, a)
		}
	}
	o, err := parseArgs(append(rest, v.Args()...))
	if err != nil {
		return nil, usagef("%s: %v", path, err)
	}
	return o, nil
}

// checkConfig validates a config file and lists its exports.
func checkConfig(path string, stdout, stderr io.Writer) int {
	f, err := config.Load(path)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return exitError
	}
	fmt.Fprintf(stdout, "%s: valid, %d exports\n", path, len(f.Exports))
	for _, e := range f.Exports {
		fmt.Fprintf(stdout, "  %s\n", describe(e))
	}
	return exitOK
}

// serve runs the exports until ctx is done: those of the config file, or
// the command line's one.
func serve(ctx context.Context, o *options, stderr io.Writer) error {
	level := new(slog.LevelVar)
	level.Set(o.logLevel)
	format := o.logFormat
	var exports []config.Export
	var file *config.File
	stateDir, control, metricsAddr := o.stateDir, o.control, o.metrics
	if o.configPath != "" {
		f, err := config.Load(o.configPath)
		if err != nil {
			return err
		}
		file = f
		if exports, err = selectExports(f, o.only); err != nil {
			return usagef("%v", err)
		}
		if !o.set("log-level") {
			level.Set(f.LogLevel)
		}
		if !o.set("log-format") {
			format = f.LogFormat
		}
		if !o.set("state-dir") {
			stateDir = f.StateDir
		}
		if !o.set("control") {
			control = f.ControlSocket
		}
		if !o.set("metrics") {
			metricsAddr = f.MetricsListen
		}
	} else {
		exports = []config.Export{o.export()}
	}
	log := newLogger(stderr, format, level)
	host, _ := os.Hostname()
	d := &daemon{
		env:        &env{log: log, stateDir: stateDir, host: host},
		notify:     sdnotify.New(),
		level:      level,
		configPath: o.configPath,
		only:       o.only,
		file:       file,
	}
	if file != nil {
		log.Info("starting", "config", file.Path, "exports", len(exports), "state_dir", stateDir, "control", control, "metrics", metricsAddr, "version", version)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if metricsAddr != "" {
		stop, err := startMetrics(ctx, metricsAddr, d)
		if err != nil {
			return err
		}
		defer stop()
	}
	if control != "" {
		stop, err := serveControl(ctx, control, d)
		if err != nil {
			return err
		}
		defer stop()
	}
	return d.run(ctx, exports, o.configPath == "")
}
