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

// onSubscribe is the notifier side of RFC 6665: a SUBSCRIBE without a To
// tag creates a subscription, one with a To tag refreshes or ends one.
func (s *Server) onSubscribe(req *sip.Request, tx sip.ServerTransaction) {
	ev, ep, ok := s.event(req, tx)
	if !ok {
		return
	}
	if tag, _ := req.To().Params.Get("tag"); tag != "" {
		s.refresh(req, tx, ev, ep, tag)
		return
	}
	if req.Contact() == nil {
		s.reply(req, tx, 400, "missing or malformed Contact header")
		return
	}
	uri, ok := s.resourceURI(req, tx)
	if !ok {
		return
	}
	secs, _, ok := s.expires(req, tx, ep.subscription, ep.info.DefaultExpires)
	if !ok {
		return
	}

	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	localTag := newOrderedID()
	res.To().Params.Add("tag", localTag)
	remoteTag, _ := req.From().Params.Get("tag")
	d := &dialog{rec: store.Subscription{
		ID:       dialogID(req.CallID().Value(), localTag, remoteTag),
		CallID:   req.CallID().Value(),
		LocalTag: localTag, RemoteTag: remoteTag,
		LocalURI:     req.To().Address.String(),
		RemoteURI:    req.From().Address.String(),
		RemoteTarget: req.Contact().Address.String(),
		Transport:    req.Transport(),
		Source:       req.Source(),
		Event:        ev.Package, EventID: ev.ID,
		Resource:   uri,
		Accept:     header.Accept(req),
		Expires:    time.Now().Add(time.Duration(secs) * time.Second),
		RemoteCSeq: req.CSeq().SeqNo,
		LocalCSeq:  cseqBlock, // the first block, reserved with the subscription
		Created:    time.Now(),
	}, reserved: cseqBlock}
	// A proxy that record-routed stays on the path: the route set is the
	// Record-Route list in order (RFC 3261 §12.1.1).
	for _, rr := range req.GetHeaders("Record-Route") {
		d.rec.RouteSet = append(d.rec.RouteSet, rr.Value())
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
	d.res = r
	d.intern(ep)
	if watched != nil && len(r.watchers) == 0 && !s.rebuildWatcherInfo(req, tx, r, watched) {
		return
	}
	if max := s.opt.Limits.MaxWatchersPerPresentity; max > 0 && len(r.watchers) >= max {
		s.reply(req, tx, 403, fmt.Sprintf("%s has %d watchers, the limit", uri, max))
		return
	}
	if max := s.opt.Limits.MaxSubscriptionsPerWatcher; max > 0 && s.watchingCount(d.rec.RemoteURI) >= max {
		s.reply(req, tx, 403, fmt.Sprintf("%s has %d subscriptions, the limit", d.rec.RemoteURI, max))
		return
	}
	mres, err := s.call(r, abi.Request{Op: abi.OpRender}, d)
	if err != nil {
		s.moduleError(req, tx, err)
		return
	}
	if mres.Code != 0 {
		s.refusal(req, tx, ep, mres)
		return
	}
	n := note(mres, d.rec.ID)
	d.rec.Status = abi.StatusActive
	if n != nil {
		if n.StateChanged {
			d.rec.State = append([]byte(nil), n.State...)
		}
		if n.Status != "" {
			d.rec.Status = n.Status
		}
	}
	s.addContact(res, req)
	res.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(secs)))
	if d.rec.Status == abi.StatusRejected {
		// Polite blocking (RFC 3857 §3.1): the watcher learns only that
		// the subscription ended, not whether the presentity exists.
		d.gone = true
		s.respond(req, tx, res, "")
		s.enqueue(d, "terminated;reason=rejected", nil, true)
		s.watcherEvent(d, abi.StatusTerminated, "rejected")
		return
	}
	if d.rec.Status == abi.StatusPending {
		n = &abi.Notification{} // never the state before approval
	}
	if secs == 0 {
		// A fetch (RFC 6665 §4.4.3): one NOTIFY with the state, no
		// subscription kept.
		d.gone = true
		s.respond(req, tx, res, "")
		s.enqueue(d, "terminated;reason=timeout", n, true)
		return
	}
	// The commit runs without r's lock: SUBSCRIBEs to one presentity then
	// share group commits instead of queueing behind each other's (fan-in
	// ran at a fifth of the distinct rate, BenchmarkSubscribeFanIn). A
	// change applied to r meanwhile is caught by its version: d is rendered
	// again, so its first NOTIFY is not older than what the others got.
	v := r.version
	r.pins++
	r.mu.Unlock()
	ok = s.commit(req, tx, &store.Batch{Subscriptions: []store.Subscription{d.rec}})
	r.mu.Lock()
	r.pins--
	if !ok {
		return
	}
	if r.version != v {
		n = s.rerender(r, d, n)
	}
	r.addWatcher(d)
	s.link(d)
	s.armTimer(d)
	s.respond(req, tx, res, "")
	s.enqueue(d, d.subState(), n, false)
	s.watcherEvent(d, d.rec.Status, "subscribe")
}

