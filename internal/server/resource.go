package server

import (
	"cmp"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"iter"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/presenced/presenced/internal/store"
)

type resourceKey struct{ event, uri string }

// index is Server.resources and Server.cold: by event package, then
// presentity. Two levels, not one map by resourceKey: an entry keyed by
// the URI alone is 24 bytes, by both 40, and its map's share of a
// publication was 81 bytes (BenchmarkMemory).
type index[V comparable] map[string]map[string]V

func (x index[V]) get(key resourceKey) V { return x[key.event][key.uri] }

func (x index[V]) put(key resourceKey, v V) {
	m := x[key.event]
	if m == nil {
		m = map[string]V{}
		x[key.event] = m
	}
	m[key.uri] = v
}

// remove drops v, if it is the one indexed under key.
func (x index[V]) remove(key resourceKey, v V) {
	if m := x[key.event]; m[key.uri] == v {
		delete(m, key.uri)
	}
}

// all ranges over the indexed values.
func (x index[V]) all() iter.Seq[V] {
	return func(yield func(V) bool) {
		for _, m := range x {
			for _, v := range m {
				if !yield(v) {
					return
				}
			}
		}
	}
}

func (x index[V]) len() int {
	n := 0
	for _, m := range x {
		n += len(m)
	}
	return n
}

// resource is one presentity of one event package: the module's state
// blob, its live publications and its watchers. Every change to it runs
// under mu, so module calls for one resource are serialised and NOTIFYs
// are queued in the order the changes happened.
type resource struct {
	mu  sync.Mutex
	key resourceKey
	pkg *eventPackage
	// id keys r's state in the store (store.Resource.ID): given when r
	// is made, or the stored one at restore, so that a new presentity's
	// row appends to SQLite's table. 8 bytes took r from 112 to 120, in
	// the 128-byte size class (RATIONALE.md).
	id    uint64
	state []byte
	// pubs is the first of the live publications, in arrival order, each
	// linking the next: a presentity has one to a few
	// (max_publications_per_presentity), and a slice was 16 more bytes of
	// the resource and an 8-byte array of every publication.
	pubs     *publication
	watchers map[hashKey]*dialog // by dialog ID (keyOf; watcher)
	// version counts the module answers applied (apply): a SUBSCRIBE that
	// commits without the lock renders again if it moved meanwhile.
	version uint64
	// stored is the store's version of state (store.Resource): the next
	// write of state names it, and lands only if no other node wrote
	// since. 0: none stored.
	stored uint64
	// pins keeps r in Server.resources while a SUBSCRIBE commits without
	// its lock, so that the dialog joins the live resource. It sits beside
	// dead, cold and rendering so that the four share a word.
	pins int32
	dead bool // removed from Server.resources
	// rendering: a rendering for r's watchers let go of mu for its commit
	// and its NOTIFYs, and owns r's watchers until it ends (lock).
	rendering bool
	// cold: state is not held here but in the store, at version stored.
	// A resource nobody watches keeps its state there only, so memory
	// grows with what is watched, not with what is published
	// (RATIONALE.md "Unwatched state lives in the store"); the first
	// module call that needs it reads it back (warm).
	cold bool
	// unread: r was cold (Server.cold) and its publications are not
	// read back yet (thaw).
	unread bool
	// reuse is a rendering of state the next subscription may be given
	// without a module call (reuse.go); dropped with the last watcher
	// and at any change of state.
	reuse *reuse
	// coldAt is when an expiry of r as cold (timers.armCold) that has
	// not fired is due, or later: 0 if none is known. Letting go of r
	// again arms none that would fire no earlier.
	coldAt int64
	// idle are r's watchers let go of (idle.go), nil if none: r is held
	// while it has any, its earliest expiry among their's armed as a
	// cold one (coldAt).
	idle *idleWatchers
}

