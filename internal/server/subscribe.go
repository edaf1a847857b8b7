package server

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/internal/header"
	"github.com/presenced/presenced/internal/store"
)

// subscribe is the notifier side of RFC 6665: a SUBSCRIBE without a To
// tag creates a subscription, one with a To tag refreshes or ends one.
// An error it returns has not been answered (answered does).
func (s *Server) subscribe(req *sip.Request, tx sip.ServerTransaction) error {
	ev, ep, err := s.event(req)
	if err != nil {
		return err
	}
	if tag, _ := req.To().Params.Get("tag"); tag != "" {
		return s.refresh(req, tx, ev, ep, tag)
	}
	if req.Contact() == nil {
		return refuse(400, "missing or malformed Contact header")
	}
	uri, err := s.resourceURI(req)
	if err != nil {
		return err
	}
	if def := s.listDef(uri); def != nil {
		return s.subscribeList(req, tx, ev, ep, def)
	}
	secs, _, err := s.expires(req, ep.subscription, ep.info.DefaultExpires)
	if err != nil {
		return err
	}
	// A watcher-info package's state follows the watched package's
	// subscriptions only while it has watchers of its own (watcherEvent);
	// its first watcher has it rebuilt from the live ones. The watched
	// resource is locked first, the order watcherEvent takes them in.
	var watched *resource
	if of := ep.info.WatcherInfoOf; of != "" {
		if wp := s.cat().packages[strings.ToLower(of)]; wp != nil {
			watched = s.lockResource(wp, uri)
			defer s.release(watched)
		}
	}
	r := s.lockResource(ep, uri)
	defer s.release(r)
	d := dialogFor(req, r, ev)
	if watched != nil && r.watcherCount() == 0 {
		if err := s.rebuildWatcherInfo(r, watched); err != nil {
			return err
		}
	}
	if max := s.opt.Limits.MaxWatchersPerPresentity; max > 0 && r.watcherCount() >= max {
		return refusef(403, "%s has %d watchers, the limit", uri, max)
	}
	if max := s.opt.Limits.MaxSubscriptionsPerWatcher; max > 0 && s.watchingCount(d.remoteURI()) >= max {
		return refusef(403, "%s has %d subscriptions, the limit", d.remoteURI(), max)
	}
	return s.accept(req, tx, r, d, secs)
}

// dialogFor is the subscription a dialog-creating SUBSCRIBE asks for, on
// resource r, its expiry not yet set.
func dialogFor(req *sip.Request, r *resource, ev header.Event) *dialog {
	localTag := newOrderedID()
	remoteTag, _ := req.From().Params.Get("tag")
	id := identity{id: dialogID(req.CallID().Value(), localTag, remoteTag), callID: req.CallID().Value(),
		localTag: localTag, remoteTag: remoteTag,
		localURI: uriString(&req.To().Address), remoteURI: uriString(&req.From().Address),
		transport: req.Transport(), source: req.Source(), eventID: ev.ID, target: uriString(&req.Contact().Address)}
	if v, ok := req.Contact().Params.Get("+sip.instance"); ok {
		id.instance, _ = header.Instance(v) // a malformed one matches no registration
	}
	// A proxy that record-routed stays on the path: the route set is the
	// Record-Route list in order (RFC 3261 §12.1.1).
	for _, rr := range header.All(req, "Record-Route") {
		id.routeSet = append(id.routeSet, rr.Value())
	}
	d := &dialog{created: time.Now().UnixNano(), res: r, remoteCSeq: req.CSeq().SeqNo,
		reserved: cseqBlock} // the first block, reserved with the subscription
	d.setIdentity(id)
	d.setAccept(header.Accept(req))
	return d
}

