//go:build linux

package netns_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/aoetarget/aoetarget/internal/netns"
)

func TestVethBetweenNamespaces(t *testing.T) {
	t.Parallel()
	a, b := netns.New(t), netns.New(t)
	const mtu = 9000
	nameA, nameB := netns.Veth(t, a, b, mtu)

	// Each end is visible inside its own namespace only, with the right MTU.
	for _, tt := range []struct {
		ns         *netns.NS
		mine, peer string
	}{
		{a, nameA, nameB},
		{b, nameB, nameA},
	} {
		err := tt.ns.Do(func() error {
			ifi, err := net.InterfaceByName(tt.mine)
			if err != nil {
				return err
			}
			if ifi.MTU != mtu {
				return fmt.Errorf("%s: MTU %d, want %d", tt.mine, ifi.MTU, mtu)
			}
			if ifi.Flags&net.FlagUp == 0 {
				return fmt.Errorf("%s is not up: %v", tt.mine, ifi.Flags)
			}
			if len(ifi.HardwareAddr) != 6 {
				return fmt.Errorf("%s: hardware address %v", tt.mine, ifi.HardwareAddr)
			}
			if _, err := net.InterfaceByName(tt.peer); err == nil {
				return fmt.Errorf("peer %s is visible in %s", tt.peer, tt.ns.Name)
			}
			lo, err := net.InterfaceByName("lo")
			if err != nil {
				return err
			}
			if lo.Flags&net.FlagUp == 0 {
				return fmt.Errorf("lo is not up in %s", tt.ns.Name)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("Do in %s: %v", tt.ns.Name, err)
		}
	}

	// Neither end leaks into the test's own namespace.
	for _, name := range []string{nameA, nameB} {
		if _, err := net.InterfaceByName(name); err == nil {
			t.Errorf("%s is visible outside the namespaces", name)
		}
	}

	// The MAC seen through Do matches iproute2's view of the same interface.
	mac := a.HardwareAddr(t, nameA)
	if out := a.IP(t, "-o", "link", "show", "dev", nameA); !strings.Contains(out, "link/ether "+mac.String()) {
		t.Errorf("ip link show %s = %q, want MAC %v", nameA, out, mac)
	}

	// Helpers that change the link are seen from inside.
	a.LinkDown(t, nameA)
	if ifi := a.Interface(t, nameA); ifi.Flags&net.FlagUp != 0 {
		t.Errorf("after LinkDown, flags %v", ifi.Flags)
	}
	a.LinkUp(t, nameA)
	a.WaitRunning(t, nameA)
	a.SetMTU(t, nameA, 1500)
	if ifi := a.Interface(t, nameA); ifi.Flags&net.FlagRunning == 0 || ifi.MTU != 1500 {
		t.Errorf("after LinkUp, WaitRunning and SetMTU 1500, flags %v MTU %d", ifi.Flags, ifi.MTU)
	}

	// Command runs inside the namespace.
	out, err := a.Command(context.Background(), "cat", "/sys/class/net/"+nameA+"/mtu").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "1500" {
		t.Errorf("Command cat mtu = %q, %v; want 1500", out, err)
	}
}

func TestDoConcurrent(t *testing.T) {
	t.Parallel()
	a, b := netns.New(t), netns.New(t)
	nameA, nameB := netns.Veth(t, a, b, 0)

	var wg sync.WaitGroup
	errc := make(chan error, 64)
	for i := range 64 {
		ns, mine, peer := a, nameA, nameB
		if i%2 == 1 {
			ns, mine, peer = b, nameB, nameA
		}
		wg.Go(func() {
			errc <- ns.Do(func() error {
				if _, err := net.InterfaceByName(mine); err != nil {
					return fmt.Errorf("goroutine %d in %s: %w", i, ns.Name, err)
				}
				if _, err := net.InterfaceByName(peer); err == nil {
					return fmt.Errorf("goroutine %d in %s sees %s", i, ns.Name, peer)
				}
				return nil
			})
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestDoErrorsAndPanics(t *testing.T) {
	t.Parallel()
	a := netns.New(t)

	want := errors.New("from fn")
	if err := a.Do(func() error { return want }); !errors.Is(err, want) {
		t.Errorf("Do returned %v, want %v", err, want)
	}

	defer func() {
		if v := recover(); v != "boom" {
			t.Errorf("recovered %v, want boom", v)
		}
		// The namespace is still usable after a panic in fn.
		if err := a.Do(func() error { _, err := net.InterfaceByName("lo"); return err }); err != nil {
			t.Errorf("Do after panic: %v", err)
		}
	}()
	_ = a.Do(func() error { panic("boom") })
}

func TestVethNamedRecreate(t *testing.T) {
	t.Parallel()
	a, b := netns.New(t), netns.New(t)
	nameA, nameB := netns.Veth(t, a, b, 0)
	old := a.Interface(t, nameA).Index

	a.DeleteLink(t, nameA)
	if err := b.Do(func() error {
		if _, err := net.InterfaceByName(nameB); err == nil {
			return errors.New("peer survived the deletion of its veth pair")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	netns.VethNamed(t, a, nameA, b, nameB, 1400)
	ifi := a.Interface(t, nameA)
	if ifi.Index == old || ifi.MTU != 1400 {
		t.Errorf("recreated %s: index %d (old %d), MTU %d; want a new index and MTU 1400", nameA, ifi.Index, old, ifi.MTU)
	}
	if got := b.Interface(t, nameB).MTU; got != 1400 {
		t.Errorf("recreated %s: MTU %s, want 1400", nameB, strconv.Itoa(got))
	}
}
