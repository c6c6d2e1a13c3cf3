package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/aoetarget/aoetarget/aoe"
	"github.com/aoetarget/aoetarget/initiator"
	"github.com/aoetarget/aoetarget/initiator/initiatortest"
)

var (
	clientMAC = aoe.MAC{0x02, 0, 0, 0, 0, 0x01}
	otherMAC  = aoe.MAC{0x02, 0, 0, 0, 0, 0x02}
)

// result is what one aoectl run printed and returned.
type result struct {
	code           int
	stdout, stderr string
	dialed         bool
}

// aoectl runs the command line args with stdin, against the fake targets
// on an in-memory link at MTU 1500.
func aoectl(t *testing.T, targets []*initiatortest.Target, stdin string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	var r result
	var served chan error
	var end *initiatortest.Conn
	a := &app{
		stdin:  strings.NewReader(stdin),
		stdout: &stdout,
		stderr: &stderr,
		dial: func(ifname string) (*initiator.Client, error) {
			r.dialed = true
			if ifname != "veth0" {
				return nil, fmt.Errorf("netconf: no such interface: %s", ifname)
			}
			c, tgt := initiatortest.Pipe()
			end, served = tgt, make(chan error, 1)
			go func() { served <- initiatortest.Serve(tgt, targets...) }()
			return initiator.New(c, clientMAC, 1500), nil
		},
	}
	r.code = a.run(context.Background(), args)
	if end != nil {
		end.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}
	r.stdout, r.stderr = stdout.String(), stderr.String()
	return r
}

