package config

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/aoetarget/aoetarget/aoe"
)

const testPath = "/etc/aoetarget/aoetarget.toml"

// export0 is a minimal valid export, 5 lines long.
const export0 = `[[export]]
shelf = 1
slot = 0
file = "/srv/a.img"
interfaces = ["eth0"]
`

func mustMAC(t testing.TB, s string) aoe.MAC {
	t.Helper()
	m, err := aoe.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestLoadExample(t *testing.T) {
	f, err := Load(filepath.Join("testdata", "aoetarget.toml"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	headers := fileLines(t, filepath.Join("testdata", "aoetarget.toml"), "[[export]]")
	if len(headers) != 2 {
		t.Fatalf("example has %d [[export]] lines, want 2", len(headers))
	}
	want := &File{
		Path:          filepath.Join("testdata", "aoetarget.toml"),
		StateDir:      "/var/lib/aoetarget",
		ControlSocket: "/run/aoetarget/control.sock",
		MetricsListen: "127.0.0.1:9940",
		LogFormat:     "text",
		LogLevel:      slog.LevelInfo,
		Exports: []Export{
			{
				Name:        "data0",
				Shelf:       1,
				Slot:        0,
				File:        "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4",
				Interfaces:  []string{"eth1", "eth2"},
				Direct:      true,
				MACs:        []aoe.MAC{mustMAC(t, "00:11:22:33:44:55"), mustMAC(t, "00:11:22:33:44:56")},
				BufferCount: 64,
				IOTimeout:   time.Minute,
				Queues:      4,
				IOUring:     true,
				Line:        headers[0],
			},
			{
				Name:        "e1.1",
				Shelf:       1,
				Slot:        1,
				File:        "/srv/aoe/install.iso",
				Interfaces:  []string{"eth1"},
				ReadOnly:    true,
				BufferCount: 16,
				IOTimeout:   30 * time.Second,
				Queues:      1,
				IOUring:     true,
				Line:        headers[1],
			},
		},
	}
	if diff := cmp.Diff(want, f); diff != "" {
		t.Errorf("Load (-want +got):\n%s", diff)
	}
	checkFile(t, f)
}

// TestExampleHasEveryKey keeps the documented example complete.
func TestExampleHasEveryKey(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "aoetarget.toml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, set := range []map[string]string{globalKeys, settingKeys, exportOnlyKeys} {
		for k := range set {
			if k == "defaults" || k == "export" {
				continue
			}
			if !strings.Contains(string(data), "\n"+k+" = ") {
				t.Errorf("example does not set %s", k)
			}
		}
	}
}

// fileLines returns the numbers of the lines of file starting with prefix.
func fileLines(t *testing.T, file, prefix string) []int {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var lines []int
	for i, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, prefix) {
			lines = append(lines, i+1)
		}
	}
	return lines
}

// macList returns a TOML array of n distinct MAC addresses.
func macList(n int) string {
	macs := make([]string, n)
	for i := range macs {
		macs[i] = fmt.Sprintf("%q", aoe.MAC{0x02, 0, 0, 0, 0, byte(i)}.String())
	}
	return "[" + strings.Join(macs, ", ") + "]"
}

func TestParseEmpty(t *testing.T) {
	for _, doc := range []string{"", "# nothing yet\n", "[defaults]\nbufcnt = 8\n"} {
		f, err := Parse(testPath, []byte(doc))
		if err != nil {
			t.Fatalf("Parse(%q): %v", doc, err)
		}
		want := &File{
			Path:          testPath,
			StateDir:      DefaultStateDir,
			ControlSocket: DefaultControlSocket,
			LogFormat:     "text",
			LogLevel:      slog.LevelInfo,
			Exports:       []Export{},
		}
		if diff := cmp.Diff(want, f); diff != "" {
			t.Errorf("Parse(%q) (-want +got):\n%s", doc, diff)
		}
	}
}

