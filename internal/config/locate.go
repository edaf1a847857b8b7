package config

import (
	"strconv"
	"strings"
)

// locator finds the line that defines a dotted key. BurntSushi/toml v1.6
// gives lines for syntax and type errors only (its key positions are
// unexported), so checks made after decoding look the line up here.
//
// It is a line scanner, not a parser: it knows table headers, [[array]]
// headers, key = value lines with bare, "quoted" and 'literal' dotted keys,
// and skips the inside of multi-line arrays, inline tables and strings. A
// key it cannot find is reported at its nearest enclosing table's line.
type locator struct {
	exact  map[string]int // "listen.1.address": entries of arrays indexed from 0
	plain  map[string]int // "listen.address": first definition, as toml names keys
	arrays map[string]int // entries seen per array of tables, by indexed path
}

func locate(src string) locator {
	l := locator{exact: map[string]int{}, plain: map[string]int{}, arrays: map[string]int{}}
	var table, tableIdx []string // the current table, plain and indexed
	var val value
	for i, raw := range strings.Split(src, "\n") {
		n := i + 1
		if val.open() { // a line inside a multi-line value
			val.scan(raw)
			continue
		}
		s := strings.TrimSpace(raw)
		switch {
		case strings.HasPrefix(s, "[["):
			parts, rest := parseKey(s[2:])
			if parts == nil || !strings.HasPrefix(rest, "]]") {
				continue
			}
			parent := l.indexed(parts[:len(parts)-1])
			l.arrays[strings.Join(append(parent, parts[len(parts)-1]), ".")]++
			table, tableIdx = parts, l.indexed(parts)
			l.add(tableIdx, table, n)
		case strings.HasPrefix(s, "["):
			parts, rest := parseKey(s[1:])
			if parts == nil || !strings.HasPrefix(rest, "]") {
				continue
			}
			table, tableIdx = parts, l.indexed(parts)
			l.add(tableIdx, table, n)
		default:
			parts, rest := parseKey(s)
			if parts == nil || !strings.HasPrefix(rest, "=") {
				continue
			}
			l.add(join(tableIdx, parts), join(table, parts), n)
			val.scan(rest[1:])
		}
	}
	return l
}

// indexed inserts the current entry index after each array of tables in
// parts: [listen x] after the second [[listen]] is [listen 1 x].
func (l locator) indexed(parts []string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p)
		if n, ok := l.arrays[strings.Join(out, ".")]; ok {
			out = append(out, strconv.Itoa(n-1))
		}
	}
	return out
}

// add records a definition; the first one of a key is where it is defined.
func (l locator) add(indexed, plain []string, line int) {
	if k := strings.Join(indexed, "."); l.exact[k] == 0 {
		l.exact[k] = line
	}
	if k := strings.Join(plain, "."); l.plain[k] == 0 {
		l.plain[k] = line
	}
}

func (l locator) has(key string) bool {
	_, ok := l.exact[key]
	return ok
}

// line is the line of key, or of its nearest defined parent; 0 if none.
func (l locator) line(key string) int {
	for k := key; k != ""; {
		if n, ok := l.exact[k]; ok {
			return n
		}
		if n, ok := l.plain[k]; ok {
			return n
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return 0
}

func join(a, b []string) []string {
	return append(append([]string(nil), a...), b...)
}

// parseKey reads the dotted key at the start of s and returns its parts
// and the rest of s; nil parts if s does not start with a key.
func parseKey(s string) ([]string, string) {
	var parts []string
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return nil, ""
		}
		if q := s[0]; q == '"' || q == '\'' {
			j := closing(s, q)
			if j < 0 {
				return nil, ""
			}
			part := s[1:j]
			if q == '"' {
				if u, err := strconv.Unquote(s[:j+1]); err == nil {
					part = u
				}
			}
			parts, s = append(parts, part), s[j+1:]
		} else {
			j := strings.IndexFunc(s, func(r rune) bool {
				return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
			})
			if j == 0 {
				return nil, ""
			}
			if j < 0 {
				j = len(s)
			}
			parts, s = append(parts, s[:j]), s[j:]
		}
		s = strings.TrimLeft(s, " \t")
		if !strings.HasPrefix(s, ".") {
			return parts, s
		}
		s = s[1:]
	}
}

// closing is the index of the quote q closing the string that s opens, or
// -1. Only basic ("...") strings have escapes.
func closing(s string, q byte) int {
	for j := 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			if q == '"' {
				j++
			}
		case q:
			return j
		}
	}
	return -1
}

// value tracks a value across lines, so the inside of a multi-line array
// or string is not mistaken for keys or headers.
type value struct {
	multi string // the open multi-line string's delimiter, `"""` or `'''`
	depth int    // open [ and {
}

func (v *value) open() bool { return v.multi != "" || v.depth > 0 }

func (v *value) scan(s string) {
	for i := 0; i < len(s); i++ {
		if v.multi != "" {
			if strings.HasPrefix(s[i:], v.multi) {
				v.multi, i = "", i+2
			} else if s[i] == '\\' && v.multi == `"""` {
				i++
			}
			continue
		}
		switch c := s[i]; {
		case c == '#':
			return
		case strings.HasPrefix(s[i:], `"""`) || strings.HasPrefix(s[i:], `'''`):
			v.multi, i = s[i:i+3], i+2
		case c == '"' || c == '\'':
			if j := closing(s[i:], c); j > 0 {
				i += j
			} else {
				return // unterminated: toml reports it
			}
		case c == '[' || c == '{':
			v.depth++
		case (c == ']' || c == '}') && v.depth > 0:
			v.depth--
		}
	}
}