func newTarget(major uint16, minor uint8, last byte) *initiatortest.Target {
	return &initiatortest.Target{
		Major: major, Minor: minor, MAC: aoe.MAC{0x02, 0, 0, 0, 1, last},
		Disk:     make([]byte, 64*aoe.SectorSize),
		Identity: aoe.Identity{Serial: "s1", Firmware: "f1", Model: "fake\x1bmodel"},
	}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		args []string
		want string // in the one line on stderr
	}{
		{nil, "no command"},
		{[]string{"-i", "veth0"}, "no command"},
		{[]string{"--bogus"}, "unknown flag"},
		{[]string{"-i"}, "flag needs an argument"},
		{[]string{"-i", "veth0", "bogus"}, `unknown command "bogus"`},
		{[]string{"discover"}, "no interface"},
		{[]string{"-i", "veth0", "-t", "0", "discover"}, "timeout must be positive"},
		{[]string{"-i", "veth0", "-t", "soon", "discover"}, "invalid argument"},
		{[]string{"-i", "veth0", "discover", "1", "2", "3"}, "at most shelf and slot"},
		{[]string{"-i", "veth0", "discover", "65535"}, `shelf "65535"`},
		{[]string{"-i", "veth0", "identify"}, "need shelf and slot"},
		{[]string{"-i", "veth0", "identify", "1"}, "need shelf and slot"},
		{[]string{"-i", "veth0", "identify", "x", "0"}, `shelf "x"`},
		{[]string{"-i", "veth0", "identify", "65536", "0"}, `shelf "65536"`},
		{[]string{"-i", "veth0", "identify", "1", "255"}, `slot "255"`},
		{[]string{"-i", "veth0", "identify", "1", "0", "more"}, `unexpected argument "more"`},
		{[]string{"-i", "veth0", "flush", "1"}, "need shelf and slot"},
		{[]string{"-i", "veth0", "read", "1", "0", "0"}, "need lba and count"},
		{[]string{"-i", "veth0", "read", "1", "0", "x", "1"}, `lba "x"`},
		{[]string{"-i", "veth0", "read", "1", "0", "281474976710656", "1"}, `lba "281474976710656"`},
		{[]string{"-i", "veth0", "read", "1", "0", "281474976710655", "2"}, `count "2"`},
		{[]string{"-i", "veth0", "write", "1", "0"}, "need lba"},
		{[]string{"-i", "veth0", "write", "1", "0", "1", "2"}, "need lba"},
		{[]string{"-i", "veth0", "config", "1", "0", "bogus"}, `unknown sub-command "bogus"`},
		{[]string{"-i", "veth0", "config", "1", "0", "read", "x"}, "read takes no string"},
		{[]string{"-i", "veth0", "config", "1", "0", "set"}, "set needs one string"},
		{[]string{"-i", "veth0", "config", "1", "0", "test", "a", "b"}, "test needs one string"},
		{[]string{"-i", "veth0", "config", "1", "0", "force-set", strings.Repeat("x", 1025)}, "at most 1024"},
		{[]string{"-i", "veth0", "mask", "1", "0", "add"}, "at least one MAC"},
		{[]string{"-i", "veth0", "mask", "1", "0", "del", "00:11:22"}, `MAC address "00:11:22"`},
		{[]string{"-i", "veth0", "mask", "1", "0", "list", "x"}, "list takes no arguments"},
		{[]string{"-i", "veth0", "mask", "1", "0", "clear"}, `unknown sub-command "clear"`},
		{[]string{"-i", "veth0", "reserve", "1", "0", "release", "x"}, "release takes no arguments"},
		{[]string{"-i", "veth0", "reserve", "1", "0", "set"}, "at least one MAC"},
		{[]string{"-i", "veth0", "reserve", "1", "0", "read", "x"}, "read takes no arguments"},
		{[]string{"-i", "veth0", "reserve", "1", "0", "grab"}, `unknown sub-command "grab"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := aoectl(t, nil, "", tt.args...)
			if r.code != exitUsage {
				t.Errorf("exit status %d, want %d", r.code, exitUsage)
			}
			if r.dialed {
				t.Errorf("opened the interface for a usage error")
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q, want nothing", r.stdout)
			}
			lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "aoectl: ") || !strings.Contains(lines[0], tt.want) {
				t.Errorf("stderr = %q, want one line with %q", r.stderr, tt.want)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	r := aoectl(t, nil, "", "-h")
	if r.code != exitOK || r.stderr != "" || r.dialed {
		t.Errorf("-h: status %d, stderr %q, dialed %v", r.code, r.stderr, r.dialed)
	}
	for _, want := range []string{"usage: aoectl", "discover [shelf [slot]]", "reserve shelf slot", "--interface", "--timeout"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("-h output lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestDiscover(t *testing.T) {
	a, b := newTarget(1, 0, 1), newTarget(1, 1, 2)
	b.SetConfig("host=b")
	targets := []*initiatortest.Target{b, a}

	r := aoectl(t, targets, "", "-i", "veth0", "-t", "500ms", "discover")
	want := "TARGET  MAC                BUFCNT  FIRMWARE  SECTORS  CONFIG\n" +
		`1.0     02:00:00:00:01:01  16      0x4019    2        ""` + "\n" +
		`1.1     02:00:00:00:01:02  16      0x4019    2        "host=b"` + "\n"
	if r.code != exitOK || r.stdout != want {
		t.Errorf("discover: status %d, stderr %q, stdout:\n%s\nwant:\n%s", r.code, r.stderr, r.stdout, want)
	}

	r = aoectl(t, targets, "", "-i", "veth0", "-t", "500ms", "discover", "1", "1")
	if r.code != exitOK || strings.Count(r.stdout, "\n") != 2 || !strings.Contains(r.stdout, "1.1 ") {
		t.Errorf("discover 1 1: status %d, stderr %q, stdout:\n%s", r.code, r.stderr, r.stdout)
	}

	r = aoectl(t, targets, "", "-i", "veth0", "-t", "50ms", "discover", "9")
	if r.code != exitError || !strings.Contains(r.stderr, "no targets answered on veth0") {
		t.Errorf("discover 9: status %d, stderr %q", r.code, r.stderr)
	}

	r = aoectl(t, targets, "", "-i", "nope0", "discover")
	if r.code != exitError || r.stderr != "aoectl: netconf: no such interface: nope0\n" {
		t.Errorf("discover on a missing interface: status %d, stderr %q", r.code, r.stderr)
	}
}

func TestIdentify(t *testing.T) {
	targets := []*initiatortest.Target{newTarget(1, 0, 1)}
	r := aoectl(t, targets, "", "-i", "veth0", "identify", "1", "0")
	want := "target:    1.0 at 02:00:00:00:01:01\n" +
		"model:     fake?model\n" +
		"serial:    s1\n" +
		"firmware:  f1\n" +
		"capacity:  64 sectors (32.0 KiB)\n"
	if r.code != exitOK || r.stdout != want {
		t.Errorf("identify: status %d, stderr %q, stdout:\n%s\nwant:\n%s", r.code, r.stderr, r.stdout, want)
	}

	r = aoectl(t, targets, "", "-i", "veth0", "-t", "50ms", "identify", "5", "5")
	if r.code != exitError || !strings.Contains(r.stderr, "no target 5.5 answered on veth0 within 50ms") {
		t.Errorf("identify 5 5: status %d, stderr %q", r.code, r.stderr)
	}
}

func TestReadWrite(t *testing.T) {
	tg := newTarget(1, 0, 1)
	targets := []*initiatortest.Target{tg}
	data := make([]byte, 5*aoe.SectorSize)
	for i := range data {
		data[i] = byte(i * 7)
	}

	r := aoectl(t, targets, string(data), "-i", "veth0", "write", "1", "0", "10")
	if r.code != exitOK || r.stdout != "" || r.stderr != "" {
		t.Fatalf("write: status %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if !bytes.Equal(tg.Disk[10*aoe.SectorSize:15*aoe.SectorSize], data) {
		t.Errorf("the disk does not hold what write wrote")
	}

	r = aoectl(t, targets, "", "-i", "veth0", "read", "1", "0", "10", "5")
	if r.code != exitOK || r.stdout != string(data) {
		t.Errorf("read: status %d, stderr %q, %d bytes, want the %d written", r.code, r.stderr, len(r.stdout), len(data))
	}

	r = aoectl(t, targets, "", "-i", "veth0", "read", "1", "0", "10", "0")
	if r.code != exitOK || r.stdout != "" {
		t.Errorf("read of 0 sectors: status %d, stderr %q, stdout %q", r.code, r.stderr, r.stdout)
	}

	r = aoectl(t, targets, string(data[:700]), "-i", "veth0", "write", "1", "0", "20")
	if r.code != exitError || !strings.Contains(r.stderr, "188 bytes that are not a whole sector") {
		t.Errorf("write of 700 bytes: status %d, stderr %q", r.code, r.stderr)
	}
	if !bytes.Equal(tg.Disk[20*aoe.SectorSize:21*aoe.SectorSize], data[:aoe.SectorSize]) {
		t.Errorf("write of 700 bytes did not write the whole sector")
	}

	r = aoectl(t, targets, "", "-i", "veth0", "read", "1", "0", "60", "8")
	if r.code != exitError || !strings.Contains(r.stderr, "IDNF") {
		t.Errorf("read past the end: status %d, stderr %q", r.code, r.stderr)
	}

	r = aoectl(t, targets, "", "-i", "veth0", "flush", "1", "0")
	if r.code != exitOK || r.stderr != "" {
		t.Errorf("flush: status %d, stderr %q", r.code, r.stderr)
	}
}

func TestConfig(t *testing.T) {
	tg := newTarget(1, 0, 1)
	targets := []*initiatortest.Target{tg}
	tests := []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"config", "1", "0"}, exitOK, "\n", ""},
		{[]string{"config", "1", "0", "set", "host=a b"}, exitOK, "host=a b\n", ""},
		{[]string{"config", "1", "0", "read"}, exitOK, "host=a b\n", ""},
		{[]string{"config", "1", "0", "test", "host=a b"}, exitOK, "host=a b\n", ""},
		{[]string{"config", "1", "0", "test", "host=a"}, exitError, "", "no target with a matching config string"},
		{[]string{"config", "1", "0", "test-prefix", "host=a"}, exitOK, "host=a b\n", ""},
		{[]string{"config", "1", "0", "test-prefix", "host=c"}, exitError, "", "no target with a matching config string"},
		{[]string{"config", "1", "0", "set", "host=c"}, exitError, "", "config string present"},
		{[]string{"config", "1", "0", "force-set", "host=c"}, exitOK, "host=c\n", ""},
	}
	for _, tt := range tests {
		args := append([]string{"-i", "veth0"}, tt.args...)
		if strings.Contains(tt.stderr, errNoMatch.Error()) {
			// A test that does not match gets no reply: do not wait long.
			args = append([]string{"-t", "50ms"}, args...)
		}
		r := aoectl(t, targets, "", args...)
		if r.code != tt.code || r.stdout != tt.stdout || !strings.Contains(r.stderr, tt.stderr) ||
			(tt.stderr == "" && r.stderr != "") {
			t.Errorf("%q: status %d, stdout %q, stderr %q; want %d, %q, %q",
				tt.args, r.code, r.stdout, r.stderr, tt.code, tt.stdout, tt.stderr)
		}
	}
}

func TestMaskAndReserve(t *testing.T) {
	tg := newTarget(1, 0, 1)
	targets := []*initiatortest.Target{tg}
	tests := []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"mask", "1", "0"}, exitOK, "", ""},
		{[]string{"mask", "1", "0", "add", "02:00:00:00:00:01", "020000000003"}, exitOK,
			"02:00:00:00:00:01\n02:00:00:00:00:03\n", ""},
		{[]string{"mask", "1", "0", "list"}, exitOK, "02:00:00:00:00:01\n02:00:00:00:00:03\n", ""},
		{[]string{"mask", "1", "0", "del", "02-00-00-00-00-03"}, exitOK, "02:00:00:00:00:01\n", ""},
		{[]string{"mask", "1", "0", "del", "02:00:00:00:00:01"}, exitOK, "", ""},
		{[]string{"reserve", "1", "0"}, exitOK, "", ""},
		{[]string{"reserve", "1", "0", "set", otherMAC.String()}, exitOK, "02:00:00:00:00:02\n", ""},
		{[]string{"reserve", "1", "0", "read"}, exitOK, "02:00:00:00:00:02\n", ""},
		{[]string{"reserve", "1", "0", "release"}, exitError, "", "target is reserved"},
		{[]string{"flush", "1", "0"}, exitError, "", "target is reserved"},
		{[]string{"identify", "1", "0"}, exitOK, "", ""},
		{[]string{"reserve", "1", "0", "force-set", clientMAC.String()}, exitOK, "02:00:00:00:00:01\n", ""},
		{[]string{"reserve", "1", "0", "release"}, exitOK, "", ""},
		{[]string{"reserve", "1", "0", "force-set"}, exitOK, "", ""},
	}
	for _, tt := range tests {
		args := append([]string{"-i", "veth0"}, tt.args...)
		r := aoectl(t, targets, "", args...)
		stdoutOK := r.stdout == tt.stdout || tt.args[0] == "identify"
		if r.code != tt.code || !stdoutOK || !strings.Contains(r.stderr, tt.stderr) ||
			(tt.stderr == "" && r.stderr != "") {
			t.Errorf("%q: status %d, stdout %q, stderr %q; want %d, %q, %q",
				tt.args, r.code, r.stdout, r.stderr, tt.code, tt.stdout, tt.stderr)
		}
	}
}

func TestSize(t *testing.T) {
	tests := []struct {
		n    uint64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{16 << 20, "16.0 MiB"},
		{3 << 40, "3.0 TiB"},
		{1 << 63, "8.0 EiB"},
	}
	for _, tt := range tests {
		if got := size(tt.n); got != tt.want {
			t.Errorf("size(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}