func TestParseGlobals(t *testing.T) {
	tests := []struct {
		doc  string
		want File
	}{
		{
			doc: `control_socket = ""`,
			want: File{StateDir: DefaultStateDir, ControlSocket: DefaultControlSocket,
				LogFormat: "text", LogLevel: slog.LevelInfo},
		},
		{
			doc: "control_socket = \"off\"\nstate_dir = \"/srv/state\"\nlog_format = \"json\"\nlog_level = \"debug\"\nmetrics_listen = \":9940\"",
			want: File{StateDir: "/srv/state", ControlSocket: "", MetricsListen: ":9940",
				LogFormat: "json", LogLevel: slog.LevelDebug},
		},
		{
			doc: "control_socket = \"/tmp/c.sock\"\nlog_level = \"warn\"\nmetrics_listen = \"[::1]:9940\"",
			want: File{StateDir: DefaultStateDir, ControlSocket: "/tmp/c.sock", MetricsListen: "[::1]:9940",
				LogFormat: "text", LogLevel: slog.LevelWarn},
		},
		{
			doc: `log_level = "error"`,
			want: File{StateDir: DefaultStateDir, ControlSocket: DefaultControlSocket,
				LogFormat: "text", LogLevel: slog.LevelError},
		},
	}
	for _, tt := range tests {
		f, err := Parse(testPath, []byte(tt.doc))
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.doc, err)
			continue
		}
		tt.want.Path = testPath
		tt.want.Exports = []Export{}
		if diff := cmp.Diff(&tt.want, f); diff != "" {
			t.Errorf("Parse(%q) (-want +got):\n%s", tt.doc, diff)
		}
	}
}

func TestParseDefaults(t *testing.T) {
	doc := `
[defaults]
interfaces = ["eth1", "eth2"]
offset = 8
length = 1024
read_only = true
direct = true
sync = true
macs = ["001122334455"]
bufcnt = 32
config_string = "hello"
io_timeout = "5s"
queues = 2
io_uring = false
cached_writes = true

[[export]]
shelf = 7
slot = 3
file = "/srv/a.img"

[[export]]
name = "b"
shelf = 7
slot = 4
file = "/srv/b.img"
interfaces = ["eth3"]
offset = 0
length = 0
read_only = false
direct = false
sync = false
writeback = true
macs = []
bufcnt = 16
config_string = ""
io_timeout = "0"
queues = 1
io_uring = true
cached_writes = false
`
	f, err := Parse(testPath, []byte(doc))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := []Export{
		{
			Name: "e7.3", Shelf: 7, Slot: 3, File: "/srv/a.img",
			Interfaces: []string{"eth1", "eth2"}, Offset: 8, Length: 1024,
			ReadOnly: true, Direct: true, Sync: true,
			MACs:        []aoe.MAC{{0x00, 0x11, 0x22, 0x33, 0x44, 0x55}},
			BufferCount: 32, ConfigString: "hello", IOTimeout: 5 * time.Second,
			Queues: 2, IOUring: false, CachedWrites: true, Line: 17,
		},
		{
			Name: "b", Shelf: 7, Slot: 4, File: "/srv/b.img",
			Interfaces: []string{"eth3"}, Writeback: true, MACs: []aoe.MAC{},
			BufferCount: 16, IOTimeout: 0, Queues: 1, IOUring: true, Line: 22,
		},
	}
	if diff := cmp.Diff(want, f.Exports); diff != "" {
		t.Errorf("Exports (-want +got):\n%s", diff)
	}
	checkFile(t, f)

	// Exports inheriting the defaults do not share their slices.
	f, err = Parse(testPath, []byte("[defaults]\ninterfaces = [\"eth0\"]\nmacs = [\"001122334455\"]\n"+
		"[[export]]\nshelf = 1\nslot = 0\nfile = \"/a\"\n[[export]]\nshelf = 1\nslot = 1\nfile = \"/b\"\n"))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	f.Exports[0].Interfaces[0] = "x"
	f.Exports[0].MACs[0][0] = 0xff
	if got := f.Exports[1]; got.Interfaces[0] != "eth0" || got.MACs[0][0] != 0 {
		t.Errorf("exports share slices: %+v", got)
	}
}

func TestParseBuiltinDefaults(t *testing.T) {
	f, err := Parse(testPath, []byte(export0))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := []Export{{
		Name: "e1.0", Shelf: 1, Slot: 0, File: "/srv/a.img", Interfaces: []string{"eth0"},
		BufferCount: DefaultBufferCount, IOTimeout: DefaultIOTimeout, Queues: 1, IOUring: true, Line: 1,
	}}
	if diff := cmp.Diff(want, f.Exports); diff != "" {
		t.Errorf("Exports (-want +got):\n%s", diff)
	}
}

