package server

import (
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/presenced/presenced/internal/store"
)

// Idle subscriptions live in the store (RATIONALE.md "Idle subscriptions
// live in the store"): a dialog with nothing to send for
// Options.IdleSubscriptions is let go of, as an unwatched presentity is
// (cool), and read back (thawDialog, thawWatchers) under its resource's
// lock when something needs it. Memory keeps what finds, counts and
// expires it: its id packed in its resource's idle list, an entry of
// Server.idleDialogs, its count in Server.watching, and its resource's
// earliest expiry in the timers' cold heap.

// idleID is a dialog id as dialogID writes it, packed: its local tag's
// 10 bytes (an ordered token) and the 4 bytes of its hash. 14 bytes where
// the id's text is 25 and a string's header 16 more.
type idleID [14]byte

// packIdle packs id; false if id is not one dialogID wrote (a dialog
// named before store schema 2, or by other software), which stays in
// memory.
func packIdle(id string) (idleID, bool) {
	var p idleID
	const tag = 16 // an ordered token's text
	if len(id) != tag+1+8 || id[tag] != '.' {
		return p, false
	}
	t, ok := findToken(id[:tag])
	if !ok || t.enc != tokenHex {
		return p, false
	}
	copy(p[:10], t.b[:])
	if n, err := hex.Decode(p[10:], []byte(id[tag+1:])); err != nil || n != 4 {
		return p, false
	}
	return p, p.String() == id
}

func (p idleID) String() string {
	t := token{enc: tokenHex}
	copy(t.b[:], p[:10])
	return t.String() + "." + hex.EncodeToString(p[10:])
}

// idleWatchers are a resource's watchers let go of, by packed id: a
// pointer in the resource (whose struct stays in its size class) to
// what most resources have none of.
type idleWatchers struct {
	ids []idleID
}

// idleCount is how many of r's watchers are let go of; r.mu is held.
func (r *resource) idleCount() int {
	if r.idle == nil {
		return 0
	}
	return len(r.idle.ids)
}

// watcherCount is how many subscriptions r has, in memory or not: what
// max_watchers_per_presentity counts. r.mu is held.
func (r *resource) watcherCount() int { return len(r.watchers) + r.idleCount() }

// idleQueue holds the dialogs held in memory, each with when it was last
// seen busy, oldest first (nearly: one seen busy again goes to the back
// with the time it was last busy): what sweepIdle takes those idle long
// enough from. 16 bytes of each dialog held.
type idleQueue struct {
	mu   sync.Mutex
	q    []idleEntry
	head int
}

type idleEntry struct {
	d  *dialog
	at int64 // unix nanoseconds
}

// noteHeld queues d, just made live, for sweepIdle.
func (s *Server) noteHeld(d *dialog, at int64) {
	if s.opt.IdleSubscriptions <= 0 || s.leases != nil {
		return
	}
	s.idle.mu.Lock()
	s.idle.q = append(s.idle.q, idleEntry{d, at})
	s.idle.mu.Unlock()
}

// take removes from the front of the queue the entries last seen busy
// before cutoff.
func (q *idleQueue) take(cutoff int64) []idleEntry {
	q.mu.Lock()
	defer q.mu.Unlock()
	i := q.head
	for i < len(q.q) && q.q[i].at <= cutoff {
		i++
	}
	out := slices.Clone(q.q[q.head:i])
	clear(q.q[q.head:i])
	q.head = i
	if q.head > len(q.q)/2 {
		n := copy(q.q, q.q[q.head:])
		clear(q.q[n:])
		q.q, q.head = q.q[:n], 0
	}
	return out
}

// idleTick is how often sweepIdle runs for an idle time of d: a dialog
// idle since it was queued is let go of at most a quarter of d late.
func idleTick(d time.Duration) time.Duration {
	return min(max(d/4, 50*time.Millisecond), time.Second)
}

// sweepIdle lets go of every dialog idle for Options.IdleSubscriptions.
func (s *Server) sweepIdle() {
	now := time.Now().UnixNano()
	cutoff := now - int64(s.opt.IdleSubscriptions)
	for _, e := range s.idle.take(cutoff) {
		d := e.d
		r := d.res
		s.lock(r)
		if !d.gone {
			if at := s.coolDialog(d, cutoff); at != 0 {
				s.noteHeld(d, at)
			}
		}
		s.release(r)
	}
}

