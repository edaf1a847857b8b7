// Package config owns the daemon's TOML configuration: schema, defaults and validation;
// it does not start anything.
package config

import (
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/presenced/presenced/internal/rls"
)

// Config is one presenced.toml, defaults applied and validated.
type Config struct {
	File string // path it was loaded from ("" for Default())
	Dir  string // directory relative paths were resolved against

	Server       Server
	Listen       []Listener
	Subscription Expires
	Publication  Expires
	Registrar    Registrar
	Store        Store
	Admin        Admin
	Web          Web
	Limits       Limits
	Auth         Auth
	XMPP         XMPP
	RLS          RLS
	Extension    map[string]*Extension // keyed by name

	lines locator // where each key is defined, for errors; nil for Default()
}

// Server is the [server] table.
type Server struct {
	DataDir string `toml:"data_dir"` // absolute after Load
	// CacheDir holds wazero's compilation cache, absolute after Load; ""
	// turns the cache off. Default: see defaultCacheDir.
	CacheDir  string   `toml:"cache_dir"`
	UserAgent string   `toml:"user_agent"`
	Domains   []string `toml:"domains"` // lower case; empty serves any domain
	LogLevel  string   `toml:"log_level"`
	LogFormat string   `toml:"log_format"`
	// MemoryLimitMB is the Go runtime's soft memory limit
	// (debug.SetMemoryLimit) in MiB, 0 for none, and GCPercent its GOGC,
	// -1 for off (only with a limit). GOMEMLIMIT and GOGC in the
	// environment win over them, as they do in any Go program.
	MemoryLimitMB int `toml:"memory_limit_mb"`
	GCPercent     int `toml:"gc_percent"`
}

// Listener is one [[listen]] entry.
type Listener struct {
	Transport string `toml:"transport"` // "udp", "tcp", "tls", "ws" or "wss" (SIP over WebSocket, RFC 7118)
	Address   string `toml:"address"`   // host:port; port 0 picks a free one
	Advertise string `toml:"advertise"` // host[:port] for Via and Contact; "" = the bound address
	CertFile  string `toml:"cert_file"` // tls, wss: PEM certificate chain
	KeyFile   string `toml:"key_file"`  // tls, wss: PEM private key
}

// secure reports whether the listener needs a certificate.
func (l Listener) secure() bool { return l.Transport == "tls" || l.Transport == "wss" }

// Web is the [web] table: a static file server for browser pages, such as
// the buddy list in web/buddylist, that speak SIP over a ws or wss
// listener. Off while Listen is "".
type Web struct {
	Listen   string `toml:"listen"`    // host:port; "" turns it off
	Dir      string `toml:"dir"`       // the folder served; absolute after Load
	CertFile string `toml:"cert_file"` // with key_file: HTTPS
	KeyFile  string `toml:"key_file"`
}

// Expires is the [subscription] or [publication] table.
type Expires struct {
	MinExpires int `toml:"min_expires"` // a request below it gets 423
	MaxExpires int `toml:"max_expires"` // a request above it is clamped
}

// Registrar is the [registrar] table: REGISTER Expires bounds and the
// default for a Contact without expires.
type Registrar struct {
	MinExpires     int `toml:"min_expires"`
	MaxExpires     int `toml:"max_expires"`
	DefaultExpires int `toml:"default_expires"`
}

// DefaultIdleSubscriptions is store.idle_subscriptions when the file
// does not say (internal/server RATIONALE.md "Idle subscriptions live in
// the store").
const DefaultIdleSubscriptions = 5 * time.Second

// Store is the [store] table: where state is committed before a 2xx.
type Store struct {
	Backend string `toml:"backend"` // "sqlite" (durable, the default), "postgres" or "memory"
	Path    string `toml:"path"`    // the SQLite file; default data_dir/presenced.db
	// DSN is the PostgreSQL database's postgres:// URL, for backend
	// postgres. Errors show it with its password masked (RedactedDSN).
	DSN string `toml:"dsn"`
	// Lease is how long a node's hold on its subscription dialogs lasts
	// without a renewal, for backend postgres: the longest its watchers
	// go without NOTIFYs when it dies, before another node takes them
	// (docs/cluster.md, section 3). 0: server.DefaultLease.
	Lease Duration `toml:"lease"`
	// IdleSubscriptions is how long a subscription has nothing to send
	// before the server lets go of it, its record in the store alone,
	// read back when something needs it; 0 keeps every subscription in
	// memory. Backend postgres keeps them all (a node hears of the
	// others' changes through what it holds) and ignores it.
	IdleSubscriptions Duration `toml:"idle_subscriptions"`
}