// TestParseValid covers files that look suspicious but are fine.
func TestParseValid(t *testing.T) {
	tests := []struct {
		name string
		doc  string
	}{
		{"same address on other interfaces", export0 + `
[[export]]
name = "other"
shelf = 1
slot = 0
file = "/srv/b.img"
interfaces = ["eth1"]
`},
		{"same file read-only twice", export0 + `read_only = true
[[export]]
shelf = 1
slot = 1
file = "/srv/./a.img"
interfaces = ["eth0"]
read_only = true
`},
		{"limits", `[[export]]
name = "A.b_c@d-0123456789012345678901234567890123456789012345678901234"
shelf = 65534
slot = 254
file = "/a"
interfaces = ["eth0.100", "abcdefghijklmno"]
bufcnt = 2
queues = 64
io_timeout = "0s"
config_string = "` + strings.Repeat("x", aoe.MaxConfigStringLen) + `"
[[export]]
shelf = 0
slot = 0
file = "/b"
interfaces = ["br-lan"]
bufcnt = 65535
macs = ` + macList(MaxMasks) + `
`},
		{"quoted keys and headers", `[[ "export" ]]
"shelf" = 2
'slot' = 3
file = '/srv/x'
interfaces = ['eth0']
`},
		{"inline array of exports", `export = [{shelf = 1, slot = 2, file = "/x", interfaces = ["eth0"]}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse(testPath, []byte(tt.doc))
			if err != nil {
				t.Fatalf("Parse:\n%v", err)
			}
			checkFile(t, f)
		})
	}
}

func TestParseErrors(t *testing.T) {
	// exp returns an [[export]] table setting shelf, slot and file (4
	// lines) followed by extra.
	exp := func(shelf, slot int, file, extra string) string {
		return fmt.Sprintf("[[export]]\nshelf = %d\nslot = %d\nfile = %q\n%s", shelf, slot, file, extra)
	}
	eth0 := "interfaces = [\"eth0\"]\n"
	tests := []struct {
		name string
		doc  string
		line int
		msg  string
		n    int // number of errors, if not 1
	}{
		// TOML level.
		{"syntax", "[[export]\n", 1, "", 0},
		{"syntax later", export0 + "shelf = = 1\n", 6, "", 0},
		{"duplicate key", export0 + "shelf = 2\n", 6, "already defined", 0},
		{"type shelf", "[[export]]\nname = \"data0\"\nshelf = \"x\"\n", 3,
			`export "data0": shelf must be an integer; found a string`, 0},
		{"type interfaces", export0 + "macs = \"00:11:22:33:44:55\"\n", 6,
			`export "e1.0": macs must be an array of strings; found a string`, 0},
		{"type interface element", "[[export]]\ninterfaces = [1]\n", 2,
			`export #1: interfaces must be an array of strings; found an integer`, 0},
		{"type bool", export0 + "read_only = \"yes\"\n", 6, "read_only must be true or false; found a string", 0},
		{"type duration", export0 + "io_timeout = 30\n", 6, `io_timeout must be a duration string such as "30s"; found an integer`, 0},
		{"type global", "log_level = 1\n", 1, `log_level must be "debug", "info", "warn" or "error"; found an integer`, 0},
		{"type defaults", "[defaults]\n\nbufcnt = 1.5\n", 3, "[defaults]: bufcnt must be an integer; found a float", 0},
		{"type export table", "export = 1\n", 1, "export must be an array of tables ([[export]]); found an integer", 0},
		{"integer overflow", export0 + "offset = 99999999999999999999\n", 6, "too large", 0},

		// Unknown keys.
		{"unknown export key", "[[export]]\nname = \"data0\"\nshelf = 1\nslot = 0\nfile = \"/a\"\ninterfaces = [\"eth0\"]\nbufcount = 3\n", 7,
			`export "data0": unknown key "bufcount" (did you mean "bufcnt"?)`, 0},
		{"unknown key second export", export0 + "\n" + exp(2, 0, "/b", eth0+"readonly = true\n"), 12,
			`export "e2.0": unknown key "readonly" (did you mean "read_only"?)`, 0},
		{"unknown dotted key", export0 + "foo.bar = 1\n", 6, `export "e1.0": unknown key "foo.bar"`, 0},
		{"unknown global", "statedir = \"/x\"\n", 1, `unknown key "statedir" (did you mean "state_dir"?)`, 0},
		{"subtable of export", "[export.foo]\nx = 1\n", 1, `export: unknown key "foo"`, 5},
		{"unknown table 2", "\n[storage]\nx = 1\n", 2, `unknown table "storage"`, 0},
		{"setting at top level", "bufcnt = 8\n", 1, `unknown key "bufcnt"; bufcnt belongs in [defaults] or an [[export]]`, 0},
		{"shelf at top level", "shelf = 8\n", 1, "shelf belongs in an [[export]]", 0},
		{"defaults unknown", "[defaults]\nbufcount = 8\n", 2, `[defaults]: unknown key "bufcount" (did you mean "bufcnt"?)`, 0},
		{"defaults name", "[defaults]\nname = \"x\"\n", 2, "[defaults]: name cannot have a default; set it in each [[export]]", 0},
		{"defaults file", "[defaults]\nfile = \"/x\"\n", 2, "[defaults]: file cannot have a default", 0},
		{"unknown keys and validation", export0 + "bogus = 1\nbufcnt = 1\n", 1, "bufcnt 1 is out of range 2..65535", 2},

		// Missing keys.
		{"missing shelf", "[[export]]\nslot = 0\nfile = \"/a\"\n" + eth0, 1, "export #1: missing shelf", 0},
		{"missing slot", "\n[[export]]\nname = \"x\"\nshelf = 0\nfile = \"/a\"\n" + eth0, 2, `export "x": missing slot`, 0},
		{"missing file", "[[export]]\nshelf = 0\nslot = 0\n" + eth0, 1, `export "e0.0": missing file`, 0},
		{"missing interfaces", exp(1, 0, "/a", ""), 1, `export "e1.0": missing interfaces (set them here or in [defaults])`, 0},
		{"missing everything", "[[export]]\n", 1, "missing", 4},

		// Ranges.
		{"shelf 4095", exp(4095, 0, "/a", eth0), 1, "shelf 4095 is ignored by the Linux aoe initiator", 0},
		{"shelf broadcast", exp(65535, 0, "/a", eth0), 1, "shelf 65535 is out of range 0..65534", 0},
		{"shelf huge", exp(1<<20, 0, "/a", eth0), 1, "shelf 1048576 is out of range 0..65534", 0},
		{"shelf negative", exp(-1, 0, "/a", eth0), 1, "shelf -1 is out of range", 0},
		{"slot broadcast", exp(1, 255, "/a", eth0), 1, "slot 255 is out of range 0..254", 0},
		{"slot negative", exp(1, -1, "/a", eth0), 1, "slot -1 is out of range", 0},
		{"relative file", exp(1, 0, "srv/a.img", eth0), 1, `file "srv/a.img" is not an absolute path`, 0},
		{"empty file", exp(1, 0, "", eth0), 1, "file is empty", 0},
		{"offset negative", exp(1, 0, "/a", eth0+"offset = -1\n"), 1, "offset -1 is negative", 0},
		{"offset huge", exp(1, 0, "/a", eth0+"offset = 18014398509481984\n"), 1, "offset 18014398509481984 is too large", 0},
		{"length negative", exp(1, 0, "/a", eth0+"length = -5\n"), 1, "length -5 is negative", 0},
		{"bufcnt 1", exp(1, 0, "/a", eth0+"bufcnt = 1\n"), 1, "bufcnt 1 is out of range 2..65535", 0},
		{"bufcnt 65536", exp(1, 0, "/a", eth0+"bufcnt = 65536\n"), 1, "bufcnt 65536 is out of range", 0},
		{"queues 0", exp(1, 0, "/a", eth0+"queues = 0\n"), 1, "queues 0 is out of range 1..64", 0},
		{"queues 65", exp(1, 0, "/a", eth0+"queues = 65\n"), 1, "queues 65 is out of range", 0},
		{"config string", exp(1, 0, "/a", eth0+"config_string = \""+strings.Repeat("é", 513)+"\"\n"), 1,
			"config_string is 1026 bytes long, more than 1024", 0},
		{"io_timeout bad", exp(1, 0, "/a", eth0+"io_timeout = \"30\"\n"), 1, `io_timeout "30" is not a duration`, 0},
		{"io_timeout negative", exp(1, 0, "/a", eth0+"io_timeout = \"-1s\"\n"), 1, `io_timeout "-1s" is negative`, 0},
		{"sync writeback", exp(1, 0, "/a", eth0+"sync = true\nwriteback = true\n"), 1,
			"sync = true contradicts writeback = true", 0},
		{"sync default writeback", "[defaults]\nsync = true\n" + exp(1, 0, "/a", eth0+"writeback = true\n"), 3,
			"sync = true contradicts writeback = true", 0},

		// Interfaces.
		{"interfaces empty", exp(1, 0, "/a", "interfaces = []\n"), 1, `export "e1.0": interfaces is empty`, 0},
		{"interface space", exp(1, 0, "/a", "interfaces = [\"eth 0\"]\n"), 1, `interface "eth 0" is not a valid interface name`, 0},
		{"interface slash", exp(1, 0, "/a", "interfaces = [\"a/b\"]\n"), 1, `interface "a/b" is not a valid`, 0},
		{"interface long", exp(1, 0, "/a", "interfaces = [\"abcdefghijklmnop\"]\n"), 1, `interface "abcdefghijklmnop" is not a valid`, 0},
		{"interface empty name", exp(1, 0, "/a", "interfaces = [\"\"]\n"), 1, `interface "" is not a valid`, 0},
		{"interface twice", exp(1, 0, "/a", "interfaces = [\"eth0\", \"eth1\", \"eth0\", \"eth0\"]\n"), 1, `interface "eth0" is listed more than once`, 0},
		{"defaults interface bad", "[defaults]\ninterfaces = [\"a b\"]\n" + exp(1, 0, "/a", ""), 1,
			`[defaults]: interface "a b" is not a valid`, 0},

		// MACs.
		{"mac bad", exp(1, 0, "/a", eth0+"macs = [\"00:11:22:33:44\"]\n"), 1, `macs: "00:11:22:33:44" is not a MAC address`, 0},
		{"mac twice", exp(1, 0, "/a", eth0+"macs = [\"00:11:22:33:44:55\", \"001122334455\"]\n"), 1,
			"macs: 00:11:22:33:44:55 is listed more than once", 0},
		{"macs too many", exp(1, 0, "/a", eth0+"macs = "+macList(MaxMasks+1)+"\n"), 1,
			"macs has 33 entries, more than 32", 0},

		// Names.
		{"name bad", exp(1, 0, "/a", eth0+"name = \"my disk\"\n"), 1, `name "my disk" must be 1 to 64 letters`, 0},
		{"name leading dash", exp(1, 0, "/a", eth0+"name = \"-x\"\n"), 1, `name "-x" must be`, 0},
		{"name empty", exp(1, 0, "/a", eth0+"name = \"\"\n"), 1, `name "" must be`, 0},
		{"name long", exp(1, 0, "/a", eth0+"name = \""+strings.Repeat("a", 65)+"\"\n"), 1, "must be 1 to 64", 0},
		{"name twice", exp(1, 0, "/a", eth0+"name = \"d\"\n") + exp(2, 0, "/b", eth0+"name = \"d\"\n"), 7,
			`export "d": name "d" is already used by the export at line 1`, 0},
		{"name equals default name", exp(1, 0, "/a", eth0) + exp(2, 0, "/b", eth0+"name = \"e1.0\"\n"), 6,
			`name "e1.0" is already used by the export at line 1`, 0},

		// Conflicts.
		{"address twice", exp(1, 0, "/a", eth0+"name = \"data0\"\n") + "\n\n" + exp(1, 0, "/b", "interfaces = [\"eth1\", \"eth0\"]\nname = \"b\"\n"), 9,
			`export "b" uses shelf.slot 1.0 on eth0, as does export "data0" (line 1)`, 0},
		{"address twice default names", exp(1, 0, "/a", eth0) + exp(1, 0, "/b", eth0), 6,
			`export "e1.0" uses shelf.slot 1.0 on eth0, as does export "e1.0" (line 1)`, 2},
		{"address twice via defaults", "[defaults]\ninterfaces = [\"eth1\", \"eth2\"]\n" + exp(3, 4, "/a", "name = \"a\"\n") + exp(3, 4, "/b", "name = \"b\"\n"), 8,
			`export "b" uses shelf.slot 3.4 on eth1 and eth2, as does export "a" (line 3)`, 0},
		{"file writable twice", exp(1, 0, "/srv/a.img", eth0+"name = \"a\"\n") + exp(1, 1, "/srv//a.img", eth0+"name = \"b\"\n"), 7,
			`export "b" exports /srv//a.img writable, as does export "a" (line 1); only read_only exports may share a file`, 0},
		{"file writable then read-only", exp(1, 0, "/srv/a.img", eth0+"name = \"a\"\n") + exp(1, 1, "/srv/a.img", eth0+"name = \"b\"\nread_only = true\n"), 7,
			`export "b" exports /srv/a.img read_only, while export "a" (line 1) exports it writable`, 0},
		{"file read-only then writable", exp(1, 0, "/srv/a.img", eth0+"name = \"a\"\nread_only = true\n") + exp(1, 1, "/srv/a.img", eth0+"name = \"b\"\n"), 8,
			`export "b" exports /srv/a.img writable, while export "a" (line 1) exports it read_only`, 0},
		{"file conflict reported once", exp(1, 0, "/a", eth0) + exp(1, 1, "/a", eth0) + exp(1, 2, "/a", eth0), 11,
			`export "e1.2" exports /a writable, as does export "e1.0" (line 1)`, 2},

		// Globals.
		{"log level", "\nlog_level = \"verbose\"\n", 2, `log_level "verbose": want "debug", "info", "warn" or "error"`, 0},
		{"log format", "log_format = \"xml\"\n", 1, `log_format "xml": want "text" or "json"`, 0},
		{"state dir", "# c\n\nstate_dir = \"var/lib\"\n", 3, `state_dir "var/lib" is not an absolute path`, 0},
		{"control socket", "control_socket = \"c.sock\"\n", 1, `control_socket "c.sock" is not an absolute path (or "off")`, 0},
		{"metrics", "metrics_listen = \"9940\"\n", 1, `metrics_listen "9940" is not host:port`, 0},

		// A bad default is reported once, at [defaults].
		{"bad default once", "[defaults]\nbufcnt = 1\n" + exp(1, 0, "/a", eth0) + exp(1, 1, "/b", eth0), 1,
			"[defaults]: bufcnt 1 is out of range 2..65535", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse(testPath, []byte(tt.doc))
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", f)
			}
			if f != nil {
				t.Errorf("Parse returned a File with an error")
			}
			checkErrors(t, err, testPath, tt.n, tt.line, tt.msg)
			if os.Getenv("CONFIG_SHOW_ERRORS") != "" {
				t.Logf("%s:\n%v", tt.name, err)
			}
		})
	}
}

