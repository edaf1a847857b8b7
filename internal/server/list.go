package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/internal/header"
	"github.com/presenced/presenced/internal/rls"
	"github.com/presenced/presenced/internal/store"
)

// A resource list server (RFC 4662) over lists defined by RFC 4826
// rls-services (RATIONALE.md, "Resource lists"). A list subscription is a
// dialog like any other (its record, its CSeq, its NOTIFY queue), on the
// resource of the list's URI, never shown to a module. Each member is a
// back-end dialog on the member's own resource: a watcher with the list
// subscriber's URI, so the member's authorization policy decides, that
// never sends a NOTIFY itself: what the module renders for it goes, by the
// change path, into the list dialog's state (listState), which is the
// list dialog's record's State in the store.

// listEvent is the store's event name for the lists an operator made
// through the admin API: a Resource record each, its State the list in
// JSON. "@" is no token character (RFC 3261 §25.1), so no event package
// can have that name.
const listEvent = "@rls-services"

// listDialog is a list subscription's own part: its state, and its
// back-end dialogs by member URI. mu is taken last, after every resource
// lock; the list dialog's mutable fields and its back-ends change only
// with it held, and with the list resource and every member resource
// locked (lockList), so a member's change, which holds only its own
// resource, reads them safely under mu.
type listDialog struct {
	d        *dialog
	mu       sync.Mutex
	st       listState
	backends map[string]*dialog
	hold     *hold     // a throttle window in progress (RFC 4662 §6)
	sent     time.Time // when the last NOTIFY was rendered
}

// listState is what a list subscription has been sent, stored as its
// record's State: the RLMI version of its last NOTIFY and each member's
// instance, authorization, module state and last document.
type listState struct {
	Version uint32        `json:"version"`
	Members []memberState `json:"members"`
}

type memberState struct {
	URI      string `json:"uri"`
	Instance string `json:"instance"`
	Status   string `json:"status"` // active, pending or terminated
	Reason   string `json:"reason,omitempty"`
	Module   []byte `json:"module,omitempty"` // the module's per-watcher state
	Type     string `json:"type,omitempty"`
	Body     []byte `json:"body,omitempty"`
	// Dirty is a change a throttle window held back: the next NOTIFY
	// carries it.
	Dirty bool `json:"dirty,omitempty"`
}

// listStateMagic starts an encoded listState: how restore tells a list
// subscription's record from another subscription's, whose State is a
// module's.
const listStateMagic = "presenced-rls/1\n"

func (st *listState) encode() []byte {
	b, _ := json.Marshal(st)
	return append([]byte(listStateMagic), b...)
}

func decodeListState(b []byte) (listState, bool) {
	var st listState
	rest, ok := bytes.CutPrefix(b, []byte(listStateMagic))
	if !ok || json.Unmarshal(rest, &st) != nil {
		return listState{}, false
	}
	return st, true
}

func (st *listState) clone() listState {
	return listState{Version: st.Version, Members: slices.Clone(st.Members)}
}

func (st *listState) member(uri string) *memberState {
	for i := range st.Members {
		if st.Members[i].URI == uri {
			return &st.Members[i]
		}
	}
	return nil
}

func (d *dialog) isList() bool    { return d.list != nil && d.list.d == d }
func (d *dialog) isBackend() bool { return d.list != nil && d.list.d != d }

// lists are the list definitions: the rls-services file's and the
// operator's. They never share a URI (SetLists, PutList).
type lists struct {
	mu    sync.Mutex
	file  map[string]*rls.List
	admin map[string]*rls.List
	// stored is the store's id and version of each admin list's record
	// (store.Resource): its next write names both. Read and written
	// under op.
	stored map[string]storedList
	// op serialises operators' changes: each is committed, then synced
	// to the list's subscriptions, before the next.
	op sync.Mutex
}

type storedList struct{ id, version uint64 }

// listDef is the definition of list uri, nil if there is none.
func (s *Server) listDef(uri string) *rls.List {
	s.lists.mu.Lock()
	defer s.lists.mu.Unlock()
	if l := s.lists.file[uri]; l != nil {
		return l
	}
	return s.lists.admin[uri]
}