// RedactedDSN is s.DSN with its password, in the user part or in a
// password parameter, masked: what a message may show of it.
func (s Store) RedactedDSN() string {
	u, err := url.Parse(s.DSN)
	if err != nil {
		// url.Parse's errors quote the whole string, password included.
		return "(not a URL)"
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// Limits is the [limits] table: what one peer or one presentity may take
// of the server. 0 turns a limit off.
type Limits struct {
	MaxBodyBytes                 int      `toml:"max_body_bytes"`                  // 413 above
	MaxMessageBytes              int      `toml:"max_message_bytes"`               // headers and body; larger: 513 over UDP, connection closed over TCP
	MaxSubscriptionsPerWatcher   int      `toml:"max_subscriptions_per_watcher"`   // 403 above
	MaxWatchersPerPresentity     int      `toml:"max_watchers_per_presentity"`     // 403 above
	MaxPublicationsPerPresentity int      `toml:"max_publications_per_presentity"` // 403 above
	RequestsPerSecondPerSource   int      `toml:"requests_per_second_per_source"`  // 503 + Retry-After above
	MaxInFlight                  int      `toml:"max_in_flight"`                   // requests being handled or queued at once, less those waiting for their commit while commits keep up (2x in all); 503 + Retry-After above
	TCPIdleTimeout               Duration `toml:"tcp_idle_timeout"`                // an idle TCP/TLS connection is closed after it
	// TrustedSources are proxies (CIDRs or addresses) whose requests are
	// accounted to the client their Vias name, not to the proxy.
	TrustedSources []string `toml:"trusted_sources"`
}

// Trusted is TrustedSources parsed; Validate has checked them, and an
// address is a prefix of its full length.
func (l Limits) Trusted() []netip.Prefix {
	var out []netip.Prefix
	for _, v := range l.TrustedSources {
		if p, err := parsePrefix(v); err == nil {
			out = append(out, p)
		}
	}
	return out
}

func parsePrefix(v string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(v); err == nil {
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(v)
	return p.Masked(), err
}

// Auth is the [auth] table: SIP digest authentication (RFC 3261 §22).
type Auth struct {
	UsersFile  string   `toml:"users_file"` // "user:realm:md5-ha1:sha256-ha1" lines; "" turns authentication off
	Realms     []string `toml:"realms"`     // domains whose users must authenticate
	Methods    []string `toml:"methods"`
	OwnerOnly  bool     `toml:"owner_only"` // PUBLISH and REGISTER only for oneself
	NonceTTL   Duration `toml:"nonce_ttl"`
	Secret     string   `toml:"secret"`     // nonce HMAC key; "" = random per start
	Algorithms []string `toml:"algorithms"` // offered, preferred first
}

// XMPP is the [xmpp] table: the "jabber" backend, an XEP-0114 component
// connection through which SIP watchers see XMPP users (RFC 8048).
type XMPP struct {
	Server     string            `toml:"server"`     // the XMPP server's component port, host:port; "" turns it off
	Domain     string            `toml:"domain"`     // the component's domain, e.g. sip.example.com
	Secret     string            `toml:"secret"`     // the component's shared secret
	User       string            `toml:"user"`       // local part of the subscribing JID (default presenced)
	Domains    map[string]string `toml:"domains"`    // SIP domain -> XMPP domain
	SIPDomain  string            `toml:"sip_domain"` // XMPP users' alice@domain is sip:alice@SIPDomain; default: the one SIP domain of domains
	MaxBackoff Duration          `toml:"max_backoff"`
}

// RLS is the [rls] table: the resource list server (RFC 4662).
type RLS struct {
	// Services is an RFC 4826 rls-services document, absolute after Load;
	// "" defines no list. It is read again on every reload.
	Services string `toml:"services"`
	// Throttle is the shortest time between two NOTIFYs of one list
	// subscription (RFC 4662 §6): the changes of a burst within it go in
	// one. 0 sends each change at once.
	Throttle Duration `toml:"throttle"`
	// Lists are the services of the Services file, read by Load.
	Lists []rls.List
}

// Admin is the [admin] table: the operator's HTTP API and /metrics.
type Admin struct {
	Listen string `toml:"listen"` // host:port; "" turns the API off
	Token  string `toml:"token"`  // when set, requests need "Authorization: Bearer TOKEN"
	Pprof  bool   `toml:"pprof"`  // serve /debug/pprof/ (CPU and heap profiles)
}

// Extension is one [extension.NAME] table.
type Extension struct {
	Name          string   `toml:"-"`    // the table's name
	Path          string   `toml:"path"` // absolute after Load
	MemoryLimitMB int      `toml:"memory_limit_mb"`
	CallTimeout   Duration `toml:"call_timeout"`
	Instances     int      `toml:"instances"`
	MaxInstances  int      `toml:"max_instances"` // default: 8, or instances if more
	Trusted       bool     `toml:"trusted"`
	// BackoffAfter failures in a row, within BackoffWindow, make calls
	// fail at once (503) for Backoff, doubled up to BackoffMax while the
	// call let through at the end of each fails; 0 never backs off.
	BackoffAfter  int      `toml:"backoff_after"`
	BackoffWindow Duration `toml:"backoff_window"`
	Backoff       Duration `toml:"backoff"`
	BackoffMax    Duration `toml:"backoff_max"`
	// Coalesce is [extension.NAME.coalesce]: per event package of the
	// module, a window ("200ms") within which a watcher's NOTIFYs are
	// coalesced (RFC 3856 §6.10); absent or "0s" is off.
	Coalesce map[string]Duration `toml:"coalesce"`

	// Config is the opaque [extension.NAME.config] table, flattened to the
	// string pairs that cross the ABI to the module (abi/ABI.md §4):
	// nested tables become dotted keys ("a.b"), strings are passed raw
	// (no quotes), integers, floats and booleans in their TOML spelling
	// ("3600", "0.5", "true"), datetimes in RFC 3339 (local ones without
	// an offset), arrays as their rendered elements joined with ",".
	// Arrays of arrays or of tables have no such spelling and are refused.
	Config map[string]string `toml:"-"`
}

// Duration is a Go duration string in TOML, such as "200ms".
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration: want a string such as \"200ms\" or \"2s\"", b)
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler, so a Config encodes back.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// defaults is the schema's defaults with paths still relative. Listeners
// are defaulted only when a file has no [[listen]]; extensions never are:
// a file lists the modules it wants, and may want none.
func defaults() *Config {
	return &Config{
		Server: Server{DataDir: "data", CacheDir: defaultCacheDir(), UserAgent: "presenced", LogLevel: "info", LogFormat: "text",
			GCPercent: 50},
		Listen: []Listener{
			{Transport: "udp", Address: "127.0.0.1:5060"},
			{Transport: "tcp", Address: "127.0.0.1:5060"},
		},
		Subscription: Expires{MinExpires: 60, MaxExpires: 86400},
		Publication:  Expires{MinExpires: 60, MaxExpires: 86400},
		Registrar:    Registrar{MinExpires: 60, MaxExpires: 86400, DefaultExpires: 3600},
		Store:        Store{Backend: "sqlite", IdleSubscriptions: Duration{DefaultIdleSubscriptions}},
		Admin:        Admin{Listen: "127.0.0.1:8070"},
		Auth: Auth{Methods: []string{"PUBLISH", "SUBSCRIBE", "REGISTER"}, OwnerOnly: true,
			NonceTTL: Duration{5 * time.Minute}, Algorithms: []string{"SHA-256", "MD5"}},
		Limits: Limits{MaxBodyBytes: 64 << 10, MaxMessageBytes: 65535, MaxSubscriptionsPerWatcher: 200,
			MaxWatchersPerPresentity: 10000, MaxPublicationsPerPresentity: 100, RequestsPerSecondPerSource: 2000,
			MaxInFlight: 1024, TCPIdleTimeout: Duration{5 * time.Minute}},
		Extension: map[string]*Extension{},
	}
}

// defaultCacheDir is where the compilation cache goes when the file does
// not say: systemd's CacheDirectory= ($CACHE_DIRECTORY) for a service, else
// the user's cache directory ($XDG_CACHE_HOME or ~/.cache) + "presenced";
// "" (no cache) when there is neither. Not data_dir: the cache is ~30 MB
// of compiled code that can be rebuilt, the wrong thing to fill a volume
// sized for state with.
func defaultCacheDir() string {
	if dir, _, _ := strings.Cut(os.Getenv("CACHE_DIRECTORY"), ":"); filepath.IsAbs(dir) {
		return dir
	}
	if dir, err := os.UserCacheDir(); err == nil {
		return filepath.Join(dir, "presenced")
	}
	return ""
}

func defaultExtension(name string) *Extension {
	return &Extension{
		Name:          name,
		MemoryLimitMB: 64,
		CallTimeout:   Duration{200 * time.Millisecond},
		Instances:     2,
		MaxInstances:  8,
		BackoffAfter:  5,
		BackoffWindow: Duration{10 * time.Second},
		Backoff:       Duration{time.Second},
		BackoffMax:    Duration{time.Minute},
		Config:        map[string]string{},
	}
}

// Default returns the embedded configuration, what the daemon runs with no
// file: 127.0.0.1:5060 over UDP and TCP, and the modules of this
// repository (pa, conference, dialog, mwi) as `make build` leaves them, relative to
// the current directory.
func Default() *Config {
	c := defaults()
	c.Dir = "."
	if wd, err := os.Getwd(); err == nil {
		c.Dir = wd
	}
	pa := defaultExtension("pa")
	pa.Path = "extensions/pa/pa.wasm"
	pa.Config["default_expires"] = "3600"
	conf := defaultExtension("conference")
	conf.Path = "extensions/conference/conference.wasm"
	conf.Config["use_partial_states"] = "false"
	dlg := defaultExtension("dialog")
	dlg.Path = "extensions/dialog/dialog.wasm"
	dlg.Config["default_expires"] = "3600"
	mwi := defaultExtension("mwi")
	mwi.Path = "extensions/mwi/mwi.wasm"
	mwi.Config["default_expires"] = "3600"
	// The modules built from this repository are trusted: without
	// termination checks they run ~5x faster (internal/extension/RATIONALE.md).
	pa.Trusted, conf.Trusted, dlg.Trusted, mwi.Trusted = true, true, true, true
	c.Extension = map[string]*Extension{"pa": pa, "conference": conf, "dialog": dlg, "mwi": mwi}
	c.resolve()
	return c
}

// Load reads the file at path, decodes it, applies defaults and validates.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// document is the decoding shape. Listen entries and extensions are
// decoded one by one: the former so an error names the right entry's line
// (toml names them all "listen.KEY"), the latter so each starts from the
// defaults and keeps its config table opaque.
type document struct {
	Server       Server
	Listen       []toml.Primitive
	Subscription Expires
	Publication  Expires
	Registrar    Registrar
	Store        Store
	Admin        Admin
	Web          Web
	Limits       Limits
	Auth         Auth
	XMPP         XMPP
	RLS          RLS
	Extension    map[string]toml.Primitive
}

// Parse is Load for bytes; name is the file name in errors, and its
// directory is the base of relative paths.
func Parse(name string, data []byte) (*Config, error) {
	c := defaults()
	c.File = name
	c.Dir = filepath.Dir(name)
	if abs, err := filepath.Abs(c.Dir); err == nil {
		c.Dir = abs
	}
	c.lines = locate(string(data))

	doc := document{Server: c.Server, Subscription: c.Subscription, Publication: c.Publication, Registrar: c.Registrar, Store: c.Store, Admin: c.Admin, Limits: c.Limits, Auth: c.Auth, XMPP: c.XMPP, RLS: c.RLS}
	md, err := toml.Decode(string(data), &doc)
	if err != nil {
		return nil, c.tomlError(err, -1)
	}
	c.Server, c.Subscription, c.Publication, c.Registrar, c.Store, c.Admin = doc.Server, doc.Subscription, doc.Publication, doc.Registrar, doc.Store, doc.Admin
	c.Limits, c.Auth, c.XMPP, c.Web, c.RLS = doc.Limits, doc.Auth, doc.XMPP, doc.Web, doc.RLS

	if md.IsDefined("listen") {
		c.Listen = make([]Listener, len(doc.Listen))
		for i, p := range doc.Listen {
			if err := md.PrimitiveDecode(p, &c.Listen[i]); err != nil {
				return nil, c.tomlError(err, i)
			}
		}
	}

	if err := c.mustBeTable(md, "extension"); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(doc.Extension))
	for n := range doc.Extension {
		names = append(names, n)
	}
	sort.Strings(names) // the same file fails the same way every time
	for _, n := range names {
		e := defaultExtension(n)
		var opaque struct {
			Config map[string]any `toml:"config"`
		}
		if err := md.PrimitiveDecode(doc.Extension[n], e); err != nil {
			return nil, c.tomlError(err, -1)
		}
		if !md.IsDefined("extension", n, "max_instances") {
			e.MaxInstances = max(e.MaxInstances, e.Instances)
		}
		if err := c.mustBeTable(md, "extension", n, "config"); err != nil {
			return nil, err
		}
		if err := md.PrimitiveDecode(doc.Extension[n], &opaque); err != nil {
			return nil, c.tomlError(err, -1)
		}
		if key, err := flatten("", opaque.Config, e.Config); err != nil {
			return nil, c.errorf("extension."+n+".config."+key, "%v", err)
		}
		c.Extension[n] = e
	}

	if err := c.unknownKeys(md); err != nil {
		return nil, err
	}

	// Normalise before validating: these are compared case-insensitively.
	for i := range c.Server.Domains {
		c.Server.Domains[i] = strings.ToLower(c.Server.Domains[i])
	}
	for i := range c.Listen {
		c.Listen[i].Transport = strings.ToLower(c.Listen[i].Transport)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c.resolve()
	if c.RLS.Services != "" {
		data, err := os.ReadFile(c.RLS.Services) // its error names the file
		if err == nil {
			if c.RLS.Lists, err = rls.ParseServices(data); err != nil {
				err = servicesError(c.RLS.Services, err)
			}
		}
		if err != nil {
			return nil, c.errorf("rls.services", "%v", err)
		}
	}
	return c, nil
}

// servicesError names the rls-services file in err, and for a fault of
// its XML the line as file:line, as the config's own errors are: the
// operator who broke it in an edit is sent to the place, not only to the
// [rls] key that names the file.
func servicesError(file string, err error) error {
	var se *xml.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("%s:%d: XML syntax error: %s", file, se.Line, se.Msg)
	}
	return fmt.Errorf("%s: %w", file, err)
}

// mustBeTable reports key if it is not a table: toml decodes any other
// value into a Go map as nothing, without an error.
func (c *Config) mustBeTable(md toml.MetaData, key ...string) error {
	if t := md.Type(key...); t != "" && t != "Hash" {
		return c.errorf(strings.Join(key, "."), "must be a table, got %s", strings.ToLower(t))
	}
	return nil
}

// unknownKeys refuses a key the schema does not have: a typo must not
// silently leave a default in place. toml matches struct fields ignoring
// case, so a key not spelled in lower case counts as unknown too.
func (c *Config) unknownKeys(md toml.MetaData) error {
	undecoded := map[string]bool{}
	for _, k := range md.Undecoded() {
		undecoded[k.String()] = true
	}
	for _, k := range md.Keys() {
		if len(k) > 3 && k[0] == "extension" && k[2] == "config" {
			continue // the module's own table
		}
		schema := k
		if len(k) > 1 && k[0] == "extension" {
			schema = append(toml.Key{k[0]}, k[2:]...) // the name is checked by Validate
		}
		s := k.String()
		if undecoded[s] || schema.String() != strings.ToLower(schema.String()) {
			return fmt.Errorf("%s unknown key %q", c.where(s), s)
		}
	}
	return nil
}

var (
	extensionName = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)
	// toml reports type mismatches as plain errors in this form.
	typeError = regexp.MustCompile(`(?s)^toml: (?:line (\d+) )?\(last key ("(?:[^"\\]|\\.)*")\): (.*)$`)
)

