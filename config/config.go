// Package config reads aoetarget's TOML configuration file and Debian's
// vblade drop-in files (see ParseVblade).
//
// Parse and Load validate the whole file and report every problem they can
// find as an Errors value; each *Error names the file, the line and the
// reason, ready to be shown to the administrator as is.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	toml "github.com/pelletier/go-toml/v2"

	"github.com/aoetarget/aoetarget/aoe"
)

// DefaultStateDir is the state directory used when the file sets none.
const DefaultStateDir = "/var/lib/aoetarget"

// DefaultControlSocket is the control socket used when the file sets none.
const DefaultControlSocket = "/run/aoetarget/control.sock"

// DefaultIOTimeout is an export's I/O timeout when neither the export nor
// [defaults] sets io_timeout.
const DefaultIOTimeout = 30 * time.Second

// DefaultBufferCount is an export's advertised buffer count when neither the
// export nor [defaults] sets bufcnt.
const DefaultBufferCount = 16

// MaxMasks is the largest number of MAC addresses an export's macs list may
// hold.
const MaxMasks = 32

// Limits of the per-export settings.
const (
	maxShelf       = 0xfffe // 0xffff is the broadcast shelf
	ignoredShelf   = 4095   // the Linux aoe initiator ignores it
	maxSlot        = 0xfe   // 0xff is the broadcast slot
	minBufferCount = 2
	maxBufferCount = math.MaxUint16
	maxQueues      = 64
	maxIfNameLen   = 15 // IFNAMSIZ - 1
	sectorSize     = 512
	maxSectors     = math.MaxInt64 / sectorSize
	defaultQueues  = 1
)

// File is a parsed, validated config file.
type File struct {
	// Path is the file's path as given to Load or Parse.
	Path string
	// StateDir is the directory holding the daemon's state (state_dir).
	StateDir string
	// ControlSocket is the path of the control socket (control_socket);
	// "" means disabled ("off" in the file).
	ControlSocket string
	// MetricsListen is the host:port of the metrics endpoint
	// (metrics_listen); "" means no metrics endpoint.
	MetricsListen string
	// LogFormat is "text" or "json" (log_format).
	LogFormat string
	// LogLevel is the minimum level logged (log_level).
	LogLevel slog.Level
	// Exports are the [[export]] tables, in file order, with the
	// [defaults] and the built-in defaults applied.
	Exports []Export
}

// Export is one export, with the defaults applied.
type Export struct {
	// Name identifies the export (a systemd instance name); it defaults
	// to Address().
	Name string
	// Shelf is the AoE major address, 0..65534 but not 4095.
	Shelf uint16
	// Slot is the AoE minor address, 0..254.
	Slot uint8
	// File is the absolute path of the exported file or block device.
	File string
	// Interfaces are the network interfaces the export is served on.
	Interfaces []string
	// Offset is the number of 512-byte sectors of File skipped.
	Offset int64
	// Length is the number of 512-byte sectors exported; 0 means up to
	// the end of File.
	Length int64
	// ReadOnly rejects writes.
	ReadOnly bool
	// Direct opens File with O_DIRECT.
	Direct bool
	// Sync makes every write reach stable storage inside the write call
	// itself (vblade's -s) instead of sharing an fdatasync.
	Sync bool
	// Writeback acknowledges writes before they are stable; it excludes
	// Sync.
	Writeback bool
	// MACs is the initial MAC mask list; empty admits every initiator.
	MACs []aoe.MAC
	// BufferCount is the advertised buffer count, 2..65535.
	BufferCount uint16
	// ConfigString is the initial AoE config string.
	ConfigString string
	// IOTimeout bounds one I/O on File; 0 means no limit.
	IOTimeout time.Duration
	// Queues is the number of receive loops per interface, 1..64.
	Queues int
	// IOUring selects io_uring for I/O on File.
	IOUring bool
	// CachedWrites keeps durable writes of a buffered export in the page
	// cache (target.ServerConfig.CachedWrites).
	CachedWrites bool
	// Line is the line of the export's [[export]] header in the file (0 if
	// unknown).
	Line int
}

