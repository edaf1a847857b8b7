package sdk

import (
	"bytes"
	"log/slog"
	"testing"
)

func TestSecondsKey(t *testing.T) {
	if n, err := SecondsKey(Config{}, "default_expires", 3600); n != 3600 || err != nil {
		t.Fatalf("absent: %d, %v", n, err)
	}
	if n, err := SecondsKey(Config{"default_expires": " 600 "}, "default_expires", 3600); n != 600 || err != nil {
		t.Fatalf("600: %d, %v", n, err)
	}
	for _, v := range []string{"0", "-60", "an hour", "4294967296", ""} {
		_, err := SecondsKey(Config{"default_expires": v}, "default_expires", 3600)
		want := `config default_expires = "` + v + `": want a positive number of seconds`
		if err == nil || err.Error() != want {
			t.Errorf("%q: err = %v, want %s", v, err, want)
		}
	}
}

func TestBoolKey(t *testing.T) {
	if b, err := BoolKey(Config{}, "dummy_presence", true); !b || err != nil {
		t.Fatalf("absent: %v, %v", b, err)
	}
	if b, err := BoolKey(Config{"dummy_presence": "false"}, "dummy_presence", true); b || err != nil {
		t.Fatalf("false: %v, %v", b, err)
	}
	_, err := BoolKey(Config{"dummy_presence": "maybe"}, "dummy_presence", true)
	if err == nil || err.Error() != `config dummy_presence = "maybe": want true or false` {
		t.Fatalf("maybe: err = %v", err)
	}
}

func TestWarnUnknownKeys(t *testing.T) {
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
	WarnUnknownKeys(Config{"b": "1", "default_expires": "60", "a": "2"}, "presence", "default_expires", "dummy_presence")
	want := `msg="config key \"a\" is unknown to the presence package; ignored"` + "\n" +
		`msg="config key \"b\" is unknown to the presence package; ignored"` + "\n"
	if buf.String() != want {
		t.Fatalf("log:\n%s\nwant:\n%s", buf.String(), want)
	}
}
