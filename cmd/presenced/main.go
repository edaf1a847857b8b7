// Command presenced is the presence server daemon: it reads the TOML
// config, loads the extension modules, and serves SIP until SIGINT or
// SIGTERM. Wiring only; the server lives in internal/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/internal/admin"
	"github.com/presenced/presenced/internal/auth"
	"github.com/presenced/presenced/internal/config"
	"github.com/presenced/presenced/internal/extension"
	"github.com/presenced/presenced/internal/metrics"
	"github.com/presenced/presenced/internal/server"
	"github.com/presenced/presenced/internal/store"
	"github.com/presenced/presenced/internal/store/postgres"
	"github.com/presenced/presenced/internal/xmpp"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	configPath := flag.String("config", "", "TOML config `file` (default: embedded defaults)")
	check := flag.String("check-config", "", "validate the config `file` and its modules, then exit")
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Printf("presenced %s (ABI v%d.%d)\n", version, abi.Major, abi.Minor)
		return
	}
	if *check != "" {
		*configPath = *check
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "presenced:", err)
		os.Exit(2)
	}
	log := newLogger(cfg.Server)
	setRuntime(cfg.Server, log)
	if err := run(cfg, log, *check != ""); err != nil {
		log.Error("presenced stopped", "err", err)
		os.Exit(1)
	}
}

func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Default(), nil
	}
	return config.Load(path)
}

func newLogger(s config.Server) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(s.LogLevel)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if s.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

func run(cfg *config.Config, log *slog.Logger, checkOnly bool) error {
	ctx := context.Background()
	var adminLn, webLn net.Listener
	if !checkOnly {
		// First, before a socket is bound or the store opened: a daemon
		// already on this data_dir must not be disturbed at all.
		lock, err := lockDir(cfg.Server.DataDir, "data directory")
		if err != nil {
			return err
		}
		defer lock.Close()
		if dir := filepath.Dir(cfg.Store.Path); cfg.Store.Backend == "sqlite" && dir != cfg.Server.DataDir {
			lock, err := lockDir(dir, "store directory")
			if err != nil {
				return err
			}
			defer lock.Close()
		}
		removeOldCache(cfg, log)
		// Then every listener, before the modules are compiled, the store
		// opened or its state restored: a taken port fails the start
		// with nothing done.
		if cfg.Admin.Listen != "" {
			if adminLn, err = net.Listen("tcp", cfg.Admin.Listen); err != nil {
				return fmt.Errorf("admin listener: %w", err)
			}
			defer adminLn.Close()
		}
		if cfg.Web.Listen != "" {
			if webLn, err = listenWeb(cfg.Web); err != nil {
				return err
			}
			defer webLn.Close()
		}
		if err := probeSIP(cfg.Listen); err != nil {
			return err
		}
	}
	cacheDir := compilationCache(cfg.Server.CacheDir, log)
	mods, err := loadModules(ctx, cfg, cacheDir, log)
	if err != nil {
		closeAll(mods)
		return err
	}
	if checkOnly {
		closeAll(mods)
		fmt.Printf("%s: ok (%d extensions)\n", cfg.File, len(mods))
		return nil
	}
	var srv *server.Server
	m := metrics.New(func() []*extension.Module { return srv.Modules() })
	st, err := openStore(ctx, cfg.Store)
	if err != nil {
		closeAll(mods)
		return err
	}
	defer st.Close()
	opts := server.Options{
		UserAgent:    cfg.Server.UserAgent,
		Domains:      cfg.Server.Domains,
		Subscription: server.Bounds{Min: cfg.Subscription.MinExpires, Max: cfg.Subscription.MaxExpires},
		Publication:  server.Bounds{Min: cfg.Publication.MinExpires, Max: cfg.Publication.MaxExpires},
		Registrar: server.RegistrarBounds{Min: cfg.Registrar.MinExpires, Max: cfg.Registrar.MaxExpires,
			Default: cfg.Registrar.DefaultExpires},
		Limits: server.Limits{MaxBodyBytes: cfg.Limits.MaxBodyBytes, MaxMessageBytes: cfg.Limits.MaxMessageBytes,
			MaxSubscriptionsPerWatcher:   cfg.Limits.MaxSubscriptionsPerWatcher,
			MaxWatchersPerPresentity:     cfg.Limits.MaxWatchersPerPresentity,
			MaxPublicationsPerPresentity: cfg.Limits.MaxPublicationsPerPresentity,
			RequestsPerSecondPerSource:   cfg.Limits.RequestsPerSecondPerSource,
			MaxInFlight:                  cfg.Limits.MaxInFlight, TCPIdleTimeout: cfg.Limits.TCPIdleTimeout.Duration,
			TrustedSources: cfg.Limits.Trusted()},
		Modules:           mods,
		Store:             m.Store(st),
		Lease:             cfg.Store.Lease.Duration,
		IdleSubscriptions: cfg.Store.IdleSubscriptions.Duration,
		Node:              nodeName(cfg.Server.DataDir),
		Logger:            log,
		Metrics:           m,
		Lists:             cfg.RLS.Lists,
		ListThrottle:      cfg.RLS.Throttle.Duration,
	}
	for _, l := range cfg.Listen {
		opts.Listen = append(opts.Listen, server.Listener{Transport: l.Transport, Address: l.Address,
			Advertise: l.Advertise, CertFile: l.CertFile, KeyFile: l.KeyFile})
	}
	if opts.Auth, err = newAuth(cfg.Auth); err != nil {
		closeAll(mods)
		return err
	}
	jabber, err := newJabber(cfg.XMPP, func() *server.Server { return srv }, log)
	if err != nil {
		closeAll(mods)
		return err
	}
	if jabber != nil {
		opts.Watch = jabber
	}
	srv, err = server.New(opts)
	if err != nil {
		closeAll(mods)
		return err
	}
	if err := srv.Start(); err != nil {
		closeAll(mods)
		return err
	}
	defer func() { closeAll(srv.Modules()) }()
	{
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go releaseWhenIdle(ctx, 15*time.Second)
	}
	if jabber != nil {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go jabber.Run(ctx)
	}
	r := &reloader{file: cfg.File, running: cfg, cacheDir: cacheDir, srv: srv, log: log}
	if adminLn != nil {
		stop := serveAdmin(adminLn, cfg.Admin, srv, r.reload, m, log)
		defer stop()
	}
	if webLn != nil {
		stop := serveWeb(webLn, cfg.Web, srv.Addrs(), log)
		defer stop()
	}
	// Signals are caught before the daemon says it serves: a SIGTERM sent
	// as soon as it does (a supervisor, a test) must stop it cleanly, not
	// kill it.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	log.Info("presenced serving", "version", version, "listen", srv.Addrs(), "admin", cfg.Admin.Listen, "config", cfg.File)
	for s := range sig {
		if s == syscall.SIGHUP {
			if err := r.reload(); err != nil {
				log.Error("reload refused; the running configuration stays", "err", err)
			}
			continue
		}
		log.Info("stopping", "signal", s.String())
		break
	}
	return srv.Close()
}

