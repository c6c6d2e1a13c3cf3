//go:build linux

package netns

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// runDir is where `ip netns add` mounts named namespaces (iproute2's
// NETNS_RUN_DIR; /var/run is a symlink to /run on Debian).
const runDir = "/run/netns"

var (
	probeOnce sync.Once
	probeErr  error // why namespaces cannot be used here, or nil
)

// SkipUnlessRoot skips t with a clear message unless the test runs as root,
// iproute2's `ip` is in PATH and network namespaces can actually be created
// (root inside an unprivileged container may lack CAP_SYS_ADMIN). The probe
// runs once per test binary.
func SkipUnlessRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("skipping: needs root (network namespaces, veth pairs, AF_PACKET); "+
			"run as root, e.g. go test -c -o pkg.test && sudo ./pkg.test (euid is %d)", os.Geteuid())
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skipf("skipping: iproute2 `ip` not found in PATH (apt-get install iproute2): %v", err)
	}
	probeOnce.Do(func() {
		name := randomName("aoet-probe-")
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			probeErr = fmt.Errorf("ip netns add: %v: %s", err, bytesTrim(out))
			return
		}
		_ = exec.Command("ip", "netns", "del", name).Run()
	})
	if probeErr != nil {
		t.Skipf("skipping: cannot create network namespaces here: %v", probeErr)
	}
}

// NS is a network namespace created by New. Its zero value is not usable.
type NS struct {
	// Name is the namespace's name as known to `ip netns` (for example
	// "aoet-1a2b3c4d").
	Name string

	f *os.File // the namespace's bind mount, held open for Do
}

// New creates a fresh network namespace with a random name (prefix "aoet-"),
// brings its loopback interface up and deletes the namespace in t.Cleanup.
// It calls SkipUnlessRoot first.
func New(t testing.TB) *NS {
	t.Helper()
	SkipUnlessRoot(t)

	name := randomName("aoet-")
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, bytesTrim(out))
		}
	})

	f, err := os.Open(filepath.Join(runDir, name))
	if err != nil {
		t.Fatalf("netns: open namespace %s: %v", name, err)
	}
	// Registered after the deletion, so it runs before it (LIFO).
	t.Cleanup(func() { _ = f.Close() })

	n := &NS{Name: name, f: f}
	n.IP(t, "link", "set", "lo", "up")
	return n
}

// Do runs fn on an OS thread switched into the namespace with setns(2), then
// switches the thread back. Anything that resolves the network namespace when
// it is created (sockets, including AF_PACKET and netlink sockets, and so
// net.InterfaceByName) belongs to the namespace; sockets opened inside fn stay
// in it and may be used from any goroutine after Do returns.
//
// fn runs on a new goroutine locked to its thread, so it must not call
// t.FailNow, t.Fatal or t.Skip; it reports failure by returning an error,
// which Do returns. A panic in fn is re-raised in the caller. If the thread
// cannot be switched back, it is discarded rather than reused. Do is safe to
// call concurrently from several goroutines, on the same or different
// namespaces.
func (n *NS) Do(fn func() error) error {
	type result struct {
		err      error
		panicked bool
		panicVal any
	}
	done := make(chan result, 1)
	go func() {
		// Deliberately no deferred UnlockOSThread: a goroutine that exits
		// while locked takes its thread with it, which is what must happen
		// to a thread left in the wrong namespace.
		runtime.LockOSThread()

		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("netns: open current namespace: %w", err)}
			return
		}
		defer orig.Close()

		if err := unix.Setns(int(n.f.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("netns: setns %s: %w", n.Name, err)}
			return
		}

		var r result
		func() {
			defer func() {
				if v := recover(); v != nil {
					r = result{panicked: true, panicVal: v}
				}
			}()
			r.err = fn()
		}()

		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			if !r.panicked {
				r.err = errors.Join(r.err, fmt.Errorf("netns: switch back from %s: %w", n.Name, err))
			}
			done <- r // the thread stays locked and dies with this goroutine
			return
		}
		runtime.UnlockOSThread()
		done <- r
	}()

	r := <-done
	if r.panicked {
		panic(r.panicVal)
	}
	return r.err
}