// publication is a live publication, its fields changed only under
// res.mu. It holds what the host needs of it and no more: the body is in
// the module's state only (a 300-byte body held twice was a
// third of a publication's memory), and its event, presentity and expiry
// are its resource's and its expiry's (a store.Publication each was 80
// more bytes of every publication; record builds one when needed). Its id
// and ETag are tokens, the bytes they encode: two strings were 32 bytes
// of headers and two 16-byte allocations.
type publication struct {
	id    token  // stable for the publication's life
	etag  token  // rotates on every refresh and modify
	size  int32  // of the body, which a SIP message bounds
	ctype string // of the body, shared with the package's Accept list
	res   *resource
	exp   expiry       // exp.at is when the publication expires
	next  *publication // the resource's next publication (resource.pubs)
}

// record is p as the store sees it.
func (p *publication) record() store.Publication {
	return store.Publication{ID: p.id.String(), ETag: p.etag.String(), Event: p.res.key.event, Resource: p.res.key.uri,
		ContentType: p.ctype, Size: int(p.size), Expires: p.expires(), ResourceID: p.res.id}
}

func (p *publication) expires() time.Time { return time.Unix(0, p.exp.at) }

// lockResource returns the resource for key, created if needed, locked,
// its publications read back if it was cold.
func (s *Server) lockResource(ep *eventPackage, uri string) *resource {
	return s.lockKey(resourceKey{ep.name, uri}, ep, s.lock)
}

// lockHeld is lockResource for a resource this node holds, live or
// cold, and nil, making none, for one it does not; lock takes r.mu.
func (s *Server) lockHeld(key resourceKey, lock func(*resource)) *resource {
	return s.lockKey(key, nil, lock)
}

// lockKey is lockResource, or lockHeld without ep.
func (s *Server) lockKey(key resourceKey, ep *eventPackage, lock func(*resource)) *resource {
	uri, create := key.uri, ep != nil
	for {
		s.mu.Lock()
		r := s.resources.get(key)
		if r == nil {
			id := s.cold.get(key)
			if id != 0 && ep == nil {
				ep = s.cat().packages[key.event]
			}
			if ep == nil || id == 0 && !create {
				s.mu.Unlock()
				return nil
			}
			// Maps are made on first insert: most presentities have
			// publications and no watchers, or watchers and no publication.
			r = &resource{key: key, pkg: ep, id: id, unread: id != 0, cold: id != 0}
			if id == 0 {
				r.id = s.resourceIDs.next()
			} else {
				s.cold.remove(key, id)
			}
			s.resources.put(key, r)
		}
		s.mu.Unlock()
		lock(r)
		if !r.dead {
			if err := s.thaw(r); err != nil {
				// warm tries again before any change, and fails it.
				s.log.Warn("publications not read back", "resource", uri, "err", err)
			}
			return r
		}
		r.mu.Unlock() // lost a race with release; look again
	}
}

// thaw reads back the publications of r, made from a cold entry, and
// arms their expiries; r.mu is held. Until it succeeds r holds none of
// them, and warm, before any change of r, tries again.
func (s *Server) thaw(r *resource) error {
	if !r.unread {
		return nil
	}
	recs, err := s.store.LoadPublications(s.storeContext(), r.id, r.key.event, r.key.uri)
	if err != nil {
		return &storeError{fmt.Errorf("read the publications of %s: %w", r.key.uri, err)}
	}
	r.unread = false
	for _, rec := range recs {
		p := r.addRecord(rec)
		s.armPublication(p, rec.Expires)
		// The expiry armed when r was let go of was its earliest.
		if r.coldAt == 0 || p.exp.at < r.coldAt {
			r.coldAt = p.exp.at
		}
	}
	return nil
}

// addRecord adds to r the publication of a stored record.
func (r *resource) addRecord(rec store.Publication) *publication {
	p := &publication{id: tokenOf(rec.ID), etag: tokenOf(rec.ETag), ctype: r.pkg.mediaType(rec.ContentType), size: int32(rec.Size), res: r}
	r.addPub(p)
	return p
}

// coolable reports whether r may be let go of (cool); r.mu is held. A
// store other nodes write (leases) keeps every resource: a node's
// watchers hear of the others' changes through the resources it holds.
func (s *Server) coolable(r *resource) bool {
	return s.leases == nil && !r.dead && r.watcherCount() == 0 && r.pins == 0 && !r.rendering && !r.unread &&
		(r.pubs != nil || r.cold)
}