// accept renders r for d, a new subscription, and answers: a rejection or
// a fetch ends there, anything else is committed and d joins r's watchers.
// r.mu is held.
func (s *Server) accept(req *sip.Request, tx sip.ServerTransaction, r *resource, d *dialog, secs int) error {
	ok := func() {
		s.replyOK(req, tx, d.localTag(), s.withContact(req, sip.NewHeader("Expires", strconv.Itoa(secs)))...)
	}
	d.exp.at = time.Now().Add(time.Duration(secs) * time.Second).UnixNano()
	// On a shared store, what another node wrote a moment ago may not
	// have been heard yet: the first NOTIFY is rendered from the stored
	// state.
	if err := s.catchUp(r); err != nil {
		return &storeError{err}
	}
	c := s.newChange()
	n, err := c.render(r, d)
	if err != nil {
		return err
	}
	d.setStatus(abi.StatusActive) // unless the module says otherwise
	d.take(n)
	switch {
	case d.status() == abi.StatusRejected:
		// Polite blocking (RFC 3857 §3.1): the watcher learns only that
		// the subscription ended, not whether the presentity exists.
		// Nothing was stored, nothing is.
		d.gone = true
		ok()
		s.enqueue(d, "terminated;reason=rejected", nil, true)
		s.watcherEvent(d, abi.StatusTerminated, "rejected")
		return nil
	case d.status() == abi.StatusPending:
		n = &abi.Notification{} // never the state before approval
	}
	if secs == 0 {
		// A fetch (RFC 6665 §4.4.3): one NOTIFY with the state, no
		// subscription kept.
		d.gone = true
		ok()
		s.enqueue(d, "terminated;reason=timeout", n, true)
		return nil
	}
	// The commit runs without r's lock: SUBSCRIBEs to one presentity then
	// share group commits instead of queueing behind each other's (fan-in
	// ran at a fifth of the distinct rate, BenchmarkSubscribeFanIn). A
	// change applied to r meanwhile is caught by its version: d is rendered
	// again, so its first NOTIFY is not older than what the others got.
	c.batch.Subscriptions = []store.Subscription{d.record()}
	v := r.version
	r.pins++
	r.mu.Unlock()
	err = c.commit()
	s.lock(r)
	r.pins--
	if err != nil {
		return err
	}
	c.then(func() {
		r.addWatcher(d)
		s.link(d)
		s.armTimer(d, d.expires())
	})
	c.apply()
	ok()
	first := c
	if r.version != v+1 {
		if again := s.rerender(r, d); again != nil {
			c = again // its NOTIFY for d is listed
		}
	}
	if c == first {
		c.notify(d, d.subState(), n, false)
	}
	c.watcherEvent(d, d.status(), "subscribe")
	c.emit()
	return nil
}

// take keeps what a rendering for d alone says of it: its per-watcher
// state and its authorization.
func (d *dialog) take(n *abi.Notification) {
	if n == nil {
		return
	}
	if n.StateChanged {
		d.state = append([]byte(nil), n.State...)
	}
	if n.Status != "" {
		d.setStatus(n.Status)
	}
}

// rerender renders r again for d, a new subscription whose first
// rendering a change overtook while it committed, as a change of its own
// (the per-watcher state it gives is committed), and returns it applied,
// its NOTIFY for d listed. A module that now rejects the watcher or
// changes its authorization (an operator acted in that millisecond), or a
// failure, gives nil: the first rendering stands, and d's next change or
// refresh brings it up to date.
func (s *Server) rerender(r *resource, d *dialog) *change {
	c := s.newChange()
	m, err := c.render(r, d)
	if err == nil && (m == nil || m.Status == abi.StatusRejected || (m.Status != "" && m.Status != d.status())) {
		return nil
	}
	if err == nil && m.StateChanged {
		rec := d.record()
		rec.State = m.State
		c.batch.Subscriptions = []store.Subscription{rec}
		err = c.commit()
	}
	if err != nil {
		s.log.Warn("new subscription not rendered again after a change", "resource", r.key.uri, "err", err)
		return nil
	}
	c.apply()
	d.take(m)
	if d.status() == abi.StatusPending {
		m = &abi.Notification{}
	}
	c.notify(d, d.subState(), m, false)
	return c
}

// refresh handles a SUBSCRIBE inside an existing dialog: a refresh, or
// with Expires: 0 an unsubscribe.
func (s *Server) refresh(req *sip.Request, tx sip.ServerTransaction, ev header.Event, ep *eventPackage, localTag string) error {
	remoteTag, _ := req.From().Params.Get("tag")
	d, err := s.lockDialog(dialogID(req.CallID().Value(), localTag, remoteTag))
	if d == nil && err == nil {
		d, err = s.lockDialog(legacyDialogID(req.CallID().Value(), localTag, remoteTag))
	}
	switch {
	case err != nil:
		return err
	case d == nil:
		return refuse(481, "no such subscription")
	case d.isList():
		return s.refreshList(req, tx, ev, ep, d)
	}
	r := d.res
	defer s.release(r)
	secs, err := s.inDialog(req, ev, ep, d)
	if err != nil {
		return err
	}
	ok := func() { s.refreshOK(req, tx, secs) }
	var c *change
	if secs == 0 {
		// The 200 says the subscription is gone for good: it is sent once
		// the deletion is committed, never before.
		c, err = s.end(r, d, "timeout")
	} else {
		c, err = s.renew(req, r, d, secs)
	}
	if err != nil {
		return err
	}
	ok()
	c.emit()
	return nil
}

