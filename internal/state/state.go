// Package state keeps the AoE state of exports that the wire can change
// (the config string, the MAC mask list and the reserve list) in a
// directory, one small JSON file per shelf.slot, so that it survives a
// restart of the target. vblade loses all three.
//
// Files are replaced atomically: written to a temporary file, synced,
// renamed over the old one, and the directory synced, so that after a
// crash a file holds either the old state or the new one.
package state

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"unicode/utf8"

	"github.com/aoetarget/aoetarget/aoe"
	"github.com/aoetarget/aoetarget/target"
)

// Dir is a state directory.
type Dir struct {
	// Path is the directory; it is created (mode 0750) on the first save.
	Path string
}

// Record is what is kept for one export: its current AoE state, and the
// initial values the configuration gave when that state was first
// recorded. When the configuration's initial values change later (an
// administrator edited them), the edited ones win over the recorded
// state; see Merge.
type Record struct {
	State target.State
	// Initial is the configured config string and mask list this state
	// derives from.
	Initial target.State
}

// file is the on-disk form: MACs as text, the config string as text when
// it is valid UTF-8 (it nearly always is) and in hex otherwise, so that an
// administrator can read the file.
type file struct {
	Version         int      `json:"version"`
	ConfigString    *string  `json:"config_string,omitempty"`
	ConfigStringHex *string  `json:"config_string_hex,omitempty"`
	Masks           []string `json:"masks"`
	Reserve         []string `json:"reserve"`
	Initial         struct {
		ConfigString    *string  `json:"config_string,omitempty"`
		ConfigStringHex *string  `json:"config_string_hex,omitempty"`
		Masks           []string `json:"masks"`
	} `json:"initial"`
}

// Name returns the file name of shelf.slot's state.
func Name(shelf uint16, slot uint8) string { return fmt.Sprintf("e%d.%d.json", shelf, slot) }

// Load reads the state of shelf.slot. It returns ok false, and no error,
// when none was saved.
func (d Dir) Load(shelf uint16, slot uint8) (r Record, ok bool, err error) {
	path := filepath.Join(d.Path, Name(shelf, slot))
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, fmt.Errorf("state: %w", err)
	}
	var f file
	if err := json.Unmarshal(b, &f); err != nil {
		return Record{}, false, fmt.Errorf("state: %s: %w", path, err)
	}
	bad := func(err error) (Record, bool, error) {
		return Record{}, false, fmt.Errorf("state: %s: %w", path, err)
	}
	if r.State.ConfigString, err = decodeString(f.ConfigString, f.ConfigStringHex); err != nil {
		return bad(err)
	}
	if r.State.Masks, err = decodeMACs(f.Masks); err != nil {
		return bad(err)
	}
	if r.State.Reserve, err = decodeMACs(f.Reserve); err != nil {
		return bad(err)
	}
	if r.Initial.ConfigString, err = decodeString(f.Initial.ConfigString, f.Initial.ConfigStringHex); err != nil {
		return bad(err)
	}
	if r.Initial.Masks, err = decodeMACs(f.Initial.Masks); err != nil {
		return bad(err)
	}
	if len(r.State.ConfigString) > aoe.MaxConfigStringLen || len(r.State.Masks) > target.MaxMasks || len(r.State.Reserve) > target.MaxReserve {
		return bad(errors.New("state exceeds the protocol's limits"))
	}
	return r, true, nil
}

// Save replaces the state of shelf.slot atomically and durably.
func (d Dir) Save(shelf uint16, slot uint8, r Record) error {
	var f file
	f.Version = 1
	f.ConfigString, f.ConfigStringHex = encodeString(r.State.ConfigString)
	f.Masks = encodeMACs(r.State.Masks)
	f.Reserve = encodeMACs(r.State.Reserve)
	f.Initial.ConfigString, f.Initial.ConfigStringHex = encodeString(r.Initial.ConfigString)
	f.Initial.Masks = encodeMACs(r.Initial.Masks)
	b, err := json.MarshalIndent(&f, "", "  ")
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	b = append(b, '\n')
	if err := os.MkdirAll(d.Path, 0o750); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	if err := writeAtomic(d.Path, Name(shelf, slot), b); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return nil
}

// writeAtomic replaces dir/name with data: temporary file, fsync, rename,
// fsync of the directory.
func writeAtomic(dir, name string, data []byte) error {
	tmp, err := os.CreateTemp(dir, "."+name+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o640); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	dh, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer dh.Close()
	return dh.Sync()
}

// Merge returns the state an export starts with, given the configured
// initial values and what was saved (if ok). A saved state wins, except
// for a field whose configured initial value changed since the state was
// recorded: the administrator's edit wins for that field. Reservations
// are not configured; saved ones are always kept.
func Merge(configured target.State, saved Record, ok bool) target.State {
	if !ok {
		return configured
	}
	s := saved.State
	if string(configured.ConfigString) != string(saved.Initial.ConfigString) {
		s.ConfigString = configured.ConfigString
	}
	if !slices.Equal(configured.Masks, saved.Initial.Masks) {
		s.Masks = configured.Masks
	}
	return s
}

func encodeString(b []byte) (text, hexed *string) {
	if len(b) == 0 {
		return nil, nil
	}
	if utf8.Valid(b) {
		s := string(b)
		return &s, nil
	}
	s := hex.EncodeToString(b)
	return nil, &s
}

func decodeString(text, hexed *string) ([]byte, error) {
	switch {
	case text != nil:
		return []byte(*text), nil
	case hexed != nil:
		return hex.DecodeString(*hexed)
	}
	return nil, nil
}

func encodeMACs(ms []aoe.MAC) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.String())
	}
	return out
}

func decodeMACs(ss []string) ([]aoe.MAC, error) {
	var out []aoe.MAC
	for _, s := range ss {
		m, err := aoe.ParseMAC(s)
		if err != nil {
			return nil, fmt.Errorf("MAC %q: %w", s, err)
		}
		out = append(out, m)
	}
	return out, nil
}