// coolDialog lets go of d if it has been idle since before cutoff and
// nothing holds it in memory, and returns 0; else when it was last busy
// (now, if it is busy now), for the next sweep to look again. r.mu is
// held, d live.
//
// What stays in memory: a list subscription or a list's back-end (the
// list's record holds it), one whose NOTIFYs a coalescing window holds
// back, one with a NOTIFY queued, in flight or failed, one over a
// WebSocket (the connection, which ends it when it closes, finds it by
// pointer: wsClosed) or that named a registration's instance (its flow,
// which the store does not keep), and one whose id does not pack.
func (s *Server) coolDialog(d *dialog, cutoff int64) int64 {
	r := d.res
	now := time.Now().UnixNano()
	if d.list != nil || d.hold != nil || r.rendering || d.overWebSocket() || d.instance() != "" {
		return now
	}
	d.qmu.Lock()
	busy, last := d.tail != nil || d.sending || d.failed, max(d.sent, d.created)
	d.qmu.Unlock()
	switch {
	case busy:
		return now
	case last > cutoff:
		return last
	}
	id, ok := packIdle(d.id())
	if !ok {
		return now
	}
	s.timers.stop(d)
	d.gone, d.cooled = true, true
	delete(r.watchers, keyOf(d.id())) // the watcher is still r's: no removeWatcher
	if r.idle == nil {
		r.idle = &idleWatchers{}
	}
	r.idle.ids = append(r.idle.ids, id)
	s.mu.Lock()
	delete(s.dialogs, keyOf(d.id()))
	s.idleDialogs[keyOf(d.id())] = r
	s.mu.Unlock()
	s.armIdle(r, d.exp.at)
	if len(r.watchers) == 0 && !r.cold {
		// Nobody held: r's state and its rendering kept for the next
		// watcher go to the store too, as an unwatched presentity's do
		// (keepState), and come back with the next module call (warm).
		r.keepState(r.state, r.stored)
	}
	return 0
}

// armIdle makes sure an expiry of r as cold (expireCold) fires by at,
// a cold watcher's expiry; r.mu is held.
func (s *Server) armIdle(r *resource, at int64) {
	// Past at, to the millisecond: armCold rounds down, and one that
	// fired before the dialog is due would find nothing to expire.
	at += int64(time.Millisecond) - at%int64(time.Millisecond)
	if r.coldAt == 0 || at < r.coldAt {
		s.timers.armCold(r.key, at)
		r.coldAt = at
	}
}

// lockDialog finds the subscription id, in memory or read back, and
// returns it with its resource locked (s.lock), or nil and nothing
// locked if there is none. An error is a store's failure to read it
// back: nothing is locked, and the dialog stays as it was.
func (s *Server) lockDialog(id string) (*dialog, error) {
	k := keyOf(id)
	for {
		s.mu.Lock()
		d := s.dialog(id)
		r := s.idleDialogs[k]
		s.mu.Unlock()
		switch {
		case d != nil && d.isList():
			return d, nil // locked by its own path: list.go
		case d != nil:
			s.lock(d.res)
			if !d.cooled {
				return d, nil
			}
			s.release(d.res) // let go of meanwhile: read it back
		case r != nil:
			s.lock(r)
			d, err := s.thawDialog(r, id)
			if err != nil || d != nil {
				if err != nil {
					s.release(r)
				}
				return d, err
			}
			s.mu.Lock()
			same := s.idleDialogs[k] == r
			s.mu.Unlock()
			s.release(r)
			if same {
				return nil, nil // none such (another id of the same key)
			}
			// read back, or its resource let go of, meanwhile: look again
		default:
			return nil, nil
		}
	}
}

// thawDialog reads back r's cold watcher id and makes it live, nil if r
// has no such watcher; r is locked.
func (s *Server) thawDialog(r *resource, id string) (*dialog, error) {
	p, ok := packIdle(id)
	if !ok || r.idle == nil || !slices.Contains(r.idle.ids, p) {
		return nil, nil
	}
	ds, err := s.thawIDs(r, []idleID{p})
	if err != nil || len(ds) == 0 {
		return nil, err
	}
	return ds[0], nil
}