// TestParseReportsAll checks that one Parse reports every problem, sorted
// by line.
func TestParseReportsAll(t *testing.T) {
	doc := `log_level = "loud"
[[export]]
shelf = 4095
slot = 0
file = "a.img"
interfaces = ["eth0"]
bufcount = 2

[[export]]
name = "b c"
shelf = 1
slot = 300
file = "/b"
`
	_, err := Parse(testPath, []byte(doc))
	want := `/etc/aoetarget/aoetarget.toml:1: log_level "loud": want "debug", "info", "warn" or "error"
/etc/aoetarget/aoetarget.toml:2: export "e4095.0": shelf 4095 is ignored by the Linux aoe initiator; use another shelf
/etc/aoetarget/aoetarget.toml:2: export "e4095.0": file "a.img" is not an absolute path
/etc/aoetarget/aoetarget.toml:7: export "e4095.0": unknown key "bufcount" (did you mean "bufcnt"?)
/etc/aoetarget/aoetarget.toml:9: export #2: slot 300 is out of range 0..254
/etc/aoetarget/aoetarget.toml:9: export #2: name "b c" must be 1 to 64 letters, digits, '_', '.', '@' or '-', starting with a letter or digit
/etc/aoetarget/aoetarget.toml:9: export #2: missing interfaces (set them here or in [defaults])`
	if err == nil {
		t.Fatal("Parse succeeded")
	}
	if diff := cmp.Diff(want, err.Error()); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

func TestParseExportLines(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []int
	}{
		{"headers", "# x\n" + export0 + "\n  [[export]] # second\nshelf = 2\nslot = 0\nfile = \"/b\"\ninterfaces = [\"eth0\"]\n", []int{2, 8}},
		{"inline", "export = [{shelf = 1, slot = 2, file = \"/x\", interfaces = [\"eth0\"]}]\n", []int{0}},
		{"header in a string", "x = '''\n[[export]]\n'''\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse(testPath, []byte(tt.doc))
			if tt.name == "header in a string" {
				// x is unknown: the error has the key's line even though
				// the header count is off.
				var errs Errors
				if !errors.As(err, &errs) || errs[0].Line != 1 {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			var got []int
			for _, e := range f.Exports {
				got = append(got, e.Line)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("lines (-want +got):\n%s", diff)
			}
		})
	}
	// Without header lines an error has no line.
	_, err := Parse(testPath, []byte("export = [{shelf = 4095, slot = 2, file = \"/x\", interfaces = [\"eth0\"]}]\n"))
	if want := testPath + `: export "e4095.2": shelf 4095 is ignored`; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %v, want prefix %q", err, want)
	}
}

