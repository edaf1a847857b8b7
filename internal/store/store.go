// Package store keeps the server's state where it survives the process:
// subscriptions, publications, bindings and the resource state blobs
// modules return, each a record of plain values under its key (no SIP
// library type crosses this boundary). The server commits one Batch per
// change of state before it answers 2xx and loads a Snapshot at start; it
// never sees how or where records are kept.
//
// A Batch is the whole of one change, applied whole or not at all, and an
// error from Commit means it never was and never will be applied: the
// sequence of committed batches is the change feed a store shared by
// several nodes carries to the others. Every backend passes
// storetest.Run.
package store

import (
	"context"
	"errors"
	"time"
)

// Subscription is one RFC 6665 subscription dialog, notifier side.
type Subscription struct {
	ID           string // dialog id: Call-ID, local tag, remote tag
	CallID       string
	LocalTag     string
	RemoteTag    string
	LocalURI     string // the SUBSCRIBE's To URI (our From in NOTIFY)
	RemoteURI    string // the SUBSCRIBE's From URI (our To in NOTIFY)
	RemoteTarget string // the subscriber's Contact URI: NOTIFY's request-URI
	RouteSet     []string
	Transport    string // "UDP", "TCP"
	Source       string // ip:port the SUBSCRIBE came from (the flow for TCP)
	Event        string // event package
	EventID      string // Event header id parameter
	Resource     string // the presentity, sip:user@host
	Accept       []string
	Expires      time.Time
	LocalCSeq    uint32 // highest CSeq reserved for NOTIFYs (≥ the last one sent); a write never lowers it
	RemoteCSeq   uint32 // CSeq of the last SUBSCRIBE accepted
	State        []byte // the module's per-watcher state
	Status       string // authorization: "active" or "pending"
	Created      time.Time
}

// Binding is one registrar binding (RFC 3261 §10).
type Binding struct {
	ID      string // stable for the binding's life
	AOR     string // address of record, sip:user@host
	Contact string // the contact URI as registered
	Q       string // the q parameter as sent, "" if none
	CallID  string
	CSeq    uint32
	Expires time.Time
	// Instance is the Contact's +sip.instance without its quotes
	// ("<urn:uuid:...>", RFC 5626 §4.1), "" if none; RegID its reg-id, 0
	// if none. With an instance, they and not Contact identify the binding.
	Instance string
	RegID    uint32
	Path     []string // the REGISTER's Path values in order (RFC 3327), one URI each
}

// Publication is one RFC 3903 publication.
type Publication struct {
	ID          string // stable for the publication's life
	ETag        string // rotates on every refresh and modify
	Event       string
	Resource    string
	ContentType string
	Size        int // of the body, which the store does not keep: the module's state has what it needs of it
	Expires     time.Time
	// ResourceID is the ID of its resource (Resource.ID), whose row
	// SQLite keeps it in: a write without one fails its batch (ErrNoID)
	// there. PostgreSQL ignores it and returns 0.
	ResourceID uint64
}

// Resource is a module's state for one resource of one event package.
//
// In a store several servers may write at once (PostgreSQL; Memory,
// which tests share between servers), every write of it is conditional
// (optimistic concurrency: docs/cluster.md): it lands only if the version
// stored is still Prev, the one its State was computed from, and
// otherwise its whole batch fails with ErrConflict. SQLite is written by
// one daemon alone (cmd/presenced locks the store file's directory),
// whose changes to one resource run one at a time under the resource's
// lock, so it writes by key and keeps no version (Version 0): the check
// would cost it a savepoint per batch for a conflict that cannot happen.
// Versions are tags chosen by the writer, not counters: a resource
// deleted and made again must never repeat a version a node may still
// hold, which a counter restarting at 1 would (and a counter kept across
// deletion would need the deleted row kept).
//
// SQLite keys its rows by ID, which the server gives each resource it
// holds: time-ordered, so that a new presentity's row appends to the
// table instead of dirtying a random page of it (RATIONALE.md "Resource
// rows are keyed by a time-ordered ID"). Memory keeps it beside its
// key; PostgreSQL, whose rows several nodes find by URI, ignores it and
// returns 0.
type Resource struct {
	// ID is unique across restarts and never 0: what a write or a
	// deletion names and Load returns (0 from PostgreSQL).
	ID       uint64
	Event    string
	Resource string
	State    []byte
	// Version is the version of State: what Load and LoadResource
	// return, and what a write stores (0 with an empty State, none; 0
	// always from SQLite).
	Version uint64
	// Prev is, in a batch, the version the write replaces: 0 if the writer
	// saw none stored. Load leaves it 0.
	Prev uint64
}