// thawWatchers reads back every cold watcher of r, in one store call,
// and makes them live; r is locked. What a change that renders for all
// of r's watchers, or lists them, needs first.
func (s *Server) thawWatchers(r *resource) error {
	if r.idleCount() == 0 {
		return nil
	}
	_, err := s.thawIDs(r, slices.Clone(r.idle.ids))
	return err
}

// thawIDs reads back the cold watchers ids of r and makes them live, as
// restore makes a stored subscription (but for its count, which it kept:
// Server.watching, the metrics), and returns them.
func (s *Server) thawIDs(r *resource, ids []idleID) ([]*dialog, error) {
	recs, err := s.idleRecords(r, ids)
	if err != nil {
		return nil, err
	}
	ds := make([]*dialog, 0, len(recs))
	now := time.Now().UnixNano()
	for _, rec := range recs {
		d := newDialog(rec, r)
		r.addWatcher(d)
		s.mu.Lock()
		s.dialogs[keyOf(rec.ID)] = d
		s.mu.Unlock()
		s.armTimer(d, rec.Expires)
		s.noteHeld(d, now)
		ds = append(ds, d)
	}
	// One the store did not have is gone from memory too.
	s.mu.Lock()
	for _, p := range ids {
		delete(s.idleDialogs, keyOf(p.String()))
	}
	s.mu.Unlock()
	// ids are some of r.idle.ids, each once: all of them when a change
	// renders for every watcher, where deleting them one by one was
	// quadratic in the presentity's idle watchers.
	if len(ids) < len(r.idle.ids) {
		r.idle.ids = slices.DeleteFunc(r.idle.ids, func(p idleID) bool { return slices.Contains(ids, p) })
	} else {
		r.idle = nil
	}
	return ds, nil
}

// idleRecords reads back the records of r's cold watchers ids; r is
// locked. One the store does not have (which no path leaves) is logged:
// the caller drops it, and its count stays.
func (s *Server) idleRecords(r *resource, ids []idleID) ([]store.Subscription, error) {
	names := make([]string, len(ids))
	for i, p := range ids {
		names[i] = p.String()
	}
	recs, err := s.store.LoadSubscriptions(s.storeContext(), names)
	if err != nil {
		return nil, &storeError{fmt.Errorf("read back %d subscriptions to %s: %w", len(ids), r.key.uri, err)}
	}
	recs = slices.DeleteFunc(recs, func(rec store.Subscription) bool {
		return rec.Event != r.key.event || rec.Resource != r.key.uri
	})
	if len(recs) < len(names) {
		s.log.Error("subscriptions let go of are not in the store", "resource", r.key.uri, "missing", len(names)-len(recs))
	}
	return recs, nil
}

// watchersOf is every watcher of r, those let go of read back but not
// made live: what a listing or a rebuilt watcher-info state reads, which
// must not bring every subscription back into memory. With a store's
// failure, those held and the error. r is locked.
func (s *Server) watchersOf(r *resource) ([]*dialog, error) {
	ds := slices.Collect(maps.Values(r.watchers))
	if r.idleCount() == 0 {
		return ds, nil
	}
	recs, err := s.idleRecords(r, r.idle.ids)
	if err != nil {
		return ds, err
	}
	for _, rec := range recs {
		ds = append(ds, newDialog(rec, r))
	}
	return ds, nil
}

// expireIdle reads back r's cold watchers when the earliest of them is
// due (expireCold): those due expire through the usual path (their timers
// fire at once), the others are let go of again. r is locked.
func (s *Server) expireIdle(r *resource) {
	ds, err := s.thawIDs(r, slices.Clone(r.idle.ids))
	if err != nil {
		s.log.Warn("subscriptions due not read back, tried again", "resource", r.key.uri, "err", err)
		s.armIdle(r, time.Now().Add(retryExpiry).UnixNano())
		return
	}
	now := time.Now().UnixNano()
	for _, d := range ds {
		if d.exp.at > now {
			s.coolDialog(d, now)
		}
	}
}
