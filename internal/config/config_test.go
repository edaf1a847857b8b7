package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// write puts text in a presenced.toml of its own temporary directory.
func write(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "presenced.toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultsApplied(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("CACHE_DIRECTORY", "")
	t.Setenv("XDG_CACHE_HOME", cache)
	p := write(t, "[extension.x]\npath = \"x.wasm\"\n")
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(p)
	want := Server{DataDir: filepath.Join(dir, "data"), CacheDir: filepath.Join(cache, "presenced"), UserAgent: "presenced", LogLevel: "info", LogFormat: "text",
		GCPercent: 50}
	if !reflect.DeepEqual(c.Server, want) {
		t.Errorf("server = %+v, want %+v", c.Server, want)
	}
	if want := []Listener{{Transport: "udp", Address: "127.0.0.1:5060"}, {Transport: "tcp", Address: "127.0.0.1:5060"}}; !reflect.DeepEqual(c.Listen, want) {
		t.Errorf("listen = %+v", c.Listen)
	}
	if c.Store.IdleSubscriptions.Duration != 5*time.Second {
		t.Errorf("store.idle_subscriptions = %s, want 5s", c.Store.IdleSubscriptions)
	}
	if e := (Expires{60, 86400}); c.Subscription != e || c.Publication != e {
		t.Errorf("expires = %+v %+v", c.Subscription, c.Publication)
	}
	x := c.Extension["x"]
	if x == nil || x.Name != "x" || x.MemoryLimitMB != 64 || x.CallTimeout.Duration != 200*time.Millisecond ||
		x.Instances != 2 || x.MaxInstances != 8 || x.Trusted || len(x.Config) != 0 ||
		x.BackoffAfter != 5 || x.BackoffWindow.Duration != 10*time.Second || x.Backoff.Duration != time.Second ||
		x.BackoffMax.Duration != time.Minute {
		t.Errorf("extension = %+v", x)
	}
	if len(c.Extension) != 1 || c.File != p || c.Dir != dir {
		t.Errorf("extensions %d, file %q, dir %q", len(c.Extension), c.File, c.Dir)
	}

	// A file without extensions has none: modules are not defaulted.
	c, err = Load(write(t, "[server]\ndomains = [\"Example.COM\"]\n[[listen]]\ntransport = \"TCP\"\naddress = \":0\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Extension) != 0 || len(c.Listen) != 1 || c.Listen[0].Transport != "tcp" || c.Server.Domains[0] != "example.com" {
		t.Errorf("got %+v", c)
	}
}

func TestDefault(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if c.File != "" || c.Dir != wd || len(c.Listen) != 2 || c.Server.DataDir != filepath.Join(wd, "data") {
		t.Errorf("got %+v", c)
	}
	if p := c.Extension["conference"].Path; p != filepath.Join(wd, "extensions/conference/conference.wasm") {
		t.Errorf("conference path = %q", p)
	}
	if m := c.Extension["mwi"]; m == nil || m.Path != filepath.Join(wd, "extensions/mwi/mwi.wasm") {
		t.Errorf("mwi = %+v", m)
	}
	if c.Extension["pa"].Config["default_expires"] != "3600" {
		t.Errorf("pa = %+v", c.Extension["pa"])
	}
}

// The example file is what `make run` serves: it must load and say what
// Default says.
func TestExampleFile(t *testing.T) {
	c, err := Load("../../presenced.toml")
	if err != nil {
		t.Fatal(err)
	}
	d := Default()
	repo, _ := filepath.Abs("../..")
	if c.Dir != repo || !reflect.DeepEqual(c.Listen, d.Listen) || c.Subscription != d.Subscription ||
		c.Publication != d.Publication || c.Server.DataDir != filepath.Join(repo, "data") {
		t.Errorf("got %+v", c)
	}
	for name, want := range map[string]map[string]string{
		"pa":         {"default_expires": "3600", "dummy_presence": "true"},
		"conference": {"default_expires": "3600", "use_partial_states": "false"},
		"dialog":     {"default_expires": "3600"},
		"mwi":        {"default_expires": "3600"},
	} {
		e := c.Extension[name]
		if e == nil {
			t.Fatalf("no extension %s", name)
		}
		if e.Path != filepath.Join(repo, "extensions", name, name+".wasm") || !reflect.DeepEqual(e.Config, want) {
			t.Errorf("%s = %+v", name, e)
		}
	}
}

// The buddy list's config (`make buddylist`) loads: ws beside UDP and
// TCP, and [web] serving its own folder.
func TestBuddyListFile(t *testing.T) {
	c, err := Load("../../web/buddylist/presenced.toml")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := filepath.Abs("../../web/buddylist")
	if len(c.Listen) != 3 || c.Listen[2].Transport != "ws" || c.Web.Dir != page || c.Web.Listen != "127.0.0.1:8088" {
		t.Errorf("got %+v, web %+v", c.Listen, c.Web)
	}
}

// Port 0 is a free port for each listener: several stream transports may
// ask for one on the same host.
func TestFreePorts(t *testing.T) {
	p := write(t, "[[listen]]\ntransport = \"tcp\"\naddress = \"127.0.0.1:0\"\n[[listen]]\ntransport = \"ws\"\naddress = \"127.0.0.1:0\"\n")
	if _, err := Load(p); err != nil {
		t.Fatal(err)
	}
}

func TestRelativePaths(t *testing.T) {
	p := write(t, "[server]\ndata_dir = \"var/state\"\n[extension.x]\npath = \"mods/x.wasm\"\n[extension.y]\npath = \"/opt/y.wasm\"\n")
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(p)
	if c.Server.DataDir != filepath.Join(dir, "var/state") || c.Extension["x"].Path != filepath.Join(dir, "mods/x.wasm") ||
		c.Extension["y"].Path != "/opt/y.wasm" {
		t.Errorf("data_dir %q, x %q, y %q", c.Server.DataDir, c.Extension["x"].Path, c.Extension["y"].Path)
	}

	// Relative to the file, not to the working directory.
	wd, _ := os.Getwd()
	rel, err := filepath.Rel(wd, p)
	if err != nil {
		t.Skip(err)
	}
	if c, err = Load(rel); err != nil || c.Extension["x"].Path != filepath.Join(dir, "mods/x.wasm") {
		t.Errorf("loaded as %q: %v, %+v", rel, err, c)
	}
}

func TestExtensionConfigFlattened(t *testing.T) {
	c, err := Parse("t.toml", []byte(`
[extension.x]
path = "x.wasm"
[extension.x.config]
name = "plain, \"quoted\""
n = 3600
neg = -1
ratio = 0.5
whole = 3.0
on = true
off = false
list = [1, 2, 3]
words = ["a", "b"]
when = 1979-05-27T07:32:00Z
day = 1979-05-27
inline = { a = 1, b = { c = "d" } }
[extension.x.config.nested]
deep = "yes"
[extension.x.config.nested.deeper]
deepest = 1
`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"name": `plain, "quoted"`, "n": "3600", "neg": "-1", "ratio": "0.5", "whole": "3.0",
		"on": "true", "off": "false", "list": "1,2,3", "words": "a,b",
		"when": "1979-05-27T07:32:00Z", "day": "1979-05-27",
		"inline.a": "1", "inline.b.c": "d", "nested.deep": "yes", "nested.deeper.deepest": "1",
	}
	if got := c.Extension["x"].Config; !reflect.DeepEqual(got, want) {
		t.Errorf("config =\n%v\nwant\n%v", got, want)
	}
}

// Every error names the file, the line and the key.
func TestErrors(t *testing.T) {
	for _, c := range []struct {
		name, text, want string
	}{
		{"unknown key in a section",
			"[server]\nlog_level = \"info\"\nlogformat = \"json\"\n",
			`:3: unknown key "server.logformat"`},
		{"unknown table",
			"[server]\n\n[sever]\nx = 1\n",
			`:3: unknown key "sever"`},
		{"key in the wrong case",
			"[server]\nLog_Level = \"debug\"\n",
			`:2: unknown key "server.Log_Level"`},
		{"unknown key in second listen",
			"[[listen]]\ntransport = \"udp\"\naddress = \"127.0.0.1:1\"\n\n[[listen]]\ntransport = \"tcp\"\nadress = \"127.0.0.1:1\"\n",
			`:7: unknown key "listen.adress"`},
		{"unknown key in an extension",
			"[extension.pa]\npath = \"pa.wasm\"\ninstance = 3\n",
			`:3: unknown key "extension.pa.instance"`},
		{"wrong type",
			"[subscription]\n\nmin_expires = \"soon\"\n",
			`:3: key "subscription.min_expires": incompatible types`},
		{"wrong type in first of two listens",
			"[[listen]]\ntransport = 5\naddress = \":1\"\n[[listen]]\ntransport = \"tcp\"\naddress = \":1\"\n",
			`:2: key "listen.transport": incompatible types`},
		{"bad trusted source",
			"[limits]\nrequests_per_second_per_source = 10\ntrusted_sources = [\"10.0.0.0/8\", \"10.0.0.0/33\"]\n",
			`:3: key "limits.trusted_sources": "10.0.0.0/33" is not an address or a CIDR (such as 10.0.0.0/8)`},
		{"trusted source a host name",
			"[limits]\ntrusted_sources = [\"proxy.example.com\"]\n",
			`:2: key "limits.trusted_sources": "proxy.example.com" is not an address or a CIDR`},
		{"min above max",
			"[subscription]\nmin_expires = 100\nmax_expires = 10\n",
			`:3: key "subscription.max_expires": must be >= min_expires (100), got 10`},
		{"min above default max",
			"[publication]\nmin_expires = 100000\n",
			`:2: key "publication.min_expires": must be <= max_expires (86400), got 100000`},
		{"min zero",
			"[subscription]\nmin_expires = 0\n",
			`:2: key "subscription.min_expires": must be >= 1, got 0`},
		{"bad transport",
			"[[listen]]\ntransport = \"udp\"\naddress = \":1\"\n[[listen]]\ntransport = \"sctp\"\naddress = \":1\"\n",
			`:5: key "listen.1.transport": must be udp, tcp, tls, ws or wss, got "sctp"`},
		{"wss without a certificate",
			"[[listen]]\ntransport = \"wss\"\naddress = \":443\"\nkey_file = \"k.pem\"\n",
			`:2: key "listen.0.transport": wss needs cert_file and key_file`},
		{"ws with a certificate",
			"[[listen]]\ntransport = \"ws\"\naddress = \":80\"\ncert_file = \"c.pem\"\n",
			`:4: key "listen.0.cert_file": ws takes no certificate: tls and wss do`},
		{"ws on the port of tcp",
			"[[listen]]\ntransport = \"tcp\"\naddress = \":5060\"\n[[listen]]\ntransport = \"ws\"\naddress = \":5060\"\n",
			`:6: key "listen.1.address": tcp :5060 is already listened on`},
		{"web without dir",
			"[web]\nlisten = \"127.0.0.1:8080\"\n",
			`:1: key "web.dir": missing`},
		{"web with a certificate and no key",
			"[web]\nlisten = \"127.0.0.1:8443\"\ndir = \"web\"\ncert_file = \"c.pem\"\n",
			`:4: key "web.cert_file": HTTPS needs both cert_file and key_file`},
		{"bad address",
			"[[listen]]\ntransport = \"udp\"\naddress = \"localhost\"\n",
			`:3: key "listen.0.address": must be host:port, got "localhost"`},
		{"duplicate listener",
			"[[listen]]\ntransport = \"udp\"\naddress = \":5060\"\n[[listen]]\ntransport = \"UDP\"\naddress = \":5060\"\n",
			`:6: key "listen.1.address": udp :5060 is already listened on`},
		{"no listener",
			"listen = []\n",
			`:1: key "listen": at least one [[listen]] is needed`},
		{"bad duration",
			"[extension.pa]\npath = \"pa.wasm\"\ncall_timeout = \"fast\"\n",
			`:3: key "extension.pa.call_timeout": "fast" is not a duration`},
		{"duration too long",
			"[extension.pa]\npath = \"pa.wasm\"\ncall_timeout = \"2m\"\n",
			`:3: key "extension.pa.call_timeout": must be above 0 and at most 60s, got 2m0s`},
		{"coalescing window too long",
			"[extension.pa]\npath = \"pa.wasm\"\n[extension.pa.coalesce]\npresence = \"5m\"\n",
			`:4: key "extension.pa.coalesce.presence": must be 0 (off) to 60s, got 5m0s`},
		{"syntax error",
			"[server]\nlog_level = \"info\n",
			`:2: `},
		{"unclosed table", // toml reports where it met the newline
			"[server\n",
			`:2: `},
		{"extension without path",
			"# modules\n[extension.pa]\ninstances = 2\n",
			`:2: key "extension.pa.path": missing`},
		{"explicit zero instances",
			"[extension.pa]\npath = \"x\"\ninstances = 0\n",
			`:3: key "extension.pa.instances": must be 1..64, got 0`},
		{"max_instances below instances",
			"[extension.pa]\npath = \"x\"\ninstances = 4\nmax_instances = 3\n",
			`:4: key "extension.pa.max_instances": must be instances (4) to 64, got 3`},
		{"max_instances too many",
			"[extension.pa]\npath = \"x\"\nmax_instances = 65\n",
			`:3: key "extension.pa.max_instances": must be instances (2) to 64, got 65`},
		{"negative backoff_after",
			"[extension.pa]\npath = \"x\"\nbackoff_after = -1\n",
			`:3: key "extension.pa.backoff_after": must be 0 (never) to 1000, got -1`},
		{"zero backoff_window",
			"[extension.pa]\npath = \"x\"\nbackoff_window = \"0s\"\n",
			`:3: key "extension.pa.backoff_window": must be above 0 and at most 1h, got 0s`},
		{"zero backoff",
			"[extension.pa]\npath = \"x\"\nbackoff = \"0s\"\n",
			`:3: key "extension.pa.backoff": must be above 0 and at most 1h, got 0s`},
		{"backoff_max below backoff",
			"[extension.pa]\npath = \"x\"\nbackoff = \"5s\"\nbackoff_max = \"2s\"\n",
			`:4: key "extension.pa.backoff_max": must be backoff (5s) to 1h, got 2s`},
		{"bad extension name",
			"[extension.\"Pa X\"]\npath = \"x\"\n",
			`:1: key "extension.Pa X": an extension name`},
		{"unflattenable config",
			"[extension.pa]\npath = \"x\"\n[extension.pa.config]\nok = 1\nm = [[1], [2]]\n",
			`:5: key "extension.pa.config.m": an array of arrays`},
		{"admin on every interface without a token",
			"[admin]\ntoken = \"\"\nlisten = \"0.0.0.0:8070\"\n",
			`:3: key "admin.listen": "0.0.0.0:8070" is reachable beyond this host without a token: set admin.token, or listen on loopback`},
		{"admin on an empty host without a token",
			"[admin]\nlisten = \":8070\"\n",
			`:2: key "admin.listen": ":8070" is reachable beyond this host`},
		{"admin on IPv6 any without a token",
			"[admin]\nlisten = \"[::]:8070\"\n",
			`:2: key "admin.listen": "[::]:8070" is reachable beyond this host`},
		{"admin on a public address without a token",
			"[admin]\nlisten = \"192.0.2.1:8070\"\n",
			`:2: key "admin.listen": "192.0.2.1:8070" is reachable beyond this host`},
		{"admin on a host name without a token", // it may resolve to anything
			"[admin]\nlisten = \"admin.example.com:8070\"\n",
			`:2: key "admin.listen": "admin.example.com:8070" is reachable beyond this host`},
		{"lease with sqlite",
			"[store]\nlease = \"5s\"\n",
			`:2: key "store.lease": is for backend "postgres"; backend is "sqlite"`},
		{"lease below a second",
			"[store]\nbackend = \"postgres\"\ndsn = \"postgres://h/db\"\nlease = \"500ms\"\n",
			`:4: key "store.lease": must be at least 1s, got 500ms`},
		{"a negative idle time",
			"[store]\nidle_subscriptions = \"-1s\"\n",
			`:2: key "store.idle_subscriptions": must not be negative (0 keeps every subscription in memory), got -1s`},
		{"an idle time that is no duration",
			"[store]\nbackend = \"sqlite\"\nidle_subscriptions = \"soon\"\n",
			`:3: key "store.idle_subscriptions": "soon" is not a duration`},
		{"unknown store backend",
			"[store]\nbackend = \"mysql\"\n",
			`:2: key "store.backend": must be sqlite, postgres or memory, got "mysql"`},
		{"postgres without a dsn",
			"[store]\nbackend = \"postgres\"\n",
			`:1: key "store.dsn": missing: backend "postgres" needs the database's URL`},
		{"a dsn that is not a postgres URL, its password masked",
			"[store]\nbackend = \"postgres\"\ndsn = \"mysql://app:s3cret@db/presenced\"\n",
			`:3: key "store.dsn": must be a postgres:// or postgresql:// URL, got mysql://app:xxxxx@db/presenced`},
		{"a dsn without a database",
			"[store]\nbackend = \"postgres\"\ndsn = \"postgres://app@db?password=s3cret\"\n",
			`:3: key "store.dsn": names no database: postgres://app@db?password=xxxxx`},
		{"a dsn for sqlite",
			"[store]\ndsn = \"postgres://app@db/presenced\"\n",
			`:2: key "store.dsn": is for backend "postgres"; backend is "sqlite"`},
		{"negative memory limit",
			"[server]\nmemory_limit_mb = -5\n",
			`:2: key "server.memory_limit_mb": must be 0 (none) up to 1048576, got -5`},
		{"memory limit as a string",
			"[server]\nmemory_limit_mb = \"300MB\"\n",
			`:2: key "server.memory_limit_mb": incompatible types`},
		{"gc off without a memory limit",
			"[server]\ngc_percent = -1\n",
			`:2: key "server.gc_percent": -1 (off) needs a memory_limit_mb`},
		{"gc percent zero",
			"[server]\nlog_level = \"info\"\ngc_percent = 0\n",
			`:3: key "server.gc_percent": must be -1 (off, with memory_limit_mb) or a percentage >= 1, got 0`},
		{"bad log level after multi-line array",
			"[server]\ndomains = [\n  \"a\",\n  # [not.a.table]\n  \"b\",\n]\nlog_level = \"loud\"\n",
			`:7: key "server.log_level": must be debug, info, warn or error, got "loud"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := write(t, c.text)
			_, err := Load(p)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.HasPrefix(err.Error(), p+c.want) {
				t.Fatalf("error\n%s\ndoes not start with\n%s", err, p+c.want)
			}
		})
	}
}

func TestLocate(t *testing.T) {
	l := locate(`
top = 1
[a]
"quoted.key" = 2
'lit' = """
[not.a.header]
"""
b.c = 3
[[arr]]
x = 1
[[arr]]
x = 2
[arr.sub]
y = 3
`)
	for key, want := range map[string]int{
		"top": 2, "a": 3, "a.quoted.key": 4, "a.lit": 5, "a.b.c": 8, "not": 0,
		"arr": 9, "arr.0.x": 10, "arr.1": 11, "arr.1.x": 12, "arr.x": 10,
		"arr.1.sub.y": 14, "arr.1.sub.missing": 13,
	} {
		if got := l.line(key); got != want {
			t.Errorf("line(%q) = %d, want %d", key, got, want)
		}
	}
}

// The admin API ends subscriptions, reloads and profiles: without a token
// it may listen on loopback only, and anywhere with one.
func TestAdminListenerNeedsATokenBeyondLoopback(t *testing.T) {
	for _, listen := range []string{"127.0.0.1:8070", "127.8.9.10:0", "[::1]:8070", "localhost:8070", "LocalHost:8070", ""} {
		if _, err := Parse("t.toml", []byte("[admin]\nlisten = \""+listen+"\"\n")); err != nil {
			t.Errorf("listen %q without a token: %v", listen, err)
		}
	}
	for _, listen := range []string{"0.0.0.0:8070", ":8070", "[::]:8070", "192.0.2.1:8070", "admin.example.com:8070"} {
		if _, err := Parse("t.toml", []byte("[admin]\ntoken = \"s3cret\"\nlisten = \""+listen+"\"\n")); err != nil {
			t.Errorf("listen %q with a token: %v", listen, err)
		}
	}
}

// The compilation cache is not in data_dir: by default it is where the
// service manager or the user keeps caches; the file may move or turn it off.
func TestCacheDir(t *testing.T) {
	home := t.TempDir()
	t.Setenv("CACHE_DIRECTORY", "")
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", home)
	cacheDir := func(text string) string {
		t.Helper()
		c, err := Parse(filepath.Join(home, "etc", "presenced.toml"), []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		return c.Server.CacheDir
	}
	if got, want := cacheDir(""), filepath.Join(home, ".cache", "presenced"); got != want {
		t.Errorf("default cache_dir = %q, want %q", got, want)
	}
	if got := Default().Server.CacheDir; got != filepath.Join(home, ".cache", "presenced") {
		t.Errorf("Default() cache_dir = %q", got)
	}
	t.Setenv("XDG_CACHE_HOME", "/xdg/cache")
	if got := cacheDir(""); got != "/xdg/cache/presenced" {
		t.Errorf("cache_dir with $XDG_CACHE_HOME = %q", got)
	}
	// systemd's CacheDirectory=presenced: the daemon's own directory.
	t.Setenv("CACHE_DIRECTORY", "/var/cache/presenced:/var/cache/other")
	if got := cacheDir(""); got != "/var/cache/presenced" {
		t.Errorf("cache_dir with $CACHE_DIRECTORY = %q", got)
	}
	if got := cacheDir("[server]\ncache_dir = \"\"\n"); got != "" {
		t.Errorf("cache_dir = \"\" gives %q, want the cache off", got)
	}
	if got, want := cacheDir("[server]\ncache_dir = \"cache\"\n"), filepath.Join(home, "etc", "cache"); got != want {
		t.Errorf("relative cache_dir = %q, want %q", got, want)
	}
	t.Setenv("CACHE_DIRECTORY", "")
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "")
	if got := cacheDir(""); got != "" {
		t.Errorf("cache_dir without any cache directory = %q, want the cache off", got)
	}
}

// A reload applies [extension.*] only; every other key changed in the
// file is named, so the daemon can say it needs a restart.
func TestRestartNeeded(t *testing.T) {
	const base = `
[server]
data_dir = "data"
[[listen]]
transport = "udp"
address = "127.0.0.1:5060"
[admin]
listen = "127.0.0.1:8070"
[limits]
tcp_idle_timeout = "5m"
[xmpp.domains]
"a.example.com" = "a.example.com"
[extension.pa]
path = "pa.wasm"
[extension.pa.config]
default_expires = 3600
`
	load := func(text string) *Config {
		t.Helper()
		c, err := Parse("/etc/presenced/presenced.toml", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	running := load(base)
	for _, c := range []struct {
		name, old, new string
		want           []string
	}{
		{"nothing", "", "", nil},
		{"a module's setting", "default_expires = 3600", "default_expires = 60", nil},
		{"a listen address", `address = "127.0.0.1:5060"`, `address = "127.0.0.1:5070"`, []string{"listen.0.address"}},
		{"a listener more", "[admin]", "[[listen]]\ntransport = \"tcp\"\naddress = \":5060\"\n[admin]", []string{"listen"}},
		{"data_dir and the store path it implies", `data_dir = "data"`, `data_dir = "state"`,
			[]string{"server.data_dir", "store.path"}},
		{"the admin listener and its token", `listen = "127.0.0.1:8070"`, "listen = \"127.0.0.1:8071\"\ntoken = \"t\"",
			[]string{"admin.listen", "admin.token"}},
		{"a duration", `tcp_idle_timeout = "5m"`, `tcp_idle_timeout = "1m"`, []string{"limits.tcp_idle_timeout"}},
		{"a table of names", `"a.example.com" = "a.example.com"`, `"b.example.com" = "a.example.com"`, []string{"xmpp.domains"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := RestartNeeded(running, load(strings.Replace(base, c.old, c.new, 1)))
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("RestartNeeded = %q, want %q", got, c.want)
			}
		})
	}
}

// trusted_sources takes CIDRs and single addresses, IPv4 and IPv6; a CIDR
// with host bits is its network.
// A postgres store takes a postgres:// URL; what a message shows of it
// never holds its password.
func TestStorePostgres(t *testing.T) {
	c, err := Parse("p.toml", []byte("[store]\nbackend = \"postgres\"\ndsn = \"postgresql://app:s3cret@db.example.com:5433/presenced?sslmode=require\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Store.DSN != "postgresql://app:s3cret@db.example.com:5433/presenced?sslmode=require" {
		t.Fatalf("dsn = %q", c.Store.DSN)
	}
	for dsn, want := range map[string]string{
		c.Store.DSN: "postgresql://app:xxxxx@db.example.com:5433/presenced?sslmode=require",
		"postgres://app@db/p?password=s3cret&sslmode=disable": "postgres://app@db/p?password=xxxxx&sslmode=disable",
		"postgres://app@db/p":                 "postgres://app@db/p",
		"postgres://app:s3cret@db:bad port/p": "(not a URL)",
	} {
		if got := (Store{DSN: dsn}).RedactedDSN(); got != want {
			t.Errorf("RedactedDSN(%q) = %q, want %q", dsn, got, want)
		}
	}
}

func TestTrustedSources(t *testing.T) {
	c, err := Parse("t.toml", []byte("[limits]\ntrusted_sources = [\"10.1.2.3/8\", \"192.0.2.7\", \"2001:db8::/32\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range c.Limits.Trusted() {
		got = append(got, p.String())
	}
	if strings.Join(got, " ") != "10.0.0.0/8 192.0.2.7/32 2001:db8::/32" {
		t.Fatalf("trusted: %v", got)
	}
}

// max_instances left out is 8, or instances when that is more: a file
// that raises instances alone is not refused for it.
func TestMaxInstancesDefault(t *testing.T) {
	for text, want := range map[string]int{
		"[extension.pa]\npath = \"x\"\n":                                    8,
		"[extension.pa]\npath = \"x\"\ninstances = 12\n":                    12,
		"[extension.pa]\npath = \"x\"\ninstances = 3\nmax_instances = 3\n":  3,
		"[extension.pa]\npath = \"x\"\ninstances = 1\nmax_instances = 40\n": 40,
	} {
		c, err := Load(write(t, text))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Extension["pa"].MaxInstances; got != want {
			t.Errorf("%q: max_instances %d, want %d", text, got, want)
		}
	}
}

// [rls] services names an RFC 4826 document, relative to the file, read
// at load; a document that does not read stops the load with its key.
func TestRLSServices(t *testing.T) {
	src, err := os.ReadFile("../rls/testdata/rls-services.xml")
	if err != nil {
		t.Fatal(err)
	}
	p := write(t, "[rls]\nservices = \"lists.xml\"\nthrottle = \"2s\"\n")
	if err := os.WriteFile(filepath.Join(filepath.Dir(p), "lists.xml"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.RLS.Services != filepath.Join(filepath.Dir(p), "lists.xml") || c.RLS.Throttle.Duration != 2*time.Second ||
		len(c.RLS.Lists) != 2 || len(c.RLS.Lists[0].Members) != 3 {
		t.Fatalf("got %+v", c.RLS)
	}
	os.WriteFile(filepath.Join(filepath.Dir(p), "lists.xml"), []byte("<rls-services xmlns=\"urn:ietf:params:xml:ns:rls-services\">\n<service uri=\"sip:a@example.com\">\n</rls-services>\n"), 0o644)
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), p+`:2: key "rls.services"`) ||
		!strings.Contains(err.Error(), filepath.Join(filepath.Dir(p), "lists.xml")+":3: XML syntax error") {
		t.Fatalf("a broken rls-services file, its fault on line 3: %v", err)
	}
	os.WriteFile(filepath.Join(filepath.Dir(p), "lists.xml"), []byte(`<rls-services xmlns="urn:ietf:params:xml:ns:rls-services"><service/></rls-services>`), 0o644)
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), filepath.Join(filepath.Dir(p), "lists.xml")+": rls-services: service 1 has no uri") {
		t.Fatalf("an rls-services file with a service without uri: %v", err)
	}
	if _, err := Parse("x.toml", []byte("[rls]\nthrottle = \"-1s\"\n")); err == nil || !strings.Contains(err.Error(), "rls.throttle") {
		t.Fatalf("a negative throttle: %v", err)
	}
}
