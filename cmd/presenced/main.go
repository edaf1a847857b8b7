// Command presenced is the presence server daemon: it reads the TOML
// config, loads the extension modules, and serves SIP until SIGINT or
// SIGTERM. Wiring only; the server lives in core/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"syscall"

	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/core/config"
	"github.com/presenced/presenced/core/extension"
	"github.com/presenced/presenced/core/server"
	"github.com/presenced/presenced/core/store"
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
	cacheDir := filepath.Join(cfg.Server.DataDir, "wasm-cache")
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	mods, err := loadModules(ctx, cfg, cacheDir, log)
	defer func() {
		for _, m := range mods {
			m.Close(ctx)
		}
	}()
	if err != nil {
		return err
	}
	if checkOnly {
		fmt.Printf("%s: ok (%d extensions)\n", cfg.File, len(mods))
		return nil
	}
	st, err := openStore(cfg.Store)
	if err != nil {
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
		Modules: mods,
		Store:   st,
		Logger:  log,
	}
	for _, l := range cfg.Listen {
		opts.Listen = append(opts.Listen, server.Listener{Transport: l.Transport, Address: l.Address, Advertise: l.Advertise})
	}
	srv, err := server.New(opts)
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	log.Info("presenced serving", "version", version, "listen", srv.Addrs(), "config", cfg.File)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	s := <-sig
	log.Info("stopping", "signal", s.String())
	return srv.Close()
}

func openStore(c config.Store) (store.Store, error) {
	if c.Backend == "memory" {
		return store.NewMemory(), nil
	}
	if err := os.MkdirAll(filepath.Dir(c.Path), 0o755); err != nil {
		return nil, err
	}
	return store.OpenSQLite(c.Path)
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
			CallTimeout: e.CallTimeout.Duration, Instances: e.Instances, Trusted: e.Trusted,
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
