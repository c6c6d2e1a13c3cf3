package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// nobody is the unprivileged user the least-privilege tests run the
// target as.
const nobody = 65534

// sharedImage creates a backing file that nobody may read and write, in
// a directory it may enter.
func sharedImage(t *testing.T, sectors int) string {
	dir, err := os.MkdirTemp("", "aoetarget-nobody")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(path, make([]byte, sectors*512), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	return path
}

// asNobody runs the target as nobody with only the given capabilities.
func asNobody(caps string) impl {
	if _, err := exec.LookPath("setpriv"); err != nil {
		return impl{}
	}
	return impl{name: "aoetarget as nobody with " + caps, wrap: []string{"setpriv",
		"--reuid=" + strconv.Itoa(nobody), "--regid=" + strconv.Itoa(nobody), "--clear-groups",
		"--inh-caps=-all," + caps, "--ambient-caps=-all," + caps, "--bounding-set=-all," + caps}}
}

// TestIntegrationLeastPrivilege runs the target as an unprivileged user
// with CAP_NET_RAW and nothing else, checks that the process really has
// no more, and serves a round trip; without the capability it must exit
// at once with a clear error.
func TestIntegrationLeastPrivilege(t *testing.T) {
	l := newLab(t, 1500)
	as := asNobody("+net_raw")
	if as.wrap == nil {
		t.Skip("setpriv (util-linux) not installed")
	}
	file := sharedImage(t, 2048)
	p := l.start(as, file)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	uid := regexp.MustCompile(`(?m)^Uid:\s+(\d+)\s+(\d+)`).FindSubmatch(status)
	capEff := regexp.MustCompile(`(?m)^CapEff:\s+([0-9a-f]+)`).FindSubmatch(status)
	if uid == nil || string(uid[1]) != strconv.Itoa(nobody) || string(uid[2]) != strconv.Itoa(nobody) {
		t.Fatalf("target runs as uid %q, want %d", uid, nobody)
	}
	if capEff == nil || string(capEff[1]) != fmt.Sprintf("%016x", 1<<13) { // CAP_NET_RAW is 13
		t.Fatalf("target's effective capabilities %q, want CAP_NET_RAW only", capEff)
	}
	l.roundTrip(l.target(), 16, 64*1024, 30*time.Second)

	// The file is exported: a second export of it is refused, by the
	// same user or by root.
	ctx := ctxT(t, 30*time.Second)
	for _, second := range []impl{as, ours} {
		cmd := l.command(ctx, second, "1", "1", l.tif, file)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "in use") {
			t.Errorf("%s: a second export of the same file: %v\n%s", second.name, err, out)
		}
	}

	// Without CAP_NET_RAW: a clear error, not a hang.
	l2 := newLab(t, 1500)
	cmd := l2.command(ctx, asNobody("-net_raw"), "1", "1", l2.tif, sharedImage(t, 64))
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(strings.ToLower(string(out)), "not permitted") {
		t.Errorf("without CAP_NET_RAW: %v\n%s", err, out)
	}
}
