package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/aoetarget/aoetarget/aoe"
	"github.com/aoetarget/aoetarget/initiator"
	"github.com/spf13/pflag"
)

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1 // the command failed
	exitUsage = 2 // the command line is wrong
)

// chunk is how much read and write move per ReadAt or WriteAt call, each
// with its own timeout.
const chunk = 1 << 20

const usageText = `usage: aoectl -i netif [-t timeout] command [args]

Commands (shelf and slot are decimal; lba and count are in 512-byte sectors):
  discover [shelf [slot]]              list the targets that answer
  identify shelf slot                  model, serial, firmware and capacity
  read shelf slot lba count            write count sectors from lba to stdout
  write shelf slot lba                 write stdin (whole sectors) from lba
  flush shelf slot                     FLUSH CACHE EXT
  config shelf slot [read|test|test-prefix|set|force-set] [string]
                                       read, test or set the config string
  mask shelf slot [list|add MAC...|del MAC...]
                                       read or edit the Mac Mask List
  reserve shelf slot [read|set MAC...|force-set [MAC...]|release]
                                       read or change the reservation

Options:
`

// usageError is a mistake on the command line: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// errNoMatch is a config test that no target answered.
var errNoMatch = errors.New("no target with a matching config string answered")

// app is one invocation of aoectl.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// dial opens the client on an interface: initiator.Dial, or a fake in
	// tests.
	dial func(ifname string) (*initiator.Client, error)

	ifname  string
	timeout time.Duration
	client  *initiator.Client
}

// run runs aoectl with the arguments args (without the program name) and
// returns the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, dial: initiator.Dial}
	return a.run(ctx, args)
}

func (a *app) run(ctx context.Context, args []string) int {
	fs := pflag.NewFlagSet("aoectl", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVarP(&a.ifname, "interface", "i", "", "network interface the targets are on (required)")
	fs.DurationVarP(&a.timeout, "timeout", "t", 2*time.Second,
		"how long to wait for replies: discover listens this long; other commands give up after it without an answer")
	help := fs.BoolP("help", "h", false, "show this help")
	if err := fs.Parse(args); err != nil {
		return a.usage(err)
	}
	if *help {
		fmt.Fprint(a.stdout, usageText)
		fmt.Fprint(a.stdout, fs.FlagUsages())
		return exitOK
	}
	cmd, err := a.parse(fs.Args())
	if err != nil {
		return a.usage(err)
	}
	if err := cmd(ctx); err != nil {
		fmt.Fprintf(a.stderr, "aoectl: %v\n", err)
		return exitError
	}
	return exitOK
}

// usage reports a command line mistake in one line.
func (a *app) usage(err error) int {
	fmt.Fprintf(a.stderr, "aoectl: %v (see aoectl -h)\n", err)
	return exitUsage
}

// parse checks the command line and returns the command to run.
func (a *app) parse(args []string) (func(context.Context) error, error) {
	if len(args) == 0 {
		return nil, usagef("no command")
	}
	if a.timeout <= 0 {
		return nil, usagef("timeout must be positive, not %v", a.timeout)
	}
	name, args := args[0], args[1:]
	var cmd func(context.Context) error
	var err error
	switch name {
	case "discover":
		cmd, err = a.parseDiscover(args)
	case "identify", "flush":
		cmd, err = a.parseSimple(name, args)
	case "read":
		cmd, err = a.parseRead(args)
	case "write":
		cmd, err = a.parseWrite(args)
	case "config":
		cmd, err = a.parseConfig(args)
	case "mask":
		cmd, err = a.parseMask(args)
	case "reserve":
		cmd, err = a.parseReserve(args)
	default:
		return nil, usagef("unknown command %q", name)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if a.ifname == "" {
		return nil, usagef("no interface: use -i netif")
	}
	return cmd, nil
}

func parseShelf(s string, broadcast bool) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || (!broadcast && n == aoe.BroadcastMajor) {
		return 0, usagef("shelf %q: want a number from 0 to 65534", s)
	}
	return uint16(n), nil
}

func parseSlot(s string, broadcast bool) (uint8, error) {
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil || (!broadcast && n == aoe.BroadcastMinor) {
		return 0, usagef("slot %q: want a number from 0 to 254", s)
	}
	return uint8(n), nil
}

// parseAddress parses the shelf and slot at the start of args and returns
// the rest.
func parseAddress(args []string) (shelf uint16, slot uint8, rest []string, err error) {
	if len(args) < 2 {
		return 0, 0, nil, usagef("need shelf and slot")
	}
	if shelf, err = parseShelf(args[0], false); err != nil {
		return 0, 0, nil, err
	}
	if slot, err = parseSlot(args[1], false); err != nil {
		return 0, 0, nil, err
	}
	return shelf, slot, args[2:], nil
}

func parseMACs(args []string) ([]aoe.MAC, error) {
	if len(args) == 0 {
		return nil, usagef("need at least one MAC address")
	}
	macs := make([]aoe.MAC, 0, len(args))
	for _, s := range args {
		m, err := aoe.ParseMAC(s)
		if err != nil {
			return nil, usagef("MAC address %q: want six hex bytes such as 02:00:5e:10:00:01", s)
		}
		macs = append(macs, m)
	}
	return macs, nil
}

func parseLBA(s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > aoe.MaxLBA48 {
		return 0, usagef("lba %q: want a sector number below 2^48", s)
	}
	return n, nil
}

// open dials the interface; the caller closes a.client.
func (a *app) open() error {
	c, err := a.dial(a.ifname)
	if err != nil {
		return err
	}
	a.client = c
	return nil
}

// withTarget opens the client, finds shelf.slot and runs fn with it.
func (a *app) withTarget(ctx context.Context, shelf uint16, slot uint8, fn func(initiator.Target) error) error {
	if err := a.open(); err != nil {
		return err
	}
	defer a.client.Close()
	lctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	t, err := a.client.Lookup(lctx, shelf, slot)
	if errors.Is(err, initiator.ErrNoReply) {
		return fmt.Errorf("no target %d.%d answered on %s within %v", shelf, slot, a.ifname, a.timeout)
	}
	if err != nil {
		return err
	}
	return fn(t)
}

// deadline returns ctx bounded by the timeout.
func (a *app) deadline(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, a.timeout)
}