// inDialog checks a SUBSCRIBE in d's dialog (its lock held) and returns
// the expiry it asks for: d live, the same event, a CSeq above the last
// (RFC 3261 §12.2.2: a lower one is out of order), Expires in bounds.
func (s *Server) inDialog(req *sip.Request, ev header.Event, ep *eventPackage, d *dialog) (int, error) {
	if d.gone {
		return 0, refuse(481, "subscription already ended")
	}
	if ev.Package != d.event() || ev.ID != d.eventID() {
		return 0, refuse(489, fmt.Sprintf("this dialog subscribes to %q", header.Event{Package: d.event(), ID: d.eventID()}.String()),
			sip.NewHeader("Allow-Events", s.cat().allow))
	}
	if cseq := req.CSeq().SeqNo; cseq <= d.remoteCSeq {
		return 0, refusef(500, "CSeq %d is not above %d", cseq, d.remoteCSeq)
	}
	secs, _, err := s.expires(req, ep.subscription, ep.info.DefaultExpires)
	return secs, err
}

// refreshOK answers an in-dialog SUBSCRIBE: 200, our Contact, the expiry
// granted, and any header the dialog's kind adds.
func (s *Server) refreshOK(req *sip.Request, tx sip.ServerTransaction, secs int, hdrs ...sip.Header) {
	expires := sip.NewHeader("Expires", strconv.Itoa(secs))
	s.replyOK(req, tx, "", s.withContact(req, append([]sip.Header{expires}, hdrs...)...)...)
}

// renew is a refresh of d (RFC 6665 §4.2.1.2): new expiry, target and
// Accept, and a NOTIFY with full state; or the end of d if the module now
// rejects the watcher. It returns the change applied, for the caller to
// emit once it has answered. r.mu is held.
func (s *Server) renew(req *sip.Request, r *resource, d *dialog, secs int) (*change, error) {
	rec := d.record()
	rec.RemoteCSeq = req.CSeq().SeqNo
	rec.Expires = time.Now().Add(time.Duration(secs) * time.Second)
	if c := req.Contact(); c != nil {
		rec.RemoteTarget = c.Address.String() // target refresh
	}
	if a := header.Accept(req); a != nil {
		rec.Accept = a
	}
	accept := d.accept
	d.setAccept(rec.Accept) // render with what the refresh asks for
	c := s.newChange()
	n, err := c.render(r, d)
	d.accept = accept
	if err != nil {
		return nil, err
	}
	if n != nil && n.Status == abi.StatusRejected {
		c.batch.DeleteSubscriptions = []string{d.id()}
		if err := c.commit(); err != nil {
			return nil, err
		}
		c.then(func() { s.forget(d) })
		c.apply()
		c.notify(d, "terminated;reason=rejected", nil, true)
		c.watcherEvent(d, abi.StatusTerminated, "rejected")
		return c, nil
	}
	if n != nil && n.StateChanged {
		rec.State = n.State
	}
	if n != nil && n.Status != "" {
		rec.Status = n.Status
	}
	c.batch.Subscriptions = []store.Subscription{rec}
	if err := c.commit(); err != nil {
		return nil, err
	}
	was := d.status()
	c.then(func() {
		d.update(rec)
		s.armTimer(d, rec.Expires)
	})
	c.apply()
	if d.status() == abi.StatusPending {
		n = &abi.Notification{}
	}
	c.notify(d, d.subState(), n, false)
	if was == abi.StatusPending && d.status() == abi.StatusActive {
		c.watcherEvent(d, abi.StatusActive, "approved")
	}
	return c, nil
}

// withContact is our Contact for the request's transport, if we have
// one, followed by hdrs: the headers of a 200 that makes or refreshes a
// dialog.
func (s *Server) withContact(req *sip.Request, hdrs ...sip.Header) []sip.Header {
	if c, ok := s.contactHeaders[sip.NetworkToLower(req.Transport())]; ok {
		return append([]sip.Header{c}, hdrs...)
	}
	return hdrs
}
