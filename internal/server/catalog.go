package server

import (
	"fmt"
	"strings"

	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/internal/extension"
)

// catalog is what the loaded modules serve. It is immutable: Reload builds
// a new one and swaps it in, so a request sees one consistent catalog.
type catalog struct {
	modules  []*extension.Module
	packages map[string]*eventPackage
	winfoOf  map[string]*eventPackage // event package -> its watcher-info package
	binders  []*eventPackage          // packages that take registrar bindings
	allow    string                   // Allow-Events value
}

func (s *Server) cat() *catalog { return s.catalog.Load() }

// Modules are the extension modules serving now.
func (s *Server) Modules() []*extension.Module { return s.cat().modules }

func newCatalog(opt Options, mods []*extension.Module) (*catalog, error) {
	c := &catalog{modules: mods, packages: map[string]*eventPackage{}, winfoOf: map[string]*eventPackage{}}
	var events []string
	for _, m := range mods {
		for _, p := range m.Manifest().Packages {
			name := strings.ToLower(p.Event)
			if other, dup := c.packages[name]; dup {
				return nil, fmt.Errorf("event package %q served by both %q and %q", name, other.mod.Name(), m.Name())
			}
			accept := p.Accept
			ep := &eventPackage{name: name, info: p, mod: m, accept: map[string]bool{}, acceptList: &accept}
			for _, a := range p.Accept {
				ep.accept[abi.MediaType(a)] = true
			}
			if ep.info.DefaultExpires == 0 {
				ep.info.DefaultExpires = 3600
			}
			ep.subscription = narrow(opt.Subscription, p.MinExpires, p.MaxExpires)
			ep.publication = narrow(opt.Publication, p.MinExpires, p.MaxExpires)
			c.packages[name] = ep
			events = append(events, name)
			if p.Bindings {
				c.binders = append(c.binders, ep)
			}
		}
	}
	for _, ep := range c.packages {
		if of := strings.ToLower(ep.info.WatcherInfoOf); of != "" {
			if c.packages[of] == nil {
				return nil, fmt.Errorf("%s: watcher info of %q, which no module serves", ep.name, of)
			}
			c.winfoOf[of] = ep
		}
	}
	c.allow = strings.Join(events, ", ")
	return c, nil
}
