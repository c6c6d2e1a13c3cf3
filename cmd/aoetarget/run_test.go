package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/aoetarget/aoetarget/aoe"
)

func TestParseArgs(t *testing.T) {
	mac1 := aoe.MAC{0x00, 0x11, 0x22, 0xaa, 0xbb, 0xcc}
	mac2 := aoe.MAC{0x02, 0, 0, 0, 0, 1}
	tests := []struct {
		name string
		args string
		want options
	}{
		{"positional only", "1 0 eth0 /tmp/disk", options{bufcnt: 16, shelf: 1, slot: 0, netif: "eth0", filename: "/tmp/disk"}},
		{"vblade flags", "-b 32 -d -s -r -o 8 -l 100 65534 254 eth1 /dev/sdb",
			options{bufcnt: 32, direct: true, sync: true, readOnly: true, offset: 8, length: 100, shelf: 65534, slot: 254, netif: "eth1", filename: "/dev/sdb"}},
		{"combined short flags", "-rd 2 3 eth0 f", options{bufcnt: 16, direct: true, readOnly: true, shelf: 2, slot: 3, netif: "eth0", filename: "f"}},
		{"combined with value", "-sb8 2 3 eth0 f", options{bufcnt: 8, sync: true, shelf: 2, slot: 3, netif: "eth0", filename: "f"}},
		{"flags after positionals", "2 3 eth0 f -r", options{bufcnt: 16, readOnly: true, shelf: 2, slot: 3, netif: "eth0", filename: "f"}},
		{"mask list with and without colons", "-m 001122AABBCC,02:00:00:00:00:01 1 1 e f",
			options{bufcnt: 16, masks: []aoe.MAC{mac1, mac2}, shelf: 1, slot: 1, netif: "e", filename: "f"}},
		{"long names", "--bufcnt=4 --direct --sync --read-only --mac 00:11:22:aa:bb:cc --offset 1 --length 2 1 1 e f",
			options{bufcnt: 4, direct: true, sync: true, readOnly: true, masks: []aoe.MAC{mac1}, offset: 1, length: 2, shelf: 1, slot: 1, netif: "e", filename: "f"}},
		{"writeback", "--writeback 1 1 e f", options{bufcnt: 16, writeback: true, shelf: 1, slot: 1, netif: "e", filename: "f"}},
		{"io timeout", "--io-timeout 5s 1 1 e f", options{bufcnt: 16, ioTimeout: 5 * time.Second, shelf: 1, slot: 1, netif: "e", filename: "f"}},
		{"no io timeout", "--io-timeout=0 1 1 e f", options{bufcnt: 16, ioTimeout: -1, shelf: 1, slot: 1, netif: "e", filename: "f"}},
		{"queues", "--queues 4 1 1 e f", options{bufcnt: 16, queues: 4, shelf: 1, slot: 1, netif: "e", filename: "f"}},
		{"cached writes", "--cached-writes 1 1 e f", options{bufcnt: 16, cached: true, shelf: 1, slot: 1, netif: "e", filename: "f"}},
		{"help", "--help", options{help: true}},
		{"version", "--version", options{vers: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseArgs(strings.Fields(tt.args))
			if err != nil {
				t.Fatal(err)
			}
			o.logFormat, o.logLevel = "", 0
			if o.queues == 1 { // the default is left out of the table
				o.queues = 0
			}
			switch o.ioTimeout { // the default is left out of the table
			case DefaultIOTimeout:
				o.ioTimeout = 0
			case 0:
				o.ioTimeout = -1
			}
			if diff := cmp.Diff(&tt.want, o, cmp.AllowUnexported(options{}), cmpopts.IgnoreFields(options{}, "set")); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseArgsErrors(t *testing.T) {
	tests := []struct {
		args string
		want string // in the message
	}{
		{"", "need 4 arguments"},
		{"1 2 eth0", "need 4 arguments"},
		{"1 2 eth0 f g", "need 4 arguments"},
		{"65535 0 e f", "0 to 65534"},
		{"-1 0 e f", "unknown shorthand flag"},
		{"x 0 e f", "0 to 65534"},
		{"4095 0 e f", "Linux initiator ignores it"},
		{"1 255 e f", "0 to 254"},
		{"--io-timeout=-1s 1 1 e f", "must not be negative"},
		{"--queues 0 1 1 e f", "from 1 to 64"},
		{"--io-timeout=soon 1 1 e f", "invalid argument"},
		{"1 -- e f", "need 4 arguments"},
		{"-b 1 1 1 e f", "at least 2"},
		{"-b 0 1 1 e f", "at least 2"},
		{"-b 70000 1 1 e f", "at most 65535"},
		{"-b x 1 1 e f", "invalid argument"},
		{"-m 00:11 1 1 e f", "not a MAC"},
		{"-m zz1122334455 1 1 e f", "not a MAC"},
		{"-o -1 1 1 e f", "negative"},
		{"-s --writeback 1 1 e f", "contradict"},
		{"-x 1 1 e f", "unknown shorthand flag"},
		{"--log-format xml 1 1 e f", "text or json"},
		{"--log-level loud 1 1 e f", "debug, info"},
	}
	for _, tt := range tests {
		t.Run(tt.args, func(t *testing.T) {
			_, err := parseArgs(strings.Fields(tt.args))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
			if _, ok := err.(usageError); !ok {
				t.Fatalf("%T is not a usage error", err)
			}
		})
	}
	masks := make([]string, 33)
	for i := range masks {
		masks[i] = "02000000000" + string(rune('0'+i%10))
	}
	if _, err := parseArgs([]string{"-m", strings.Join(masks, ","), "1", "1", "e", "f"}); err == nil || !strings.Contains(err.Error(), "at most 32") {
		t.Fatalf("33 masks: %v", err)
	}
}

// TestRunExitStatus checks that bad arguments and missing files or
// interfaces give one line on stderr and exit status 2.
func TestRunExitStatus(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	if err := os.WriteFile(small, make([]byte, 100), 0o644); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(dir, "disk")
	if err := os.WriteFile(disk, make([]byte, 8*512), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"help", []string{"--help"}, 0, ""},
		{"version", []string{"--version"}, 0, ""},
		{"bad shelf", []string{"4095", "0", "lo", disk}, 2, "shelf 4095"},
		{"missing interface", []string{"1", "0", "aoet-nonexistent0", disk}, 2, "aoet-nonexistent0"},
		{"missing file", []string{"1", "0", "lo", filepath.Join(dir, "nope")}, 2, "nope"},
		{"file too small", []string{"1", "0", "lo", small}, 2, "small"},
		{"window past end", []string{"-o", "4", "-l", "5", "1", "0", "lo", disk}, 2, "window"},
		{"offset past end", []string{"-o", "9", "1", "0", "lo", disk}, 2, "window"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, &stdout, &stderr)
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tt.code, stderr.String())
			}
			if tt.code == 0 {
				if stdout.Len() == 0 {
					t.Fatal("nothing on stdout")
				}
				return
			}
			if lines := strings.Count(stderr.String(), "\n"); lines != 1 || !strings.Contains(stderr.String(), tt.want) {
				t.Fatalf("stderr %q: want one line containing %q", stderr.String(), tt.want)
			}
		})
	}
}