// tomlError re-spells an error of the toml package as file:line: key. For
// a [[listen]] entry (entry >= 0) the line is looked up again with the
// entry's index, as toml gives the line of the last entry with that key.
func (c *Config) tomlError(err error, entry int) error {
	var line int
	var key, msg string
	var pe toml.ParseError
	var ppe *toml.ParseError
	switch {
	case errors.As(err, &pe):
		line, key, msg = pe.Position.Line, pe.LastKey, pe.Message
	case errors.As(err, &ppe):
		line, key, msg = ppe.Position.Line, ppe.LastKey, ppe.Message
	default:
		m := typeError.FindStringSubmatch(err.Error())
		if m == nil {
			return fmt.Errorf("%s %v", c.where(""), err)
		}
		line, _ = strconv.Atoi(m[1])
		key, _ = strconv.Unquote(m[2])
		msg = m[3]
	}
	if rest, ok := strings.CutPrefix(key, "listen."); ok && entry >= 0 {
		line = c.lines.line(fmt.Sprintf("listen.%d.%s", entry, rest))
	}
	where := c.File
	if line > 0 {
		where += ":" + strconv.Itoa(line)
	}
	if key == "" {
		return fmt.Errorf("%s: %s", where, msg)
	}
	return fmt.Errorf("%s: key %q: %s", where, key, msg)
}