// Same reports whether e and o describe the same export in every setting
// (Line is ignored): a reload leaves such an export serving untouched.
func (e Export) Same(o Export) bool {
	return e.Name == o.Name &&
		e.Shelf == o.Shelf &&
		e.Slot == o.Slot &&
		e.File == o.File &&
		slices.Equal(e.Interfaces, o.Interfaces) &&
		e.Offset == o.Offset &&
		e.Length == o.Length &&
		e.ReadOnly == o.ReadOnly &&
		e.Direct == o.Direct &&
		e.Sync == o.Sync &&
		e.Writeback == o.Writeback &&
		slices.Equal(e.MACs, o.MACs) &&
		e.BufferCount == o.BufferCount &&
		e.ConfigString == o.ConfigString &&
		e.IOTimeout == o.IOTimeout &&
		e.Queues == o.Queues &&
		e.IOUring == o.IOUring &&
		e.CachedWrites == o.CachedWrites
}

// Address returns "e<shelf>.<slot>".
func (e Export) Address() string {
	return address(int64(e.Shelf), int64(e.Slot))
}

func address(shelf, slot int64) string {
	return "e" + strconv.FormatInt(shelf, 10) + "." + strconv.FormatInt(slot, 10)
}

// Error is a problem in a config file. It reads "Path:Line: Msg", or
// "Path: Msg" when no line is known (Line 0).
type Error struct {
	// Path is the file's path.
	Path string
	// Line is the 1-based line of the problem, 0 if unknown.
	Line int
	// Msg is the reason.
	Msg string
}

// Error returns "Path:Line: Msg" ("Path: Msg" when Line is 0).
func (e *Error) Error() string {
	switch {
	case e.Path != "" && e.Line > 0:
		return e.Path + ":" + strconv.Itoa(e.Line) + ": " + e.Msg
	case e.Path != "":
		return e.Path + ": " + e.Msg
	case e.Line > 0:
		return "line " + strconv.Itoa(e.Line) + ": " + e.Msg
	default:
		return e.Msg
	}
}

// Errors is every problem found in a file: Parse reports all it can find,
// not only the first. It is never empty when returned as an error.
type Errors []*Error