// rerender renders r again for d, a new subscription whose first
// rendering a change overtook while it committed, and returns what d's
// first NOTIFY carries. A module that now rejects the watcher (an operator
// acted in that millisecond) or fails keeps the first answer: d is
// committed, and its next change or refresh brings it up to date.
func (s *Server) rerender(r *resource, d *dialog, n *abi.Notification) *abi.Notification {
	mres, err := s.call(r, abi.Request{Op: abi.OpRender}, d)
	if err != nil || mres.Code != 0 {
		s.log.Warn("new subscription not rendered again after a change", "resource", r.key.uri, "err", err)
		return n
	}
	m := note(mres, d.rec.ID)
	if m == nil || m.Status == abi.StatusRejected || (m.Status != "" && m.Status != d.rec.Status) {
		return n
	}
	if d.rec.Status == abi.StatusPending {
		return &abi.Notification{}
	}
	if m.StateChanged {
		d.rec.State = append([]byte(nil), m.State...)
	}
	return m
}

// refresh handles a SUBSCRIBE inside an existing dialog.
func (s *Server) refresh(req *sip.Request, tx sip.ServerTransaction, ev header.Event, ep *eventPackage, localTag string) {
	remoteTag, _ := req.From().Params.Get("tag")
	s.mu.Lock()
	d := s.dialogs[dialogID(req.CallID().Value(), localTag, remoteTag)]
	if d == nil {
		d = s.dialogs[legacyDialogID(req.CallID().Value(), localTag, remoteTag)]
	}
	s.mu.Unlock()
	if d == nil {
		s.reply(req, tx, 481, "no such subscription")
		return
	}
	r := d.res
	r.mu.Lock()
	defer s.release(r)
	if d.gone {
		s.reply(req, tx, 481, "subscription already ended")
		return
	}
	if ev.Package != d.rec.Event || ev.ID != d.rec.EventID {
		s.reply(req, tx, 489, fmt.Sprintf("this dialog subscribes to %q", header.Event{Package: d.rec.Event, ID: d.rec.EventID}.String()),
			sip.NewHeader("Allow-Events", s.cat().allow))
		return
	}
	if cseq := req.CSeq().SeqNo; cseq <= d.rec.RemoteCSeq {
		// RFC 3261 §12.2.2: a lower CSeq is out of order.
		s.reply(req, tx, 500, fmt.Sprintf("CSeq %d is not above %d", cseq, d.rec.RemoteCSeq))
		return
	}
	secs, _, ok := s.expires(req, tx, ep.subscription, ep.info.DefaultExpires)
	if !ok {
		return
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	s.addContact(res, req)
	res.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(secs)))
	if secs == 0 {
		d.rec.RemoteCSeq = req.CSeq().SeqNo
		s.respond(req, tx, res, "")
		s.terminate(r, d, "timeout")
		return
	}

	rec := d.rec
	rec.RemoteCSeq = req.CSeq().SeqNo
	rec.Expires = time.Now().Add(time.Duration(secs) * time.Second)
	if c := req.Contact(); c != nil {
		rec.RemoteTarget = c.Address.String() // target refresh
	}
	if a := header.Accept(req); a != nil {
		rec.Accept = a
	}
	old := d.rec
	d.update(rec) // render with what the refresh asks for
	mres, err := s.call(r, abi.Request{Op: abi.OpRender}, d)
	if err != nil || mres.Code != 0 {
		d.update(old)
		if err != nil {
			s.moduleError(req, tx, err)
		} else {
			s.refusal(req, tx, ep, mres)
		}
		return
	}
	n := note(mres, d.rec.ID)
	if n != nil && n.Status == abi.StatusRejected {
		d.update(old)
		s.respond(req, tx, res, "")
		s.forget(d)
		s.commit(nil, nil, &store.Batch{DeleteSubscriptions: []string{d.rec.ID}})
		s.enqueue(d, "terminated;reason=rejected", nil, true)
		s.watcherEvent(d, abi.StatusTerminated, "rejected")
		return
	}
	if n != nil && n.StateChanged {
		rec.State = n.State
	}
	if n != nil && n.Status != "" {
		rec.Status = n.Status
	}
	if !s.commit(req, tx, &store.Batch{Subscriptions: []store.Subscription{rec}}) {
		d.update(old)
		return
	}
	d.update(rec)
	d.rec.State = append([]byte(nil), rec.State...)
	s.armTimer(d)
	s.respond(req, tx, res, "")
	if d.rec.Status == abi.StatusPending {
		n = &abi.Notification{}
	}
	s.enqueue(d, d.subState(), n, false)
	if old.Status == abi.StatusPending && d.rec.Status == abi.StatusActive {
		s.watcherEvent(d, abi.StatusActive, "approved")
	}
}

// addContact puts our Contact for the request's transport on res.
func (s *Server) addContact(res *sip.Response, req *sip.Request) {
	if c, ok := s.contact[sip.NetworkToLower(req.Transport())]; ok {
		res.AppendHeader(&sip.ContactHeader{Address: c})
	}
}
