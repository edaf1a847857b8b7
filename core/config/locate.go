package config

import (
	"fmt"
	"strings"
)

// locator maps dotted keys to the line that defines them. BurntSushi/toml
// reports lines for syntax and type errors but keeps key positions
// unexported, so errors found after decoding (a bad value, an unknown key)
// find their line here. Entries of an array of tables are "name.N".
type locator map[string]int

func locate(text string) locator {
	loc := locator{}
	table := ""
	count := map[string]int{}
	for i, raw := range strings.Split(text, "\n") {
		n := i + 1
		line := strings.TrimSpace(raw)
		switch {
		case line == "" || line[0] == '#':
			continue
		case strings.HasPrefix(line, "[["):
			name := cleanKey(strings.TrimSuffix(strings.SplitN(line[2:], "]]", 2)[0], "]]"))
			table = fmt.Sprintf("%s.%d", name, count[name])
			count[name]++
			loc.add(name, n)
			loc.add(table, n)
		case line[0] == '[':
			table = cleanKey(strings.SplitN(line[1:], "]", 2)[0])
			table = loc.indexed(table, count)
			loc.add(table, n)
		default:
			k, _, ok := strings.Cut(line, "=")
			if !ok {
				continue
			}
			key := cleanKey(k)
			if table != "" {
				key = table + "." + key
			}
			loc.add(key, n)
		}
	}
	return loc
}

// indexed rewrites a sub-table of an array entry ("listen.x" after the
// second [[listen]]) to its indexed name ("listen.1.x").
func (l locator) indexed(table string, count map[string]int) string {
	for name, c := range count {
		if rest, ok := strings.CutPrefix(table, name+"."); ok {
			return fmt.Sprintf("%s.%d.%s", name, c-1, rest)
		}
	}
	return table
}

// add records key, and key without array indexes, since decode errors name
// keys without them ("listen.adress").
func (l locator) add(key string, line int) {
	for _, k := range []string{key, unindexed(key)} {
		if _, ok := l[k]; !ok {
			l[k] = line
		}
	}
}

func unindexed(key string) string {
	parts := strings.Split(key, ".")
	out := parts[:0]
	for _, p := range parts {
		if strings.Trim(p, "0123456789") != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, ".")
}

// line returns the line of key, or of its nearest defined parent, or 1.
func (l locator) line(key string) int {
	for k := key; k != ""; {
		if n, ok := l[k]; ok {
			return n
		}
		i := strings.LastIndex(k, ".")
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return 1
}

func cleanKey(k string) string {
	parts := strings.Split(strings.TrimSpace(k), ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"'`)
	}
	return strings.Join(parts, ".")
}
