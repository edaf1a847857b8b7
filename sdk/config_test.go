package sdk

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// read runs one method of a reader of cfg and returns its result and Err.
func read[T any](cfg Config, get func(*ConfigReader) T) (T, error) {
	r := ReadConfig(cfg, "presence")
	v := get(r)
	return v, r.Err()
}

func TestConfigSeconds(t *testing.T) {
	seconds := func(r *ConfigReader) uint32 { return r.Seconds("default_expires", 3600) }
	if n, err := read(Config{}, seconds); n != 3600 || err != nil {
		t.Fatalf("absent: %d, %v", n, err)
	}
	if n, err := read(Config{"default_expires": " 600 "}, seconds); n != 600 || err != nil {
		t.Fatalf("600: %d, %v", n, err)
	}
	for _, v := range []string{"0", "-60", "an hour", "4294967296", ""} {
		_, err := read(Config{"default_expires": v}, seconds)
		want := `config default_expires = "` + v + `": want a positive number of seconds`
		if err == nil || err.Error() != want {
			t.Errorf("%q: err = %v, want %s", v, err, want)
		}
	}
}

func TestConfigBool(t *testing.T) {
	dummy := func(r *ConfigReader) bool { return r.Bool("dummy_presence", true) }
	if b, err := read(Config{}, dummy); !b || err != nil {
		t.Fatalf("absent: %v, %v", b, err)
	}
	if b, err := read(Config{"dummy_presence": "false"}, dummy); b || err != nil {
		t.Fatalf("false: %v, %v", b, err)
	}
	_, err := read(Config{"dummy_presence": "maybe"}, dummy)
	if err == nil || err.Error() != `config dummy_presence = "maybe": want true or false` {
		t.Fatalf("maybe: err = %v", err)
	}
}

func TestConfigChoice(t *testing.T) {
	policy := func(r *ConfigReader) string { return r.Choice("policy", "allow", "allow", "same-domain", "confirm") }
	if c, err := read(Config{}, policy); c != "allow" || err != nil {
		t.Fatalf("absent: %q, %v", c, err)
	}
	if c, err := read(Config{"policy": " Confirm "}, policy); c != "confirm" || err != nil {
		t.Fatalf("Confirm: %q, %v", c, err)
	}
	_, err := read(Config{"policy": "deny"}, policy)
	if err == nil || err.Error() != `config policy = "deny": want allow, same-domain or confirm` {
		t.Fatalf("deny: err = %v", err)
	}
}

func TestConfigWatchers(t *testing.T) {
	allow := func(def string) func(*ConfigReader) WatcherList {
		return func(r *ConfigReader) WatcherList { return r.Watchers("allow", def) }
	}
	l, err := read(Config{"allow": " sip:bob@example.com, ,partner.example,"}, allow("*"))
	if err != nil || strings.Join(l, " ") != "sip:bob@example.com partner.example" {
		t.Fatalf("list: %q %v", l, err)
	}
	if l, err := read(Config{}, allow("same-domain")); err != nil || len(l) != 1 || l[0] != SameDomain {
		t.Fatalf("default: %q %v", l, err)
	}
	if l, err := read(Config{"allow": ""}, allow("same-domain")); err != nil || len(l) != 0 {
		t.Fatalf("an empty list is not the default: %q %v", l, err)
	}
	if _, err := read(Config{"allow": "example.com, bob@example.com"}, allow("")); err == nil || !strings.HasPrefix(err.Error(), `config allow: "bob@example.com": want`) {
		t.Fatalf("bad entry: %v", err)
	}
}

// The first bad value is the one Err reports, and the keys after it read
// as their defaults.
func TestConfigFirstError(t *testing.T) {
	r := ReadConfig(Config{"a": "x", "b": "y", "c": "60"}, "presence")
	r.Seconds("a", 1)
	r.Bool("b", false)
	if n := r.Seconds("c", 5); n != 5 {
		t.Fatalf("after an error: %d, want the default", n)
	}
	if err := r.Err(); err == nil || !strings.HasPrefix(err.Error(), "config a = ") {
		t.Fatalf("err = %v, want the first", err)
	}
	r = ReadConfig(Config{"n": "7"}, "presence")
	if v, ok := r.Value("n"); !ok || v != "7" {
		t.Fatalf("Value: %q %v", v, ok)
	}
}

// Err warns about the keys no method asked for, and no other.
func TestConfigUnknownKeys(t *testing.T) {
	var buf bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey || a.Key == slog.LevelKey {
				return slog.Attr{}
			}
			return a
		},
	})))
	defer slog.SetDefault(old)
	r := ReadConfig(Config{"b": "1", "default_expires": "60", "a": "2"}, "presence")
	r.Seconds("default_expires", 3600)
	r.Bool("dummy_presence", true)
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	want := `msg="config key \"a\" is unknown to the presence package; ignored"` + "\n" +
		`msg="config key \"b\" is unknown to the presence package; ignored"` + "\n"
	if buf.String() != want {
		t.Fatalf("log:\n%s\nwant:\n%s", buf.String(), want)
	}
}
