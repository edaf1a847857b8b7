// Package siptest is the kit's SIP harness: it starts a real presenced
// server on 127.0.0.1 (UDP and TCP) running a module's package built from
// source, and gives a test raw SIP peers to publish, subscribe and read
// the NOTIFYs watchers get. It hands out its own types and sipgo's parsed
// messages, never the host's, so a module's end-to-end tests import
// nothing of internal/.
//
// The server is the host's, so this package does not build for wasip1: a
// module's test that uses it carries the build constraint !wasip1.
package siptest

import (
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/extension"
	"github.com/presenced/presenced/internal/extension/extensiontest"
	"github.com/presenced/presenced/internal/server"
	"github.com/presenced/presenced/internal/store"
)

// Module is a module the server runs, as an [extension.NAME] block of
// presenced.toml would give it.
type Module struct {
	Package string            // the module's main package: an import path or a directory
	Config  map[string]string // its config table
	// Coalesce is the coalescing window of each event package it serves
	// that has one ([extension.NAME.coalesce]): changes within it reach a
	// watcher as one NOTIFY.
	Coalesce map[string]time.Duration
	Trusted  bool // compiled without termination checks, as presenced.toml runs pa and conference
}

// Server is a presenced server running for one test, on an in-memory
// store. It is closed when the test ends.
type Server struct {
	srv   *server.Server
	store store.Store
	addr  map[string]string // "UDP"/"TCP": host:port
}

// Start builds each module and serves them on 127.0.0.1 UDP and TCP, with
// subscription, publication and registration expiries allowed from 1 s to
// an hour. A test run with -v logs the server at debug level to stderr.
func Start(tb testing.TB, mods ...Module) *Server {
	tb.Helper()
	var loaded []*extension.Module
	for _, m := range mods {
		spec := extensiontest.Spec(tb, m.Package, m.Config)
		spec.Coalesce = m.Coalesce
		if m.Trusted {
			// compiled afresh, as extensiontest.LoadTrusted does: the
			// shared cache holds checked compilations
			spec.Trusted, spec.CacheDir = true, ""
		}
		loaded = append(loaded, extensiontest.LoadSpec(tb, spec))
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	st := store.NewMemory()
	srv, err := server.New(server.Options{
		Listen: []server.Listener{
			{Transport: "udp", Address: "127.0.0.1:0"},
			{Transport: "tcp", Address: "127.0.0.1:0"},
		},
		Subscription: server.Bounds{Min: 1, Max: 3600},
		Publication:  server.Bounds{Min: 1, Max: 3600},
		Registrar:    server.RegistrarBounds{Min: 1, Max: 3600, Default: 3600},
		Modules:      loaded,
		Store:        st,
		Logger:       log,
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Close() })
	s := &Server{srv: srv, store: st, addr: map[string]string{}}
	for _, a := range srv.Addrs() {
		tr, hp, _ := strings.Cut(a, ":")
		s.addr[strings.ToUpper(tr)] = hp
	}
	return s
}

// Addr is the host:port the server listens on over transport, "UDP" or
// "TCP".
func (s *Server) Addr(transport string) string { return s.addr[transport] }

// Peer opens a peer to the server over transport, "UDP" or "TCP".
func (s *Server) Peer(tb testing.TB, transport string) *Peer {
	tb.Helper()
	return NewPeer(tb, transport, s.addr[transport])
}

// Command runs an operator's command on the module serving event, as the
// admin API does (presencectl ext NAME COMMAND): on resource, or on every
// resource of event when resource is "". It returns once the change is
// committed, with the module's answer; the NOTIFYs follow.
func (s *Server) Command(event, resource, name string, args map[string]string) (string, error) {
	return s.srv.Command(event, resource, name, args)
}

// Resource is what the store holds for one resource of one event package:
// the state its module last wrote.
type Resource struct {
	Event, URI string
	State      []byte
}

// Resources returns every resource state the store holds now, for a test
// of what a module keeps (and what it does not).
func (s *Server) Resources(tb testing.TB) []Resource {
	tb.Helper()
	snap, err := s.store.Load(tb.Context())
	if err != nil {
		tb.Fatal(err)
	}
	out := make([]Resource, 0, len(snap.Resources))
	for _, r := range snap.Resources {
		out = append(out, Resource{Event: r.Event, URI: r.Resource, State: r.State})
	}
	return out
}
