package abi

// The messages that cross the boundary, encoded in protobuf wire format
// (ABI.md §4 gives their schema in proto3). Field numbers are the contract;
// unknown fields are skipped on decode, so either side may be newer.

// InitRequest is the input of ExportInit.
type InitRequest struct {
	Name   string            // 1: the extension's name in the TOML file
	Config map[string]string // 2: the [extension.NAME.config] table, flattened (entries: 1 key, 2 value)
}

// Manifest is the output of ExportInit: what the module serves.
type Manifest struct {
	Packages []Package // 1
	Commands []string  // 2: admin commands the module accepts (OpCommand)
}

// Package is one SIP event package a module serves.
type Package struct {
	Event          string   // 1: event package name, as in the Event header ("presence")
	Accept         []string // 2: content types accepted in PUBLISH bodies
	DefaultExpires uint32   // 3: seconds, for SUBSCRIBE and PUBLISH without Expires
	Bindings       bool     // 4: send registrar binding changes (OpBinding)
	WatcherInfoOf  string   // 5: a watcher-info package for this event package (OpWatcherEvent)
	MinExpires     uint32   // 6: replaces the host's minimum for this package when set
	MaxExpires     uint32   // 7: replaces the host's maximum for this package when set
}

// Request is the input of ExportHandle.
type Request struct {
	Op           Op            // 1
	Event        string        // 2: event package
	Resource     string        // 3: the resource (presentity) URI, sip:user@host
	State        []byte        // 4: the resource state this module returned last time (empty at first)
	Publication  *Publication  // 5: OpPublish, OpUnpublish
	Watchers     []Watcher     // 6: who to render for
	NowUnixNano  int64         // 7: the host's clock for this call
	Binding      *Binding      // 8: OpBinding
	WatcherEvent *WatcherEvent // 9: OpWatcherEvent
	Command      *Command      // 10: OpCommand
	XMPP         *XMPPPresence // 11: OpXMPP
}

// XMPPPresence is one <presence/> stanza of an XMPP user (RFC 6121),
// for the "jabber" backend (RFC 8048 maps it to PIDF). The resource is the
// SIP form of the bare JID; one stanza per XMPP resource, or one from the
// bare JID for all of them (type "unavailable" only: the user refused the
// subscription, an error, or the host lost the XMPP server).
type XMPPPresence struct {
	From     string // 1: full JID, user@domain/resource, or the bare JID
	Type     string // 2: "" (available) or "unavailable"
	Show     string // 3: as sent, trimmed: "", away, chat, dnd, xa
	Status   string // 4: free text, trimmed
	Priority int32  // 5: -128..127; 0 when absent or out of range
	Lang     string // 6: xml:lang of Status
}

// Binding is one registrar binding (RFC 3261 §10) of the resource.
type Binding struct {
	ID          string // 1: stable for the binding's life
	Contact     string // 2: the registered contact URI
	Q           string // 3: the q parameter as sent ("0.8"), "" if none
	ExpiresUnix int64  // 4
	Removed     bool   // 5: unregistered or expired
}

// WatcherEvent is a change of one subscription, for watcher info.
type WatcherEvent struct {
	ID       string // 1: the subscription's id (stable)
	URI      string // 2: the watcher
	Status   string // 3: active, pending, terminated
	Event    string // 4: RFC 3857 event: subscribe, approved, deactivated, timeout, rejected, giveup, noresource
	Duration int64  // 5: seconds the subscription has existed
	Expires  int64  // 6: seconds left, for active and pending
}

// Command is an admin command.
type Command struct {
	Name string            // 1
	Args map[string]string // 2: entries: 1 key, 2 value
}

// Publication is one RFC 3903 publication of a resource.
type Publication struct {
	ID          string // 1: stable for the life of the publication (not the SIP-ETag, which rotates)
	ContentType string // 2
	Body        []byte // 3
	ExpiresUnix int64  // 4: seconds since the epoch
}

// Watcher is one subscription to the resource.
type Watcher struct {
	ID     string   // 1: opaque, echoed in Notification.WatcherID
	URI    string   // 2: the subscriber (From URI)
	Accept []string // 3: the SUBSCRIBE's Accept values; empty = none given
	Full   bool     // 4: the watcher needs full state (first NOTIFY, refresh)
	State  []byte   // 5: per-watcher state this module returned last time
	Status string   // 6: the host's record of its authorization: "" (new), active, pending
}

// Response is the output of ExportHandle.
type Response struct {
	// Code 0 accepts. Any other value refuses the request: the host answers
	// the SIP request with it (e.g. 400, 406, 415) and changes nothing.
	Code          uint32         // 1
	Reason        string         // 2: why, for the Warning header and the log
	State         []byte         // 3: new resource state, if StateChanged
	StateChanged  bool           // 4
	Notifications []Notification // 5: at most one per watcher given
}

// Notification is what one watcher is sent.
type Notification struct {
	WatcherID    string // 1
	ContentType  string // 2: empty with an empty body means a NOTIFY without a body
	Body         []byte // 3
	Partial      bool   // 4: the body is a partial state (RFC 4575 style)
	State        []byte // 5: new per-watcher state, if StateChanged
	StateChanged bool   // 6: false keeps the per-watcher state as it was
	// 7: the module's authorization decision: "" keeps the watcher's
	// status (a new watcher becomes active), or active, pending, rejected.
	Status string
	// 9: until when (unix nanoseconds) this notification is also the
	// answer for any other watcher whose Accept, Full, State and Status
	// are this one's, on the same resource state: the module's word that
	// its ID and URI played no part. The host may then hand it (under the
	// other watcher's ID) without a call. 0: it may not (ABI.md §6).
	ReuseUntilUnixNano int64
}

// Field numbers, named where used by the codec.
const (
	fInitName   = 1
	fInitConfig = 2
	fEntryKey   = 1
	fEntryValue = 2

	fManPackages = 1
	fManCommands = 2

	fPkgEvent   = 1
	fPkgAccept  = 2
	fPkgExpires = 3
	fPkgBind    = 4
	fPkgWinfo   = 5
	fPkgMin     = 6
	fPkgMax     = 7

	fReqOp          = 1
	fReqEvent       = 2
	fReqResource    = 3
	fReqState       = 4
	fReqPublication = 5
	fReqWatchers    = 6
	fReqNow         = 7
	fReqBinding     = 8
	fReqWatcherEv   = 9
	fReqCommand     = 10

	fBindID      = 1
	fBindContact = 2
	fBindQ       = 3
	fBindExpires = 4
	fBindRemoved = 5

	fWevID       = 1
	fWevURI      = 2
	fWevStatus   = 3
	fWevEvent    = 4
	fWevDuration = 5
	fWevExpires  = 6

	fCmdName = 1
	fCmdArgs = 2

	fReqXMPP    = 11
	fXMPPFrom   = 1
	fXMPPType   = 2
	fXMPPShow   = 3
	fXMPPStatus = 4
	fXMPPPrio   = 5
	fXMPPLang   = 6

	fPubID      = 1
	fPubType    = 2
	fPubBody    = 3
	fPubExpires = 4

	fWatID     = 1
	fWatURI    = 2
	fWatAccept = 3
	fWatFull   = 4
	fWatState  = 5
	fWatStatus = 6

	fResCode    = 1
	fResReason  = 2
	fResState   = 3
	fResChanged = 4
	fResNotes   = 5

	fNotWatcher = 1
	fNotType    = 2
	fNotBody    = 3
	fNotPartial = 4
	fNotState   = 5
	fNotChanged = 6
	fNotStatus  = 7
	fNotBodyOf  = 8
	fNotReuse   = 9
)