// subscribeList answers an initial SUBSCRIBE to list def: 421 unless the
// subscriber supports eventlist (RFC 4662 §4.3), then a subscription whose
// first NOTIFY has every member's full state.
func (s *Server) subscribeList(req *sip.Request, tx sip.ServerTransaction, ev header.Event, ep *eventPackage, def *rls.List) error {
	if !header.Supported(req, "eventlist") {
		return refuse(421, def.URI+" is a resource list: Supported: eventlist is required", sip.NewHeader("Require", "eventlist"))
	}
	if !def.Serves(ev.Package) {
		return refuse(489, fmt.Sprintf("list %s serves %s, not %q", def.URI, strings.Join(def.Packages, ", "), ev.Package),
			sip.NewHeader("Allow-Events", strings.Join(def.Packages, ", ")))
	}
	if a := header.Accept(req); a != nil && (!acceptsType(a, "multipart/related") || !acceptsType(a, "application/rlmi+xml")) {
		return refuse(406, "a list subscription must accept multipart/related and application/rlmi+xml (RFC 4662 §5)")
	}
	secs, _, err := s.expires(req, ep.subscription, ep.info.DefaultExpires)
	if err != nil {
		return err
	}
	rs := s.lockResources(ep, append(memberURIs(def), def.URI))
	defer s.releaseResources(rs)
	r := rs[def.URI]
	d := dialogFor(req, r, ev)
	if max := s.opt.Limits.MaxSubscriptionsPerWatcher; max > 0 && s.watchingCount(d.remoteURI()) >= max {
		return refusef(403, "%s has %d subscriptions, the limit", d.remoteURI(), max)
	}
	l := &listDialog{d: d, backends: map[string]*dialog{}}
	d.list = l
	d.setStatus(abi.StatusActive)
	d.exp.at = time.Now().Add(time.Duration(secs) * time.Second).UnixNano()
	ok := func() {
		s.replyOK(req, tx, d.localTag(), s.withContact(req, sip.NewHeader("Expires", strconv.Itoa(secs)),
			sip.NewHeader("Require", "eventlist"))...)
	}
	c := s.newChange()
	p, err := s.planList(c, l, def, rs)
	if err != nil {
		return err
	}
	if secs == 0 {
		// A fetch (RFC 6665 §4.4.3): the full state once, nothing kept.
		d.gone = true
		l.st = p.st
		ok()
		s.enqueue(d, "terminated;reason=timeout", s.listNotification(l, def, true, nil), true)
		return nil
	}
	rec := d.record()
	rec.State = p.st.encode()
	c.batch.Subscriptions = []store.Subscription{rec}
	if err := c.commit(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	c.then(func() {
		s.applyPlan(c, l, p)
		l.sent = time.Now()
		r.addWatcher(d)
		s.link(d)
		s.armTimer(d, d.expires())
	})
	c.apply()
	ok()
	c.notify(d, d.subState(), s.listNotification(l, def, true, nil), false)
	c.emit()
	return nil
}

func acceptsType(accept []string, t string) bool {
	for _, a := range accept {
		a, _, _ = strings.Cut(a, ";")
		a = strings.ToLower(strings.TrimSpace(a))
		if a == t || a == "*/*" || a == t[:strings.Index(t, "/")]+"/*" {
			return true
		}
	}
	return false
}

func memberURIs(def *rls.List) []string {
	out := make([]string, 0, len(def.Members))
	for _, m := range def.Members {
		out = append(out, m.URI)
	}
	return out
}

// lockResources locks the resources of ep for uris, each once, in one
// order every caller shares (by URI), so two list subscriptions with
// members in common, or lists naming each other, cannot deadlock.
func (s *Server) lockResources(ep *eventPackage, uris []string) map[string]*resource {
	uris = slices.Clone(uris)
	sort.Strings(uris)
	uris = slices.Compact(uris)
	rs := make(map[string]*resource, len(uris))
	for _, u := range uris {
		rs[u] = s.lockResource(ep, u)
	}
	return rs
}

func (s *Server) releaseResources(rs map[string]*resource) {
	for _, r := range rs {
		s.release(r)
	}
}

// lockList locks everything a change of list subscription d as a whole
// takes: its resource, every member resource (its back-ends' and its
// definition's) and then d.list.mu. def is the definition now, nil if the
// list is gone.
func (s *Server) lockList(d *dialog) (rs map[string]*resource, def *rls.List, unlock func()) {
	l := d.list
	for {
		def = s.listDef(d.resource())
		l.mu.Lock()
		uris := []string{d.resource()}
		for u := range l.backends {
			uris = append(uris, u)
		}
		l.mu.Unlock()
		if def != nil {
			uris = append(uris, memberURIs(def)...)
		}
		rs = s.lockResources(d.res.pkg, uris)
		l.mu.Lock()
		complete := true
		for u := range l.backends {
			if rs[u] == nil {
				complete = false
			}
		}
		if complete && def == s.listDef(d.resource()) {
			return rs, def, func() { l.mu.Unlock(); s.releaseResources(rs) }
		}
		l.mu.Unlock() // the list changed meanwhile: again
		s.releaseResources(rs)
	}
}

// plan is a full rendering of a list subscription: the state it is to
// have, and the back-end dialogs to add and to end.
type plan struct {
	st       listState
	add      []*dialog
	drop     []*dialog
	approved []*dialog
}

// planList renders every member of def for l, each alone and with full
// state, as a new subscription or a refresh is sent (RFC 4662 §5.3), and
// returns the state to commit, one version above l's. A member the module
// refuses to render for the watcher is shown terminated, its reason
// "rejected"; a member on a domain not served is "noresource": presenced
// subscribes to no other server. Everything in rs is locked, and l.mu
// when l is live.
func (s *Server) planList(c *change, l *listDialog, def *rls.List, rs map[string]*resource) (plan, error) {
	p := plan{st: listState{Version: l.st.Version + 1}}
	for _, m := range def.Members {
		ms := memberState{URI: m.URI, Instance: newOrderedID()}
		if old := l.st.member(m.URI); old != nil {
			ms = *old
			ms.Dirty = false
		}
		bd := l.backends[m.URI]
		if !s.servesDomain(m.URI) {
			ms.Status, ms.Reason, ms.Type, ms.Body = abi.StatusTerminated, "noresource", "", nil
			if bd != nil {
				p.drop = append(p.drop, bd)
			}
			p.st.Members = append(p.st.Members, ms)
			continue
		}
		r := rs[m.URI]
		fresh := bd == nil
		if fresh {
			bd = newBackend(l, r, ms)
		}
		n, err := c.render(r, bd)
		var rf *refusal
		if errors.As(err, &rf) {
			n, err = &abi.Notification{Status: abi.StatusRejected}, nil
		}
		if err != nil {
			return plan{}, err
		}
		was := ms.Status
		take(&ms, n)
		switch {
		case ms.Status == abi.StatusTerminated && !fresh:
			p.drop = append(p.drop, bd)
		case ms.Status != abi.StatusTerminated && fresh:
			p.add = append(p.add, bd)
		case was == abi.StatusPending && ms.Status == abi.StatusActive:
			p.approved = append(p.approved, bd)
		}
		p.st.Members = append(p.st.Members, ms)
	}
	for u, bd := range l.backends {
		if !def.Has(u) {
			p.drop = append(p.drop, bd)
		}
	}
	return p, nil
}

// applyPlan makes a committed plan live, and lists the watcher events its
// back-ends cause; l.mu and every resource are locked.
func (s *Server) applyPlan(c *change, l *listDialog, p plan) {
	l.st = p.st
	l.d.state = p.st.encode()
	for _, bd := range p.drop {
		s.forgetBackend(bd)
		c.watcherEvent(bd, abi.StatusTerminated, "deactivated")
	}
	for _, bd := range p.add {
		bd.res.addWatcher(bd)
		l.backends[bd.res.key.uri] = bd
		if s.opt.Watch != nil {
			s.opt.Watch.Watch(bd.event(), bd.resource())
		}
		c.watcherEvent(bd, bd.status(), "subscribe")
	}
	for _, bd := range l.backends {
		if ms := l.st.member(bd.res.key.uri); ms != nil {
			bd.state = ms.Module
			bd.setStatus(ms.Status)
		}
		bd.exp.at = l.d.exp.at
	}
	for _, bd := range p.approved {
		c.watcherEvent(bd, abi.StatusActive, "approved")
	}
}

// newBackend is the back-end dialog of member ms of l, on r: the list
// subscriber watching the member, with the Accept of its SUBSCRIBE less
// the list's own types.
func newBackend(l *listDialog, r *resource, ms memberState) *dialog {
	d := l.d
	bd := &dialog{created: d.created, res: r, list: l, state: ms.Module, auth: statusOf(ms.Status)}
	bd.setIdentity(identity{id: d.id() + "/" + ms.Instance, callID: d.callID(), localURI: r.key.uri, remoteURI: d.remoteURI(),
		transport: "rls", source: d.id(), target: d.resource()})
	var accept []string
	for _, a := range d.acceptList() {
		t, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(a)), ";")
		if t != "multipart/related" && t != "application/rlmi+xml" {
			accept = append(accept, a)
		}
	}
	bd.setAccept(accept)
	bd.exp.at = d.exp.at
	return bd
}

