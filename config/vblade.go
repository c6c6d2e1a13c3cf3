package config

import (
	"fmt"
	"strings"
)

// Vblade is one export read from a vblade drop-in file, as Debian's vblade
// package keeps them in /etc/vblade.conf.d/NAME.conf.
type Vblade struct {
	// Shelf, Slot, Netif and Filename are vblade's positional arguments,
	// as written in the file (the shelf, slot, netif and filename keys).
	Shelf, Slot, Netif, Filename string
	// Options are vblade's flags (the options key), split on whitespace.
	Options []string
	// Ionice is the ionice key, the arguments of ionice(1) the init
	// script runs vblade under; aoetarget ignores it.
	Ionice string
}

// Args returns the command line aoetarget takes for v: Options, then
// shelf, slot, netif and filename.
func (v *Vblade) Args() []string {
	args := make([]string, 0, len(v.Options)+4)
	args = append(args, v.Options...)
	return append(args, v.Shelf, v.Slot, v.Netif, v.Filename)
}

// ParseVblade parses a vblade drop-in file; path is used only in messages.
//
// The file is a list of shell variable assignments, read the way systemd
// reads an EnvironmentFile and without any shell expansion: lines
// KEY=value, KEY="value" or KEY='value', optionally prefixed by "export ",
// blank lines and comments starting with #. Within double quotes a
// backslash escapes ", \, $ and ` (and joins lines); single quotes are
// literal; an unquoted value ends at whitespace or #, and a backslash in it
// escapes the next character. Quoted parts may span lines and be
// concatenated with unquoted ones, as in the shell. Keys other than shelf,
// slot, netif, filename, options and ionice are ignored; the first four are
// mandatory and must not be empty. A later assignment overrides an earlier
// one.
//
// On failure the error is an Errors with one *Error per problem, each with
// the line it is on (0 for a missing key).
func ParseVblade(path string, data []byte) (*Vblade, error) {
	s := &shellScanner{path: path, src: string(data), line: 1}
	vars := make(map[string]string)
	lines := make(map[string]int)
	for !s.eof() {
		key, value, line, ok := s.assignment()
		if ok && key != "" {
			vars[key] = value
			lines[key] = line
		}
	}

	v := &Vblade{
		Shelf:    vars["shelf"],
		Slot:     vars["slot"],
		Netif:    vars["netif"],
		Filename: vars["filename"],
		Ionice:   vars["ionice"],
	}
	if opts := strings.Fields(vars["options"]); len(opts) > 0 {
		v.Options = opts
	}
	for _, k := range []string{"shelf", "slot", "netif", "filename"} {
		if vars[k] != "" {
			continue
		}
		if _, set := vars[k]; set {
			s.errorf(lines[k], "%s is empty (vblade needs shelf, slot, netif and filename)", k)
		} else {
			s.errorf(0, "missing %s (vblade needs shelf, slot, netif and filename)", k)
		}
	}
	if len(s.errs) > 0 {
		return nil, s.errs
	}
	return v, nil
}

// shellScanner reads the assignments of a vblade drop-in file.
type shellScanner struct {
	path string
	src  string
	pos  int
	line int // line of src[pos]
	errs Errors
}

