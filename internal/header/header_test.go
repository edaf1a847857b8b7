package header

import (
	"strings"
	"testing"
)

func TestParseEvent(t *testing.T) {
	for _, c := range []struct {
		in      string
		pkg, id string
		bad     bool
	}{
		{"presence", "presence", "", false},
		{"Presence ; id=7", "presence", "7", false},
		{"conference;ID=a1;other=x", "conference", "a1", false},
		{"", "", "", true},
		{"  ;id=3", "", "", true},
		{"pres ence", "", "", true},
	} {
		ev, err := ParseEvent(c.in)
		if (err != nil) != c.bad || ev.Package != c.pkg || ev.ID != c.id {
			t.Errorf("ParseEvent(%q) = %+v, %v", c.in, ev, err)
		}
	}
	if s := (Event{"presence", "7"}).String(); s != "presence;id=7" {
		t.Errorf("String = %q", s)
	}
}

func TestParseExpires(t *testing.T) {
	for _, c := range []struct {
		in  string
		n   int
		bad bool
	}{
		{"3600", 3600, false},
		{" 0 ", 0, false},
		{"99999999999999999999", MaxExpires, false},
		{"-1", 0, true},
		{"abc", 0, true},
		{"", 0, true},
		{"1.5", 0, true},
	} {
		n, err := ParseExpires(c.in)
		if (err != nil) != c.bad || (!c.bad && n != c.n) {
			t.Errorf("ParseExpires(%q) = %d, %v", c.in, n, err)
		}
	}
}

func TestWarningQuotes(t *testing.T) {
	for in, want := range map[string]string{
		"bad \"x\"\r\nvalue":                 `bad 'x'  value`,
		`field name with no value: "\x00a\"`: `field name with no value: '/x00a/'`,
		"nul\x00 tab\t del\x7f":              "nul  tab  del ",
		"latin1 \xe9t\xe9":                   "latin1 \uFFFDt\uFFFD",
		strings.Repeat("x", 199) + "é":       strings.Repeat("x", 199) + "\uFFFD", // cut inside the rune
	} {
		if got := Warning("presenced", in).Value(); got != `399 presenced "`+want+`"` {
			t.Errorf("Warning(%q) = %q", in, got)
		}
	}
}