// forgetBackend ends back-end dialog bd; its resource and list are locked.
func (s *Server) forgetBackend(bd *dialog) {
	if bd.gone {
		return
	}
	bd.gone = true
	bd.res.removeWatcher(bd)
	if bd.list.backends[bd.res.key.uri] == bd {
		delete(bd.list.backends, bd.res.key.uri)
	}
	if s.opt.Watch != nil {
		s.opt.Watch.Unwatch(bd.event(), bd.resource())
	}
}

// servesDomain reports whether uri is on a domain this server serves.
func (s *Server) servesDomain(uri string) bool {
	if len(s.domains) == 0 {
		return true
	}
	var u sip.Uri
	return sip.ParseUri(uri, &u) == nil && s.domains[strings.ToLower(u.Host)]
}

// take keeps what a rendering for a member's back-end says: its module
// state, its authorization and, when active, its document. A nil
// rendering changes nothing but makes a new member active.
func take(ms *memberState, n *abi.Notification) {
	if n == nil {
		if ms.Status == "" {
			ms.Status = abi.StatusActive
		}
		return
	}
	if n.StateChanged {
		ms.Module = n.State
	}
	switch n.Status {
	case abi.StatusRejected, abi.StatusTerminated:
		ms.Status, ms.Reason, ms.Type, ms.Body = abi.StatusTerminated, "rejected", "", nil
	case abi.StatusPending:
		ms.Status, ms.Reason, ms.Type, ms.Body = abi.StatusPending, "", "", nil
	default:
		if n.Status == abi.StatusActive || ms.Status == "" {
			ms.Status, ms.Reason = abi.StatusActive, ""
		}
		if ms.Status == abi.StatusActive && n.ContentType != "" {
			ms.Type, ms.Body = n.ContentType, n.Body
		}
	}
}