// Command returns an *exec.Cmd that runs the program name with args inside
// the namespace, through `ip netns exec`.
func (n *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// IP runs `ip -n NAME args...` and fails t if it does not succeed. It returns
// the combined output.
func (n *NS) IP(t testing.TB, args ...string) string {
	t.Helper()
	return run(t, "ip", append([]string{"-n", n.Name}, args...)...)
}

// LinkUp sets the interface ifname in the namespace administratively up. It
// does not wait for the carrier; see WaitRunning.
func (n *NS) LinkUp(t testing.TB, ifname string) {
	t.Helper()
	n.IP(t, "link", "set", "dev", ifname, "up")
}

// WaitRunning waits until the interface ifname in the namespace is
// operationally up (net.FlagRunning: up, with carrier), failing t if that has
// not happened after 30 seconds. The kernel turns the carrier on
// asynchronously (linkwatch) after `ip link set up` returns, and until then it
// silently drops frames sent on the interface. For a veth, both ends must be
// up. (The transmit queue is attached right after the flag is set, in the
// same kernel work item; a test that must not lose its first frame should
// still retry it.)
func (n *NS) WaitRunning(t testing.TB, ifname string) {
	t.Helper()
	const limit = 30 * time.Second
	deadline := time.Now().Add(limit)
	for {
		var flags net.Flags
		err := n.Do(func() error {
			ifi, err := net.InterfaceByName(ifname)
			if err == nil {
				flags = ifi.Flags
			}
			return err
		})
		if err != nil {
			t.Fatalf("netns: wait for %s in %s: %v", ifname, n.Name, err)
		}
		if flags&net.FlagUp != 0 && flags&net.FlagRunning != 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("netns: %s in %s not running after %v (flags %v)", ifname, n.Name, limit, flags)
		}
		time.Sleep(time.Millisecond)
	}
}

// LinkDown sets the interface ifname in the namespace administratively down.
func (n *NS) LinkDown(t testing.TB, ifname string) {
	t.Helper()
	n.IP(t, "link", "set", "dev", ifname, "down")
}

// SetMTU changes the MTU of the interface ifname in the namespace.
func (n *NS) SetMTU(t testing.TB, ifname string, mtu int) {
	t.Helper()
	n.IP(t, "link", "set", "dev", ifname, "mtu", strconv.Itoa(mtu))
}

// DeleteLink deletes the interface ifname from the namespace. Deleting one end
// of a veth pair deletes both ends.
func (n *NS) DeleteLink(t testing.TB, ifname string) {
	t.Helper()
	n.IP(t, "link", "del", "dev", ifname)
}

// Interface returns the interface ifname as seen from inside the namespace
// (net.InterfaceByName run in Do), failing t if it does not exist.
func (n *NS) Interface(t testing.TB, ifname string) *net.Interface {
	t.Helper()
	var ifi *net.Interface
	err := n.Do(func() error {
		var err error
		ifi, err = net.InterfaceByName(ifname)
		return err
	})
	if err != nil {
		t.Fatalf("netns: interface %s in %s: %v", ifname, n.Name, err)
	}
	return ifi
}

// HardwareAddr returns the MAC address of the interface ifname in the
// namespace.
func (n *NS) HardwareAddr(t testing.TB, ifname string) net.HardwareAddr {
	t.Helper()
	return n.Interface(t, ifname).HardwareAddr
}

// Veth creates a veth pair with random names, one end in a and the other in b
// (a and b may be the same namespace), sets both ends up with the given MTU
// (0 keeps the kernel default of 1500), waits until both are running (see
// WaitRunning) and returns their names. The pair is deleted in t.Cleanup if
// it still exists.
func Veth(t testing.TB, a, b *NS, mtu int) (nameA, nameB string) {
	t.Helper()
	nameA, nameB = randomName("aoet"), randomName("aoet")
	VethNamed(t, a, nameA, b, nameB, mtu)
	return nameA, nameB
}

// VethNamed is Veth with the caller's interface names (at most 15 bytes each),
// for tests that delete a pair and recreate it under the same names.
func VethNamed(t testing.TB, a *NS, nameA string, b *NS, nameB string, mtu int) {
	t.Helper()
	var m []string
	if mtu > 0 {
		m = []string{"mtu", strconv.Itoa(mtu)}
	}
	args := []string{"link", "add", nameA}
	args = append(args, m...)
	args = append(args, "type", "veth", "peer", "name", nameB, "netns", b.Name)
	args = append(args, m...)
	a.IP(t, args...)
	t.Cleanup(func() {
		// Fine to fail: the test may have deleted the pair already.
		_ = exec.Command("ip", "-n", a.Name, "link", "del", "dev", nameA).Run()
	})
	a.LinkUp(t, nameA)
	b.LinkUp(t, nameB)
	a.WaitRunning(t, nameA)
	b.WaitRunning(t, nameB)
}

// randomName returns prefix followed by 8 random hex digits.
func randomName(prefix string) string {
	return fmt.Sprintf("%s%08x", prefix, rand.Uint32())
}

// run runs a command and fails t if it does not succeed.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, bytesTrim(out))
	}
	return string(out)
}

func bytesTrim(b []byte) string { return strings.TrimSpace(string(b)) }
