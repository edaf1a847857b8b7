package abi

// The messages that cross the boundary, encoded in protobuf wire format
// (envelope.proto is their schema). Field numbers are the contract; unknown
// fields are skipped on decode, so either side may be newer.

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
}

// Request is the input of ExportHandle.
type Request struct {
	Op          Op           // 1
	Event       string       // 2: event package
	Resource    string       // 3: the resource (presentity) URI, sip:user@host
	State       []byte       // 4: the resource state this module returned last time (empty at first)
	Publication *Publication // 5: OpPublish, OpUnpublish
	Watchers    []Watcher    // 6: who to render for
	NowUnixNano int64        // 7: the host's clock for this call
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

	fReqOp          = 1
	fReqEvent       = 2
	fReqResource    = 3
	fReqState       = 4
	fReqPublication = 5
	fReqWatchers    = 6
	fReqNow         = 7

	fPubID      = 1
	fPubType    = 2
	fPubBody    = 3
	fPubExpires = 4

	fWatID     = 1
	fWatURI    = 2
	fWatAccept = 3
	fWatFull   = 4
	fWatState  = 5

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
)