// listChange is what one change does to one list subscription: the state
// it stages, the members whose instance it changes, and what it sends.
type listChange struct {
	st      listState
	changed map[string]bool
	ended   []*dialog
	// staged are the back-ends the change rendered for: their resources
	// are locked by it, so apply may write their fields (not the others').
	staged []*dialog
	// approved are back-ends a change made active from pending.
	approved []*dialog
	notify   bool // a NOTIFY now, of the members in include
	include  map[string]bool
	held     bool // a throttle window holds the NOTIFY back
}

// lockLists locks, by dialog id, the list subscriptions whose back-ends
// this change's module answers address: their state is staged, committed
// and applied with the change, and no other change of theirs may run in
// between. apply unlocks them, or commit when it fails.
func (c *change) lockLists() {
	seen := map[*listDialog]bool{}
	for _, st := range c.steps {
		if st.res == nil {
			continue
		}
		for i := range st.res.Notifications {
			if d := st.r.watcher(st.res.Notifications[i].WatcherID); d != nil && d.isBackend() && !seen[d.list] {
				seen[d.list] = true
				c.locked = append(c.locked, d.list)
			}
		}
	}
	sort.Slice(c.locked, func(i, j int) bool { return c.locked[i].d.id() < c.locked[j].d.id() })
	for _, l := range c.locked {
		l.mu.Lock()
	}
}

func (c *change) unlockLists() {
	for _, l := range c.locked {
		l.mu.Unlock()
	}
	c.locked = nil
}

