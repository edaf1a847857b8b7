package server

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/internal/store"
)

type resourceKey struct{ event, uri string }

// resource is one presentity of one event package: the module's state
// blob, its live publications and its watchers. Every change to it runs
// under mu, so module calls for one resource are serialised and NOTIFYs
// are queued in the order the changes happened.
type resource struct {
	mu    sync.Mutex
	key   resourceKey
	pkg   *eventPackage
	state []byte
	// pubs are the live publications, in arrival order: a slice, since a
	// presentity has one to a few (max_publications_per_presentity) and
	// the smallest map was ~200 bytes of every publication.
	pubs     []*publication
	watchers map[string]*dialog // by dialog ID
	pending  *abi.Response      // a committed module answer not yet applied
	// version counts the module answers applied (apply): a SUBSCRIBE that
	// commits without the lock renders again if it moved meanwhile.
	version uint64
	// stored is the store's version of state (store.Resource): the next
	// write of state names it, and lands only if no other node wrote
	// since. 0: none stored.
	stored uint64
	// pins keeps r in Server.resources while a SUBSCRIBE commits without
	// its lock, so that the dialog joins the live resource. It sits beside
	// dead so that the two share a word: 128 bytes, not 144.
	pins int32
	dead bool // removed from Server.resources
	// cold: state is not held here but in the store, at version stored.
	// A resource nobody watches keeps its state there only, so memory
	// grows with what is watched, not with what is published
	// (RATIONALE.md "Unwatched state lives in the store"); the first
	// module call that needs it reads it back (warm).
	cold bool
}

// publication is a live publication, its fields changed only under
// res.mu. It holds what the host needs of it and no more: the body is in
// the module's state only (a 300-byte body held twice was a
// third of a publication's memory), and its event, presentity and expiry
// are its resource's and its expiry's (a store.Publication each was 80
// more bytes of every publication; record builds one when needed).
type publication struct {
	id    string // stable for the publication's life
	etag  string // rotates on every refresh and modify
	ctype string // of the body, shared with the package's Accept list
	size  int    // of the body
	res   *resource
	exp   expiry // exp.at is when the publication expires
}

// record is p as the store sees it.
func (p *publication) record() store.Publication {
	return store.Publication{ID: p.id, ETag: p.etag, Event: p.res.key.event, Resource: p.res.key.uri,
		ContentType: p.ctype, Size: p.size, Expires: p.expires()}
}

func (p *publication) expires() time.Time { return time.Unix(0, p.exp.at) }

// lockResource returns the resource for key, created if needed, locked.
func (s *Server) lockResource(ep *eventPackage, uri string) *resource {
	key := resourceKey{ep.name, uri}
	for {
		s.mu.Lock()
		r := s.resources[key]
		if r == nil {
			// Maps are made on first insert: most presentities have
			// publications and no watchers, or watchers and no publication.
			r = &resource{key: key, pkg: ep}
			s.resources[key] = r
		}
		s.mu.Unlock()
		r.mu.Lock()
		if !r.dead {
			return r
		}
		r.mu.Unlock() // lost a race with release; look again
	}
}

func (r *resource) addPub(p *publication) { r.pubs = append(r.pubs, p) }

// pubByETag is r's live publication of that ETag, or nil.
func (r *resource) pubByETag(etag string) *publication {
	for _, p := range r.pubs {
		if p.etag == etag {
			return p
		}
	}
	return nil
}

// hasPub reports whether p is still one of r's live publications.
// pubByID is r's live publication of that ID, or nil.
func (r *resource) pubByID(id string) *publication {
	for _, p := range r.pubs {
		if p.id == id {
			return p
		}
	}
	return nil
}

func (r *resource) hasPub(p *publication) bool { return slices.Contains(r.pubs, p) }

func (r *resource) removePub(p *publication) {
	if i := slices.Index(r.pubs, p); i >= 0 {
		r.pubs = slices.Delete(r.pubs, i, i+1)
	}
}

// warm reads r's state back from the store if it is cold; r.mu is held.
func (s *Server) warm(r *resource) error {
	if !r.cold {
		return nil
	}
	ctx, cancel := context.WithTimeout(s.ctx, commitTimeout)
	rec, err := s.store.LoadResource(ctx, r.key.event, r.key.uri)
	cancel()
	if err != nil {
		// Without the state nothing of the change can be stored either.
		return &storeError{fmt.Errorf("read the state of %s: %w", r.key.uri, err)}
	}
	r.state, r.cold = rec.State, false
	if rec.Version != r.stored {
		// Another node wrote it meanwhile (a shared store): its state
		// is this node's now, as catchUp would have made it.
		r.stored = rec.Version
		r.version++
	}
	return nil
}

// keepState makes state, at version, r's: held in memory while r has
// watchers, else left in the store alone (cold). r.mu is held.
func (r *resource) keepState(state []byte, version uint64) {
	r.stored = version
	if len(r.watchers) == 0 && len(state) > 0 {
		r.state, r.cold = nil, true
		return
	}
	r.state, r.cold = append([]byte(nil), state...), false
}

func (r *resource) addWatcher(d *dialog) {
	if r.watchers == nil {
		r.watchers = map[string]*dialog{}
	}
	r.watchers[d.id] = d
}

// release unlocks r, dropping it from the index when nothing is left.
func (s *Server) release(r *resource) {
	if len(r.pubs) == 0 && len(r.watchers) == 0 && len(r.state) == 0 && !r.cold && r.pins == 0 {
		r.dead = true
		s.mu.Lock()
		if s.resources[r.key] == r {
			delete(s.resources, r.key)
		}
		s.mu.Unlock()
	}
	r.mu.Unlock()
}

var tokenEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// newOrderedID returns a publication's id: the time in milliseconds (48
// bits) then 32 random bits, in an alphabet that sorts like the bytes, so new rows
// append to the store's b-tree instead of dirtying a random page each.
// It is not a secret (the SIP-ETag is).
func newOrderedID() string {
	var b [10]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixMilli())<<16)
	rand.Read(b[6:])
	return orderedEncoding.EncodeToString(b[:])
}

var orderedEncoding = base32.HexEncoding.WithPadding(base32.NoPadding)

// newStateVersion returns a version for a resource state about to be
// written: 63 random bits (the store keeps a signed 64-bit integer), never
// 0, which means none. Random, not a count, so that a state deleted and
// written again never repeats a version another node may still hold.
func newStateVersion() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return max(1, binary.BigEndian.Uint64(b[:])>>1)
}

// newToken returns an unguessable identifier (SIP-ETags, binding ids):
// 80 random bits from crypto/rand.
func newToken() string {
	var b [10]byte
	rand.Read(b[:])
	return tokenEncoding.EncodeToString(b[:])
}
