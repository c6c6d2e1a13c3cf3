package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, that a file it accepts obeys
// every rule it enforces, and that its errors are well formed.
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile(filepath.Join("testdata", "aoetarget.toml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(example))
	for _, seed := range []string{
		"",
		export0,
		export0 + export0,
		export0 + "name = \"e1.0\"\nbufcnt = 1\nqueues = 65\nsync = true\nwriteback = true\n",
		"[defaults]\ninterfaces = [\"eth0\", \"eth1\"]\nmacs = [\"001122334455\"]\n[[export]]\nshelf = 2\nslot = 3\nfile = \"/a\"\n",
		"export = [{shelf = 1, slot = 2, file = \"/x\", interfaces = [\"eth0\"]}]\n",
		"[[export]]\nshelf = 4095\nslot = 255\nfile = \"a\"\ninterfaces = [\"a b\", \"\"]\nio_timeout = \"-1s\"\n",
		"log_level = \"x\"\nlog_format = 1\n",
		"control_socket = \"off\"\nstate_dir = \"rel\"\nmetrics_listen = \"x\"\n",
		"[[export]]\nshelf = \"1\"\n",
		"[[export]\n",
		"x = '''\n[[export]]\n'''\n",
		"[export.foo]\nx = 1\n",
		"[defaults]\nname = \"n\"\nbufcount = 3\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		file, err := Parse(testPath, []byte(doc))
		lines := strings.Split(doc, "\n")
		if err != nil {
			if file != nil {
				t.Error("Parse returned a File and an error")
			}
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error %T %v is not a non-empty Errors", err, err)
			}
			for i, e := range errs {
				if e.Path != testPath || e.Msg == "" || strings.Contains(e.Msg, "\n") {
					t.Errorf("malformed error %q", e)
				}
				if e.Line < 0 || e.Line > len(lines) {
					t.Errorf("error %q: line out of 0..%d", e, len(lines))
				}
				if i > 0 && e.Line < errs[i-1].Line {
					t.Errorf("errors not sorted by line:\n%v", err)
				}
			}
			return
		}
		checkFile(t, file)
		for _, e := range file.Exports {
			if e.Line != 0 && !exportHeaderRE.MatchString(lines[e.Line-1]) {
				t.Errorf("export %q: line %d is not an [[export]] header: %q", e.Name, e.Line, lines[e.Line-1])
			}
			if !e.Same(e) {
				t.Errorf("export %q is not Same as itself", e.Name)
			}
		}
	})
}

// FuzzParseVblade checks that ParseVblade never panics and that what it
// accepts has the mandatory keys.
func FuzzParseVblade(f *testing.F) {
	for _, seed := range []string{
		"shelf=1\nslot=0\nnetif=eth0\nfilename=/dev/sdb\noptions='-d -m 00:11:22:33:44:55'\nionice='-c2 -n7'\n",
		"export shelf=\"1\"\nslot='0' # c\nnetif=eth0\nfilename=\"/a \\\"b\\\"\"\n",
		"shelf=1\nslot 0\n",
		"options='unterminated\n",
		"a=\\\n\"x\\\ny\"'z'\n",
		"options=-d;x\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data string) {
		v, err := ParseVblade(vbladePath, []byte(data))
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error %T %v is not a non-empty Errors", err, err)
			}
			for _, e := range errs {
				if e.Line < 0 || e.Line > strings.Count(data, "\n")+1 {
					t.Errorf("error %q: line out of range", e)
				}
			}
			return
		}
		if v.Shelf == "" || v.Slot == "" || v.Netif == "" || v.Filename == "" {
			t.Errorf("accepted without a mandatory key: %+v", v)
		}
		if args := v.Args(); len(args) != len(v.Options)+4 {
			t.Errorf("Args() = %q", args)
		}
	})
}