// stageMember stages what the module rendered for back-end bd into its
// list subscription's state. final is the Subscription-State of a change
// that ends every subscription of the member's resource.
func (c *change) stageMember(bd *dialog, n *abi.Notification, final string) {
	l := bd.list
	if bd.gone || l.d.gone {
		return
	}
	if c.lists == nil {
		c.lists = map[*listDialog]*listChange{}
	}
	lc := c.lists[l]
	if lc == nil {
		lc = &listChange{st: l.st.clone(), changed: map[string]bool{}}
		c.lists[l] = lc
	}
	ms := lc.st.member(bd.res.key.uri)
	if ms == nil {
		return
	}
	lc.staged = append(lc.staged, bd)
	before := *ms
	if final != "" {
		_, reason, _ := strings.Cut(final, "reason=")
		reason, _, _ = strings.Cut(reason, ";")
		if n.StateChanged {
			ms.Module = n.State
		}
		ms.Status, ms.Reason, ms.Type, ms.Body = abi.StatusTerminated, reason, "", nil
	} else {
		take(ms, n)
	}
	if ms.Status == abi.StatusTerminated {
		lc.ended = append(lc.ended, bd)
	} else if before.Status == abi.StatusPending && ms.Status == abi.StatusActive {
		lc.approved = append(lc.approved, bd)
	}
	if ms.Status != before.Status || ms.Reason != before.Reason || ms.Type != before.Type || !bytes.Equal(ms.Body, before.Body) {
		lc.changed[ms.URI] = true
	}
}

// stageLists decides, for each list subscription the change touched,
// whether its NOTIFY goes now or waits for the end of a throttle window,
// and stages its record.
func (c *change) stageLists() {
	for l, lc := range c.lists {
		if len(lc.changed) > 0 {
			if c.s.listHeld(l) {
				lc.held = true
				for u := range lc.changed {
					lc.st.member(u).Dirty = true
				}
			} else {
				lc.notify, lc.include = true, map[string]bool{}
				for i := range lc.st.Members {
					if ms := &lc.st.Members[i]; ms.Dirty || lc.changed[ms.URI] {
						lc.include[ms.URI], ms.Dirty = true, false
					}
				}
				lc.st.Version++
			}
		}
		rec := l.d.record()
		rec.State = lc.st.encode()
		c.batch.Subscriptions = append(c.batch.Subscriptions, rec)
	}
}

// listHeld reports whether a list NOTIFY is to wait for the end of the
// throttle window (RFC 4662 §6): one is in progress, or the last NOTIFY
// was rendered less than a window ago. l.mu is held.
func (s *Server) listHeld(l *listDialog) bool {
	w := s.opt.ListThrottle
	return w > 0 && (l.hold != nil || time.Since(l.sent) < w)
}

// applyLists makes the staged list states live and lists their NOTIFYs
// and watcher events; then unlocks the lists.
func (c *change) applyLists() {
	defer c.unlockLists()
	for l, lc := range c.lists {
		l.st = lc.st
		l.d.state = lc.st.encode()
		for _, bd := range lc.ended {
			c.s.forgetBackend(bd)
			c.watcherEvent(bd, abi.StatusTerminated, l.st.member(bd.res.key.uri).Reason)
		}
		for _, bd := range lc.approved {
			c.watcherEvent(bd, abi.StatusActive, "approved")
		}
		for _, bd := range lc.staged {
			if ms := l.st.member(bd.res.key.uri); ms != nil {
				bd.state = ms.Module
				bd.setStatus(ms.Status)
			}
		}
		switch {
		case lc.notify:
			l.sent = time.Now()
			c.notify(l.d, l.d.subState(), c.s.listNotification(l, c.s.listDef(l.d.resource()), false, lc.include), false)
		case lc.held && l.hold == nil:
			c.s.opt.Metrics.NotifyCoalesced(l.d.event())
			wait := time.Until(l.sent.Add(c.s.opt.ListThrottle))
			// The closure names the window by h, allocated before the
			// timer starts: reading the timer from it would race with
			// AfterFunc's return.
			h := &hold{since: time.Now()}
			h.timer = time.AfterFunc(max(wait, time.Millisecond), func() { c.s.endListHold(l, h) })
			l.hold = h
		case lc.held:
			c.s.opt.Metrics.NotifyCoalesced(l.d.event())
		}
	}
}

