// Package abi is the contract between the presenced host and its wasm
// event-package modules: export and import names, the ABI version, the
// operations, and the one codec for the messages that cross. The host
// (internal/extension) and the module SDK (sdk) both import it, so the two sides
// cannot drift. ABI.md beside this file is the language-neutral spec.
package abi

import "fmt"

// Version of the ABI this package describes. A breaking change raises Major
// (and the import module name); an addition (a new op, a new host function)
// raises Minor. Message fields are added freely under protobuf rules.
const (
	Major = 1
	Minor = 2
)

// Names a module exports.
const (
	// ExportMarker is never called; its presence says which ABI the module
	// was built against, as "presenced_abi_v<major>_<minor>".
	ExportMarker = "presenced_abi_v1_2"
	// ExportInit is called once per instance, after _initialize, with an
	// InitRequest as input; it returns a status and writes a Manifest.
	ExportInit = "presenced_init"
	// ExportHandle is the hot entry point: (op u32, input_len u32) -> i32.
	// Its input is a Request, its output a Response.
	ExportHandle = "presenced_handle"
	// ExportInitialize is the WASI reactor's runtime initialiser.
	ExportInitialize = "_initialize"
)

// ImportModule is the module name of the host functions a module imports.
const ImportModule = "presenced_v1"

// Names of the host functions in ImportModule.
const (
	// ImportInputRead (dst ptr, len u32, offset u32) -> i32 copies up to len
	// bytes of the current call's input, from offset, into guest memory and
	// returns how many it copied, or a negative Status.
	ImportInputRead = "input_read"
	// ImportOutputWrite (src ptr, len u32) -> i32 appends to the current
	// call's output; it returns StatusOK or a negative Status (for example
	// when the output would exceed the host's cap).
	ImportOutputWrite = "output_write"
	// ImportLog (level u32, ptr, len u32) -> i32 writes one log line.
	ImportLog = "log"
)

// Status is what an export or a host function returns. Non-negative is
// success; a module returning a negative status from an export has failed,
// and the host answers the SIP request that caused the call with a 500.
type Status int32

const (
	StatusOK          Status = 0
	StatusBadInput    Status = -1 // the input envelope could not be decoded
	StatusUnsupported Status = -2 // unknown op
	StatusInternal    Status = -3 // the module failed; it logged why
	StatusTooLarge    Status = -4 // host: output over the cap
	StatusBadPointer  Status = -5 // host: pointer or length out of guest memory
)

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusBadInput:
		return "bad input"
	case StatusUnsupported:
		return "unsupported op"
	case StatusInternal:
		return "internal error"
	case StatusTooLarge:
		return "output too large"
	case StatusBadPointer:
		return "pointer out of range"
	}
	return fmt.Sprintf("status %d", int32(s))
}

// Op says what a Request asks of a module.
type Op uint32

const (
	// OpPublish: a publication was added or its body changed
	// (Request.Publication). The module validates it, returns the new
	// resource state and a notification for each watcher given.
	OpPublish Op = 1
	// OpUnpublish: a publication was removed or expired
	// (Request.Publication.ID; no body). Same output as OpPublish.
	OpUnpublish Op = 2
	// OpRender: render the current state for the watchers given (a new
	// subscription, a refresh, a final NOTIFY). The state must not change.
	OpRender Op = 3
	// OpCommand: an operator's command (Request.Command, one of
	// Manifest.Commands) for one resource, with every watcher of it, sent
	// when the admin API or presencectl runs it. The module may change
	// state, change watchers' authorization (Notification.Status) and
	// render for them; Response.Reason is the operator's answer, and a
	// refusal is an error for the operator that changes nothing. Since 1.1.
	OpCommand Op = 4
	// OpBinding: a registrar binding of the resource (an address of
	// record) was added, refreshed or removed (Request.Binding). Sent to
	// packages whose manifest sets Bindings. Since 1.1.
	OpBinding Op = 5
	// OpXMPP: a <presence/> stanza (Request.XMPP) of the XMPP user the
	// resource maps to, from the host's XMPP connector (the "jabber"
	// backend, RFC 8048), with every watcher of the resource. Sent to the
	// module serving "presence" when [xmpp] is configured. The module
	// returns the new state and a notification for each watcher; the host
	// logs a refusal or failure and changes nothing. Since 1.1.
	OpXMPP Op = 6
	// OpWatcherEvent: a subscription to the resource in the package named
	// by this package's WatcherInfoOf changed (Request.WatcherEvent): the
	// input of a watcher-info package (RFC 3857). Since 1.1.
	OpWatcherEvent Op = 7
)

func (o Op) String() string {
	switch o {
	case OpPublish:
		return "publish"
	case OpUnpublish:
		return "unpublish"
	case OpRender:
		return "render"
	case OpCommand:
		return "command"
	case OpBinding:
		return "binding"
	case OpXMPP:
		return "xmpp"
	case OpWatcherEvent:
		return "watcher-event"
	}
	return fmt.Sprintf("op %d", uint32(o))
}

// Watcher authorization states (Watcher.Status, Notification.Status,
// WatcherEvent.Status), as in RFC 3857.
const (
	StatusActive     = "active"
	StatusPending    = "pending"
	StatusTerminated = "terminated"
	// StatusRejected, in a Notification, refuses the watcher: the host ends
	// the subscription with "terminated;reason=rejected".
	StatusRejected = "rejected"
)

// Log levels of ImportLog, spaced like log/slog's. They are untyped so
// that they convert to the host's uint32 and to sdk.LogLevel alike, and a
// module that passes abi.LogWarn to sdk.Log keeps compiling.
const (
	LogDebug = 0
	LogInfo  = 1
	LogWarn  = 2
	LogError = 3
)