func TestSameFileConflict(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "a.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.img")
	if err := os.Symlink(img, link); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "b.img")
	if err := os.WriteFile(other, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	doc := func(a, b string, ro bool) string {
		return fmt.Sprintf("[defaults]\ninterfaces = [\"eth0\"]\nread_only = %v\n[[export]]\nshelf = 1\nslot = 0\nfile = %q\n[[export]]\nshelf = 1\nslot = 1\nfile = %q\n", ro, a, b)
	}
	// Through a symlink.
	_, err := Parse(testPath, []byte(doc(img, link, false)))
	want := fmt.Sprintf(`%s:8: export "e1.1" exports %s writable, as does export "e1.0" (line 4) as %s; only read_only exports may share a file`, testPath, link, img)
	if err == nil || err.Error() != want {
		t.Errorf("error:\n%v\nwant:\n%s", err, want)
	}
	// Read-only twice is fine, and so are distinct files.
	if _, err := Parse(testPath, []byte(doc(img, link, true))); err != nil {
		t.Errorf("read-only twice: %v", err)
	}
	if _, err := Parse(testPath, []byte(doc(img, other, false))); err != nil {
		t.Errorf("distinct files: %v", err)
	}
	// A file that does not exist yet conflicts by its path only.
	missing := filepath.Join(dir, "missing.img")
	if _, err := Parse(testPath, []byte(doc(missing, other, false))); err != nil {
		t.Errorf("missing file: %v", err)
	}
}