// endListHold sends, at the end of a throttle window, one NOTIFY with
// every member that changed during it.
func (s *Server) endListHold(l *listDialog, h *hold) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.hold != h || l.d.gone || s.ctx.Err() != nil {
		return
	}
	l.hold = nil
	st := l.st.clone()
	include := map[string]bool{}
	for i := range st.Members {
		if ms := &st.Members[i]; ms.Dirty {
			include[ms.URI], ms.Dirty = true, false
		}
	}
	if len(include) == 0 {
		return
	}
	st.Version++
	c := s.newChange()
	rec := l.d.record()
	rec.State = st.encode()
	c.batch.Subscriptions = []store.Subscription{rec}
	c.since = time.Now()
	if err := c.commit(); err != nil {
		// The changes stay marked: the next member change or refresh
		// carries them.
		s.log.Warn("throttled list NOTIFY not sent", "list", l.d.resource(), "watcher", l.d.remoteURI(), "err", err)
		return
	}
	c.then(func() {
		l.st, l.d.state, l.sent = st, rec.State, time.Now()
	})
	c.apply()
	c.notify(l.d, l.d.subState(), s.listNotification(l, s.listDef(l.d.resource()), false, include), false)
	c.emit()
}

// listNotification renders l's state as a NOTIFY body (RFC 4662 §5):
// the RLMI document of every member (full) or of those in include, and
// beside it each of their documents an active instance has.
func (s *Server) listNotification(l *listDialog, def *rls.List, full bool, include map[string]bool) *abi.Notification {
	names := map[string]string{}
	if def != nil {
		for _, m := range def.Members {
			names[m.URI] = m.Name
		}
	}
	host := "presenced"
	var u sip.Uri
	if sip.ParseUri(l.d.resource(), &u) == nil && u.Host != "" {
		host = u.Host
	}
	var res []rls.Resource
	var parts []rls.Part
	for _, ms := range l.st.Members {
		if !full && !include[ms.URI] {
			continue
		}
		in := rls.Instance{ID: ms.Instance, State: ms.Status, Reason: ms.Reason}
		if in.State == "" {
			in.State = abi.StatusActive
		}
		if ms.Status == abi.StatusActive && ms.Type != "" {
			in.CID = fmt.Sprintf("%s.%d@%s", ms.Instance, l.st.Version, host)
			parts = append(parts, rls.Part{CID: in.CID, ContentType: ms.Type, Body: ms.Body})
		}
		res = append(res, rls.Resource{URI: ms.URI, Name: names[ms.URI], Instances: []rls.Instance{in}})
	}
	doc := rls.RLMI(l.d.resource(), l.st.Version, full, res)
	ctype, body := rls.Multipart(fmt.Sprintf("rlmi.%d@%s", l.st.Version, host), doc, parts, "presenced-"+newToken())
	return &abi.Notification{WatcherID: l.d.id(), ContentType: ctype, Body: body}
}

// refreshList is a SUBSCRIBE in a list subscription's dialog: a refresh,
// answered with the full state of every member, each rendered again, or
// with Expires: 0 its end.
func (s *Server) refreshList(req *sip.Request, tx sip.ServerTransaction, ev header.Event, ep *eventPackage, d *dialog) error {
	rs, def, unlock := s.lockList(d)
	defer unlock()
	l := d.list
	secs, err := s.inDialog(req, ev, ep, d)
	if err != nil {
		return err
	}
	ok := func() { s.refreshOK(req, tx, secs, sip.NewHeader("Require", "eventlist")) }
	if secs == 0 || def == nil {
		reason := "timeout"
		if def == nil {
			reason = "noresource"
		}
		c, err := s.endList(l, def, reason)
		if err != nil {
			return err
		}
		ok()
		c.emit()
		return nil
	}
	rec := d.record()
	rec.RemoteCSeq = req.CSeq().SeqNo
	rec.Expires = time.Now().Add(time.Duration(secs) * time.Second)
	if c := req.Contact(); c != nil {
		rec.RemoteTarget = c.Address.String()
	}
	if a := header.Accept(req); a != nil {
		rec.Accept = a
	}
	c := s.newChange()
	p, err := s.planList(c, l, def, rs)
	if err != nil {
		return err
	}
	rec.State = p.st.encode()
	c.batch.Subscriptions = []store.Subscription{rec}
	if err := c.commit(); err != nil {
		return err
	}
	c.then(func() {
		d.update(rec)
		s.armTimer(d, rec.Expires)
		s.applyPlan(c, l, p)
	})
	c.apply()
	ok()
	c.notify(d, d.subState(), s.listNotification(l, def, true, nil), false)
	c.emit()
	return nil
}