// compilationCache returns dir if wazero's compilation cache can be kept
// there, or "" (no cache) with a warning: the cache only saves compiling at
// start, and a daemon that can serve must not refuse to for want of it.
func compilationCache(dir string, log *slog.Logger) string {
	if dir == "" {
		log.Info("no compilation cache (server.cache_dir is empty): the modules are compiled at every start")
		return ""
	}
	// 0700: the cache holds native code the daemon will run.
	err := os.MkdirAll(dir, 0o700)
	if err == nil {
		var f *os.File
		if f, err = os.CreateTemp(dir, ".write-test-*"); err == nil {
			f.Close()
			os.Remove(f.Name())
		}
	}
	if err != nil {
		log.Warn("compilation cache unusable, running without it: the modules are compiled at every start",
			"cache_dir", dir, "err", err)
		return ""
	}
	return dir
}

// removeOldCache deletes data_dir/wasm-cache, where daemons before
// server.cache_dir kept the compilation cache: ~30 MB that nothing reads
// any more, on the volume sized for state. Called under the data_dir lock,
// so no daemon is using it.
func removeOldCache(cfg *config.Config, log *slog.Logger) {
	old := filepath.Join(cfg.Server.DataDir, "wasm-cache")
	if c := cfg.Server.CacheDir; c == old || strings.HasPrefix(c, old+string(filepath.Separator)) {
		return
	}
	if _, err := os.Stat(old); err != nil {
		return
	}
	if err := os.RemoveAll(old); err != nil {
		log.Warn("old compilation cache not removed", "dir", old, "err", err)
		return
	}
	log.Info("old compilation cache removed from data_dir; it is now in server.cache_dir", "dir", old, "cache_dir", cfg.Server.CacheDir)
}