func TestLoadMissing(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load: %v, want fs.ErrNotExist", err)
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{Path: "/a.toml", Line: 12, Msg: "bad"}, "/a.toml:12: bad"},
		{Error{Path: "/a.toml", Msg: "bad"}, "/a.toml: bad"},
		{Error{Line: 3, Msg: "bad"}, "line 3: bad"},
		{Error{Msg: "bad"}, "bad"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("%+v.Error() = %q, want %q", tt.e, got, tt.want)
		}
	}
	first := &Error{Path: "p", Line: 1, Msg: "one"}
	errs := Errors{first, {Path: "p", Msg: "two"}}
	if got, want := errs.Error(), "p:1: one\np: two"; got != want {
		t.Errorf("Errors.Error() = %q, want %q", got, want)
	}
	var e *Error
	if !errors.As(error(errs), &e) || e != first {
		t.Errorf("errors.As(Errors, *Error) = %v", e)
	}
	if !errors.Is(errs, first) {
		t.Error("errors.Is(Errors, first) = false")
	}
}

func TestAddress(t *testing.T) {
	for _, tt := range []struct {
		e    Export
		want string
	}{
		{Export{}, "e0.0"},
		{Export{Shelf: 65534, Slot: 254}, "e65534.254"},
		{Export{Shelf: 12, Slot: 3}, "e12.3"},
	} {
		if got := tt.e.Address(); got != tt.want {
			t.Errorf("Address() = %q, want %q", got, tt.want)
		}
	}
}