// syncList brings list subscription d up to its definition and sends it
// the full state: after an operator changed the list, after a reload of
// the rls-services file, and after a restart. A list gone ends it
// (noresource).
func (s *Server) syncList(d *dialog) error {
	rs, def, unlock := s.lockList(d)
	defer unlock()
	l := d.list
	if d.gone {
		return nil
	}
	if def == nil {
		c, err := s.endList(l, nil, "noresource")
		if err != nil {
			return err
		}
		c.emit()
		return nil
	}
	c := s.newChange()
	p, err := s.planList(c, l, def, rs)
	if err != nil {
		return err
	}
	rec := d.record()
	rec.State = p.st.encode()
	c.batch.Subscriptions = []store.Subscription{rec}
	if err := c.commit(); err != nil {
		return err
	}
	c.then(func() { s.applyPlan(c, l, p) })
	c.apply()
	l.sent = time.Now()
	c.notify(d, d.subState(), s.listNotification(l, def, true, nil), false)
	c.emit()
	return nil
}

// endList ends list subscription l and its back-ends: the deletion
// committed and applied, the final NOTIFY (full state) listed for the
// caller to emit once it has answered. Everything lockList takes is held.
func (s *Server) endList(l *listDialog, def *rls.List, reason string) (*change, error) {
	d := l.d
	c := s.newChange()
	c.batch.DeleteSubscriptions = []string{d.id()}
	if err := c.commit(); err != nil {
		return nil, err
	}
	ended := make([]*dialog, 0, len(l.backends))
	for _, bd := range l.backends {
		ended = append(ended, bd)
	}
	c.then(func() {
		for _, bd := range ended {
			s.forgetBackend(bd)
			c.watcherEvent(bd, abi.StatusTerminated, reason)
		}
		if l.hold != nil {
			l.hold.timer.Stop()
			l.hold = nil
		}
		s.forget(d)
	})
	c.apply()
	l.st.Version++
	c.notify(d, "terminated;reason="+reason, s.listNotification(l, def, true, nil), true)
	return c, nil
}

// dropList ends list subscription d: with a final NOTIFY (final), or
// without one when its NOTIFY failed or its WebSocket closed. expiring
// ends it only if its time is up (a refresh may have come first).
func (s *Server) dropList(d *dialog, final, expiring bool, reason string) error {
	_, def, unlock := s.lockList(d)
	defer unlock()
	if d.gone || (expiring && time.Now().Before(d.expires())) {
		return nil
	}
	c, err := s.endList(d.list, def, reason)
	if err != nil {
		return err
	}
	if !final {
		c.out = slices.DeleteFunc(c.out, func(e emission) bool { return e.d == d })
	}
	c.emit()
	return nil
}

// listDialogsOf lists the live subscriptions to list uri.
func (s *Server) listDialogsOf(uri string) []*dialog {
	var out []*dialog
	for _, r := range s.resourcesSnapshot() {
		if r.key.uri != uri {
			continue
		}
		s.lock(r)
		for _, d := range r.watchers {
			if d.isList() {
				out = append(out, d)
			}
		}
		r.mu.Unlock()
	}
	return out
}

// syncListsOf syncs every subscription to list uri, logging failures: the
// list's own change is committed already.
func (s *Server) syncListsOf(uri string) {
	for _, d := range s.listDialogsOf(uri) {
		if err := s.syncList(d); err != nil {
			s.log.Warn("list subscription not brought up to date", "list", uri, "watcher", d.remoteURI(), "err", err)
		}
	}
}
