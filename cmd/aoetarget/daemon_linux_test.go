package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aoetarget/aoetarget/aoe"
	"github.com/aoetarget/aoetarget/initiator"
	"github.com/aoetarget/aoetarget/internal/netns"
)

// notifySocket is a test stand-in for systemd's notification socket.
type notifySocket struct {
	t    *testing.T
	path string
	conn *net.UnixConn
}

func newNotifySocket(t *testing.T) *notifySocket {
	path := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &notifySocket{t: t, path: path, conn: c}
}

// next returns the next message, failing the test after d.
func (n *notifySocket) next(d time.Duration) string {
	n.t.Helper()
	buf := make([]byte, 4096)
	n.conn.SetReadDeadline(time.Now().Add(d))
	k, err := n.conn.Read(buf)
	if err != nil {
		n.t.Fatalf("no notification within %v: %v", d, err)
	}
	return string(buf[:k])
}

// expect reads messages until one starts with prefix, failing on any other
// message than WATCHDOG=1 and STATUS= lines on the way.
func (n *notifySocket) expect(prefix string, d time.Duration) string {
	n.t.Helper()
	for {
		m := n.next(d)
		if strings.HasPrefix(m, prefix) {
			return m
		}
		if m != "WATCHDOG=1" && !strings.HasPrefix(m, "STATUS=") {
			n.t.Fatalf("notification %q while waiting for %q", m, prefix)
		}
	}
}

// daemonProc is aoetarget running with --config.
type daemonProc struct {
	*proc
	config string // the config file
	notify *notifySocket
}

// startDaemon writes config to a file and runs aoetarget --config on it
// (plus args) in the target namespace, with a notification socket.
func (l *lab) startDaemon(config string, args ...string) *daemonProc {
	t := l.t
	path := filepath.Join(t.TempDir(), "aoetarget.toml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	return l.runDaemon(path, nil, args...)
}

func (l *lab) runDaemon(path string, env []string, args ...string) *daemonProc {
	t := l.t
	d := &daemonProc{proc: &proc{out: &netns.Output{}, done: make(chan error, 1)}, config: path, notify: newNotifySocket(t)}
	d.cmd = l.command(context.Background(), ours, append([]string{"--config", path}, args...)...)
	d.cmd.Env = append(append(os.Environ(), "NOTIFY_SOCKET="+d.notify.path), env...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(15 * time.Second):
			d.cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			t.Logf("aoetarget output:\n%s", d.out.String())
		}
	})
	return d
}

