// Package sdk is what an event-package module author imports: the Module
// interface to implement, Register to hand it to the runtime, and the
// //go:wasmexport glue that turns it into a presenced ABI v1 module when
// built with GOOS=wasip1 GOARCH=wasm -buildmode=c-shared.
//
// A module is a reducer over state the host owns: every call gets the
// resource's state blob (what the module returned last time) and an input,
// and returns the new state and what each watcher is sent. Keep nothing
// between calls that matters; the host may use any instance for any call.
// A request's byte fields (state, bodies) are valid until the call returns:
// in wasm the next call reads its request into the same memory.
package sdk

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/presenced/presenced/abi"
)

// The ABI types, under the names a module author reads.
type (
	Config       = map[string]string
	Manifest     = abi.Manifest
	Package      = abi.Package
	Request      = abi.Request
	Response     = abi.Response
	Publication  = abi.Publication
	Watcher      = abi.Watcher
	Notification = abi.Notification
	Binding      = abi.Binding
	WatcherEvent = abi.WatcherEvent
	Command      = abi.Command
	XMPPPresence = abi.XMPPPresence
)

// A module serving more than publications implements these too; the SDK
// answers the ops of those it does not implement as unsupported.
type (
	// BindingHandler handles abi.OpBinding: a registrar binding of
	// req.Resource changed (req.Binding). Declare Package.Bindings.
	BindingHandler interface {
		Binding(req *Request) (*Response, error)
	}
	// WatcherEventHandler handles abi.OpWatcherEvent: a subscription to the
	// package this one is the watcher info of changed (req.WatcherEvent).
	// Declare Package.WatcherInfoOf.
	WatcherEventHandler interface {
		WatcherEvent(req *Request) (*Response, error)
	}
	// CommandHandler handles abi.OpCommand (req.Command). List the
	// commands in Manifest.Commands.
	CommandHandler interface {
		Command(req *Request) (*Response, error)
	}
	// XMPPHandler handles abi.OpXMPP: a presence stanza (req.XMPP) of the
	// XMPP user req.Resource maps to.
	XMPPHandler interface {
		XMPP(req *Request) (*Response, error)
	}
)

// Module is implemented by an event package.
type Module interface {
	// Init is called once per instance with the extension's TOML config
	// table, flattened to dotted keys. An error stops the extension from
	// loading, with the error in the host's log.
	Init(name string, cfg Config) (Manifest, error)
	// Publish handles OpPublish: validate req.Publication, fold it into
	// req.State, render for req.Watchers. Refuse bad input with Reject.
	// Unpublish handles OpUnpublish: drop req.Publication.ID. Render
	// handles OpRender: render req.State for req.Watchers. A module
	// serving several packages implements them once per package, each a
	// Handler in a Mux. Dispatch calls them only with req.Publication
	// set, and the other handlers with the input of their op.
	Handler
}

// Rejection is an error that refuses a request with a SIP status code. The
// host answers with Code and puts Reason in a Warning header.
type Rejection struct {
	Code   uint32
	Reason string
}

func (r *Rejection) Error() string { return fmt.Sprintf("%d %s", r.Code, r.Reason) }

// Reject returns a Rejection; use it for input the module refuses (bad XML
// is 400, an unknown content type 415, an Accept it cannot satisfy 406).
func Reject(code uint32, format string, args ...any) error {
	return &Rejection{Code: code, Reason: fmt.Sprintf(format, args...)}
}

var registered Module

// commands holds the commands the manifest of this instance's Init lists
// (initialize), nil before it: Dispatch refuses any other, so that no
// Command method checks the name it is called with. A caller of Dispatch
// alone, as a unit test is, gets no such check.
var commands []string

// initialize runs m.Init for the glue and checks the manifest against m:
// a manifest that lists commands needs a Command method, or every command
// would fail as unsupported. It keeps the commands for Dispatch.
func initialize(m Module, name string, cfg Config) (Manifest, error) {
	man, err := m.Init(name, cfg)
	if err != nil {
		return man, err
	}
	if _, ok := m.(CommandHandler); !ok && len(man.Commands) > 0 {
		return man, fmt.Errorf("manifest lists commands %v, but the module has no Command method (sdk.CommandHandler)", man.Commands)
	}
	commands = append([]string{}, man.Commands...)
	return man, nil
}

