package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "presenced.toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExampleFileLoads(t *testing.T) {
	c, err := Load("../../presenced.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Listen) != 2 || c.Listen[0].Address != "127.0.0.1:5060" {
		t.Fatalf("listen = %+v", c.Listen)
	}
	pa := c.Extension["pa"]
	if pa == nil || !strings.HasSuffix(pa.Path, filepath.Join("extensions", "pa", "pa.wasm")) ||
		!filepath.IsAbs(pa.Path) && !strings.HasPrefix(pa.Path, "../../") {
		t.Fatalf("pa = %+v", pa)
	}
	if pa.Config["default_expires"] != "3600" || pa.Config["dummy_presence"] != "true" {
		t.Fatalf("pa config = %v", pa.Config)
	}
	if pa.CallTimeout.Duration != 200*time.Millisecond || pa.Instances != 2 || pa.MemoryLimitMB != 64 {
		t.Fatalf("pa limits = %+v", pa)
	}
}

func TestDefaultsAndResolution(t *testing.T) {
	p := write(t, `
[[listen]]
transport = "UDP"
address = "127.0.0.1:0"

[extension.x]
path = "mods/x.wasm"
[extension.x.config]
name = "plain"
n = 7
on = true
list = [1, 2]
[extension.x.config.nested]
deep = "yes"
`)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen[0].Transport != "udp" || c.Subscription.MinExpires != 60 || c.Server.LogLevel != "info" {
		t.Fatalf("defaults not applied: %+v", c)
	}
	if want := filepath.Join(filepath.Dir(p), "mods", "x.wasm"); c.Extension["x"].Path != want {
		t.Fatalf("path = %q, want %q", c.Extension["x"].Path, want)
	}
	if want := filepath.Join(filepath.Dir(p), "data"); c.Server.DataDir != want {
		t.Fatalf("data_dir = %q, want %q", c.Server.DataDir, want)
	}
	got := c.Extension["x"].Config
	want := map[string]string{"name": "plain", "n": "7", "on": "true", "list": "1,2", "nested.deep": "yes"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("config[%q] = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("config = %v", got)
	}
}

// Every error names the file, the line and the key.
func TestErrorsNameFileLineAndKey(t *testing.T) {
	for _, c := range []struct {
		name, text, want string
	}{
		{"unknown key", "[server]\nlog_level = \"info\"\nlogformat = \"json\"\n", `:3: unknown key "server.logformat"`},
		{"unknown key in second listen", "[[listen]]\ntransport = \"udp\"\naddress = \"127.0.0.1:1\"\n\n[[listen]]\ntransport = \"tcp\"\nadress = \"127.0.0.1:1\"\n", `:7: unknown key "listen.adress"`},
		{"wrong type", "[subscription]\nmin_expires = \"soon\"\n", `:2: key "subscription.min_expires"`},
		{"min above max", "[subscription]\nmin_expires = 100\nmax_expires = 10\n", `:3: key "subscription.max_expires"`},
		{"bad transport", "[[listen]]\ntransport = \"sctp\"\naddress = \"127.0.0.1:1\"\n", `:2: key "listen.0.transport": must be udp or tcp, got "sctp"`},
		{"bad address", "[[listen]]\ntransport = \"udp\"\naddress = \"localhost\"\n", `:3: key "listen.0.address"`},
		{"bad duration", "[extension.pa]\npath = \"pa.wasm\"\ncall_timeout = \"fast\"\n", `:3: key "extension.pa.call_timeout"`},
		{"syntax", "[server\n", ":2:"},
		{"no path", "[extension.pa]\ninstances = 2\n", `:1: key "extension.pa": missing key "path"`},
		{"bad log level", "[server]\n\nlog_level = \"loud\"\n", `:3: key "server.log_level"`},
		{"instances", "[extension.pa]\npath = \"x\"\ninstances = 0\n", ``},
		{"instances over", "[extension.pa]\npath = \"x\"\ninstances = 100\n", `:3: key "extension.pa.instances": must be 1..64`},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := write(t, c.text)
			_, err := Load(p)
			if c.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.HasPrefix(err.Error(), p+":") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not start with %q and contain %q", err, p, c.want)
			}
		})
	}
}