// rewrite replaces the config file and sends SIGHUP; it returns the
// notification that ends the reload (READY=1 with its status).
func (d *daemonProc) reload(t *testing.T, config string) string {
	t.Helper()
	if err := os.WriteFile(d.config, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	m := d.notify.expect("RELOADING=1", 10*time.Second)
	if !strings.Contains(m, "\nMONOTONIC_USEC=") {
		t.Errorf("RELOADING=1 without MONOTONIC_USEC: %q", m)
	}
	return d.notify.expect("READY=1", 20*time.Second)
}

// answers reports whether shelf.slot answers a Query Config within d.
func (l *lab) answers(shelf uint16, slot uint8, d time.Duration) (initiator.Target, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	tg, err := l.client.Lookup(ctx, shelf, slot)
	return tg, err == nil
}

// exportTOML is one [[export]] table.
func exportTOML(name string, slot int, file, netif string, extra ...string) string {
	return fmt.Sprintf("\n[[export]]\nname = %q\nshelf = %d\nslot = %d\nfile = %q\ninterfaces = [%q]\n%s\n",
		name, testShelf, slot, file, netif, strings.Join(extra, "\n"))
}

// load is a client that writes and reads back blocks on one export until
// stopped, counting what failed or had to be resent.
type load struct {
	ops, failed, stalled int
	worst                time.Duration
	firstErr             error
}

func (l *lab) runLoad(ctx context.Context, tg initiator.Target, sectors int, timeout time.Duration) *load {
	var res load
	rng := rand.New(rand.NewPCG(1, 2))
	buf, got := make([]byte, 8192), make([]byte, 8192)
	c := l.dial()
	c.SetTimeout(timeout)
	for ctx.Err() == nil {
		lba := uint64(rng.IntN(sectors - 16))
		for i := range buf {
			buf[i] = byte(rng.Uint32())
		}
		start := time.Now()
		octx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := c.WriteAt(octx, tg, buf, lba)
		if err == nil {
			err = c.ReadAt(octx, tg, got, lba)
			if err == nil && !bytes.Equal(buf, got) {
				err = fmt.Errorf("LBA %d: read back differs", lba)
			}
		}
		cancel()
		d := time.Since(start)
		res.ops++
		res.worst = max(res.worst, d)
		if d >= timeout {
			res.stalled++ // waited a whole timeout: at least one resend
		}
		if err != nil {
			res.failed++
			if res.firstErr == nil {
				res.firstErr = err
			}
		}
	}
	return &res
}

// TestDaemonReload serves a config file, reloads it under load, and
// checks the notifications systemd would see: READY=1 once every export
// answers, RELOADING=1/READY=1 around each reload, STOPPING=1.
func TestDaemonReload(t *testing.T) {
	l := newLab(t, 1500)
	imgA, imgB, imgC := image(t, 2048, 0), image(t, 64, 0), image(t, 64, 0)
	control := filepath.Join(t.TempDir(), "control.sock")
	const metricsAddr = "127.0.0.1:9940" // in the target's own namespace
	head := fmt.Sprintf("state_dir = %q\ncontrol_socket = %q\nmetrics_listen = %q\n", t.TempDir(), control, metricsAddr)
	v1 := head + exportTOML("a", 3, imgA, l.tif) + exportTOML("b", 4, imgB, l.tif)
	d := l.startDaemon(v1)
	m := d.notify.expect("READY=1", 30*time.Second)
	if !strings.Contains(m, "STATUS=serving 2 of 2 exports") {
		t.Errorf("first READY=1: %q", m)
	}
	// READY=1 comes only once the sockets are bound and announced: both
	// answer at once.
	tgA, okA := l.answers(testShelf, 3, time.Second)
	_, okB := l.answers(testShelf, 4, time.Second)
	if !okA || !okB {
		t.Fatalf("after READY=1: a answers %v, b answers %v", okA, okB)
	}

	ctx, stopLoad := context.WithCancel(context.Background())
	loaded := make(chan *load, 1)
	go func() { loaded <- l.runLoad(ctx, tgA, 2048, time.Second) }()
	time.Sleep(500 * time.Millisecond)

	// Reload 1: add c, remove b, keep a.
	v2 := head + exportTOML("a", 3, imgA, l.tif) + exportTOML("c", 5, imgC, l.tif)
	if m := d.reload(t, v2); !strings.Contains(m, "serving 2 of 2 exports") {
		t.Errorf("READY after reload 1: %q", m)
	}
	if _, ok := l.answers(testShelf, 5, 5*time.Second); !ok {
		t.Error("added export c does not answer")
	}
	if _, ok := l.answers(testShelf, 4, noReplyWait); ok {
		t.Error("removed export b still answers")
	}
	time.Sleep(300 * time.Millisecond)

	// Reload 2: an invalid file changes nothing.
	bad := v2 + "\n[[export]]\nname = \"d\"\nshelf = 7\nslot = 6\nfile = \"/x\"\ninterfaces = [\"lo\"]\nbufcount = 4\n"
	if m := d.reload(t, bad); !strings.Contains(m, "last reload failed") || !strings.Contains(m, "bufcount") {
		t.Errorf("READY after an invalid reload: %q", m)
	}
	if _, ok := l.answers(testShelf, 5, 5*time.Second); !ok {
		t.Error("export c stopped answering after an invalid reload")
	}
	out, err := l.tgt.Command(context.Background(), binPath, "status", "--control", control, "--interval", "200ms").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "LAST RELOAD FAILED") || !strings.Contains(string(out), "bufcount") {
		t.Errorf("status after an invalid reload: %v\n%s", err, out)
	}

	// Reload 3: change c (bufcnt): it restarts with the new setting.
	v3 := head + exportTOML("a", 3, imgA, l.tif) + exportTOML("c", 5, imgC, l.tif, "bufcnt = 7")
	d.reload(t, v3)
	if tg, ok := l.answers(testShelf, 5, 5*time.Second); !ok || tg.Config.BufferCount != 7 {
		t.Errorf("changed export c: answers %v, buffer count %d, want 7", ok, tg.Config.BufferCount)
	}
	time.Sleep(300 * time.Millisecond)
	stopLoad()
	res := <-loaded
	t.Logf("client on the unchanged export during 3 reloads: %d write+read-back operations, %d failed, %d resent, slowest %v",
		res.ops, res.failed, res.stalled, res.worst)
	if res.failed > 0 || res.stalled > 0 || res.ops < 10 {
		t.Errorf("unchanged export a: %d operations, %d failed (first: %v), %d needed a resend", res.ops, res.failed, res.firstErr, res.stalled)
	}

	// The metrics count exactly the client's traffic on a: each
	// operation wrote and read 8 KiB in 8 frames of 1 KiB.
	page := l.scrape(metricsAddr)
	ini := fmt.Sprintf(`export="a",initiator=%q`, l.srcMAC.String())
	for _, c := range []struct {
		name string
		want float64
	}{
		{"aoetarget_written_bytes_total", float64(res.ops * 8192)},
		{"aoetarget_read_bytes_total", float64(res.ops * 8192)},
		{`aoetarget_ata_commands_total{op="write"}`, float64(res.ops * 8)},
		{`aoetarget_ata_commands_total{op="read"}`, float64(res.ops * 8)},
		{`aoetarget_dropped_total{reason="malformed"}`, 0},
		{`aoetarget_ata_errors_total{op="write"}`, 0},
		{`aoetarget_request_duration_seconds_count{op="write"}`, float64(res.ops * 8)},
	} {
		if got, ok := metricValue(page, c.name, ini); !ok || got != c.want {
			t.Errorf("%s{%s} = %v (found %v), want %v", c.name, ini, got, ok, c.want)
		}
	}
	if got, ok := metricValue(page, "aoetarget_in_flight_requests", `export="a"`); !ok || got != 0 {
		t.Errorf("in-flight requests on a at rest: %v (found %v)", got, ok)
	}
	if _, ok := metricValue(page, "aoetarget_export_sectors", `export="b"`); ok {
		t.Error("the removed export b still has metrics")
	}

	// The status table lists both exports and our initiator.
	out, err = l.tgt.Command(context.Background(), binPath, "status", "--control", control, "--interval", "200ms").CombinedOutput()
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	for _, want := range []string{"EXPORT", "a ", "e7.3", "c ", "e7.5", "serving", "2 reloads", "initiator " + l.srcMAC.String()} {
		if !strings.Contains(string(out), want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	t.Logf("aoetarget status:\n%s", out)

	if err := d.stop(t); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	d.notify.expect("STOPPING=1", 5*time.Second)
	if _, err := os.Stat(control); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("control socket left behind: %v", err)
	}
}

// scrape fetches http://addr/metrics in the target's namespace.
func (l *lab) scrape(addr string) string {
	l.t.Helper()
	var conn net.Conn
	if err := l.tgt.Do(func() error {
		var err error
		conn, err = net.DialTimeout("tcp", addr, 5*time.Second) // the socket lives in the namespace it was made in
		return err
	}); err != nil {
		l.t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n", addr)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		l.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		l.t.Fatalf("scrape: %v, status %s", err, resp.Status)
	}
	return string(b)
}

// metricValue finds the sample of name (with its own labels inside {},
// if any) whose labels also contain want, in Prometheus text format.
func metricValue(page, name, want string) (float64, bool) {
	base, labels, _ := strings.Cut(strings.TrimSuffix(name, "}"), "{")
	for _, line := range strings.Split(page, "\n") {
		rest, ok := strings.CutPrefix(line, base+"{")
		if !ok {
			continue
		}
		ls, val, ok := strings.Cut(rest, "} ")
		if !ok || !strings.Contains(ls, want) || (labels != "" && !strings.Contains(ls, labels)) {
			continue
		}
		var f float64
		if _, err := fmt.Sscan(val, &f); err == nil {
			return f, true
		}
	}
	return 0, false
}

// TestDaemonWatchdog checks the keep-alives a daemon sends when systemd
// asks for them (WatchdogSec sets WATCHDOG_USEC).
func TestDaemonWatchdog(t *testing.T) {
	l := newLab(t, 1500)
	path := filepath.Join(t.TempDir(), "aoetarget.toml")
	os.WriteFile(path, []byte("control_socket = \"off\"\n"+exportTOML("a", 3, image(t, 64, 0), l.tif)), 0o644)
	d := l.runDaemon(path, []string{"WATCHDOG_USEC=400000"})
	d.notify.expect("READY=1", 30*time.Second)
	start := time.Now()
	for range 4 {
		if m := d.notify.next(5 * time.Second); m != "WATCHDOG=1" {
			t.Fatalf("got %q, want WATCHDOG=1", m)
		}
	}
	t.Logf("4 keep-alives in %v (WATCHDOG_USEC 400 ms)", time.Since(start).Round(time.Millisecond))
}

// TestDaemonStatePersists sets the config string, the mask list and the
// reserve list over the wire, restarts the daemon, and finds them again;
// then edits the file's initial mask list, which wins over the saved one.
func TestDaemonStatePersists(t *testing.T) {
	l := newLab(t, 1500)
	stateDir := filepath.Join(t.TempDir(), "state")
	img := image(t, 64, 0)
	other := aoe.MAC{0x02, 0x42, 0, 0, 0, 9}
	conf := func(extra ...string) string {
		return fmt.Sprintf("state_dir = %q\ncontrol_socket = \"off\"\n", stateDir) + exportTOML("a", testSlot, img, l.tif, extra...)
	}
	d := l.startDaemon(conf())
	d.notify.expect("READY=1", 30*time.Second)
	tg := l.target()
	ctx := ctxT(t, 20*time.Second)
	if _, err := l.client.QueryConfig(ctx, tg, aoe.ConfigSet, []byte("replica-a")); err != nil {
		t.Fatal(err)
	}
	add := func(m aoe.MAC) aoe.Directive { return aoe.Directive{Command: aoe.DirectiveAdd, MAC: m} }
	if _, err := l.client.MacMask(ctx, tg, aoe.MacMask{Command: aoe.MaskEdit, Directives: []aoe.Directive{add(l.srcMAC), add(other)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.client.Reserve(ctx, tg, aoe.Reserve{Command: aoe.ReserveSet, MACs: []aoe.MAC{l.srcMAC}}); err != nil {
		t.Fatal(err)
	}
	if err := d.stop(t); err != nil {
		t.Fatal(err)
	}
	saved, err := os.ReadFile(filepath.Join(stateDir, "e7.3.json"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("state file:\n%s", saved)

	check := func(wantMasks []aoe.MAC) {
		t.Helper()
		tg := l.target()
		if string(tg.Config.String) != "replica-a" {
			t.Errorf("config string after restart %q, want replica-a", tg.Config.String)
		}
		r, err := l.client.MacMask(ctx, tg, aoe.MacMask{Command: aoe.MaskRead})
		var got []aoe.MAC
		for _, d := range r.Directives {
			got = append(got, d.MAC)
		}
		if err != nil || fmt.Sprint(got) != fmt.Sprint(wantMasks) {
			t.Errorf("mask list after restart %v (%v), want %v", got, err, wantMasks)
		}
		rs, err := l.client.Reserve(ctx, tg, aoe.Reserve{Command: aoe.ReserveRead})
		if err != nil || len(rs.MACs) != 1 || rs.MACs[0] != l.srcMAC {
			t.Errorf("reserve list after restart %v (%v), want [%v]", rs.MACs, err, l.srcMAC)
		}
	}
	d = l.runDaemon(d.config, nil)
	d.notify.expect("READY=1", 30*time.Second)
	check([]aoe.MAC{l.srcMAC, other})
	if err := d.stop(t); err != nil {
		t.Fatal(err)
	}

	// The administrator edits the initial mask list: the file wins for
	// the masks; the config string and the reservation stay.
	os.WriteFile(d.config, []byte(conf(fmt.Sprintf("macs = [%q]", l.srcMAC.String()))), 0o644)
	d = l.runDaemon(d.config, nil)
	d.notify.expect("READY=1", 30*time.Second)
	check([]aoe.MAC{l.srcMAC})
}

// TestVbladeConf serves a Debian vblade drop-in file as it is.
func TestVbladeConf(t *testing.T) {
	l := newLab(t, 1500)
	img := image(t, 64, 0x5a)
	conf := filepath.Join(t.TempDir(), "e7.3.conf")
	body := fmt.Sprintf("# vblade-persistence(5)\nshelf=%d\nslot=%d\nnetif=%s\nfilename='%s'\noptions='-r -b 8'\nionice='-c2 -n7'\n",
		testShelf, testSlot, l.tif, img)
	os.WriteFile(conf, []byte(body), 0o644)
	p := &proc{out: &netns.Output{}, done: make(chan error, 1)}
	p.cmd = l.command(context.Background(), ours, "--vblade-conf", conf)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() { p.cmd.Process.Kill(); <-p.done })
	tg := l.waitReady(testShelf, testSlot, p)
	if tg.Config.BufferCount != 8 {
		t.Errorf("buffer count %d, want 8 (options='-b 8')", tg.Config.BufferCount)
	}
	ctx := ctxT(t, 10*time.Second)
	buf := make([]byte, 1024)
	if err := l.client.ReadAt(ctx, tg, buf, 0); err != nil || buf[0] != 0x5a {
		t.Errorf("read: %v, byte %#x", err, buf[0])
	}
	if err := l.client.WriteAt(ctx, tg, buf, 0); err == nil {
		t.Error("write to a read-only export (options='-r') succeeded")
	}
}

// TestCheckConfig runs --check-config on a valid and an invalid file.
func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	os.WriteFile(good, []byte(exportTOML("data0", 1, "/srv/aoe/a.img", "eth1")+exportTOML("data1", 2, "/srv/aoe/b.img", "eth1", "read_only = true")), 0o644)
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte(exportTOML("data0", 1, "/srv/aoe/a.img", "eth1")+exportTOML("data1", 1, "/srv/aoe/b.img", "eth1")), 0o644)
	out, err := exec.Command(binPath, "--check-config", good).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "valid, 2 exports") || !strings.Contains(string(out), "data1 (e7.2) /srv/aoe/b.img on eth1") {
		t.Errorf("--check-config on a valid file: %v\n%s", err, out)
	}
	out, err = exec.Command(binPath, "--check-config", bad).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitError || !strings.Contains(string(out), bad+":") {
		t.Errorf("--check-config on a file with a conflict: %v\n%s", err, out)
	}
	t.Logf("--check-config on a conflict: %s", out)
}
