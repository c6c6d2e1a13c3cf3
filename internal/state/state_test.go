package state

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/aoetarget/aoetarget/aoe"
	"github.com/aoetarget/aoetarget/target"
)

var (
	macA = aoe.MAC{0x52, 0x54, 0, 0, 0, 0xa}
	macB = aoe.MAC{0x52, 0x54, 0, 0, 0, 0xb}
)

func TestSaveLoad(t *testing.T) {
	d := Dir{Path: filepath.Join(t.TempDir(), "state")} // created on save
	if _, ok, err := d.Load(1, 2); ok || err != nil {
		t.Fatalf("Load before any Save: ok %v, err %v", ok, err)
	}
	for _, r := range []Record{
		{State: target.State{ConfigString: []byte("primary"), Masks: []aoe.MAC{macA, macB}, Reserve: []aoe.MAC{macA}},
			Initial: target.State{ConfigString: []byte("x"), Masks: []aoe.MAC{macB}}},
		{State: target.State{ConfigString: []byte{0xff, 0x00, 0x80}}},
		{},
	} {
		if err := d.Save(1, 2, r); err != nil {
			t.Fatal(err)
		}
		got, ok, err := d.Load(1, 2)
		if err != nil || !ok {
			t.Fatalf("Load: ok %v, err %v", ok, err)
		}
		if diff := cmp.Diff(r, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("round trip (-saved +loaded):\n%s", diff)
		}
	}
	// No temporary files are left behind.
	entries, _ := os.ReadDir(d.Path)
	if len(entries) != 1 || entries[0].Name() != "e1.2.json" {
		t.Errorf("directory holds %v, want only e1.2.json", entries)
	}
}

func TestLoadBad(t *testing.T) {
	d := Dir{Path: t.TempDir()}
	for _, body := range []string{
		"{",
		`{"masks": ["not a mac"]}`,
		`{"config_string_hex": "zz"}`,
	} {
		if err := os.WriteFile(filepath.Join(d.Path, Name(3, 4)), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, _, err := d.Load(3, 4); err == nil {
			t.Errorf("Load(%q) did not fail", body)
		}
	}
}

func TestMerge(t *testing.T) {
	cfg := target.State{ConfigString: []byte("cfg"), Masks: []aoe.MAC{macA}}
	saved := Record{
		State:   target.State{ConfigString: []byte("wire"), Masks: []aoe.MAC{macA, macB}, Reserve: []aoe.MAC{macB}},
		Initial: cfg,
	}
	for _, tc := range []struct {
		name       string
		configured target.State
		saved      Record
		ok         bool
		want       target.State
	}{
		{"nothing saved", cfg, Record{}, false, cfg},
		{"saved state wins", cfg, saved, true, saved.State},
		{"config string edited", target.State{ConfigString: []byte("new"), Masks: cfg.Masks}, saved, true,
			target.State{ConfigString: []byte("new"), Masks: saved.State.Masks, Reserve: saved.State.Reserve}},
		{"masks edited", target.State{ConfigString: cfg.ConfigString, Masks: []aoe.MAC{macB}}, saved, true,
			target.State{ConfigString: saved.State.ConfigString, Masks: []aoe.MAC{macB}, Reserve: saved.State.Reserve}},
	} {
		got := Merge(tc.configured, tc.saved, tc.ok)
		if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}
