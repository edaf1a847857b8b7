package server

import (
	"context"
	"time"

	"github.com/presenced/presenced/abi"
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
	served := func(event, what string) *eventPackage {
		ep := s.cat().packages[event]
		if ep == nil {
			s.log.Warn("stored state of an event package no module serves, left in the store", "event", event, "what", what)
		}
		return ep
	}
	for _, rs := range snap.Resources {
		if rs.Event == listEvent {
			s.restoreList(rs)
			continue
		}
		if ep := served(rs.Event, "resource "+rs.Resource); ep != nil {
			r := s.lockResource(ep, rs.Resource)
			r.state, r.stored = rs.State, rs.Version
			r.mu.Unlock()
		}
	}
	for _, rec := range snap.Publications {
		if ep := served(rec.Event, "publication "+rec.ETag); ep != nil {
			r := s.lockResource(ep, rec.Resource)
			p := &publication{id: rec.ID, etag: rec.ETag, ctype: ep.mediaType(rec.ContentType), size: rec.Size, res: r}
			r.addPub(p)
			s.opt.Metrics.Publications(rec.Event, 1)
			s.armPublication(p, rec.Expires)
			r.mu.Unlock()
		}
	}
	resync := map[*resource]bool{}
	var lists []*dialog
	for _, rec := range snap.Subscriptions {
		if st, ok := decodeListState(rec.State); ok {
			if ep := served(rec.Event, "list subscription "+rec.RemoteURI); ep != nil {
				lists = append(lists, s.restoreListDialog(ep, rec, st))
			}
			continue
		}
		if ep := served(rec.Event, "subscription "+rec.RemoteURI); ep != nil {
			r := s.lockResource(ep, rec.Resource)
			d := newDialog(rec, r)
			r.addWatcher(d)
			s.link(d)
			s.armTimer(d, rec.Expires)
			resync[r] = true
			r.mu.Unlock()
		}
	}
	// Every restored subscription is sent its current state. A NOTIFY's
	// CSeq is recorded before it is sent, and changes are committed before
	// their NOTIFYs are queued, so a stop (a crash, or a clean one with
	// NOTIFYs still queued) can leave a watcher without the last state, or
	// without its first NOTIFY, with nothing in the store to tell which:
	// RFC 6665 lets a notifier NOTIFY at any time, so all are told. One
	// module call per resource renders for all its watchers.
	for r := range resync {
		r.mu.Lock()
		s.resync(r)
		r.mu.Unlock()
	}
	// A list subscription is brought up to its list, which may have
	// changed while the server was down, and sent its full state, one
	// version above the last it stored.
	for _, d := range lists {
		if err := s.syncList(d); err != nil {
			s.log.Warn("restored list subscription not notified", "list", d.resource(), "watcher", d.remoteURI, "err", err)
		}
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
		"publications", len(snap.Publications), "subscriptions", len(snap.Subscriptions), "resynced_resources", len(resync))
	return nil
}

// resync renders r's document for all its watchers, each as a new
// subscription would get it (full state), and queues their NOTIFYs.
func (s *Server) resync(r *resource) {
	if len(r.watchers) == 0 {
		return
	}
	in := abi.Request{Op: abi.OpRender, Watchers: make([]abi.Watcher, 0, len(r.watchers))}
	for _, d := range r.watchers {
		if d.list == nil { // lists and their back-ends: syncList
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
