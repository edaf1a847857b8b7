package server

import (
	"context"
	"time"
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
		if ep := served(rs.Event, "resource "+rs.Resource); ep != nil {
			r := s.lockResource(ep, rs.Resource)
			r.state = rs.State
			r.mu.Unlock()
		}
	}
	for _, rec := range snap.Publications {
		if ep := served(rec.Event, "publication "+rec.ETag); ep != nil {
			r := s.lockResource(ep, rec.Resource)
			p := &publication{rec: rec, res: r}
			r.pubs[rec.ID] = p
			s.index(p, "")
			s.opt.Metrics.Publications(rec.Event, 1)
			s.armPublication(p)
			r.mu.Unlock()
		}
	}
	var unnotified []*dialog
	for _, rec := range snap.Subscriptions {
		if ep := served(rec.Event, "subscription "+rec.RemoteURI); ep != nil {
			r := s.lockResource(ep, rec.Resource)
			d := &dialog{rec: rec, res: r, cseq: rec.LocalCSeq}
			r.watchers[rec.ID] = d
			s.link(d)
			s.armTimer(d)
			r.mu.Unlock()
			if rec.LocalCSeq == 0 {
				unnotified = append(unnotified, d)
			}
		}
	}
	// A subscription acknowledged just before a crash may never have had
	// its first NOTIFY (its CSeq is recorded before each send): send it
	// now, so no watcher waits a whole refresh interval for the state.
	for _, d := range unnotified {
		r := d.res
		r.mu.Lock()
		if !d.gone {
			s.renderFor(r, d)
		}
		r.mu.Unlock()
	}
	s.regMu.Lock()
	for _, rec := range snap.Bindings {
		if s.bindings[rec.AOR] == nil {
			s.bindings[rec.AOR] = map[string]*binding{}
		}
		b := &binding{rec: rec}
		s.bindings[rec.AOR][rec.Contact] = b
		s.armBinding(b)
	}
	s.regMu.Unlock()
	s.log.Info("state restored", "bindings", len(snap.Bindings), "resources", len(snap.Resources),
		"publications", len(snap.Publications), "subscriptions", len(snap.Subscriptions))
	return nil
}