// Batch is a set of changes committed together, atomically.
type Batch struct {
	Subscriptions []Subscription // inserted or replaced by ID
	// SubscriptionStates set a stored subscription's per-watcher state and
	// status and leave the rest of its record: what each NOTIFY of a
	// change rewrites, a thousand rows for a presentity's thousand
	// watchers, where a whole record costs 1.5 times the time to write
	// (RATIONALE.md). One no longer stored is skipped.
	SubscriptionStates  []SubscriptionState
	DeleteSubscriptions []string
	Publications        []Publication // inserted or replaced by ID
	// PublicationRefreshes give existing publications a new ETag and
	// expiry and keep the rest: a refresh carries no body, so the server
	// would have nothing new to write but those two.
	PublicationRefreshes []PublicationRefresh
	// DeletePublications are deleted each only if its ETag is still the
	// one stored, else the batch fails with ErrStalePublication: on a
	// shared store a node may remove a publication another node holds
	// (its expiry, once that node died), which must not remove one that
	// node refreshed meanwhile (its ETag rotates on every refresh).
	DeletePublications []PublicationRef
	// Resources are inserted, replaced or (empty State) deleted by ID
	// (SQLite) or by (Event, Resource) (Memory, PostgreSQL), each only
	// if its Prev is still stored. A write without an ID fails its batch
	// (ErrNoID) but in PostgreSQL. A resource's publications are records
	// of their own: a deleted state leaves them.
	Resources      []Resource
	Bindings       []Binding // inserted or replaced by ID
	DeleteBindings []string
	// NotifyCSeqs records the CSeq of a NOTIFY about to be sent, so that
	// after a restart a dialog's CSeq keeps rising.
	NotifyCSeqs []NotifyCSeq
}

// SubscriptionState is a stored subscription's new per-watcher state
// and status.
type SubscriptionState struct {
	ID     string
	State  []byte
	Status string
}

// PublicationRefresh is a refresh of the publication with this ID, of
// the resource with that ResourceID (Publication.ResourceID).
type PublicationRefresh struct {
	ID, ETag   string
	Expires    time.Time
	ResourceID uint64
}

// PublicationRef names a publication by its ID and its ETag, and its
// resource's ID (Publication.ResourceID).
type PublicationRef struct {
	ID, ETag   string
	ResourceID uint64
}

// NotifyCSeq is the last CSeq used in a subscription's dialog.
type NotifyCSeq struct {
	ID   string
	CSeq uint32
}

// Empty reports whether the batch changes nothing.
func (b *Batch) Empty() bool {
	return len(b.Subscriptions)+len(b.SubscriptionStates)+len(b.DeleteSubscriptions)+len(b.Publications)+len(b.PublicationRefreshes)+
		len(b.DeletePublications)+len(b.Resources)+len(b.NotifyCSeqs)+
		len(b.Bindings)+len(b.DeleteBindings) == 0
}

// Snapshot is everything a store holds, as loaded at start.
type Snapshot struct {
	Subscriptions []Subscription
	Publications  []Publication
	Resources     []Resource
	Bindings      []Binding
}

// ErrConflict is the error of a Commit whose batch writes a resource
// whose stored version is no longer its Prev (another node wrote it
// first): like every Commit error, the batch was not written. The writer
// reads the resource again (LoadResource) and computes its change anew.
var ErrConflict = errors.New("resource written elsewhere since it was read (version conflict)")

// ErrNoID is the error of a Commit whose batch writes a resource
// without an ID to a store that needs one: nothing was written.
var ErrNoID = errors.New("resource written without an ID")

// ErrFenced is the error of a Commit whose batch writes a subscription
// dialog another node's epoch owns now (it took the dialog over when
// this node's lease ran out), and of a Renew of a lease that ran out:
// nothing was written, and the node must neither write nor send for
// those dialogs again.
var ErrFenced = errors.New("dialog owned by another node (lease lost)")

// ErrStalePublication is the error of a Commit whose batch deletes a
// publication whose ETag is no longer stored (another node refreshed or
// removed it): nothing was written.
var ErrStalePublication = errors.New("publication refreshed or removed elsewhere")

