//go:build linux

package initiator_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aoetarget/aoetarget/aoe"
	"github.com/aoetarget/aoetarget/initiator"
	"github.com/aoetarget/aoetarget/internal/netns"
)

const vbladePath = "/usr/sbin/vblade"

// TestVblade runs the client against Debian's vblade across a veth pair
// between two network namespaces, at MTU 1500 and 9000.
func TestVblade(t *testing.T) {
	netns.SkipUnlessRoot(t)
	if _, err := os.Stat(vbladePath); err != nil {
		t.Skipf("skipping: vblade not installed (apt-get install vblade): %v", err)
	}
	for _, mtu := range []int{1500, 9000} {
		t.Run(fmt.Sprintf("mtu%d", mtu), func(t *testing.T) { testVblade(t, mtu) })
	}
}

func testVblade(t *testing.T, mtu int) {
	const (
		shelf, slot = 7, 3
		diskSize    = 16 << 20
		sectors     = diskSize / aoe.SectorSize
	)
	tns, ins := netns.New(t), netns.New(t)
	tif, iif := netns.Veth(t, tns, ins, mtu)
	vbladeMAC, _ := aoe.MACFrom(tns.HardwareAddr(t, tif))

	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, diskSize); err != nil {
		t.Fatal(err)
	}

	vctx, stop := context.WithCancel(context.Background())
	cmd := tns.Command(vctx, vbladePath, strconv.Itoa(shelf), strconv.Itoa(slot), tif, img)
	var out netns.Output
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		stop()
		t.Fatalf("start vblade: %v", err)
	}
	t.Cleanup(func() {
		stop()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("vblade output:\n%s", out.String())
		}
	})

	var c *initiator.Client
	if err := ins.Do(func() (err error) {
		c, err = initiator.Dial(iif)
		return err
	}); err != nil {
		t.Fatalf("Dial(%s): %v", iif, err)
	}
	t.Cleanup(func() { c.Close() })
	if c.MTU() != mtu {
		t.Errorf("MTU() = %d, want %d", c.MTU(), mtu)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// vblade may not be listening yet: Lookup resends until it answers.
	if _, err := c.Lookup(ctx, shelf, slot); err != nil {
		t.Fatalf("Lookup(%d, %d): %v", shelf, slot, err)
	}
	dctx, dcancel := context.WithTimeout(ctx, time.Second)
	ts, err := c.Discover(dctx, aoe.BroadcastMajor, aoe.BroadcastMinor)
	dcancel()
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	wantFrame := (mtu - 36) / 512
	if len(ts) != 1 {
		t.Fatalf("Discover found %d targets, want 1: %+v", len(ts), ts)
	}
	tgt := ts[0]
	if tgt.Major != shelf || tgt.Minor != slot || tgt.MAC != vbladeMAC ||
		tgt.Config.BufferCount != 16 || tgt.Config.FirmwareVersion != 0x4000+25 ||
		int(tgt.Config.SectorCount) != wantFrame {
		t.Errorf("Discover = %+v, want %d.%d at %v, bufcnt 16, firmware 0x4019, %d sectors",
			tgt, shelf, slot, vbladeMAC, wantFrame)
	}
	if got := tgt.MaxSectors(c.MTU()); got != wantFrame {
		t.Errorf("MaxSectors = %d, want %d", got, wantFrame)
	}

	t.Run("Identify", func(t *testing.T) {
		id, page, err := c.Identify(ctx, tgt)
		if err != nil {
			t.Fatalf("Identify: %v", err)
		}
		if id.Sectors != sectors || id.Model != "Coraid EtherDrive vblade" || id.Firmware != "V25" ||
			!strings.HasPrefix(id.Serial, fmt.Sprintf("%d.%d:", shelf, slot)) || len(page) != aoe.IdentifyLen {
			t.Errorf("Identify = %+v (%d bytes), want %d sectors, vblade's model, firmware V25, serial %d.%d:host",
				id, len(page), sectors, shelf, slot)
		}
	})

	t.Run("ReadWrite", func(t *testing.T) {
		// All of the disk but its first and last sectors, with a length
		// that is not a multiple of the frame size.
		data := make([]byte, diskSize-2*aoe.SectorSize)
		if _, err := rand.Read(data); err != nil {
			t.Fatal(err)
		}
		if err := c.WriteAt(ctx, tgt, data, 1); err != nil {
			t.Fatalf("WriteAt: %v", err)
		}
		got := make([]byte, len(data))
		if err := c.ReadAt(ctx, tgt, got, 1); err != nil {
			t.Fatalf("ReadAt: %v", err)
		}
		want := sha256.Sum256(data)
		if sum := sha256.Sum256(got); sum != want {
			t.Errorf("ReadAt checksum %x, want %x (written)", sum, want)
			bad := 0
			for s := 0; s < len(data)/512; s++ {
				if !bytes.Equal(got[s*512:(s+1)*512], data[s*512:(s+1)*512]) {
					if bad < 20 {
						t.Logf("sector %d differs: got % x..., want % x...", s+1, got[s*512:s*512+8], data[s*512:s*512+8])
					}
					bad++
				}
			}
			t.Logf("%d sectors differ", bad)
		}
		f, err := os.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(f, aoe.SectorSize, int64(len(data)))); err != nil {
			t.Fatal(err)
		}
		if sum := h.Sum(nil); !bytes.Equal(sum, want[:]) {
			t.Errorf("backing file checksum %x, want %x (written)", sum, want)
		}
		if err := c.ReadAt(ctx, tgt, make([]byte, 2*aoe.SectorSize), sectors-1); err == nil {
			t.Errorf("ReadAt past the end succeeded")
		}
	})

	t.Run("QueryConfig", func(t *testing.T) {
		noReply := func(cmd aoe.ConfigCommand, s string) {
			t.Helper()
			qctx, qcancel := context.WithTimeout(ctx, 600*time.Millisecond)
			defer qcancel()
			if cfg, err := c.QueryConfig(qctx, tgt, cmd, []byte(s)); !errors.Is(err, initiator.ErrNoReply) {
				t.Errorf("QueryConfig(%v, %q) = %+v, %v, want no reply", cmd, s, cfg, err)
			}
		}
		reply := func(cmd aoe.ConfigCommand, s, want string, wantErr error) {
			t.Helper()
			cfg, err := c.QueryConfig(ctx, tgt, cmd, []byte(s))
			if !errors.Is(err, wantErr) || (err != nil && wantErr == nil) {
				t.Errorf("QueryConfig(%v, %q) error = %v, want %v", cmd, s, err, wantErr)
			}
			if err == nil && string(cfg.String) != want {
				t.Errorf("QueryConfig(%v, %q) string = %q, want %q", cmd, s, cfg.String, want)
			}
		}
		reply(aoe.ConfigSet, "aoetarget test", "aoetarget test", nil)
		reply(aoe.ConfigRead, "", "aoetarget test", nil)
		reply(aoe.ConfigTest, "aoetarget test", "aoetarget test", nil)
		noReply(aoe.ConfigTest, "aoetarget")
		reply(aoe.ConfigTestPrefix, "aoetarget", "aoetarget test", nil)
		noReply(aoe.ConfigTestPrefix, "vblade")
		reply(aoe.ConfigSet, "other", "", aoe.ErrorConfigStringPresent)
		reply(aoe.ConfigForceSet, "other", "other", nil)
	})

	t.Run("Reserve", func(t *testing.T) {
		own := c.SourceMAC()
		other := aoe.MAC{0x02, 0xa0, 0xe0, 0, 0, 0x43}
		defer c.SetSourceMAC(own)
		c.SetSourceMAC(other)
		r, err := c.Reserve(ctx, tgt, aoe.Reserve{Command: aoe.ReserveSet, MACs: []aoe.MAC{other}})
		if err != nil || len(r.MACs) != 1 || r.MACs[0] != other {
			t.Fatalf("Reserve(set %v) = %+v, %v", other, r, err)
		}
		c.SetSourceMAC(own)
		p := make([]byte, aoe.SectorSize)
		if err := c.WriteAt(ctx, tgt, p, 0); !errors.Is(err, aoe.ErrorTargetReserved) {
			t.Errorf("WriteAt without the reservation: error = %v, want %v", err, aoe.ErrorTargetReserved)
		}
		if _, _, err := c.Identify(ctx, tgt); err != nil {
			t.Errorf("Identify without the reservation: %v", err)
		}
		if _, err := c.Reserve(ctx, tgt, aoe.Reserve{Command: aoe.ReserveSet}); !errors.Is(err, aoe.ErrorTargetReserved) {
			t.Errorf("release without the reservation: error = %v, want %v", err, aoe.ErrorTargetReserved)
		}
		if r, err := c.Reserve(ctx, tgt, aoe.Reserve{Command: aoe.ReserveForceSet}); err != nil || len(r.MACs) != 0 {
			t.Errorf("Reserve(force-set none) = %+v, %v", r, err)
		}
		if err := c.WriteAt(ctx, tgt, p, 0); err != nil {
			t.Errorf("WriteAt after the release: %v", err)
		}
	})

	if err := c.Flush(ctx, tgt); err == nil {
		t.Errorf("FLUSH CACHE EXT succeeded; vblade 25 aborts it")
	} else if ae := (*initiator.ATAError)(nil); !errors.As(err, &ae) || ae.Err != aoe.ATAErrorABRT {
		t.Errorf("Flush error = %v, want an ATAError with ABRT", err)
	}
	// Last, since vblade cannot undo it: v25's rmmask computes the end of
	// the list in entries instead of bytes, so deleting an entry passes a
	// negative length to memmove and vblade aborts ("buffer overflow
	// detected"); addmask has the same slip and overwrites the second
	// entry with the third.
	t.Run("MacMask", func(t *testing.T) {
		own := c.SourceMAC()
		other := aoe.MAC{0x02, 0xa0, 0xe0, 0, 0, 0x42}
		defer c.SetSourceMAC(own)
		m, err := c.MacMask(ctx, tgt, aoe.MacMask{Command: aoe.MaskEdit,
			Directives: []aoe.Directive{{Command: aoe.DirectiveAdd, MAC: other}}})
		if err != nil || len(m.Directives) != 1 || m.Directives[0].MAC != other {
			t.Fatalf("MacMask(add %v) = %+v, %v", other, m, err)
		}
		// Our own MAC is no longer on the list: vblade drops our frames.
		qctx, qcancel := context.WithTimeout(ctx, 600*time.Millisecond)
		_, _, err = c.Identify(qctx, tgt)
		qcancel()
		if !errors.Is(err, initiator.ErrNoReply) {
			t.Errorf("Identify from a MAC not on the mask list: error = %v, want no reply", err)
		}
		c.SetSourceMAC(other)
		if _, _, err := c.Identify(ctx, tgt); err != nil {
			t.Errorf("Identify from the masked-in MAC: %v", err)
		}
		m, err = c.MacMask(ctx, tgt, aoe.MacMask{Command: aoe.MaskRead})
		if err != nil || len(m.Directives) != 1 || m.Directives[0].MAC != other {
			t.Errorf("MacMask(read) = %+v, %v, want [%v]", m, err, other)
		}
	})

	if cmd.ProcessState != nil {
		t.Errorf("vblade exited: %v", cmd.ProcessState)
	}
}