// jabber is the XMPP backend: watchers of presence resources in a mapped
// domain make the connector subscribe on their behalf, and what it hears is
// handed to the presence module; changes of presence reach the XMPP users
// subscribed to SIP users.
type jabber struct{ *xmpp.Component }

func (j jabber) Watch(event, resource string) {
	if event == "presence" {
		j.Component.Watch(resource)
	}
}

func (j jabber) Unwatch(event, resource string) {
	if event == "presence" {
		j.Component.Unwatch(resource)
	}
}

func (j jabber) Changed(event, resource string) {
	if event == "presence" {
		j.Component.Changed(resource)
	}
}

// jabberHost is the server as the connector sees it.
type jabberHost struct {
	srv func() *server.Server
	log *slog.Logger
}

func (h jabberHost) Presence(uri string, p abi.XMPPPresence) {
	if err := h.srv().Input("presence", uri, abi.Request{Op: abi.OpXMPP, XMPP: &p}); err != nil {
		h.log.Warn("XMPP presence not applied", "resource", uri, "err", err)
	}
}

func (h jabberHost) Render(uri, watcher string) (string, []byte, error) {
	status, _, body, err := h.srv().Render("presence", uri, watcher)
	return status, body, err
}

func newJabber(c config.XMPP, srv func() *server.Server, log *slog.Logger) (*jabber, error) {
	if c.Server == "" {
		return nil, nil
	}
	comp, err := xmpp.New(xmpp.Config{Server: c.Server, Domain: c.Domain, Secret: c.Secret, User: c.User,
		Domains: c.Domains, SIPDomain: c.SIPDomain, MaxBackoff: c.MaxBackoff.Duration, Logger: log.With("component", "xmpp")},
		jabberHost{srv: srv, log: log})
	if err != nil {
		return nil, fmt.Errorf("[xmpp]: %w", err)
	}
	return &jabber{comp}, nil
}

// newAuth builds digest authentication from [auth]; nil when it is off.
func newAuth(c config.Auth) (*server.Auth, error) {
	if c.UsersFile == "" {
		return nil, nil
	}
	users, err := auth.LoadUsers(c.UsersFile)
	if err != nil {
		return nil, err
	}
	a, err := auth.New(auth.Options{Users: users, NonceTTL: c.NonceTTL.Duration, Algorithms: c.Algorithms,
		Secret: []byte(c.Secret)})
	if err != nil {
		return nil, fmt.Errorf("[auth]: %w", err)
	}
	return &server.Auth{Authenticator: a, Realms: c.Realms, Methods: c.Methods, OwnerOnly: c.OwnerOnly}, nil
}

func closeAll(mods []*extension.Module) {
	for _, m := range mods {
		m.Close(context.Background())
	}
}

// reloader re-reads the config file and swaps in its modules (SIGHUP,
// presencectl reload). Only extensions change without a restart; every
// other setting (listeners, data_dir, store, admin, bounds, limits...)
// keeps its start-up value, and each one changed in the file is logged,
// by key, as needing one.
type reloader struct {
	mu       sync.Mutex
	file     string
	running  *config.Config // the start-up configuration, outside [extension.*] the one in force
	cacheDir string
	srv      *server.Server
	log      *slog.Logger
}

func (r *reloader) reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	cfg, err := loadConfig(r.file)
	if err != nil {
		return err
	}
	ctx := context.Background()
	mods, err := loadModules(ctx, cfg, r.cacheDir, r.log)
	if err != nil {
		closeAll(mods)
		return err
	}
	old, err := r.srv.Reload(mods)
	if err != nil {
		closeAll(mods)
		return err
	}
	// The old modules finish the calls they are in, then go.
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, m := range old {
			if err := m.Drain(ctx); err != nil {
				r.log.Warn("old extension drained late", "err", err)
			}
		}
	}()
	// The rls-services file is read again: its lists change live, and
	// their subscribers get the new full state.
	if err := r.srv.SetLists(cfg.RLS.Lists); err != nil {
		return fmt.Errorf("extensions reloaded, lists kept: %w", err)
	}
	for _, key := range config.RestartNeeded(r.running, cfg) {
		r.log.Warn("setting changed in the file needs a restart to take effect; the running value stays",
			"key", key, "config", r.file)
	}
	r.log.Info("reloaded", "config", r.file, "extensions", len(mods))
	return nil
}