func (a *app) parseDiscover(args []string) (func(context.Context) error, error) {
	shelf, slot := uint16(aoe.BroadcastMajor), uint8(aoe.BroadcastMinor)
	var err error
	switch len(args) {
	case 2:
		if slot, err = parseSlot(args[1], false); err != nil {
			return nil, err
		}
		fallthrough
	case 1:
		if shelf, err = parseShelf(args[0], false); err != nil {
			return nil, err
		}
	case 0:
	default:
		return nil, usagef("want at most shelf and slot, got %d arguments", len(args))
	}
	return func(ctx context.Context) error {
		if err := a.open(); err != nil {
			return err
		}
		defer a.client.Close()
		dctx, cancel := a.deadline(ctx)
		defer cancel()
		ts, err := a.client.Discover(dctx, shelf, slot)
		if errors.Is(err, initiator.ErrNoReply) && ctx.Err() == nil {
			return fmt.Errorf("no targets answered on %s within %v", a.ifname, a.timeout)
		}
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(a.stdout, 0, 8, 2, ' ', 0)
		fmt.Fprintln(w, "TARGET\tMAC\tBUFCNT\tFIRMWARE\tSECTORS\tCONFIG")
		for _, t := range ts {
			fmt.Fprintf(w, "%s\t%v\t%d\t%#04x\t%d\t%s\n", t, t.MAC, t.Config.BufferCount,
				t.Config.FirmwareVersion, t.MaxSectors(a.client.MTU()), quote(t.Config.String))
		}
		return w.Flush()
	}, nil
}

// quote returns s as a Go string literal, so that empty and odd strings show.
func quote(s []byte) string { return strconv.Quote(string(s)) }