// ErrUnavailable marks a Commit error caused by the store being out of
// reach (the database down, restarting, paused or cut off, or too slow to
// take the batch before its deadline) rather than by the batch: like
// every Commit error, nothing was written, and a try later may land.
var ErrUnavailable = errors.New("store out of reach")

// Store is implemented by every backend.
type Store interface {
	// Commit applies b atomically; when it returns nil the change is kept,
	// and when it returns an error (ctx's included) it is not, ever.
	Commit(ctx context.Context, b *Batch) error
	// Load returns every record.
	Load(ctx context.Context) (*Snapshot, error)
	// LoadResource returns the state and version stored for one resource
	// now, Version 0 and no State if none is. A store keyed by ID finds
	// it by id, one found by URI by event and resource.
	LoadResource(ctx context.Context, id uint64, event, resource string) (Resource, error)
	// LoadPublications returns the publications stored for one resource
	// now, found as LoadResource finds it: what a server that let go of
	// a presentity nobody watches reads back when a request names it.
	LoadPublications(ctx context.Context, id uint64, event, resource string) ([]Publication, error)
	// LoadSubscriptions returns the subscriptions stored now whose ids
	// are among ids, in no given order, an id not stored left out: what
	// a server that let go of idle subscriptions reads back when a
	// request, an expiry or a change of their presentity needs them
	// (one, or all of a presentity's at once).
	LoadSubscriptions(ctx context.Context, ids []string) ([]Subscription, error)
	Close() error
}

// Change is a resource write another node committed, as a Feed tells it.
type Change struct {
	Event    string
	Resource string
	Version  uint64 // of the state written; 0: deleted
	// Resync says that writes may have been missed (the feed was cut and
	// is back): every resource held must be read again. The other fields
	// are empty.
	Resync bool
}

// Feed is implemented by a store several nodes share (PostgreSQL): it
// tells each node of the resource states the others write, so that its
// watchers hear of them (docs/cluster.md, section 2).
type Feed interface {
	// Follow returns once it is following: every resource write another
	// node commits from then on is passed to fn, in commit order, from one
	// goroutine, until ctx ends or the store is closed. A write of this
	// store's own is not. After a cut, fn gets a Change with Resync.
	Follow(ctx context.Context, fn func(Change)) error
}

// As finds in s, or in the store a wrapper of it (the metrics' timing)
// passes calls on to, the one that implements T (a Feed): a wrapper says
// what it wraps with Unwrap.
func As[T any](s Store) (T, bool) {
	for {
		if t, ok := s.(T); ok {
			return t, true
		}
		u, ok := s.(interface{ Unwrap() Store })
		if !ok {
			var none T
			return none, false
		}
		s = u.Unwrap()
	}
}

// Leases is implemented by a store several nodes share (PostgreSQL):
// each subscription dialog belongs to one node's epoch, and an epoch
// holds a lease in the store, renewed by the store's clock
// (docs/cluster.md, section 3).
type Leases interface {
	// Join takes a new epoch for this store, its lease running d, for
	// the node called name. An earlier epoch of that name ends at once,
	// its dialogs this epoch's, and returned: its process is gone (the
	// name is the node's data_dir, which one process holds), or it is
	// this one, joining again after losing its lease. From then on Load
	// returns only this epoch's subscriptions, a subscription written is
	// this epoch's, and a write to one another epoch owns fails its batch
	// with ErrFenced.
	Join(ctx context.Context, name string, d time.Duration) ([]Subscription, error)
	// Renew runs the lease d from now, or returns ErrFenced if it had run
	// out: the epoch's dialogs may be another's now.
	Renew(ctx context.Context, d time.Duration) error
	// TakeOver makes this epoch the owner of every subscription whose
	// epoch's lease ran out, and returns them.
	TakeOver(ctx context.Context) ([]Subscription, error)
	// Expired returns the publications whose expiry is before t: a node
	// removes its own at their expiry, so those long past it are left by a
	// node that died, for another to remove.
	Expired(ctx context.Context, t time.Time) ([]Publication, error)
	// Publication returns the publication of resource with that ETag,
	// false if none is stored: a node asked to refresh, modify or remove
	// one another node took.
	Publication(ctx context.Context, event, resource, etag string) (Publication, bool, error)
}