// Register hands the module to the runtime. Call it from init(): a
// -buildmode=c-shared wasm module never runs main.
func Register(m Module) {
	if registered != nil {
		panic("sdk: Register called twice")
	}
	registered = m
}

// Dispatch runs one request against m, turning a Rejection into a refusing
// Response. It is what the wasm glue calls, and what a native host or a
// unit test may call directly.
func Dispatch(m Module, req *Request) (*Response, error) {
	if err := checkInput(req); err != nil {
		return nil, err
	}
	var res *Response
	var err error
	switch req.Op {
	case abi.OpPublish:
		res, err = m.Publish(req)
	case abi.OpUnpublish:
		res, err = m.Unpublish(req)
	case abi.OpRender:
		res, err = m.Render(req)
	case abi.OpBinding:
		h, ok := m.(BindingHandler)
		if !ok {
			return nil, errUnsupported
		}
		res, err = h.Binding(req)
	case abi.OpWatcherEvent:
		h, ok := m.(WatcherEventHandler)
		if !ok {
			return nil, errUnsupported
		}
		res, err = h.WatcherEvent(req)
	case abi.OpCommand:
		if commands != nil && !slices.Contains(commands, req.Command.Name) {
			return &Response{Code: 400, Reason: fmt.Sprintf("unknown command %q; this module has %s",
				req.Command.Name, cmp.Or(strings.Join(commands, ", "), "none"))}, nil
		}
		h, ok := m.(CommandHandler)
		if !ok {
			return nil, errUnsupported
		}
		if res, err = h.Command(req); err == nil && res != nil && res.Reason == "" {
			// What an operator is told by default: the resource and how
			// many watchers the command reached.
			res.Reason = fmt.Sprintf("%s: %d watcher(s) notified", req.Resource, len(res.Notifications))
		}
	case abi.OpXMPP:
		h, ok := m.(XMPPHandler)
		if !ok {
			return nil, errUnsupported
		}
		res, err = h.XMPP(req)
	default:
		return nil, errUnsupported
	}
	if err != nil {
		// Declared here, not before the check: errors.As moves it to the
		// heap, an allocation every call paid (sdk/RATIONALE.md).
		var rej *Rejection
		if errors.As(err, &rej) {
			return &Response{Code: rej.Code, Reason: rej.Reason}, nil
		}
		return nil, err
	}
	if res == nil {
		res = &Response{}
	}
	return res, nil
}

var errUnsupported = errors.New("unsupported op")

// CheckArgs refuses with 400 a command with an argument not in known,
// naming it and those the command takes, in sorted order whatever order
// the map gives them: a misspelt argument must not be taken for one left
// out.
func CheckArgs(c *Command, known ...string) error {
	for _, k := range slices.Sorted(maps.Keys(c.Args)) {
		if !slices.Contains(known, k) {
			return Reject(400, "unknown argument %q; %s takes %s", k, c.Name, strings.Join(known, ", "))
		}
	}
	return nil
}

// checkInput fails a request without the input its op is about (ABI.md
// §5), so that no handler checks for it: a handler of OpPublish or
// OpUnpublish gets req.Publication, of OpCommand req.Command, of OpBinding
// req.Binding, of OpXMPP req.XMPP. A host that leaves it out breaks the
// ABI, and the call fails as one with bad input does.
func checkInput(req *Request) error {
	missing := ""
	switch {
	case (req.Op == OpPublish || req.Op == OpUnpublish) && req.Publication == nil:
		missing = "publication"
	case req.Op == OpCommand && req.Command == nil:
		missing = "command"
	case req.Op == OpBinding && req.Binding == nil:
		missing = "binding"
	case req.Op == OpXMPP && req.XMPP == nil:
		missing = "presence"
	}
	if missing != "" {
		return fmt.Errorf("%s op without a %s", req.Op, missing)
	}
	return nil
}