func (a *app) parseSimple(name string, args []string) (func(context.Context) error, error) {
	shelf, slot, rest, err := parseAddress(args)
	if err != nil {
		return nil, err
	}
	if len(rest) > 0 {
		return nil, usagef("unexpected argument %q", rest[0])
	}
	if name == "flush" {
		return func(ctx context.Context) error {
			return a.withTarget(ctx, shelf, slot, func(t initiator.Target) error {
				fctx, cancel := a.deadline(ctx)
				defer cancel()
				return a.client.Flush(fctx, t)
			})
		}, nil
	}
	return func(ctx context.Context) error {
		return a.withTarget(ctx, shelf, slot, func(t initiator.Target) error {
			ictx, cancel := a.deadline(ctx)
			defer cancel()
			id, _, err := a.client.Identify(ictx, t)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(a.stdout, 0, 8, 2, ' ', 0)
			fmt.Fprintf(w, "target:\t%s at %v\n", t, t.MAC)
			fmt.Fprintf(w, "model:\t%s\n", printable(id.Model))
			fmt.Fprintf(w, "serial:\t%s\n", printable(id.Serial))
			fmt.Fprintf(w, "firmware:\t%s\n", printable(id.Firmware))
			fmt.Fprintf(w, "capacity:\t%d sectors (%s)\n", id.Sectors, size(id.Sectors*aoe.SectorSize))
			return w.Flush()
		})
	}, nil
}

// printable replaces the characters of s that a terminal would interpret.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return '?'
	}, s)
}

// size formats n bytes in binary units.
func size(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func (a *app) parseRead(args []string) (func(context.Context) error, error) {
	shelf, slot, rest, err := parseAddress(args)
	if err != nil {
		return nil, err
	}
	if len(rest) != 2 {
		return nil, usagef("need lba and count")
	}
	lba, err := parseLBA(rest[0])
	if err != nil {
		return nil, err
	}
	count, err := strconv.ParseUint(rest[1], 10, 64)
	if err != nil || count > aoe.MaxLBA48+1-lba {
		return nil, usagef("count %q: want a number of sectors that ends below 2^48", rest[1])
	}
	return func(ctx context.Context) error {
		return a.withTarget(ctx, shelf, slot, func(t initiator.Target) error {
			buf := make([]byte, chunk)
			for count > 0 {
				n := min(count, chunk/aoe.SectorSize)
				p := buf[:n*aoe.SectorSize]
				rctx, cancel := a.deadline(ctx)
				err := a.client.ReadAt(rctx, t, p, lba)
				cancel()
				if err != nil {
					return err
				}
				if _, err := a.stdout.Write(p); err != nil {
					return err
				}
				lba += n
				count -= n
			}
			return nil
		})
	}, nil
}

func (a *app) parseWrite(args []string) (func(context.Context) error, error) {
	shelf, slot, rest, err := parseAddress(args)
	if err != nil {
		return nil, err
	}
	if len(rest) != 1 {
		return nil, usagef("need lba (the data comes from stdin)")
	}
	lba, err := parseLBA(rest[0])
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		return a.withTarget(ctx, shelf, slot, func(t initiator.Target) error {
			buf := make([]byte, chunk)
			for {
				n, rerr := io.ReadFull(a.stdin, buf)
				if rerr != nil && rerr != io.EOF && rerr != io.ErrUnexpectedEOF {
					return fmt.Errorf("reading stdin: %w", rerr)
				}
				whole := n - n%aoe.SectorSize
				if whole > 0 {
					if lba+uint64(whole/aoe.SectorSize) > aoe.MaxLBA48+1 {
						return fmt.Errorf("the data runs past sector 2^48")
					}
					wctx, cancel := a.deadline(ctx)
					err := a.client.WriteAt(wctx, t, buf[:whole], lba)
					cancel()
					if err != nil {
						return err
					}
					lba += uint64(whole / aoe.SectorSize)
				}
				if n != whole {
					return fmt.Errorf("stdin ends with %d bytes that are not a whole sector; they were not written", n-whole)
				}
				if rerr != nil {
					return nil
				}
			}
		})
	}, nil
}

