// Package config owns the daemon's TOML configuration: its schema, its
// defaults and its validation. It starts nothing.
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Config is a whole presenced.toml.
type Config struct {
	File string // the file it was loaded from; "" for Default()
	Dir  string // relative paths were resolved against this directory

	Server       Server
	Listen       []Listener
	Subscription Expires
	Publication  Expires
	Extension    map[string]*Extension
}

// Server is the [server] table.
type Server struct {
	DataDir   string   `toml:"data_dir"`
	UserAgent string   `toml:"user_agent"`
	Domains   []string `toml:"domains"`
	LogLevel  string   `toml:"log_level"`
	LogFormat string   `toml:"log_format"`
}

// Listener is one [[listen]] entry.
type Listener struct {
	Transport string `toml:"transport"`
	Address   string `toml:"address"`
	Advertise string `toml:"advertise"`
}

// Expires is the [subscription] or [publication] table.
type Expires struct {
	MinExpires int `toml:"min_expires"`
	MaxExpires int `toml:"max_expires"`
}

// Extension is one [extension.NAME] table.
type Extension struct {
	Name          string `toml:"-"`
	Path          string `toml:"path"`
	MemoryLimitMB int    `toml:"memory_limit_mb"`
	CallTimeout   Duration
	Instances     int  `toml:"instances"`
	Trusted       bool `toml:"trusted"`
	// Config is the opaque [extension.NAME.config] table, flattened as it
	// crosses the ABI (abi/ABI.md §4): nested tables become dotted keys,
	// strings stay raw, other values are spelled as in TOML, arrays are
	// their elements joined with ",".
	Config map[string]string `toml:"-"`
}

// Duration is a TOML string such as "200ms".
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration (e.g. \"200ms\", \"2s\")", b)
	}
	d.Duration = v
	return nil
}

// file is the decoding shape: extension tables are decoded by hand so that
// their config sub-table stays opaque.
type file struct {
	Server       Server
	Listen       []Listener
	Subscription Expires
	Publication  Expires
	Extension    map[string]toml.Primitive
}

type extensionFile struct {
	Path          string         `toml:"path"`
	MemoryLimitMB int            `toml:"memory_limit_mb"`
	CallTimeout   Duration       `toml:"call_timeout"`
	Instances     int            `toml:"instances"`
	Trusted       bool           `toml:"trusted"`
	Config        map[string]any `toml:"config"`
}

// Default returns the embedded defaults: what `make run` serves when no
// file is given, paths relative to the working directory.
func Default() *Config {
	c := &Config{
		Dir:          ".",
		Server:       Server{DataDir: "data", UserAgent: "presenced", LogLevel: "info", LogFormat: "text"},
		Listen:       []Listener{{Transport: "udp", Address: "127.0.0.1:5060"}, {Transport: "tcp", Address: "127.0.0.1:5060"}},
		Subscription: Expires{MinExpires: 60, MaxExpires: 86400},
		Publication:  Expires{MinExpires: 60, MaxExpires: 86400},
		Extension: map[string]*Extension{
			"pa":         {Path: "extensions/pa/pa.wasm", Config: map[string]string{"default_expires": "3600"}},
			"conference": {Path: "extensions/conference/conference.wasm", Config: map[string]string{"use_partial_states": "false"}},
		},
	}
	for name, e := range c.Extension {
		e.Name = name
		e.defaults()
	}
	return c
}

func (e *Extension) defaults() {
	if e.MemoryLimitMB == 0 {
		e.MemoryLimitMB = 64
	}
	if e.CallTimeout.Duration == 0 {
		e.CallTimeout.Duration = 200 * time.Millisecond
	}
	if e.Instances == 0 {
		e.Instances = 2
	}
}

// Load reads, decodes, defaults and validates the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse is Load for bytes; name is the file name used in errors and the
// base of relative paths.
func Parse(name string, data []byte) (*Config, error) {
	loc := locate(string(data))
	fail := func(key, format string, args ...any) error {
		return fmt.Errorf("%s:%d: key %q: %s", name, loc.line(key), key, fmt.Sprintf(format, args...))
	}
	var f file
	md, err := toml.Decode(string(data), &f)
	if err != nil {
		return nil, decodeError(name, err)
	}
	d := Default()
	c := &Config{File: name, Dir: filepath.Dir(name), Server: d.Server, Listen: d.Listen,
		Subscription: d.Subscription, Publication: d.Publication, Extension: map[string]*Extension{}}
	if md.IsDefined("server") {
		s := f.Server
		for _, k := range []struct {
			key string
			dst *string
			val string
		}{{"data_dir", &c.Server.DataDir, s.DataDir}, {"user_agent", &c.Server.UserAgent, s.UserAgent},
			{"log_level", &c.Server.LogLevel, s.LogLevel}, {"log_format", &c.Server.LogFormat, s.LogFormat}} {
			if md.IsDefined("server", k.key) {
				*k.dst = k.val
			}
		}
		c.Server.Domains = s.Domains
	}
	if md.IsDefined("listen") {
		c.Listen = f.Listen
	}
	for _, t := range []struct {
		name string
		dst  *Expires
		src  Expires
	}{{"subscription", &c.Subscription, f.Subscription}, {"publication", &c.Publication, f.Publication}} {
		if md.IsDefined(t.name, "min_expires") {
			t.dst.MinExpires = t.src.MinExpires
		}
		if md.IsDefined(t.name, "max_expires") {
			t.dst.MaxExpires = t.src.MaxExpires
		}
	}
	if !md.IsDefined("extension") {
		c.Extension = d.Extension
	}
	for name, prim := range f.Extension {
		var ef extensionFile
		if err := md.PrimitiveDecode(prim, &ef); err != nil {
			if pe, ok := parseError(err); ok && pe.LastKey != "" {
				return nil, fail(pe.LastKey, "%s", pe.Message)
			}
			return nil, fail("extension."+name, "%v", err)
		}
		e := &Extension{Name: name, Path: ef.Path, MemoryLimitMB: ef.MemoryLimitMB, CallTimeout: ef.CallTimeout,
			Instances: ef.Instances, Trusted: ef.Trusted, Config: map[string]string{}}
		flatten("", ef.Config, e.Config)
		e.defaults()
		if !md.IsDefined("extension", name, "path") {
			return nil, fail("extension."+name, "missing key \"path\" (the module's .wasm file)")
		}
		c.Extension[name] = e
	}
	var unknown []string
	for _, k := range md.Undecoded() {
		if len(k) >= 3 && k[0] == "extension" && k[2] == "config" {
			continue // the opaque module table
		}
		unknown = append(unknown, k.String())
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, fmt.Errorf("%s:%d: unknown key %q", name, loc.line(unknown[0]), unknown[0])
	}
	if err := c.validate(fail); err != nil {
		return nil, err
	}
	c.resolve()
	return c, nil
}

