package server

import (
	"time"

	"github.com/presenced/presenced/internal/store"
)

// On a store several nodes share (store.Feed: PostgreSQL), a node hears
// of every resource state another node commits and, for a resource it
// holds, reads the state and renders it for its watchers here
// (docs/cluster.md, section 2). A resource it does not hold is read when
// it is first used: a new subscription reads its resource's state before
// rendering (catchUp), so it sees at once what any node acknowledged,
// and a PUBLISH from a stale state conflicts and is computed again
// (change.commit).

// follow starts hearing other nodes' writes, before restore loads the
// store: a write committed after the load is heard, one before it is in
// the load. What is heard waits for the restore to end.
func (s *Server) follow() error {
	f, ok := store.As[store.Feed](s.store)
	if !ok {
		return nil
	}
	return f.Follow(s.ctx, func(ch store.Change) {
		select {
		case <-s.restored:
		case <-s.ctx.Done():
			return
		}
		if !s.busy() {
			return
		}
		defer s.wg.Done()
		if ch.Resync {
			s.catchUpAll()
			return
		}
		if s.cat().packages[ch.Event] == nil {
			return // a list's record (@rls-services), or a package not served here
		}
		r := s.lockHeld(resourceKey{ch.Event, ch.Resource}, s.lock)
		if r == nil {
			return // read when first used
		}
		defer s.release(r)
		if r.stored == ch.Version {
			return // read already (a conflict, a new subscription)
		}
		if err := s.catchUp(r); err != nil {
			s.log.Warn("state written by another node not read: its watchers here get it with the next change",
				"resource", r.key.uri, "err", err)
		}
	})
}

// catchUpAll reads again every resource this node holds, after the feed
// was cut.
func (s *Server) catchUpAll() {
	s.mu.Lock()
	keys := make([]resourceKey, 0, s.resources.len())
	for r := range s.resources.all() {
		keys = append(keys, r.key)
	}
	s.mu.Unlock()
	for _, k := range keys {
		if r := s.lockHeld(k, s.lock); r != nil {
			if err := s.catchUp(r); err != nil {
				s.log.Warn("state written by another node not read: its watchers here get it with the next change",
					"resource", r.key.uri, "err", err)
			}
			s.release(r)
		}
	}
}

// catchUp reads r's state from a shared store and, if another node wrote
// it since this one last read or wrote it, makes it r's and renders it
// for r's watchers here, each from what it was last sent, through the
// one change path. r.mu is held. On a store no other node writes it does
// nothing.
func (s *Server) catchUp(r *resource) error {
	if _, ok := store.As[store.Feed](s.store); !ok {
		return nil
	}
	rec, err := s.store.LoadResource(s.storeContext(), r.id, r.key.event, r.key.uri)
	if err != nil {
		return err
	}
	if rec.Version == r.stored {
		return nil
	}
	r.keepState(rec.State, rec.Version)
	r.version++ // a SUBSCRIBE committing meanwhile renders again
	return s.renderWatchers(r, time.Time{})
}
