//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aoetarget/aoetarget/internal/netns"
)

const vbladePath = "/usr/sbin/vblade"

// TestIntegration runs aoebench for a moment against Debian's vblade, the
// aoetarget binary and the C null responder, each in its own network
// namespace across a veth pair, and checks that every run completes
// without errors (and, against the real targets, that verify finds every
// sector it wrote). It asserts nothing about speed.
func TestIntegration(t *testing.T) {
	netns.SkipUnlessRoot(t)
	targets := []struct {
		name  string
		build func(t *testing.T, dir string) (cmd []string, skip string)
		modes []string // --rw values to run
	}{
		{name: "vblade", build: func(t *testing.T, dir string) ([]string, string) {
			if _, err := os.Stat(vbladePath); err != nil {
				return nil, "vblade not installed (apt-get install vblade)"
			}
			return []string{vbladePath, "-b", "16"}, ""
		}, modes: []string{"verify", "read", "write"}},
		{name: "aoetarget", build: func(t *testing.T, dir string) ([]string, string) {
			goBin, err := exec.LookPath("go")
			if err != nil {
				return nil, "go not in PATH to build cmd/aoetarget"
			}
			bin := filepath.Join(dir, "aoetarget")
			if out, err := exec.Command(goBin, "build", "-o", bin, "../aoetarget").CombinedOutput(); err != nil {
				t.Fatalf("go build ../aoetarget: %v\n%s", err, out)
			}
			return []string{bin, "-b", "16"}, ""
		}, modes: []string{"verify", "read", "write"}},
		{name: "nullresp", build: func(t *testing.T, dir string) ([]string, string) {
			cc, err := exec.LookPath("gcc")
			if err != nil {
				return nil, "gcc not installed, needed for hack/bench.d/nullresp.c"
			}
			bin := filepath.Join(dir, "nullresp")
			if out, err := exec.Command(cc, "-O2", "-Wall", "-Werror", "-o", bin, "../../hack/bench.d/nullresp.c").CombinedOutput(); err != nil {
				t.Fatalf("gcc nullresp.c: %v\n%s", err, out)
			}
			return []string{bin, "-b", "16", "-s", "16384"}, "" // no file: it stores nothing
		}, modes: []string{"read", "write"}},
	}
	for _, tgt := range targets {
		t.Run(tgt.name, func(t *testing.T) {
			for _, mtu := range []int{1500, 9000} {
				t.Run(strconv.Itoa(mtu), func(t *testing.T) {
					dir := t.TempDir()
					cmd, skip := tgt.build(t, dir)
					if skip != "" {
						t.Skip("skipping: " + skip)
					}
					testAgainst(t, dir, tgt.name, cmd, tgt.modes, mtu)
				})
			}
		})
	}
}

func testAgainst(t *testing.T, dir, name string, cmd, modes []string, mtu int) {
	const shelf, slot = 3, 4
	tns, gns := netns.New(t), netns.New(t)
	tif, gif := netns.Veth(t, tns, gns, mtu)

	args := append([]string(nil), cmd[1:]...)
	args = append(args, strconv.Itoa(shelf), strconv.Itoa(slot), tif)
	if name != "nullresp" {
		img := filepath.Join(dir, "disk.img")
		if err := os.WriteFile(img, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(img, 8<<20); err != nil {
			t.Fatal(err)
		}
		args = append(args, img)
	}
	ctx, stop := context.WithCancel(context.Background())
	c := tns.Command(ctx, cmd[0], args...)
	var out netns.Output
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		stop()
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		stop()
		_ = c.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})

	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			argv := []string{"-i", gif, "--json", "--rw", mode, "-w", "8", "-d", "1s", "--warmup", "100ms",
				"--timeout", "500ms", "--discover-timeout", "30s", "--size", "4m",
				"--pid", strconv.Itoa(c.Process.Pid), "--case", "test", "--name", name,
				strconv.Itoa(shelf), strconv.Itoa(slot)}
			var stdout, stderr bytes.Buffer
			var code int
			err := gns.Do(func() error {
				code = run(context.Background(), argv, &stdout, &stderr)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if code != exitOK {
				t.Fatalf("aoebench %s exits %d:\n%s%s", strings.Join(argv, " "), code, stdout.String(), stderr.String())
			}
			var r Result
			if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
				t.Fatalf("output is not JSON: %v\n%s", err, stdout.String())
			}
			if r.IOs == 0 || r.Frames < r.IOs {
				t.Errorf("%d I/Os in %d frames", r.IOs, r.Frames)
			}
			if r.failed() || r.FailedIOs > 0 {
				t.Errorf("errors: AoE %d, ATA %d, short %d, verify %d, failed I/Os %d: %q",
					r.AoEErrors, r.ATAErrors, r.ShortReads, r.VerifyErrs, r.FailedIOs, r.ErrorNotes)
			}
			if r.Config.MTU != mtu || r.Config.FramesPerIO != (4096+r.Config.FrameSectors*512-1)/(r.Config.FrameSectors*512) {
				t.Errorf("MTU %d, %d frames of %d sectors per 4-KiB I/O", r.Config.MTU, r.Config.FramesPerIO, r.Config.FrameSectors)
			}
			if want := (mtu - 36) / 512; r.Config.FrameSectors != want {
				t.Errorf("%d sectors per frame at MTU %d, want %d", r.Config.FrameSectors, mtu, want)
			}
			if r.TargetCPU == nil {
				t.Error("no target CPU time although --pid was given")
			}
			if r.Case != "test" || r.Name != name || r.Elapsed <= 0 || r.Time == "" {
				t.Errorf("labels %q %q, elapsed %v, time %q", r.Case, r.Name, r.Elapsed, r.Time)
			}
			if _, err := time.Parse(time.RFC3339, r.Time); err != nil {
				t.Errorf("time %q: %v", r.Time, err)
			}
		})
	}
}
