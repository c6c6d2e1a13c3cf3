package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

const vbladePath = "/etc/vblade.conf.d/data0.conf"

func TestParseVblade(t *testing.T) {
	tests := []struct {
		name string
		data string
		want Vblade
	}{
		{
			name: "debian skeleton",
			data: `# Configuration of one vblade export.
# shelf and slot are the AoE address, netif the interface to serve on,
# filename the file or block device.

shelf=1
slot=0
netif=eth0
filename=/dev/vg0/data0

# Additional vblade options, see vblade(8)
options='-d -m 00:11:22:33:44:55,00:11:22:33:44:66'

# ionice settings for the vblade process, see ionice(1)
ionice='-c2 -n7'
`,
			want: Vblade{Shelf: "1", Slot: "0", Netif: "eth0", Filename: "/dev/vg0/data0",
				Options: []string{"-d", "-m", "00:11:22:33:44:55,00:11:22:33:44:66"}, Ionice: "-c2 -n7"},
		},
		{
			name: "quotes, export, comments, unknown keys",
			data: "export shelf=\"2\"\n  slot='3' # the slot\n\tnetif=eth1\t\nfilename=\"/srv/my disk.img\"\nFOO=bar\nexport\tother=1\n",
			want: Vblade{Shelf: "2", Slot: "3", Netif: "eth1", Filename: "/srv/my disk.img"},
		},
		{
			name: "escapes and concatenation",
			data: `shelf=1
slot=2
netif=eth0
filename="/srv/a \"b\" \\c \$d \` + "`e\\`" + ` \x"'/lit\$'eral\ space
options=
`,
			want: Vblade{Shelf: "1", Slot: "2", Netif: "eth0", Filename: `/srv/a "b" \c $d ` + "`e`" + ` \x/lit\$eral space`},
		},
		{
			name: "multi-line values, CRLF, no final newline",
			data: "shelf=1\r\nslot=2\r\nnetif=eth0\r\noptions='-d\n-s'\nionice=\"-c3 \\\n-n7\"\nfilename=/a",
			want: Vblade{Shelf: "1", Slot: "2", Netif: "eth0", Filename: "/a", Options: []string{"-d", "-s"}, Ionice: "-c3 -n7"},
		},
		{
			name: "later assignment wins, dollar is literal",
			data: "shelf=1\nshelf=4\nslot=$SLOT\nnetif=eth0\nfilename=/a\n",
			want: Vblade{Shelf: "4", Slot: "$SLOT", Netif: "eth0", Filename: "/a"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := ParseVblade(vbladePath, []byte(tt.data))
			if err != nil {
				t.Fatalf("ParseVblade: %v", err)
			}
			if diff := cmp.Diff(&tt.want, v); diff != "" {
				t.Errorf("ParseVblade (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseVbladeErrors(t *testing.T) {
	const ok = "shelf=1\nslot=0\nnetif=eth0\nfilename=/a\n" // 4 lines
	tests := []struct {
		name string
		data string
		line int
		msg  string
		n    int // number of errors, if not 1
	}{
		{"missing shelf", "slot=0\nnetif=eth0\nfilename=/a\n", 0, "missing shelf", 0},
		{"missing all", "# empty\n", 0, "missing filename (vblade needs shelf, slot, netif and filename)", 4},
		{"empty netif", "shelf=1\nslot=0\nnetif=\nfilename=/a\n", 3, "netif is empty", 0},
		{"empty quoted", "shelf=1\nslot=''\nnetif=eth0\nfilename=/a\n", 2, "slot is empty", 0},
		{"not an assignment", ok + "vblade 1 0 eth0 /a\n", 5, `"vblade 1 0 eth0 /a" is not a KEY=value assignment`, 0},
		{"spaces around =", ok + "options = -d\n", 5, `no spaces allowed around '=' (write options=value)`, 0},
		{"bad key", ok + "1x=2\n", 5, "is not a KEY=value assignment", 0},
		{"bare export", ok + "export\n", 5, "is not a KEY=value assignment", 0},
		{"unquoted space", ok + "options=-d -s\n", 5, "options: unquoted whitespace in the value; quote the value", 0},
		{"metacharacter", ok + "options=-d;reboot\n", 5, `shell metacharacter ';'`, 0},
		{"backtick", ok + "ionice=`id`\n", 5, "shell metacharacter '`'", 0},
		{"unterminated single", ok + "\noptions='-d\n\n", 6, "unterminated single quote (opened on line 6)", 0},
		{"unterminated double", "shelf=\"1\n", 1, "unterminated double quote", 5},
		{"backslash at end", ok + "options=\\", 5, "backslash at the end of the file", 0},
		{"several", "shelf=1\nslot 0\nnetif=eth0\nfilename=/a b\n", 2, "is not a KEY=value", 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := ParseVblade(vbladePath, []byte(tt.data))
			if err == nil {
				t.Fatalf("ParseVblade succeeded: %+v", v)
			}
			checkErrors(t, err, vbladePath, tt.n, tt.line, tt.msg)
		})
	}
}

func TestVbladeArgs(t *testing.T) {
	tests := []struct {
		v    Vblade
		want []string
	}{
		{Vblade{Shelf: "1", Slot: "0", Netif: "eth0", Filename: "/a"}, []string{"1", "0", "eth0", "/a"}},
		{
			Vblade{Shelf: "1", Slot: "0", Netif: "eth0", Filename: "/a b", Options: []string{"-r", "-m", "001122334455"}, Ionice: "-c3"},
			[]string{"-r", "-m", "001122334455", "1", "0", "eth0", "/a b"},
		},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, tt.v.Args()); diff != "" {
			t.Errorf("Args (-want +got):\n%s", diff)
		}
	}
	// Args does not alias Options.
	v := &Vblade{Shelf: "1", Slot: "0", Netif: "eth0", Filename: "/a", Options: make([]string, 1, 8)}
	v.Options[0] = "-r"
	_ = v.Args()
	if got := v.Options[:2][1]; got != "" {
		t.Errorf("Args wrote into Options' spare capacity: %q", got)
	}
}