// where is "file:line:" for key, dropping what is unknown.
func (c *Config) where(key string) string {
	s := c.File
	if n := c.lines.line(key); n > 0 {
		s += ":" + strconv.Itoa(n)
	}
	if s == "" {
		return ""
	}
	return s + ":"
}

// errorf reports a bad value of key at the line that defines it, or at
// its nearest table when the value is a default.
func (c *Config) errorf(key, format string, args ...any) error {
	msg := fmt.Sprintf("key %q: %s", key, fmt.Sprintf(format, args...))
	if w := c.where(key); w != "" {
		msg = w + " " + msg
	}
	return errors.New(msg)
}

// Validate checks every value; Parse and Load call it. Keys of listeners
// are "listen.N.KEY", N counting [[listen]] entries from 0.
func (c *Config) Validate() error {
	s := c.Server
	if s.DataDir == "" {
		return c.errorf("server.data_dir", "must not be empty")
	}
	if s.UserAgent == "" {
		return c.errorf("server.user_agent", "must not be empty")
	}
	for _, d := range s.Domains {
		if d == "" || strings.ContainsAny(d, " \t@:/") {
			return c.errorf("server.domains", "%q is not a domain name", d)
		}
	}
	switch s.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return c.errorf("server.log_level", "must be debug, info, warn or error, got %q", s.LogLevel)
	}
	if s.LogFormat != "text" && s.LogFormat != "json" {
		return c.errorf("server.log_format", "must be text or json, got %q", s.LogFormat)
	}
	switch {
	case s.MemoryLimitMB < 0 || s.MemoryLimitMB > 1<<20:
		return c.errorf("server.memory_limit_mb", "must be 0 (none) up to 1048576, got %d", s.MemoryLimitMB)
	case s.GCPercent == -1 && s.MemoryLimitMB == 0:
		// GOGC=off alone never collects: the heap would only grow.
		return c.errorf("server.gc_percent", "-1 (off) needs a memory_limit_mb")
	case s.GCPercent < -1 || s.GCPercent == 0:
		return c.errorf("server.gc_percent", "must be -1 (off, with memory_limit_mb) or a percentage >= 1, got %d", s.GCPercent)
	}

	if len(c.Listen) == 0 {
		return c.errorf("listen", "at least one [[listen]] is needed")
	}
	seen := map[string]string{} // network and address: the transport on it
	for i, l := range c.Listen {
		key := "listen." + strconv.Itoa(i) + "."
		switch {
		case l.Transport == "":
			return c.errorf(key+"transport", "missing: udp or tcp")
		case l.Transport != "udp" && l.Transport != "tcp" && l.Transport != "tls" && l.Transport != "ws" && l.Transport != "wss":
			return c.errorf(key+"transport", "must be udp, tcp, tls, ws or wss, got %q", l.Transport)
		case l.secure() && (l.CertFile == "" || l.KeyFile == ""):
			return c.errorf(key+"transport", "%s needs cert_file and key_file", l.Transport)
		case !l.secure() && (l.CertFile != "" || l.KeyFile != ""):
			return c.errorf(key+"cert_file", "%s takes no certificate: tls and wss do", l.Transport)
		case l.Address == "":
			return c.errorf(key+"address", "missing: host:port")
		}
		_, port, err := net.SplitHostPort(l.Address)
		if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 0 || n > 65535 {
			return c.errorf(key+"address", "must be host:port, got %q", l.Address)
		}
		// tcp, tls, ws and wss all bind a TCP port: two of them cannot
		// share one. Port 0 is a free port each.
		network := "tcp"
		if l.Transport == "udp" {
			network = "udp"
		}
		if by, ok := seen[network+" "+l.Address]; ok && port != "0" {
			return c.errorf(key+"address", "%s %s is already listened on", by, l.Address)
		}
		seen[network+" "+l.Address] = l.Transport
	}

	for _, t := range []struct {
		table string
		e     Expires
	}{{"subscription", c.Subscription}, {"publication", c.Publication},
		{"registrar", Expires{c.Registrar.MinExpires, c.Registrar.MaxExpires}}} {
		if t.e.MinExpires < 1 {
			return c.errorf(t.table+".min_expires", "must be >= 1, got %d", t.e.MinExpires)
		}
		if t.e.MaxExpires < t.e.MinExpires {
			// Blame the key the file set: a default is not the mistake.
			if c.lines.has(t.table + ".max_expires") {
				return c.errorf(t.table+".max_expires", "must be >= min_expires (%d), got %d", t.e.MinExpires, t.e.MaxExpires)
			}
			return c.errorf(t.table+".min_expires", "must be <= max_expires (%d), got %d", t.e.MaxExpires, t.e.MinExpires)
		}
	}

	if c.Auth.UsersFile != "" && len(c.Auth.Realms) == 0 {
		return c.errorf("auth.realms", "users_file is set but no realm requires authentication")
	}
	for i, m := range c.Auth.Methods {
		switch c.Auth.Methods[i] = strings.ToUpper(m); c.Auth.Methods[i] {
		case "PUBLISH", "SUBSCRIBE", "REGISTER":
		default:
			return c.errorf("auth.methods", "%q: only PUBLISH, SUBSCRIBE and REGISTER can require authentication", m)
		}
	}
	for i := range c.Auth.Realms {
		c.Auth.Realms[i] = strings.ToLower(c.Auth.Realms[i])
	}

	if x := c.XMPP; x.Server != "" {
		if _, _, err := net.SplitHostPort(x.Server); err != nil {
			return c.errorf("xmpp.server", "must be host:port, got %q", x.Server)
		}
		if x.Domain == "" || x.Secret == "" || len(x.Domains) == 0 {
			return c.errorf("xmpp", "server needs domain, secret and at least one entry in [xmpp.domains]")
		}
	}

	if c.RLS.Throttle.Duration < 0 {
		return c.errorf("rls.throttle", "must not be negative, got %s", c.RLS.Throttle)
	}

	if c.Admin.Listen != "" {
		host, _, err := net.SplitHostPort(c.Admin.Listen)
		if err != nil {
			return c.errorf("admin.listen", "must be host:port or empty, got %q", c.Admin.Listen)
		}
		// Whoever reaches the API can end subscriptions, reload modules
		// and read profiles: without a token, only this host may.
		if c.Admin.Token == "" && !loopback(host) {
			return c.errorf("admin.listen", "%q is reachable beyond this host without a token: "+
				"set admin.token, or listen on loopback (127.0.0.1, [::1] or localhost)", c.Admin.Listen)
		}
	}

	if w := c.Web; w.Listen != "" {
		if _, _, err := net.SplitHostPort(w.Listen); err != nil {
			return c.errorf("web.listen", "must be host:port or empty, got %q", w.Listen)
		}
		if w.Dir == "" {
			return c.errorf("web.dir", "missing: the folder to serve, e.g. \"web/buddylist\"")
		}
		if (w.CertFile == "") != (w.KeyFile == "") {
			return c.errorf("web.cert_file", "HTTPS needs both cert_file and key_file")
		}
	}

	if d := c.Store.IdleSubscriptions.Duration; d < 0 {
		return c.errorf("store.idle_subscriptions", "must not be negative (0 keeps every subscription in memory), got %s", d)
	}
	switch st := c.Store; st.Backend {
	case "sqlite", "memory":
		if st.DSN != "" {
			return c.errorf("store.dsn", "is for backend \"postgres\"; backend is %q", st.Backend)
		}
		if st.Lease.Duration != 0 {
			return c.errorf("store.lease", "is for backend \"postgres\"; backend is %q", st.Backend)
		}
	case "postgres":
		u, err := url.Parse(st.DSN)
		switch {
		case st.DSN == "":
			return c.errorf("store.dsn", "missing: backend \"postgres\" needs the database's URL, "+
				"e.g. \"postgres://presenced@db.example.com/presenced\"")
		case err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql"):
			// Not the value itself: it may hold a password.
			return c.errorf("store.dsn", "must be a postgres:// or postgresql:// URL, got %s", st.RedactedDSN())
		case u.Path == "" || u.Path == "/":
			return c.errorf("store.dsn", "names no database: %s", st.RedactedDSN())
		case st.Lease.Duration != 0 && st.Lease.Duration < time.Second:
			// Renewed three times per lease, each a round trip that may
			// wait on a busy database: below a second a pause would cost
			// a live node its dialogs.
			return c.errorf("store.lease", "must be at least 1s, got %s", st.Lease.Duration)
		}
	default:
		return c.errorf("store.backend", "must be sqlite, postgres or memory, got %q", st.Backend)
	}

	for _, v := range c.Limits.TrustedSources {
		if _, err := parsePrefix(v); err != nil {
			return c.errorf("limits.trusted_sources", "%q is not an address or a CIDR (such as 10.0.0.0/8)", v)
		}
	}

	if r := c.Registrar; r.DefaultExpires < r.MinExpires || r.DefaultExpires > r.MaxExpires {
		return c.errorf("registrar.default_expires", "must be within min_expires and max_expires (%d..%d), got %d",
			r.MinExpires, r.MaxExpires, r.DefaultExpires)
	}

	names := make([]string, 0, len(c.Extension))
	for n := range c.Extension {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		e, key := c.Extension[n], "extension."+n
		switch {
		case !extensionName.MatchString(n):
			return c.errorf(key, "an extension name is a lower-case letter, then letters, digits, - or _")
		case e.Path == "":
			return c.errorf(key+".path", "missing: the module's .wasm file")
		case e.MemoryLimitMB < 1 || e.MemoryLimitMB > 4096:
			return c.errorf(key+".memory_limit_mb", "must be 1..4096, got %d", e.MemoryLimitMB)
		case e.CallTimeout.Duration <= 0 || e.CallTimeout.Duration > time.Minute:
			return c.errorf(key+".call_timeout", "must be above 0 and at most 60s, got %s", e.CallTimeout.Duration)
		case e.Instances < 1 || e.Instances > 64:
			return c.errorf(key+".instances", "must be 1..64, got %d", e.Instances)
		case e.MaxInstances < e.Instances || e.MaxInstances > 64:
			return c.errorf(key+".max_instances", "must be instances (%d) to 64, got %d", e.Instances, e.MaxInstances)
		case e.BackoffAfter < 0 || e.BackoffAfter > 1000:
			return c.errorf(key+".backoff_after", "must be 0 (never) to 1000, got %d", e.BackoffAfter)
		case e.BackoffWindow.Duration <= 0 || e.BackoffWindow.Duration > time.Hour:
			return c.errorf(key+".backoff_window", "must be above 0 and at most 1h, got %s", e.BackoffWindow.Duration)
		case e.Backoff.Duration <= 0 || e.Backoff.Duration > time.Hour:
			return c.errorf(key+".backoff", "must be above 0 and at most 1h, got %s", e.Backoff.Duration)
		case e.BackoffMax.Duration < e.Backoff.Duration || e.BackoffMax.Duration > time.Hour:
			return c.errorf(key+".backoff_max", "must be backoff (%s) to 1h, got %s", e.Backoff.Duration, e.BackoffMax.Duration)
		}
		for event, w := range e.Coalesce {
			if w.Duration < 0 || w.Duration > time.Minute {
				return c.errorf(key+".coalesce."+event, "must be 0 (off) to 60s, got %s", w.Duration)
			}
		}
	}
	return nil
}