// cool lets go of r, whose every record is in the store: memory keeps
// its id in Server.cold and an expiry for its earliest publication's
// (timers.armCold), unless one no later is armed already; r.mu is held.
func (s *Server) cool(r *resource) {
	var at int64
	for p := range r.publications() {
		s.timers.stop(p)
		if at == 0 || p.exp.at < at {
			at = p.exp.at
		}
	}
	// To the millisecond, as the store keeps it, so that thaw reads
	// back the same earliest expiry (and armCold's entries keep their
	// event below it).
	at -= at % int64(time.Millisecond)
	if at != 0 && (r.coldAt == 0 || at < r.coldAt) {
		s.timers.armCold(r.key, at)
	}
	r.pubs, r.state, r.dead = nil, nil, true
	s.mu.Lock()
	s.resources.remove(r.key, r)
	s.cold.put(r.key, r.id)
	s.mu.Unlock()
}

// expireCold reads back the presentity of key when an expiry armed as
// it was let go of is due, and expires what is due, as the publications'
// own timers would have.
func (s *Server) expireCold(key resourceKey) {
	r := s.lockHeld(key, s.lock)
	if r == nil {
		return // gone, or its package no longer served (left in the store)
	}
	defer s.release(r)
	r.coldAt = 0 // this one fired
	if r.unread {
		r.coldAt = time.Now().Add(retryExpiry).UnixNano()
		s.timers.armCold(key, r.coldAt)
		return
	}
	var due []*publication
	for p := range r.publications() {
		if p.exp.at <= time.Now().UnixNano() {
			due = append(due, p)
		}
	}
	for _, p := range due {
		s.expireLocked(r, p)
	}
	if r.idleCount() > 0 {
		s.expireIdle(r)
	}
}

// addPub appends p to r's publications.
func (r *resource) addPub(p *publication) {
	at := &r.pubs
	for *at != nil {
		at = &(*at).next
	}
	*at = p
}

// publications ranges over r's live publications, in arrival order.
func (r *resource) publications() iter.Seq[*publication] {
	return func(yield func(*publication) bool) {
		for p := r.pubs; p != nil; p = p.next {
			if !yield(p) {
				return
			}
		}
	}
}

// pubCount is how many live publications r has.
func (r *resource) pubCount() int {
	n := 0
	for p := r.pubs; p != nil; p = p.next {
		n++
	}
	return n
}

// pubByETag is r's live publication of that ETag, or nil.
func (r *resource) pubByETag(etag string) *publication {
	t, ok := findToken(etag)
	if !ok {
		return nil
	}
	for p := r.pubs; p != nil; p = p.next {
		if p.etag == t {
			return p
		}
	}
	return nil
}

// pubByID is r's live publication of that ID, or nil.
func (r *resource) pubByID(id string) *publication {
	t, ok := findToken(id)
	if !ok {
		return nil
	}
	for p := r.pubs; p != nil; p = p.next {
		if p.id == t {
			return p
		}
	}
	return nil
}

// hasPub reports whether p is still one of r's live publications.
func (r *resource) hasPub(p *publication) bool {
	for q := r.pubs; q != nil; q = q.next {
		if q == p {
			return true
		}
	}
	return false
}

func (r *resource) removePub(p *publication) {
	for at := &r.pubs; *at != nil; at = &(*at).next {
		if *at == p {
			*at, p.next = p.next, nil
			return
		}
	}
}