func TestSame(t *testing.T) {
	base := Export{
		Name: "data0", Shelf: 1, Slot: 2, File: "/dev/sdb", Interfaces: []string{"eth0", "eth1"},
		Offset: 3, Length: 4, ReadOnly: true, Direct: true, Sync: true, Writeback: true,
		MACs: []aoe.MAC{{1, 2, 3, 4, 5, 6}}, BufferCount: 16, ConfigString: "c",
		IOTimeout: time.Second, Queues: 2, IOUring: true, Line: 10,
	}
	clone := func(e Export) Export {
		e.Interfaces = append([]string(nil), e.Interfaces...)
		e.MACs = append([]aoe.MAC(nil), e.MACs...)
		return e
	}
	if !base.Same(clone(base)) {
		t.Fatal("Same(copy) = false")
	}
	moved := clone(base)
	moved.Line = 99
	if !base.Same(moved) || !moved.Same(base) {
		t.Error("Same differs on Line")
	}

	// Change every field but Line in turn, by reflection so that a field
	// added later is covered too.
	typ := reflect.TypeFor[Export]()
	for i := range typ.NumField() {
		field := typ.Field(i)
		if field.Name == "Line" {
			continue
		}
		changes := map[string]func(v reflect.Value){
			"append": func(v reflect.Value) { v.Set(reflect.Append(v, reflect.Zero(v.Type().Elem()))) },
			"edit": func(v reflect.Value) {
				switch v.Kind() {
				case reflect.String:
					v.SetString(v.String() + "x")
				case reflect.Bool:
					v.SetBool(!v.Bool())
				case reflect.Int, reflect.Int64:
					v.SetInt(v.Int() + 1)
				case reflect.Uint8, reflect.Uint16:
					v.SetUint(v.Uint() + 1)
				case reflect.Slice:
					e := v.Index(0)
					switch e.Kind() {
					case reflect.String:
						e.SetString("other")
					case reflect.Array:
						e.Index(0).SetUint(0xee)
					default:
						t.Fatalf("field %s: unhandled element kind %v", field.Name, e.Kind())
					}
				default:
					t.Fatalf("field %s: unhandled kind %v", field.Name, v.Kind())
				}
			},
		}
		for how, change := range changes {
			if how == "append" && field.Type.Kind() != reflect.Slice {
				continue
			}
			o := clone(base)
			change(reflect.ValueOf(&o).Elem().Field(i))
			if base.Same(o) || o.Same(base) {
				t.Errorf("Same does not see %s (%s)", field.Name, how)
			}
		}
	}
}

