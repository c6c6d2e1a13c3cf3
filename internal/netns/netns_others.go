//go:build !linux

package netns

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"testing"
)

// errUnimplemented is returned or reported by every helper off Linux.
var errUnimplemented = fmt.Errorf("netns: not implemented on %s", runtime.GOOS)

// SkipUnlessRoot skips t: network namespaces exist only on Linux.
func SkipUnlessRoot(t testing.TB) {
	t.Helper()
	t.Skipf("skipping: network namespaces need Linux, this is %s", runtime.GOOS)
}

// NS is a network namespace. Off Linux it cannot be created.
type NS struct {
	// Name is the namespace's name as known to `ip netns`.
	Name string
}

// New skips t: network namespaces exist only on Linux.
func New(t testing.TB) *NS {
	t.Helper()
	SkipUnlessRoot(t)
	return nil
}

// Do returns an error: network namespaces exist only on Linux.
func (n *NS) Do(fn func() error) error { return errUnimplemented }

// Command returns a command that fails: network namespaces exist only on Linux.
func (n *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "false")
}

// IP fails t: network namespaces exist only on Linux.
func (n *NS) IP(t testing.TB, args ...string) string {
	t.Helper()
	t.Fatal(errUnimplemented)
	return ""
}

// LinkUp fails t: network namespaces exist only on Linux.
func (n *NS) LinkUp(t testing.TB, ifname string) { t.Helper(); t.Fatal(errUnimplemented) }

// LinkDown fails t: network namespaces exist only on Linux.
func (n *NS) LinkDown(t testing.TB, ifname string) { t.Helper(); t.Fatal(errUnimplemented) }

// WaitRunning fails t: network namespaces exist only on Linux.
func (n *NS) WaitRunning(t testing.TB, ifname string) { t.Helper(); t.Fatal(errUnimplemented) }

// SetMTU fails t: network namespaces exist only on Linux.
func (n *NS) SetMTU(t testing.TB, ifname string, mtu int) { t.Helper(); t.Fatal(errUnimplemented) }

// DeleteLink fails t: network namespaces exist only on Linux.
func (n *NS) DeleteLink(t testing.TB, ifname string) { t.Helper(); t.Fatal(errUnimplemented) }

// Interface fails t: network namespaces exist only on Linux.
func (n *NS) Interface(t testing.TB, ifname string) *net.Interface {
	t.Helper()
	t.Fatal(errUnimplemented)
	return nil
}

// HardwareAddr fails t: network namespaces exist only on Linux.
func (n *NS) HardwareAddr(t testing.TB, ifname string) net.HardwareAddr {
	t.Helper()
	t.Fatal(errUnimplemented)
	return nil
}

// Veth fails t: network namespaces exist only on Linux.
func Veth(t testing.TB, a, b *NS, mtu int) (nameA, nameB string) {
	t.Helper()
	t.Fatal(errUnimplemented)
	return "", ""
}

// VethNamed fails t: network namespaces exist only on Linux.
func VethNamed(t testing.TB, a *NS, nameA string, b *NS, nameB string, mtu int) {
	t.Helper()
	t.Fatal(errUnimplemented)
}