// warm reads r's state back from the store if it is cold, and its
// publications if they are not read back yet; r.mu is held.
func (s *Server) warm(r *resource) error {
	if err := s.thaw(r); err != nil {
		return err
	}
	if !r.cold {
		return nil
	}
	rec, err := s.store.LoadResource(s.storeContext(), r.id, r.key.event, r.key.uri)
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
// watchers held, else left in the store alone (cold). r.mu is held.
func (r *resource) keepState(state []byte, version uint64) {
	// A deletion stores version 0, as SQLite's restored states have:
	// the version alone would not tell the two states apart.
	r.stored, r.reuse = version, nil
	if len(r.watchers) == 0 && len(state) > 0 {
		r.state, r.cold = nil, true
		return
	}
	r.state, r.cold = append([]byte(nil), state...), false
}

func (r *resource) addWatcher(d *dialog) {
	if r.watchers == nil {
		r.watchers = map[hashKey]*dialog{}
	}
	r.watchers[keyOf(d.id())] = d
}

// watcher is r's watcher with dialog ID id, nil if none.
func (r *resource) watcher(id string) *dialog {
	if d := r.watchers[keyOf(id)]; d != nil && d.id() == id {
		return d
	}
	return nil
}

// removeWatcher drops d from r's watchers; a rendering kept for the next
// one goes with the last.
func (r *resource) removeWatcher(d *dialog) {
	delete(r.watchers, keyOf(d.id()))
	if r.watcherCount() == 0 {
		r.reuse = nil
	}
}

// release unlocks r, dropping it from the index when nothing is left,
// or letting go of it (cool) when nothing needs it in memory.
func (s *Server) release(r *resource) {
	switch {
	case r.unread && r.watcherCount() == 0 && r.pins == 0:
		// Never read back (the store failed): cold again, as it was.
		r.dead = true
		s.mu.Lock()
		s.resources.remove(r.key, r)
		s.cold.put(r.key, r.id)
		s.mu.Unlock()
	case s.coolable(r):
		s.cool(r)
	case r.pubs == nil && r.watcherCount() == 0 && len(r.state) == 0 && !r.cold && r.pins == 0:
		r.dead = true
		s.mu.Lock()
		s.resources.remove(r.key, r)
		s.mu.Unlock()
	}
	r.mu.Unlock()
}

// resourceKeys are the keys of event's resources ("" for all), live or
// cold, in order.
func (s *Server) resourceKeys(event string) []resourceKey {
	s.mu.Lock()
	var keys []resourceKey
	for r := range s.resources.all() {
		if event == "" || r.key.event == event {
			keys = append(keys, r.key)
		}
	}
	for e, m := range s.cold {
		if event == "" || e == event {
			for uri := range m {
				keys = append(keys, resourceKey{e, uri})
			}
		}
	}
	s.mu.Unlock()
	slices.SortFunc(keys, func(a, b resourceKey) int { return cmp.Or(cmp.Compare(a.event, b.event), cmp.Compare(a.uri, b.uri)) })
	return keys
}

// eachResource calls fn with each resource of event ("" for all), live
// or cold (read back for fn), locked, in key order, until fn returns
// false: what an operator's listing walks.
func (s *Server) eachResource(event string, fn func(r *resource) bool) {
	for _, key := range s.resourceKeys(event) {
		ep := s.cat().packages[key.event]
		if ep == nil {
			continue
		}
		r := s.lockHeld(key, s.lock)
		if r == nil {
			continue // gone meanwhile
		}
		more := fn(r)
		s.release(r)
		if !more {
			return
		}
	}
}

var tokenEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// newOrderedToken returns a publication's id: the time in milliseconds
// (48 bits) then 32 random bits, in an alphabet that sorts like the bytes,
// so new rows append to the store's b-tree instead of dirtying a random
// page each. It is not a secret (the SIP-ETag is).
func newOrderedToken() token {
	t := token{enc: tokenHex}
	binary.BigEndian.PutUint64(t.b[:8], uint64(time.Now().UnixMilli())<<16)
	rand.Read(t.b[6:])
	return t
}

// newOrderedID is a newOrderedToken as text (a dialog's local tag).
func newOrderedID() string { return newOrderedToken().String() }

var orderedEncoding = base32.HexEncoding.WithPadding(base32.NoPadding)

// idClock hands out resource ids (store.Resource.ID): the time in
// nanoseconds, or one more than the last if the clock has not passed
// it, so that ids rise with time and never repeat, a restart's
// included (restore moves the clock past every id loaded).
type idClock struct{ last atomic.Uint64 }

func (c *idClock) next() uint64 {
	for {
		last := c.last.Load()
		id := max(last+1, uint64(time.Now().UnixNano()))
		if c.last.CompareAndSwap(last, id) {
			return id
		}
	}
}

// pass makes every id c hands out from now on larger than id.
func (c *idClock) pass(id uint64) {
	for {
		last := c.last.Load()
		if id <= last || c.last.CompareAndSwap(last, id) {
			return
		}
	}
}

// newStateVersion returns a version for a resource state about to be
// written: 63 random bits (the store keeps a signed 64-bit integer), never
// 0, which means none. Random, not a count, so that a state deleted and
// written again never repeats a version another node may still hold.
func newStateVersion() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return max(1, binary.BigEndian.Uint64(b[:])>>1)
}