// Error returns the errors one per line.
func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap returns the errors, for errors.Is and errors.As.
func (es Errors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// Load reads and parses the config file at path.
// A file that cannot be read yields the *fs.PathError from os.ReadFile.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse parses and validates a config file's contents; path is used only
// in messages and File.Path. On failure the error is an Errors holding
// every problem found, sorted by line. A TOML syntax or type error stops
// parsing, so it is then the only problem reported.
//
// Parse calls os.Stat on the exports' files, to find two paths naming the
// same file; a file that does not exist is compared by its path only.
func Parse(path string, data []byte) (*File, error) {
	p := &parser{path: path, data: data}
	f := p.parse()
	if len(p.errs) > 0 {
		sort.SliceStable(p.errs, func(i, j int) bool { return p.errs[i].Line < p.errs[j].Line })
		return nil, p.errs
	}
	return f, nil
}

// rawSettings are the per-export keys [defaults] may set too. A nil field
// was not set.
type rawSettings struct {
	Interfaces   *[]string `toml:"interfaces"`
	Offset       *int64    `toml:"offset"`
	Length       *int64    `toml:"length"`
	ReadOnly     *bool     `toml:"read_only"`
	Direct       *bool     `toml:"direct"`
	Sync         *bool     `toml:"sync"`
	Writeback    *bool     `toml:"writeback"`
	MACs         *[]string `toml:"macs"`
	BufCnt       *int64    `toml:"bufcnt"`
	ConfigString *string   `toml:"config_string"`
	IOTimeout    *string   `toml:"io_timeout"`
	Queues       *int64    `toml:"queues"`
	IOUring      *bool     `toml:"io_uring"`
	CachedWrites *bool     `toml:"cached_writes"`
}

// rawExport is one [[export]] table as written.
type rawExport struct {
	Name  *string `toml:"name"`
	Shelf *int64  `toml:"shelf"`
	Slot  *int64  `toml:"slot"`
	File  *string `toml:"file"`
	rawSettings
}

// rawFile is the whole file as written.
type rawFile struct {
	StateDir      *string     `toml:"state_dir"`
	ControlSocket *string     `toml:"control_socket"`
	MetricsListen *string     `toml:"metrics_listen"`
	LogFormat     *string     `toml:"log_format"`
	LogLevel      *string     `toml:"log_level"`
	Defaults      rawSettings `toml:"defaults"`
	Export        []rawExport `toml:"export"`
}

// Keys, with what a value must be, for type errors and "did you mean".
var (
	globalKeys = map[string]string{
		"state_dir":      "a string",
		"control_socket": "a string",
		"metrics_listen": "a string",
		"log_format":     `"text" or "json"`,
		"log_level":      `"debug", "info", "warn" or "error"`,
		"defaults":       "a table ([defaults])",
		"export":         "an array of tables ([[export]])",
	}
	settingKeys = map[string]string{
		"interfaces":    "an array of strings",
		"offset":        "an integer",
		"length":        "an integer",
		"read_only":     "true or false",
		"direct":        "true or false",
		"sync":          "true or false",
		"writeback":     "true or false",
		"macs":          "an array of strings",
		"bufcnt":        "an integer",
		"config_string": "a string",
		"io_timeout":    `a duration string such as "30s"`,
		"queues":        "an integer",
		"io_uring":      "true or false",
		"cached_writes": "true or false",
	}
	exportOnlyKeys = map[string]string{
		"name":  "a string",
		"shelf": "an integer",
		"slot":  "an integer",
		"file":  "a string",
	}
)

var (
	nameRE         = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$`)
	exportHeaderRE = regexp.MustCompile(`(?i)^\s*\[\[\s*["']?export["']?\s*\]\]`)
	defaultsRE     = regexp.MustCompile(`(?i)^\s*\[\s*["']?defaults["']?\s*\]`)
	tableHeaderRE  = regexp.MustCompile(`^\s*\[`)
)

// parser holds the state of one Parse.
type parser struct {
	path string
	data []byte
	errs Errors

	lines        []string
	exportLines  []int // header line of each export, nil if unknown
	defaultsLine int
	raw          rawFile
}

func (p *parser) errorf(line int, format string, args ...any) {
	p.errs = append(p.errs, &Error{Path: p.path, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) parse() *File {
	p.lines = strings.Split(string(p.data), "\n")
	var hdrs []int
	for i, l := range p.lines {
		switch {
		case exportHeaderRE.MatchString(l):
			hdrs = append(hdrs, i+1)
		case p.defaultsLine == 0 && defaultsRE.MatchString(l):
			p.defaultsLine = i + 1
		}
	}

	dec := toml.NewDecoder(bytes.NewReader(p.data)).DisallowUnknownFields()
	err := dec.Decode(&p.raw)
	if len(hdrs) == len(p.raw.Export) {
		p.exportLines = hdrs
	}
	var strict *toml.StrictMissingError
	var de *toml.DecodeError
	switch {
	case err == nil:
	case errors.As(err, &strict):
		// The document was decoded in full; report the unknown keys and
		// go on validating the rest.
		for i := range strict.Errors {
			p.unknownKey(&strict.Errors[i])
		}
	case errors.As(err, &de):
		p.decodeError(de)
		return nil
	default:
		p.errorf(0, "%v", err)
		return nil
	}

	f := &File{
		Path:          p.path,
		StateDir:      DefaultStateDir,
		ControlSocket: DefaultControlSocket,
		LogFormat:     "text",
		LogLevel:      slog.LevelInfo,
	}
	p.globals(f)

	base := Export{
		BufferCount: DefaultBufferCount,
		IOTimeout:   DefaultIOTimeout,
		Queues:      defaultQueues,
		IOUring:     true,
	}
	p.settings(&p.raw.Defaults, &base, p.defaultsLine, "[defaults]")

	f.Exports = make([]Export, len(p.raw.Export))
	valid := make([]exportState, len(p.raw.Export))
	for i := range p.raw.Export {
		valid[i] = p.export(i, &base, &f.Exports[i])
	}
	p.conflicts(f.Exports, valid)
	return f
}

// line returns the header line of export i, 0 if unknown.
func (p *parser) line(i int) int {
	if i < len(p.exportLines) {
		return p.exportLines[i]
	}
	return 0
}

// exportAt returns the index of the export whose table holds line row,
// -1 if unknown.
func (p *parser) exportAt(row int) int {
	if p.exportLines == nil {
		return -1
	}
	i := sort.SearchInts(p.exportLines, row+1) - 1
	return i
}

// label names export i in messages: by name, by address, or by position.
func (p *parser) label(i int) string {
	if i < 0 || i >= len(p.raw.Export) {
		if i >= 0 {
			return "export #" + strconv.Itoa(i+1)
		}
		return "export"
	}
	r := &p.raw.Export[i]
	switch {
	case r.Name != nil && nameRE.MatchString(*r.Name):
		return fmt.Sprintf("export %q", *r.Name)
	case r.Shelf != nil && r.Slot != nil &&
		0 <= *r.Shelf && *r.Shelf <= maxShelf && 0 <= *r.Slot && *r.Slot <= maxSlot:
		return fmt.Sprintf("export %q", address(*r.Shelf, *r.Slot))
	default:
		return "export #" + strconv.Itoa(i+1)
	}
}

// unknownKey reports a key the file format does not have.
func (p *parser) unknownKey(e *toml.DecodeError) {
	row, _ := e.Position()
	key := e.Key()
	if len(key) == 0 {
		p.errorf(row, "unknown key")
		return
	}
	switch {
	case len(key) >= 2 && key[0] == "defaults":
		name := key[1]
		if _, ok := exportOnlyKeys[name]; ok {
			p.errorf(row, "[defaults]: %s cannot have a default; set it in each [[export]]", name)
			return
		}
		p.errorf(row, "[defaults]: unknown key %q%s", strings.Join(key[1:], "."), suggest(name, settingKeys))
	case len(key) >= 2 && key[0] == "export":
		name := key[1]
		i := p.exportAt(row)
		p.errorf(row, "%s: unknown key %q%s", p.label(i), strings.Join(key[1:], "."),
			suggest(name, settingKeys, exportOnlyKeys))
	default:
		what := "key"
		if e.Error() == "toml: missing table" {
			what = "table"
		}
		msg := fmt.Sprintf("unknown %s %q%s", what, strings.Join(key, "."), suggest(key[0], globalKeys))
		if _, ok := settingKeys[key[0]]; ok && len(key) == 1 {
			msg += fmt.Sprintf("; %s belongs in [defaults] or an [[export]]", key[0])
		} else if _, ok := exportOnlyKeys[key[0]]; ok && len(key) == 1 {
			msg += fmt.Sprintf("; %s belongs in an [[export]]", key[0])
		}
		p.errorf(row, "%s", msg)
	}
}

// decodeError reports a TOML syntax or type error.
func (p *parser) decodeError(e *toml.DecodeError) {
	row, _ := e.Position()
	msg := strings.TrimPrefix(e.Error(), "toml: ")
	key := e.Key()
	var name, where, want string
	known := false
	switch {
	case len(key) == 1:
		name = key[0]
		want, known = globalKeys[name]
	case len(key) == 2 && key[0] == "defaults":
		name, where = key[1], "[defaults]: "
		want, known = settingKeys[name]
	case len(key) == 2 && key[0] == "export":
		name, where = key[1], p.label(p.exportAt(row))+": "
		if want, known = settingKeys[name]; !known {
			want, known = exportOnlyKeys[name]
		}
	}
	found, isType := strings.CutPrefix(msg, "cannot decode TOML ")
	found, _, ok := strings.Cut(found, " into ")
	switch {
	case isType && ok && found != "" && known:
		article := "a "
		if strings.ContainsRune("aeiou", rune(found[0])) {
			article = "an "
		}
		p.errorf(row, "%s%s must be %s; found %s%s", where, name, want, article, found)
	case where != "":
		p.errorf(row, "%s%s: %s", where, strings.Join(key[1:], "."), msg)
	default:
		p.errorf(row, "%s", msg)
	}
}

// suggest returns ` (did you mean "k"?)` for the known key closest to
// name, or "" when none is close.
func suggest(name string, sets ...map[string]string) string {
	best, bestD := "", len(name)/3+1
	for _, set := range sets {
		for k := range set {
			if d := editDistance(strings.ToLower(name), k); d < bestD || d == bestD && best != "" && k < best {
				best, bestD = k, d
			}
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// globalLine returns the line setting the top-level key, 0 if not found.
func (p *parser) globalLine(key string) int {
	re := regexp.MustCompile(`^\s*["']?` + regexp.QuoteMeta(key) + `["']?\s*=`)
	for i, l := range p.lines {
		if tableHeaderRE.MatchString(l) {
			break
		}
		if re.MatchString(l) {
			return i + 1
		}
	}
	return 0
}

// globals validates the top-level keys into f.
func (p *parser) globals(f *File) {
	r := &p.raw
	if r.StateDir != nil {
		switch {
		case *r.StateDir == "":
			// Keep the default.
		case !filepath.IsAbs(*r.StateDir):
			p.errorf(p.globalLine("state_dir"), "state_dir %q is not an absolute path", *r.StateDir)
		default:
			f.StateDir = *r.StateDir
		}
	}
	if r.ControlSocket != nil {
		switch s := *r.ControlSocket; {
		case s == "":
			// Keep the default.
		case s == "off":
			f.ControlSocket = ""
		case !filepath.IsAbs(s):
			p.errorf(p.globalLine("control_socket"), `control_socket %q is not an absolute path (or "off")`, s)
		default:
			f.ControlSocket = s
		}
	}
	if r.MetricsListen != nil && *r.MetricsListen != "" {
		if _, port, err := net.SplitHostPort(*r.MetricsListen); err != nil || port == "" {
			p.errorf(p.globalLine("metrics_listen"), `metrics_listen %q is not host:port (e.g. "127.0.0.1:9940" or ":9940")`, *r.MetricsListen)
		} else {
			f.MetricsListen = *r.MetricsListen
		}
	}
	if r.LogFormat != nil {
		switch s := strings.ToLower(*r.LogFormat); s {
		case "text", "json":
			f.LogFormat = s
		default:
			p.errorf(p.globalLine("log_format"), `log_format %q: want "text" or "json"`, *r.LogFormat)
		}
	}
	if r.LogLevel != nil {
		switch strings.ToLower(*r.LogLevel) {
		case "debug":
			f.LogLevel = slog.LevelDebug
		case "info":
			f.LogLevel = slog.LevelInfo
		case "warn":
			f.LogLevel = slog.LevelWarn
		case "error":
			f.LogLevel = slog.LevelError
		default:
			p.errorf(p.globalLine("log_level"), `log_level %q: want "debug", "info", "warn" or "error"`, *r.LogLevel)
		}
	}
}

// settings validates the keys set in s and stores them into e; problems are
// reported at line, prefixed by who. Invalid values leave e unchanged.
func (p *parser) settings(s *rawSettings, e *Export, line int, who string) {
	bad := func(format string, args ...any) {
		p.errorf(line, "%s: %s", who, fmt.Sprintf(format, args...))
	}
	if s.Interfaces != nil {
		ifs := *s.Interfaces
		ok := true
		if len(ifs) == 0 {
			bad("interfaces is empty")
			ok = false
		}
		for i, name := range ifs {
			switch {
			case !validIfName(name):
				bad("interface %q is not a valid interface name (1..15 bytes, no '/', ':' or whitespace)", name)
				ok = false
			case slices.Contains(ifs[:i], name):
				// Report the second occurrence only.
				if first := slices.Index(ifs, name); !slices.Contains(ifs[first+1:i], name) {
					bad("interface %q is listed more than once", name)
				}
				ok = false
			}
		}
		if ok {
			e.Interfaces = slices.Clone(ifs)
		}
	}
	sectors := func(key string, v *int64, dst *int64) {
		switch {
		case v == nil:
		case *v < 0:
			bad("%s %d is negative", key, *v)
		case *v > maxSectors:
			bad("%s %d is too large (at most %d sectors)", key, *v, int64(maxSectors))
		default:
			*dst = *v
		}
	}
	sectors("offset", s.Offset, &e.Offset)
	sectors("length", s.Length, &e.Length)
	for _, b := range []struct {
		v   *bool
		dst *bool
	}{
		{s.ReadOnly, &e.ReadOnly},
		{s.Direct, &e.Direct},
		{s.Sync, &e.Sync},
		{s.Writeback, &e.Writeback},
		{s.IOUring, &e.IOUring},
		{s.CachedWrites, &e.CachedWrites},
	} {
		if b.v != nil {
			*b.dst = *b.v
		}
	}
	if s.MACs != nil {
		macs := make([]aoe.MAC, 0, len(*s.MACs))
		ok := true
		if len(*s.MACs) > MaxMasks {
			bad("macs has %d entries, more than %d", len(*s.MACs), MaxMasks)
			ok = false
		}
		var twice []aoe.MAC
		for _, str := range *s.MACs {
			m, err := aoe.ParseMAC(str)
			switch {
			case err != nil:
				bad("macs: %q is not a MAC address (e.g. \"00:11:22:33:44:55\")", str)
				ok = false
			case slices.Contains(macs, m):
				if !slices.Contains(twice, m) {
					bad("macs: %v is listed more than once", m)
					twice = append(twice, m)
				}
				ok = false
			default:
				macs = append(macs, m)
			}
		}
		if ok {
			e.MACs = macs
		}
	}
	if v := s.BufCnt; v != nil {
		if *v < minBufferCount || *v > maxBufferCount {
			bad("bufcnt %d is out of range %d..%d", *v, minBufferCount, maxBufferCount)
		} else {
			e.BufferCount = uint16(*v)
		}
	}
	if v := s.ConfigString; v != nil {
		if len(*v) > aoe.MaxConfigStringLen {
			bad("config_string is %d bytes long, more than %d", len(*v), aoe.MaxConfigStringLen)
		} else {
			e.ConfigString = *v
		}
	}
	if v := s.IOTimeout; v != nil {
		d, err := time.ParseDuration(*v)
		switch {
		case err != nil:
			bad("io_timeout %q is not a duration (e.g. \"30s\", \"1m30s\", \"0\" for none)", *v)
		case d < 0:
			bad("io_timeout %q is negative", *v)
		default:
			e.IOTimeout = d
		}
	}
	if v := s.Queues; v != nil {
		if *v < 1 || *v > maxQueues {
			bad("queues %d is out of range 1..%d", *v, maxQueues)
		} else {
			e.Queues = int(*v)
		}
	}
}

// validIfName reports whether name is acceptable to Linux as a network
// interface name.
func validIfName(name string) bool {
	if len(name) == 0 || len(name) > maxIfNameLen || name == "." || name == ".." {
		return false
	}
	for _, r := range name {
		if r == '/' || r == ':' || r == 0 || unicode.IsSpace(r) {
			return false
		}
	}
	return true
}

// exportState records which parts of an export are valid, for the
// conflict checks.
type exportState struct {
	addr bool // Shelf and Slot
	file bool
	name bool
}

// export validates export i into e, on top of the defaults in base.
func (p *parser) export(i int, base *Export, e *Export) exportState {
	r := &p.raw.Export[i]
	line, who := p.line(i), p.label(i)
	var st exportState

	*e = *base
	e.Interfaces = slices.Clone(base.Interfaces)
	e.MACs = slices.Clone(base.MACs)
	e.Line = line

	shelfOK, slotOK := false, false
	switch {
	case r.Shelf == nil:
		p.errorf(line, "%s: missing shelf", who)
	case *r.Shelf == ignoredShelf:
		p.errorf(line, "%s: shelf %d is ignored by the Linux aoe initiator; use another shelf", who, *r.Shelf)
	case *r.Shelf < 0 || *r.Shelf > maxShelf:
		p.errorf(line, "%s: shelf %d is out of range 0..%d", who, *r.Shelf, maxShelf)
	default:
		e.Shelf = uint16(*r.Shelf)
		shelfOK = true
	}
	switch {
	case r.Slot == nil:
		p.errorf(line, "%s: missing slot", who)
	case *r.Slot < 0 || *r.Slot > maxSlot:
		p.errorf(line, "%s: slot %d is out of range 0..%d", who, *r.Slot, maxSlot)
	default:
		e.Slot = uint8(*r.Slot)
		slotOK = true
	}
	st.addr = shelfOK && slotOK

	switch {
	case r.File == nil:
		p.errorf(line, "%s: missing file", who)
	case *r.File == "":
		p.errorf(line, "%s: file is empty", who)
	case !filepath.IsAbs(*r.File):
		p.errorf(line, "%s: file %q is not an absolute path", who, *r.File)
	default:
		e.File = *r.File
		st.file = true
	}

	switch {
	case r.Name == nil:
		if st.addr {
			e.Name = e.Address()
			st.name = true
		}
	case !nameRE.MatchString(*r.Name):
		p.errorf(line, "%s: name %q must be 1 to 64 letters, digits, '_', '.', '@' or '-', starting with a letter or digit", who, *r.Name)
	default:
		e.Name = *r.Name
		st.name = true
	}

	p.settings(&r.rawSettings, e, line, who)
	if e.Interfaces == nil && r.Interfaces == nil && p.raw.Defaults.Interfaces == nil {
		p.errorf(line, "%s: missing interfaces (set them here or in [defaults])", who)
	}
	if e.Sync && e.Writeback {
		p.errorf(line, "%s: sync = true contradicts writeback = true (writeback acknowledges writes before they are stable)", who)
	}
	return st
}

// conflicts reports exports that cannot be served side by side.
func (p *parser) conflicts(es []Export, st []exportState) {
	infos := make([]os.FileInfo, len(es))
	for i := range es {
		if st[i].file {
			infos[i], _ = os.Stat(es[i].File)
		}
	}
	for i := range es {
		e, line, who := &es[i], es[i].Line, p.label(i)

		if st[i].name {
			for j := range i {
				if st[j].name && es[j].Name == e.Name {
					by := "an earlier export"
					if es[j].Line > 0 {
						by = "the export at line " + strconv.Itoa(es[j].Line)
					}
					p.errorf(line, "%s: name %q is already used by %s", who, e.Name, by)
					break
				}
			}
		}

		if st[i].addr {
			for j := range i {
				if !st[j].addr || es[j].Shelf != e.Shelf || es[j].Slot != e.Slot {
					continue
				}
				var shared []string
				for _, ifc := range e.Interfaces {
					if slices.Contains(es[j].Interfaces, ifc) {
						shared = append(shared, showPath(ifc))
					}
				}
				if len(shared) > 0 {
					p.errorf(line, "%s uses shelf.slot %d.%d on %s, as does %s%s",
						who, e.Shelf, e.Slot, andList(shared), p.label(j), at(es[j].Line))
					break
				}
			}
		}

		if st[i].file {
			for j := range i {
				if !st[j].file || (e.ReadOnly && es[j].ReadOnly) || !sameFile(e.File, es[j].File, infos[i], infos[j]) {
					continue
				}
				other := p.label(j) + at(es[j].Line)
				if filepath.Clean(e.File) != filepath.Clean(es[j].File) {
					other += " as " + showPath(es[j].File)
				}
				mode := func(ro bool) string {
					if ro {
						return "read_only"
					}
					return "writable"
				}
				if !e.ReadOnly && !es[j].ReadOnly {
					p.errorf(line, "%s exports %s writable, as does %s; only read_only exports may share a file",
						who, showPath(e.File), other)
				} else {
					p.errorf(line, "%s exports %s %s, while %s exports it %s; only read_only exports may share a file",
						who, showPath(e.File), mode(e.ReadOnly), other, mode(es[j].ReadOnly))
				}
				break
			}
		}
	}
}

// showPath returns path as is, or quoted if it holds spaces or characters
// that do not print.
func showPath(path string) string {
	if strings.ContainsFunc(path, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) {
		return strconv.Quote(path)
	}
	return path
}

// at returns " (line N)", or "" if line is 0.
func at(line int) string {
	if line == 0 {
		return ""
	}
	return " (line " + strconv.Itoa(line) + ")"
}

// andList returns "a", "a and b", "a, b and c".
func andList(s []string) string {
	if len(s) <= 1 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

// sameFile reports whether paths a and b name the same file: the same path
// once cleaned, or, when both exist, the same inode.
func sameFile(a, b string, ia, ib os.FileInfo) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	return ia != nil && ib != nil && os.SameFile(ia, ib)
}