// serveAdmin serves the admin HTTP API on ln; stop shuts it down.
func serveAdmin(ln net.Listener, c config.Admin, srv *server.Server, reload func() error, m *metrics.Metrics, log *slog.Logger) (stop func()) {
	h := admin.New(srv, admin.Options{Token: c.Token, Reload: reload, Logger: log, Profiling: c.Pprof,
		Metrics: promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})})
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	log.Info("admin API serving", "addr", ln.Addr().String())
	return func() { hs.Close() }
}

// probeSIP binds and releases each SIP listener's address, so that one
// taken fails the start before the store is opened. The server binds its
// own sockets (server.Options takes addresses) only once the store is
// open; it still reports a port taken in between.
func probeSIP(listen []config.Listener) error {
	for _, l := range listen {
		if _, port, _ := net.SplitHostPort(l.Address); port == "0" {
			continue // any free port: nothing to be taken
		}
		var err error
		if l.Transport == "udp" {
			var pc net.PacketConn
			if pc, err = net.ListenPacket("udp", l.Address); err == nil {
				pc.Close()
			}
		} else {
			var ln net.Listener
			if ln, err = net.Listen("tcp", l.Address); err == nil {
				ln.Close()
			}
		}
		if err != nil {
			return fmt.Errorf("listen %s %s: %w", l.Transport, l.Address, err)
		}
	}
	return nil
}

// storeOpenTimeout bounds the connection to PostgreSQL and its
// migrations at start: a database out of reach stops the start, named.
const storeOpenTimeout = 30 * time.Second

func openStore(ctx context.Context, c config.Store) (store.Store, error) {
	switch c.Backend {
	case "memory":
		return store.NewMemory(), nil
	case "postgres":
		ctx, cancel := context.WithTimeout(ctx, storeOpenTimeout)
		defer cancel()
		return postgres.Open(ctx, c.DSN)
	}
	if err := os.MkdirAll(filepath.Dir(c.Path), 0o755); err != nil {
		return nil, err
	}
	return store.OpenSQLite(c.Path)
}

func windows(c map[string]config.Duration) map[string]time.Duration {
	w := make(map[string]time.Duration, len(c))
	for event, d := range c {
		w[event] = d.Duration
	}
	return w
}

// loadModules loads every extension in name order, so logs and conflicts
// read the same on every start.
func loadModules(ctx context.Context, cfg *config.Config, cacheDir string, log *slog.Logger) ([]*extension.Module, error) {
	names := make([]string, 0, len(cfg.Extension))
	for name := range cfg.Extension {
		names = append(names, name)
	}
	sort.Strings(names)
	var mods []*extension.Module
	for _, name := range names {
		e := cfg.Extension[name]
		m, err := extension.Load(ctx, extension.Spec{
			Name: name, Path: e.Path, MemoryLimitMB: e.MemoryLimitMB,
			CallTimeout: e.CallTimeout.Duration, Instances: e.Instances, MaxInstances: e.MaxInstances, Trusted: e.Trusted, Coalesce: windows(e.Coalesce),
			Backoff: extension.Backoff{After: e.BackoffAfter, Window: e.BackoffWindow.Duration,
				First: e.Backoff.Duration, Max: e.BackoffMax.Duration},
			Config: e.Config, CacheDir: cacheDir, Logger: log,
		})
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				err = fmt.Errorf("%w (run `make build` to build the modules)", err)
			}
			return mods, err
		}
		var events []string
		for _, p := range m.Manifest().Packages {
			events = append(events, p.Event)
		}
		log.Info("extension loaded", "name", name, "events", events, "sha256", m.SHA256()[:12])
		mods = append(mods, m)
	}
	return mods, nil
}

// nodeName names this daemon among those sharing a database: its host and
// data_dir, which one process at a time holds (lockDir), so that back
// after a crash it takes its dialogs at once (server.Options.Node).
func nodeName(dataDir string) string {
	host, _ := os.Hostname()
	return host + ":" + dataDir
}