// newRandomToken returns an unguessable identifier (SIP-ETags): 80 random
// bits from crypto/rand.
func newRandomToken() token {
	t := token{enc: tokenStd}
	rand.Read(t.b[:])
	return t
}

// newToken is a newRandomToken as text (binding ids, tags).
func newToken() string { return newRandomToken().String() }

// token is an identifier of a publication (its id or ETag) held as the 10
// bytes its 16 base32 characters encode, and which alphabet wrote them:
// 11 bytes where a string was a 16-byte header and a 16-byte allocation.
// An identifier this server did not write (a store filled by other
// software) is kept whole in otherTokens, b its index there.
type token struct {
	b   [10]byte
	enc uint8
}

const (
	tokenNone  = iota // ""
	tokenStd          // tokenEncoding: ETags, and publication ids of store schema 1
	tokenHex          // orderedEncoding: publication ids
	tokenOther        // otherTokens
)

// otherTokens are the identifiers tokenOf could not pack, by index; never
// shrinks: they come from the store, not from requests.
var otherTokens struct {
	sync.Mutex
	all   []string
	index map[string]uint64
}

func (t token) String() string {
	// Encoded on the stack: EncodeToString allocates its buffer, then
	// the string.
	var buf [16]byte // the 10 bytes in base32
	switch t.enc {
	case tokenStd:
		tokenEncoding.Encode(buf[:], t.b[:])
		return string(buf[:])
	case tokenHex:
		orderedEncoding.Encode(buf[:], t.b[:])
		return string(buf[:])
	case tokenOther:
		otherTokens.Lock()
		defer otherTokens.Unlock()
		return otherTokens.all[binary.BigEndian.Uint64(t.b[:8])]
	}
	return ""
}

// tokenOf is the token of s, an identifier to keep (read from the store).
func tokenOf(s string) token {
	if t, ok := findToken(s); ok {
		return t
	}
	otherTokens.Lock()
	defer otherTokens.Unlock()
	i, ok := otherTokens.index[s]
	if !ok {
		if otherTokens.index == nil {
			otherTokens.index = map[string]uint64{}
		}
		i = uint64(len(otherTokens.all))
		otherTokens.all = append(otherTokens.all, s)
		otherTokens.index[s] = i
	}
	t := token{enc: tokenOther}
	binary.BigEndian.PutUint64(t.b[:8], i)
	return t
}

// findToken is the token of s if one exists, without keeping s: what a
// request names (SIP-If-Match) is looked up with it, so that no request
// grows otherTokens. Only the canonical text of 10 bytes packs (base32
// decoding would also take line breaks in it).
func findToken(s string) (token, bool) {
	if s == "" {
		return token{}, true
	}
	var t token
	if len(s) == 16 {
		for _, e := range []struct {
			enc *base32.Encoding
			id  uint8
		}{{tokenEncoding, tokenStd}, {orderedEncoding, tokenHex}} {
			if n, err := e.enc.Decode(t.b[:], []byte(s)); err == nil && n == len(t.b) {
				t.enc = e.id
				if t.String() == s {
					return t, true
				}
			}
		}
	}
	otherTokens.Lock()
	defer otherTokens.Unlock()
	if i, ok := otherTokens.index[s]; ok {
		t = token{enc: tokenOther}
		binary.BigEndian.PutUint64(t.b[:8], i)
		return t, true
	}
	return token{}, false
}
