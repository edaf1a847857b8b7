package server

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/internal/store"
)

// restore loads what the store kept into the live indexes and re-arms
// every expiry timer, so a restarted server picks up where it stopped:
// publications keep their ETags, dialogs their CSeq. Anything that expired
// while the server was down expires now, through the usual path (watchers
// get their NOTIFYs).
func (s *Server) restore() error {
	ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
	defer cancel()
	snap, err := s.store.Load(ctx)
	if err != nil {
		return err
	}
	served := s.served
	// Before any id is given, a new resource's here included.
	for _, rs := range snap.Resources {
		s.resourceIDs.pass(rs.ID)
	}
	for _, rec := range snap.Publications {
		s.resourceIDs.pass(rec.ResourceID)
	}
	var stale store.Batch
	for _, rs := range snap.Resources {
		if rs.Event == listEvent {
			s.restoreList(rs)
			continue
		}
		if ep := served(rs.Event, "resource "+rs.Resource); ep != nil {
			r := s.lockResource(ep, rs.Resource)
			if older := r.restoreID(rs.ID); older != 0 {
				stale.Resources = append(stale.Resources, store.Resource{ID: older, Event: rs.Event, Resource: rs.Resource})
			}
			if r.id == rs.ID || rs.ID == 0 {
				r.keepState(rs.State, rs.Version) // no watchers yet: cold
			}
			r.mu.Unlock()
		}
	}
	for _, rec := range snap.Publications {
		if ep := served(rec.Event, "publication "+rec.ETag); ep != nil {
			r := s.lockResource(ep, rec.Resource)
			p := r.addRecord(rec)
			s.opt.Metrics.Publications(rec.Event, 1)
			s.armPublication(p, rec.Expires)
			switch {
			case rec.ResourceID == 0 || rec.ResourceID == r.id:
			case !r.cold && r.pubs == p: // r was made for p: its row's id
				r.id = rec.ResourceID
			default:
				// Kept in another row of r's (restoreID): moved into r's,
				// where its refresh and removal will look for it.
				stale.DeletePublications = append(stale.DeletePublications,
					store.PublicationRef{ID: rec.ID, ETag: rec.ETag, ResourceID: rec.ResourceID})
				stale.Publications = append(stale.Publications, p.record())
			}
			r.mu.Unlock()
		}
	}
	if err := s.store.Commit(ctx, &stale); err != nil {
		if len(stale.Publications) > 0 {
			return fmt.Errorf("move publications into their resource's row: %w", err)
		}
		// Served right all the same (the newer is held); the next start
		// tries again.
		s.log.Warn("resource states written over left in the store", "rows", len(stale.Resources), "err", err)
	}
	// Every restored subscription is sent its current state. A NOTIFY's
	// CSeq is recorded before it is sent, and changes are committed before
	// their NOTIFYs are queued, so a stop (a crash, or a clean one with
	// NOTIFYs still queued) can leave a watcher without the last state, or
	// without its first NOTIFY, with nothing in the store to tell which:
	// RFC 6665 lets a notifier NOTIFY at any time, so all are told.
	resynced := s.restoreDialogs(snap.Subscriptions)
	// What nobody watches is let go of: memory keeps only what finds and
	// expires it (resource.cool). The snapshot and the resources let go
	// of were most of the heap, which the runtime would hand back to the
	// system over minutes: handed back now, once (RATIONALE.md "Unwatched
	// presentities live in the store").
	for _, r := range s.resourcesSnapshot() {
		s.lock(r)
		s.release(r)
	}
	s.regMu.Lock()
	for _, rec := range snap.Bindings {
		if s.bindings[rec.AOR] == nil {
			s.bindings[rec.AOR] = map[string]*binding{}
		}
		b := &binding{rec: rec}
		s.bindings[rec.AOR][bindingKey(rec)] = b
		s.armBinding(b)
	}
	s.regMu.Unlock()
	s.log.Info("state restored", "bindings", len(snap.Bindings), "resources", len(snap.Resources),
		"publications", len(snap.Publications), "subscriptions", len(snap.Subscriptions), "resynced_resources", resynced)
	snap = nil
	debug.FreeOSMemory()
	return nil
}

// restoreID gives r, just restored, the id of a stored row of it (a
// store that keeps none, PostgreSQL, gives 0 and leaves r's own) and
// returns the id of a row to delete, 0 if none. A second row of one
// resource is one left in the store while its package was not served (a
// Reload added it back) and written anew under a new id: the newer is
// kept, and the older deleted, lest it come back once the newer is
// deleted. A stored state is never empty, so a resource restored before
// is cold.
func (r *resource) restoreID(id uint64) (older uint64) {
	switch {
	case id == 0:
		return 0
	case !r.cold:
		r.id = id
		return 0
	}
	older, r.id = min(r.id, id), max(r.id, id)
	return older
}

// served is the package of event, or nil, logged, if no module serves it.
func (s *Server) served(event, what string) *eventPackage {
	ep := s.cat().packages[event]
	if ep == nil {
		s.log.Warn("stored state of an event package no module serves, left in the store", "event", event, "what", what)
	}
	return ep
}

// restoreDialogs makes the stored subscriptions recs live (at start, or
// taken over from a node whose lease ran out) and sends each its current
// state: one module call per resource renders for its dialogs among recs.
// A list subscription is brought up to its list, which may have changed
// meanwhile, and sent its full state, one version above the last it
// stored. It returns how many resources it rendered.
func (s *Server) restoreDialogs(recs []store.Subscription) int {
	resync := map[*resource][]*dialog{}
	var lists []*dialog
	for _, rec := range recs {
		if st, ok := decodeListState(rec.State); ok {
			if ep := s.served(rec.Event, "list subscription "+rec.RemoteURI); ep != nil {
				lists = append(lists, s.restoreListDialog(ep, rec, st))
			}
			continue
		}
		if ep := s.served(rec.Event, "subscription "+rec.RemoteURI); ep != nil {
			r := s.lockResource(ep, rec.Resource)
			d := newDialog(rec, r)
			r.addWatcher(d)
			s.link(d)
			s.armTimer(d, rec.Expires)
			resync[r] = append(resync[r], d)
			r.mu.Unlock()
		}
	}
	for r, ds := range resync {
		s.lock(r)
		s.resync(r, ds)
		s.release(r)
	}
	for _, d := range lists {
		if err := s.syncList(d); err != nil {
			s.log.Warn("restored list subscription not notified", "list", d.resource(), "watcher", d.remoteURI(), "err", err)
		}
	}
	return len(resync)
}

// resync renders r's document for ds, some of its watchers, each as a new
// subscription would get it (full state), and queues their NOTIFYs. On a
// shared store it reads r's state first: another node may have written
// it since this one last read it.
func (s *Server) resync(r *resource, ds []*dialog) {
	if err := s.catchUp(r); err != nil {
		s.log.Warn("restored watchers not notified", "resource", r.key.uri, "err", err)
		return
	}
	in := abi.Request{Op: abi.OpRender, Watchers: make([]abi.Watcher, 0, len(ds))}
	for _, d := range ds {
		if d.list == nil && !d.gone { // lists and their back-ends: syncList
			in.Watchers = append(in.Watchers, d.watcher(true))
		}
	}
	if len(in.Watchers) == 0 {
		return
	}
	c := s.newChange()
	c.noHold = true
	_, err := c.propose(r, in)
	if err == nil {
		err = c.run()
	}
	if err != nil {
		s.log.Warn("restored watchers not notified", "resource", r.key.uri, "err", err)
	}
}