func TestSuggest(t *testing.T) {
	for _, tt := range []struct{ name, want string }{
		{"bufcount", `"bufcnt"`},
		{"readonly", `"read_only"`},
		{"inteface", `"interfaces"`},
		{"zzz", ""},
		{"io_timout", `"io_timeout"`},
	} {
		got := suggest(tt.name, settingKeys, exportOnlyKeys)
		if tt.want == "" && got != "" {
			t.Errorf("suggest(%q) = %q, want none", tt.name, got)
		}
		if tt.want != "" && !strings.Contains(got, tt.want) {
			t.Errorf("suggest(%q) = %q, want %s", tt.name, got, tt.want)
		}
	}
}

// checkFile fails t unless f satisfies every rule Parse enforces.
func checkFile(t testing.TB, f *File) {
	t.Helper()
	if f.StateDir == "" || !filepath.IsAbs(f.StateDir) {
		t.Errorf("StateDir %q", f.StateDir)
	}
	if f.ControlSocket != "" && !filepath.IsAbs(f.ControlSocket) {
		t.Errorf("ControlSocket %q", f.ControlSocket)
	}
	if f.LogFormat != "text" && f.LogFormat != "json" {
		t.Errorf("LogFormat %q", f.LogFormat)
	}
	switch f.LogLevel {
	case slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError:
	default:
		t.Errorf("LogLevel %v", f.LogLevel)
	}
	names := map[string]bool{}
	type use struct {
		shelf uint16
		slot  uint8
		ifc   string
	}
	uses := map[use]bool{}
	writable := map[string]bool{}
	for i, e := range f.Exports {
		bad := func(format string, args ...any) {
			t.Helper()
			t.Errorf("export %d (%q): %s", i, e.Name, fmt.Sprintf(format, args...))
		}
		if !nameRE.MatchString(e.Name) || names[e.Name] {
			bad("name")
		}
		names[e.Name] = true
		if e.Shelf == ignoredShelf || e.Shelf > maxShelf || e.Slot > maxSlot {
			bad("address %s", e.Address())
		}
		if !filepath.IsAbs(e.File) {
			bad("file %q", e.File)
		}
		if len(e.Interfaces) == 0 {
			bad("no interfaces")
		}
		for _, ifc := range e.Interfaces {
			if !validIfName(ifc) {
				bad("interface %q", ifc)
			}
			u := use{e.Shelf, e.Slot, ifc}
			if uses[u] {
				bad("address %s twice on %s", e.Address(), ifc)
			}
			uses[u] = true
		}
		if e.Offset < 0 || e.Length < 0 || e.Offset > maxSectors || e.Length > maxSectors {
			bad("window %d+%d", e.Offset, e.Length)
		}
		if e.Sync && e.Writeback {
			bad("sync and writeback")
		}
		if len(e.MACs) > MaxMasks {
			bad("%d MACs", len(e.MACs))
		}
		for j, m := range e.MACs {
			for _, o := range e.MACs[:j] {
				if m == o {
					bad("MAC %v twice", m)
				}
			}
		}
		if e.BufferCount < minBufferCount {
			bad("bufcnt %d", e.BufferCount)
		}
		if len(e.ConfigString) > aoe.MaxConfigStringLen {
			bad("config string %d bytes", len(e.ConfigString))
		}
		if e.IOTimeout < 0 {
			bad("io_timeout %v", e.IOTimeout)
		}
		if e.Queues < 1 || e.Queues > maxQueues {
			bad("queues %d", e.Queues)
		}
		clean := filepath.Clean(e.File)
		if w, seen := writable[clean]; seen && (w || !e.ReadOnly) {
			bad("file %s shared", e.File)
		}
		writable[clean] = writable[clean] || !e.ReadOnly
	}
}

// checkErrors checks that err is an Errors of n problems (0 means 1), each
// about path, one of them at line with a message containing msg, and that
// the error text starts with the path.
func checkErrors(t *testing.T, err error, path string, n, line int, msg string) {
	t.Helper()
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %T is not Errors: %v", err, err)
	}
	if n == 0 {
		n = 1
	}
	if len(errs) != n {
		t.Errorf("got %d errors, want %d:\n%v", len(errs), n, err)
	}
	found := false
	for _, e := range errs {
		if e.Path != path {
			t.Errorf("error %q has path %q", e, e.Path)
		}
		if e.Line == line && strings.Contains(e.Msg, msg) {
			found = true
		}
	}
	if !found {
		t.Errorf("no error at line %d containing %q in:\n%v", line, msg, err)
	}
	if !strings.HasPrefix(err.Error(), path+":") {
		t.Errorf("error does not start with the path: %v", err)
	}
}
