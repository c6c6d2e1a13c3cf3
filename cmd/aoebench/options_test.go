package main

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseArgs(t *testing.T) {
	tests := []struct {
		name    string
		args    string
		check   func(*options) bool
		wantErr string
	}{
		{name: "defaults", args: "-i veth0 1 2", check: func(o *options) bool {
			return o.ifname == "veth0" && o.shelf == 1 && o.slot == 2 && o.window == 32 && o.bs == 4096 &&
				o.mode == modeRead && o.random && o.duration == 10*time.Second && o.warmup == time.Second &&
				o.timeout == time.Second && o.ioText == "mmsg" && !o.spin
		}},
		{name: "everything", args: "-i e -w 1 --sectors 17 --bs frame --rw verify --pattern seq -d 2s --warmup 0 " +
			"--timeout 50ms --offset 1m --size 1g --pid 77 --json --case c --name n --seed 9 --io ring --spin 65534 254",
			check: func(o *options) bool {
				return o.window == 1 && o.sectors == 17 && o.bs == 0 && o.mode == modeVerify && !o.random &&
					o.duration == 2*time.Second && o.warmup == 0 && o.timeout == 50*time.Millisecond &&
					o.offset == 1<<20 && o.size == 1<<30 && o.pid == 77 && o.json && o.caseName == "c" &&
					o.targetName == "n" && o.seed == 9 && o.ioText == "ring" && o.spin && o.shelf == 65534 && o.slot == 254
			}},
		{name: "count instead of duration", args: "-i e -n 1000 -d 0 1 1", check: func(o *options) bool { return o.count == 1000 }},
		{name: "write, 64k", args: "-i e --rw write --bs 64KiB 1 1", check: func(o *options) bool { return o.mode == modeWrite && o.bs == 65536 }},
		{name: "help", args: "-h", check: func(o *options) bool { return o.help }},
		{name: "no interface", args: "1 1", wantErr: "no interface"},
		{name: "one argument", args: "-i e 1", wantErr: "need 2 arguments"},
		{name: "broadcast shelf", args: "-i e 65535 1", wantErr: "shelf 65535"},
		{name: "broadcast slot", args: "-i e 1 255", wantErr: "slot 255"},
		{name: "bad rw", args: "-i e --rw trim 1 1", wantErr: "--rw trim"},
		{name: "bad pattern", args: "-i e --pattern zigzag 1 1", wantErr: "--pattern"},
		{name: "bs not sectors", args: "-i e --bs 1000 1 1", wantErr: "multiple of 512"},
		{name: "bs zero", args: "-i e --bs 0 1 1", wantErr: "--bs 0"},
		{name: "window zero", args: "-i e -w 0 1 1", wantErr: "--window 0"},
		{name: "window too big", args: "-i e -w 65536 1 1", wantErr: "--window 65536"},
		{name: "sectors too many", args: "-i e --sectors 256 1 1", wantErr: "--sectors 256"},
		{name: "no duration", args: "-i e -d 0 1 1", wantErr: "--duration"},
		{name: "negative warmup", args: "-i e --warmup -1s 1 1", wantErr: "--warmup"},
		{name: "odd offset", args: "-i e --offset 100 1 1", wantErr: "multiples of 512"},
		{name: "bad io", args: "-i e --io uring 1 1", wantErr: "--io uring"},
		{name: "unknown flag", args: "-i e --frobnicate 1 1", wantErr: "frobnicate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseArgs(strings.Fields(tt.args))
			if tt.wantErr != "" {
				var ue *usageError
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.As(err, &ue) {
					t.Fatalf("parseArgs(%q) = %v, want a usage error about %q", tt.args, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseArgs(%q): %v", tt.args, err)
			}
			if !tt.check(o) {
				t.Errorf("parseArgs(%q) = %+v", tt.args, o)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{in: "0", want: 0},
		{in: "512", want: 512},
		{in: "4k", want: 4096},
		{in: "4K", want: 4096},
		{in: "4KiB", want: 4096},
		{in: "4kb", want: 4096},
		{in: "2m", want: 2 << 20},
		{in: "2g", want: 2 << 30},
		{in: "1t", want: 1 << 40},
		{in: "8s", want: 4096},
		{in: "", wantErr: true},
		{in: "k", wantErr: true},
		{in: "-1", wantErr: true},
		{in: "1.5k", wantErr: true},
		{in: "4x", wantErr: true},
		{in: "99999999999t", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
			t.Errorf("parseSize(%q) = %d, %v; want %d (error %v)", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestHelp(t *testing.T) {
	var out, errw strings.Builder
	if code := run(t.Context(), []string{"--help"}, &out, &errw); code != exitOK {
		t.Fatalf("--help exits %d: %s", code, errw.String())
	}
	for _, want := range []string{"usage: aoebench", "--window", "--rw", "4-KiB I/O is 4\nframes"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
	if code := run(t.Context(), []string{"-w", "x"}, &out, &errw); code != exitUsage {
		t.Errorf("a bad flag exits %d, want %d", code, exitUsage)
	}
}
