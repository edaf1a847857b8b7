package sdk

import (
	"fmt"
	"slices"
)

// Handler handles the ops of one event package: a Module without Init.
// It may implement BindingHandler, WatcherEventHandler, CommandHandler and
// XMPPHandler too.
type Handler interface {
	Publish(req *Request) (*Response, error)
	Unpublish(req *Request) (*Response, error)
	Render(req *Request) (*Response, error)
}

// Mux is a Module serving several event packages with a Handler each, so
// that no handler asks which package a request is for: each op goes to the
// handler of req.Event, as an HTTP request goes to the handler of its path
// in net/http's ServeMux. An op the package's handler does not implement
// is unsupported, and a request for a package with no handler is refused
// with 489 (Bad Event).
type Mux struct {
	init     func(name string, cfg Config) (Manifest, error)
	handlers map[string]Handler
}

// NewMux returns a Mux whose Init is init: it reads the config and returns
// the manifest, which must list exactly the packages given to Handle.
func NewMux(init func(name string, cfg Config) (Manifest, error)) *Mux {
	return &Mux{init: init, handlers: map[string]Handler{}}
}

// Handle serves the event package event with h. Call it before Register.
func (m *Mux) Handle(event string, h Handler) {
	if _, dup := m.handlers[event]; dup {
		panic("sdk: Mux.Handle called twice for " + event)
	}
	m.handlers[event] = h
}

// Init runs the init NewMux was given and checks that its manifest and the
// handlers name the same packages: a package without a handler would fail
// every request for it, and a handler without a package would never run.
func (m *Mux) Init(name string, cfg Config) (Manifest, error) {
	man, err := m.init(name, cfg)
	if err != nil {
		return man, err
	}
	var served []string
	for _, p := range man.Packages {
		if m.handlers[p.Event] == nil {
			return man, fmt.Errorf("manifest lists package %q, which has no handler (Mux.Handle)", p.Event)
		}
		served = append(served, p.Event)
	}
	for event := range m.handlers {
		if !slices.Contains(served, event) {
			return man, fmt.Errorf("package %q has a handler but is not in the manifest", event)
		}
	}
	return man, nil
}

func (m *Mux) handler(req *Request) (Handler, error) {
	h := m.handlers[req.Event]
	if h == nil {
		return nil, Reject(489, "event package %q is not served by this module", req.Event)
	}
	return h, nil
}

func (m *Mux) Publish(req *Request) (*Response, error) {
	h, err := m.handler(req)
	if err != nil {
		return nil, err
	}
	return h.Publish(req)
}

func (m *Mux) Unpublish(req *Request) (*Response, error) {
	h, err := m.handler(req)
	if err != nil {
		return nil, err
	}
	return h.Unpublish(req)
}

func (m *Mux) Render(req *Request) (*Response, error) {
	h, err := m.handler(req)
	if err != nil {
		return nil, err
	}
	return h.Render(req)
}

func (m *Mux) Binding(req *Request) (*Response, error) {
	return route(m, req, BindingHandler.Binding)
}

func (m *Mux) WatcherEvent(req *Request) (*Response, error) {
	return route(m, req, WatcherEventHandler.WatcherEvent)
}

func (m *Mux) Command(req *Request) (*Response, error) {
	return route(m, req, CommandHandler.Command)
}

func (m *Mux) XMPP(req *Request) (*Response, error) {
	return route(m, req, XMPPHandler.XMPP)
}

// route calls the method of the optional handler interface I on the
// handler of req.Event, or answers unsupported when that handler lacks it.
func route[I any](m *Mux, req *Request, method func(I, *Request) (*Response, error)) (*Response, error) {
	h, err := m.handler(req)
	if err != nil {
		return nil, err
	}
	i, ok := h.(I)
	if !ok {
		return nil, errUnsupported
	}
	return method(i, req)
}

var (
	_ Module              = (*Mux)(nil)
	_ BindingHandler      = (*Mux)(nil)
	_ WatcherEventHandler = (*Mux)(nil)
	_ CommandHandler      = (*Mux)(nil)
	_ XMPPHandler         = (*Mux)(nil)
)