// loopback reports whether a listener on host is reachable from this host
// only. An empty host is every interface; a name other than localhost may
// resolve to any address, now or later, so it is not counted as loopback.
func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// resolve makes relative paths relative to c.Dir, so the daemon reads the
// same files whatever its working directory.
func (c *Config) resolve() {
	abs := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(c.Dir, p)
	}
	c.Server.DataDir = abs(c.Server.DataDir)
	if c.Server.CacheDir != "" {
		c.Server.CacheDir = abs(c.Server.CacheDir)
	}
	if c.Store.Path == "" {
		c.Store.Path = filepath.Join(c.Server.DataDir, "presenced.db")
	}
	c.Store.Path = abs(c.Store.Path)
	for _, e := range c.Extension {
		e.Path = abs(e.Path)
	}
	if c.Auth.UsersFile != "" {
		c.Auth.UsersFile = abs(c.Auth.UsersFile)
	}
	if c.RLS.Services != "" {
		c.RLS.Services = abs(c.RLS.Services)
	}
	for i := range c.Listen {
		if l := &c.Listen[i]; l.secure() {
			l.CertFile, l.KeyFile = abs(l.CertFile), abs(l.KeyFile)
		}
	}
	if w := &c.Web; w.Listen != "" {
		w.Dir = abs(w.Dir)
		if w.CertFile != "" {
			w.CertFile, w.KeyFile = abs(w.CertFile), abs(w.KeyFile)
		}
	}
}