func (a *app) parseConfig(args []string) (func(context.Context) error, error) {
	shelf, slot, rest, err := parseAddress(args)
	if err != nil {
		return nil, err
	}
	cmd := aoe.ConfigRead
	if len(rest) > 0 {
		sub := rest[0]
		rest = rest[1:]
		switch sub {
		case "read":
			cmd = aoe.ConfigRead
		case "test":
			cmd = aoe.ConfigTest
		case "test-prefix":
			cmd = aoe.ConfigTestPrefix
		case "set":
			cmd = aoe.ConfigSet
		case "force-set":
			cmd = aoe.ConfigForceSet
		default:
			return nil, usagef("unknown sub-command %q: want read, test, test-prefix, set or force-set", sub)
		}
	}
	var s string
	switch {
	case cmd == aoe.ConfigRead && len(rest) > 0:
		return nil, usagef("read takes no string")
	case cmd != aoe.ConfigRead && len(rest) != 1:
		return nil, usagef("%v needs one string argument (quote it if it has spaces)", cmd)
	case cmd != aoe.ConfigRead:
		s = rest[0]
	}
	if len(s) > aoe.MaxConfigStringLen {
		return nil, usagef("config string is %d bytes, at most %d", len(s), aoe.MaxConfigStringLen)
	}
	return func(ctx context.Context) error {
		return a.withTarget(ctx, shelf, slot, func(t initiator.Target) error {
			cctx, cancel := a.deadline(ctx)
			defer cancel()
			cfg, err := a.client.QueryConfig(cctx, t, cmd, []byte(s))
			if errors.Is(err, initiator.ErrNoReply) && ctx.Err() == nil &&
				(cmd == aoe.ConfigTest || cmd == aoe.ConfigTestPrefix) {
				return errNoMatch
			}
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.stdout, "%s\n", cfg.String)
			return err
		})
	}, nil
}

func (a *app) parseMask(args []string) (func(context.Context) error, error) {
	shelf, slot, rest, err := parseAddress(args)
	if err != nil {
		return nil, err
	}
	m := aoe.MacMask{Command: aoe.MaskRead}
	if len(rest) > 0 {
		sub := rest[0]
		var dcmd aoe.DirectiveCommand
		switch sub {
		case "list":
			if len(rest) > 1 {
				return nil, usagef("list takes no arguments")
			}
		case "add":
			dcmd = aoe.DirectiveAdd
		case "del":
			dcmd = aoe.DirectiveDelete
		default:
			return nil, usagef("unknown sub-command %q: want list, add or del", sub)
		}
		if dcmd != aoe.DirectiveNone {
			macs, err := parseMACs(rest[1:])
			if err != nil {
				return nil, err
			}
			if len(macs) > 255 {
				return nil, usagef("at most 255 MAC addresses at once")
			}
			m.Command = aoe.MaskEdit
			for _, mac := range macs {
				m.Directives = append(m.Directives, aoe.Directive{Command: dcmd, MAC: mac})
			}
		}
	}
	return func(ctx context.Context) error {
		return a.withTarget(ctx, shelf, slot, func(t initiator.Target) error {
			mctx, cancel := a.deadline(ctx)
			defer cancel()
			r, err := a.client.MacMask(mctx, t, m)
			var me *initiator.MaskError
			if errors.As(err, &me) && me.Index < len(m.Directives) {
				return fmt.Errorf("%w (%v)", err, m.Directives[me.Index].MAC)
			}
			if err != nil {
				return err
			}
			for _, d := range r.Directives {
				fmt.Fprintln(a.stdout, d.MAC)
			}
			return nil
		})
	}, nil
}

func (a *app) parseReserve(args []string) (func(context.Context) error, error) {
	shelf, slot, rest, err := parseAddress(args)
	if err != nil {
		return nil, err
	}
	r := aoe.Reserve{Command: aoe.ReserveRead}
	if len(rest) > 0 {
		sub, macs := rest[0], rest[1:]
		switch sub {
		case "read":
			if len(macs) > 0 {
				return nil, usagef("read takes no arguments")
			}
		case "release":
			if len(macs) > 0 {
				return nil, usagef("release takes no arguments")
			}
			r.Command = aoe.ReserveSet
		case "set", "force-set":
			r.Command = aoe.ReserveSet
			if sub == "force-set" {
				r.Command = aoe.ReserveForceSet
			}
			if sub == "force-set" && len(macs) == 0 {
				break // releases whoever holds the target
			}
			if r.MACs, err = parseMACs(macs); err != nil {
				return nil, err
			}
			if len(r.MACs) > 255 {
				return nil, usagef("at most 255 MAC addresses")
			}
		default:
			return nil, usagef("unknown sub-command %q: want read, set, force-set or release", sub)
		}
	}
	return func(ctx context.Context) error {
		return a.withTarget(ctx, shelf, slot, func(t initiator.Target) error {
			rctx, cancel := a.deadline(ctx)
			defer cancel()
			got, err := a.client.Reserve(rctx, t, r)
			if err != nil {
				return err
			}
			for _, m := range got.MACs {
				fmt.Fprintln(a.stdout, m)
			}
			return nil
		})
	}, nil
}