func parseError(err error) (toml.ParseError, bool) {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return pe, true
	}
	var ppe *toml.ParseError
	if errors.As(err, &ppe) {
		return *ppe, true
	}
	return pe, false
}

// decodeError formats toml's syntax and type errors as file:line: key.
func decodeError(name string, err error) error {
	pe, ok := parseError(err)
	if !ok {
		// Type mismatches come as plain text with the line and key in it.
		if m := typeError.FindStringSubmatch(err.Error()); m != nil {
			return fmt.Errorf("%s:%s: key %q: %s", name, m[1], m[2], m[3])
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	if pe.LastKey != "" {
		return fmt.Errorf("%s:%d: key %q: %s", name, pe.Position.Line, pe.LastKey, pe.Message)
	}
	return fmt.Errorf("%s:%d: %s", name, pe.Position.Line, pe.Message)
}

var typeError = regexp.MustCompile(`^toml: line (\d+) \(last key "([^"]*)"\): (.*)$`)

var extensionName = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)

// validate checks values; fail formats an error at a key's line.
func (c *Config) validate(fail func(key, format string, args ...any) error) error {
	switch c.Server.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fail("server.log_level", "must be debug, info, warn or error, got %q", c.Server.LogLevel)
	}
	switch c.Server.LogFormat {
	case "text", "json":
	default:
		return fail("server.log_format", "must be text or json, got %q", c.Server.LogFormat)
	}
	if c.Server.DataDir == "" {
		return fail("server.data_dir", "must not be empty")
	}
	for i := range c.Server.Domains {
		c.Server.Domains[i] = strings.ToLower(c.Server.Domains[i])
	}
	if len(c.Listen) == 0 {
		return fail("listen", "at least one [[listen]] is needed")
	}
	seen := map[string]bool{}
	for i := range c.Listen {
		l := &c.Listen[i]
		key := fmt.Sprintf("listen.%d", i)
		l.Transport = strings.ToLower(l.Transport)
		if l.Transport != "udp" && l.Transport != "tcp" {
			return fail(key+".transport", "must be udp or tcp, got %q", l.Transport)
		}
		if _, _, err := net.SplitHostPort(l.Address); err != nil {
			return fail(key+".address", "must be host:port, got %q", l.Address)
		}
		if seen[l.Transport+" "+l.Address] {
			return fail(key+".address", "%s %s is listed twice", l.Transport, l.Address)
		}
		seen[l.Transport+" "+l.Address] = true
	}
	for _, t := range []struct {
		name string
		e    Expires
	}{{"subscription", c.Subscription}, {"publication", c.Publication}} {
		if t.e.MinExpires < 1 {
			return fail(t.name+".min_expires", "must be >= 1, got %d", t.e.MinExpires)
		}
		if t.e.MaxExpires < t.e.MinExpires {
			return fail(t.name+".max_expires", "must be >= min_expires (%d), got %d", t.e.MinExpires, t.e.MaxExpires)
		}
	}
	for name, e := range c.Extension {
		key := "extension." + name
		switch {
		case !extensionName.MatchString(name):
			return fail(key, "extension names are lower-case letters, digits, - and _")
		case e.Path == "":
			return fail(key+".path", "must not be empty")
		case e.MemoryLimitMB < 1 || e.MemoryLimitMB > 4096:
			return fail(key+".memory_limit_mb", "must be 1..4096, got %d", e.MemoryLimitMB)
		case e.CallTimeout.Duration <= 0 || e.CallTimeout.Duration > time.Minute:
			return fail(key+".call_timeout", "must be above 0 and at most 1m, got %s", e.CallTimeout.Duration)
		case e.Instances < 1 || e.Instances > 64:
			return fail(key+".instances", "must be 1..64, got %d", e.Instances)
		}
	}
	return nil
}

// resolve makes relative paths relative to the config file's directory, so
// the daemon reads the same files whatever its working directory.
func (c *Config) resolve() {
	abs := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(c.Dir, p)
	}
	c.Server.DataDir = abs(c.Server.DataDir)
	for _, e := range c.Extension {
		e.Path = abs(e.Path)
	}
}

// flatten renders the opaque config table as dotted string pairs.
func flatten(prefix string, m map[string]any, out map[string]string) {
	for k, v := range m {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		if sub, ok := v.(map[string]any); ok {
			flatten(key, sub, out)
			continue
		}
		out[key] = render(v)
	}
}

func render(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case time.Time:
		return x.Format(time.RFC3339Nano)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = render(e)
		}
		return strings.Join(parts, ",")
	case []map[string]any:
		return fmt.Sprint(x)
	}
	return fmt.Sprint(v)
}