func (s *shellScanner) errorf(line int, format string, args ...any) {
	s.errs = append(s.errs, &Error{Path: s.path, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (s *shellScanner) eof() bool { return s.pos >= len(s.src) }

func (s *shellScanner) peek() byte {
	if s.eof() {
		return 0
	}
	return s.src[s.pos]
}

// next consumes one byte, counting lines.
func (s *shellScanner) next() byte {
	c := s.src[s.pos]
	s.pos++
	if c == '\n' {
		s.line++
	}
	return c
}

func (s *shellScanner) skipBlanks() {
	for !s.eof() && (s.peek() == ' ' || s.peek() == '\t' || s.peek() == '\r') {
		s.pos++
	}
}

// skipLine consumes the rest of the line, newline included.
func (s *shellScanner) skipLine() {
	for !s.eof() && s.next() != '\n' {
	}
}

func isNameStart(c byte) bool {
	return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func isNameByte(c byte) bool { return isNameStart(c) || '0' <= c && c <= '9' }

// name consumes a shell variable name, "" if there is none.
func (s *shellScanner) name() string {
	start := s.pos
	if !isNameStart(s.peek()) {
		return ""
	}
	for !s.eof() && isNameByte(s.peek()) {
		s.pos++
	}
	return s.src[start:s.pos]
}

// assignment consumes one line (or more, for a value spanning lines). It
// returns the assignment it holds, if any (key "" for a blank or comment
// line), and ok false after reporting an error.
func (s *shellScanner) assignment() (key, value string, line int, ok bool) {
	s.skipBlanks()
	line = s.line
	switch s.peek() {
	case 0, '\n':
		if !s.eof() {
			s.next()
		}
		return "", "", line, true
	case '#':
		s.skipLine()
		return "", "", line, true
	}

	start := s.pos
	key = s.name()
	if key == "export" && (s.peek() == ' ' || s.peek() == '\t') {
		s.skipBlanks()
		key = s.name()
	}
	if key == "" || s.peek() != '=' {
		s.skipBlanks()
		text := strings.TrimSpace(s.restOfLine(start))
		if key != "" && s.peek() == '=' {
			s.errorf(line, "%q: no spaces allowed around '=' (write %s=value)", text, key)
		} else {
			s.errorf(line, "%q is not a KEY=value assignment", text)
		}
		s.skipLine()
		return "", "", line, false
	}
	s.pos++ // '='

	value, err := s.value()
	if err != "" {
		s.errorf(line, "%s: %s", key, err)
		s.skipLine()
		return "", "", line, false
	}
	s.skipBlanks()
	switch s.peek() {
	case 0, '\n':
		if !s.eof() {
			s.next()
		}
	case '#':
		s.skipLine()
	default:
		s.errorf(s.line, "%s: unquoted whitespace in the value; quote the value, as in %s='...'", key, key)
		s.skipLine()
		return "", "", line, false
	}
	return key, value, line, true
}

// restOfLine returns src from start to the end of the current line.
func (s *shellScanner) restOfLine(start int) string {
	end := strings.IndexByte(s.src[start:], '\n')
	if end < 0 {
		return s.src[start:]
	}
	return s.src[start : start+end]
}

// value consumes a value: unquoted, single- and double-quoted parts up to
// unquoted whitespace, '#' or the end of the line. It returns a non-empty
// reason when the value is malformed.
func (s *shellScanner) value() (string, string) {
	var b strings.Builder
	for {
		switch c := s.peek(); c {
		case 0, ' ', '\t', '\r', '\n', '#':
			if c == 0 && !s.eof() {
				return "", "NUL byte in the value"
			}
			return b.String(), ""
		case '\'':
			startLine := s.line
			s.next()
			for {
				if s.eof() {
					return "", fmt.Sprintf("unterminated single quote (opened on line %d)", startLine)
				}
				c := s.next()
				if c == '\'' {
					break
				}
				b.WriteByte(c)
			}
		case '"':
			startLine := s.line
			s.next()
			for {
				if s.eof() {
					return "", fmt.Sprintf("unterminated double quote (opened on line %d)", startLine)
				}
				c := s.next()
				if c == '"' {
					break
				}
				if c == '\\' && !s.eof() {
					switch n := s.peek(); n {
					case '"', '\\', '$', '`':
						b.WriteByte(s.next())
						continue
					case '\n':
						s.next()
						continue
					}
				}
				b.WriteByte(c)
			}
		case '\\':
			s.next()
			if s.eof() {
				return "", "backslash at the end of the file"
			}
			if s.peek() == '\n' {
				s.next() // line continuation
				continue
			}
			b.WriteByte(s.next())
		case ';', '&', '|', '<', '>', '(', ')', '`':
			return "", fmt.Sprintf("shell metacharacter %q in the value; quote the value", c)
		default:
			b.WriteByte(s.next())
		}
	}
}
