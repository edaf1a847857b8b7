package server

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/internal/header"
	"github.com/presenced/presenced/internal/store"
)

// binding is a live registrar binding; it changes only under Server.regMu.
type binding struct {
	rec store.Binding
	exp expiry
}

// bindingChange is one binding added, refreshed or removed by a REGISTER
// or by expiry.
type bindingChange struct {
	rec     store.Binding
	removed bool
	old     *binding // the binding replaced or removed, nil for a new one
}

// onRegister is a registrar (RFC 3261 §10.3): it keeps the bindings of
// each address of record and hands every change to the packages that
// compose presence from registrations.
func (s *Server) onRegister(req *sip.Request, tx sip.ServerTransaction) {
	to := req.To().Address
	if to.User == "" {
		s.reply(req, tx, 404, "To has no user part")
		return
	}
	host := strings.ToLower(to.Host)
	if len(s.domains) > 0 && !s.domains[host] {
		s.reply(req, tx, 404, fmt.Sprintf("domain %q is not served here", host))
		return
	}
	aor, ok := presentityOf(to)
	if !ok {
		s.reply(req, tx, 400, fmt.Sprintf("To %s names no address of record (sip:user@host)", to.String()))
		return
	}
	headerSecs, headerGiven, err := header.Expires(req)
	if err != nil {
		s.reply(req, tx, 400, err.Error())
		return
	}
	callID, cseq := req.CallID().Value(), req.CSeq().SeqNo

	s.regMu.Lock()
	defer s.regMu.Unlock()
	current := s.bindings[aor]
	var changes []bindingChange
	contacts := req.GetHeaders("Contact")
	for i, h := range contacts {
		c, ok := h.(*sip.ContactHeader)
		if !ok {
			s.reply(req, tx, 400, "malformed Contact header")
			return
		}
		if c.Address.Wildcard {
			// "*" removes every binding, and only with Expires: 0 and alone
			// (RFC 3261 §10.3 step 6).
			if len(contacts) != 1 || !headerGiven || headerSecs != 0 {
				s.reply(req, tx, 400, "Contact: * needs Expires: 0 and no other Contact")
				return
			}
			for _, b := range current {
				if b.rec.CallID == callID && cseq <= b.rec.CSeq {
					s.reply(req, tx, 500, fmt.Sprintf("CSeq %d is not above %d", cseq, b.rec.CSeq))
					return
				}
				changes = append(changes, bindingChange{rec: b.rec, removed: true, old: b})
			}
			break
		}
		secs := s.opt.Registrar.Default
		if headerGiven {
			secs = headerSecs
		}
		if v, ok := c.Params.Get("expires"); ok {
			if secs, err = header.ParseExpires(v); err != nil {
				s.reply(req, tx, 400, fmt.Sprintf("Contact %d: bad expires: %v", i+1, err))
				return
			}
		}
		if secs > 0 && secs < s.opt.Registrar.Min {
			s.reply(req, tx, 423, fmt.Sprintf("expires %d is below the minimum %d", secs, s.opt.Registrar.Min),
				sip.NewHeader("Min-Expires", strconv.Itoa(s.opt.Registrar.Min)))
			return
		}
		secs = min(secs, s.opt.Registrar.Max)
		contact := c.Address.String()
		old := current[contact]
		if old != nil && old.rec.CallID == callID && cseq <= old.rec.CSeq {
			s.reply(req, tx, 500, fmt.Sprintf("CSeq %d is not above %d", cseq, old.rec.CSeq))
			return
		}
		if secs == 0 {
			if old != nil {
				changes = append(changes, bindingChange{rec: old.rec, removed: true, old: old})
			}
			continue
		}
		rec := store.Binding{ID: newToken(), AOR: aor, Contact: contact, CallID: callID, CSeq: cseq,
			Expires: time.Now().Add(time.Duration(secs) * time.Second)}
		if old != nil {
			rec.ID = old.rec.ID
		}
		if q, ok := c.Params.Get("q"); ok {
			if _, err := strconv.ParseFloat(q, 64); err != nil {
				s.reply(req, tx, 400, fmt.Sprintf("Contact %d: bad q %q", i+1, q))
				return
			}
			rec.Q = q
		}
		changes = append(changes, bindingChange{rec: rec, old: old})
	}
	locked, ok := s.applyBindings(req, tx, aor, changes)
	if !ok {
		return
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	for _, b := range sortedBindings(s.bindings[aor]) {
		var u sip.Uri
		if err := sip.ParseUri(b.rec.Contact, &u); err != nil {
			continue
		}
		ch := &sip.ContactHeader{Address: u, Params: sip.NewParams()}
		ch.Params.Add("expires", strconv.Itoa(int(max(0, time.Until(b.rec.Expires).Round(time.Second).Seconds()))))
		if b.rec.Q != "" {
			ch.Params.Add("q", b.rec.Q)
		}
		res.AppendHeader(ch)
	}
	res.AppendHeader(sip.NewHeader("Date", time.Now().UTC().Format(http1123)))
	s.respond(req, tx, res, "")
	s.notifyBinders(locked)
}

const http1123 = "Mon, 02 Jan 2006 15:04:05 GMT"

func sortedBindings(m map[string]*binding) []*binding {
	out := make([]*binding, 0, len(m))
	for _, b := range m {
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].rec.Contact < out[j].rec.Contact })
	return out
}

// applyBindings runs changes through every binding package, commits the
// bindings and the new module states in one batch, and makes them live;
// the NOTIFYs wait in each resource for notifyBinders. With req nil
// (expiry) failures are logged. s.regMu is held; the resources returned
// stay locked until notifyBinders.
func (s *Server) applyBindings(req *sip.Request, tx sip.ServerTransaction, aor string, changes []bindingChange) ([]*resource, bool) {
	if len(changes) == 0 {
		return nil, true
	}
	b := &store.Batch{}
	for _, c := range changes {
		if c.removed {
			b.DeleteBindings = append(b.DeleteBindings, c.rec.ID)
		} else {
			b.Bindings = append(b.Bindings, c.rec)
		}
	}
	type pending struct {
		r   *resource
		old []byte
		res *abi.Response
	}
	var done []pending
	undo := func() {
		for _, p := range done {
			p.r.state = p.old
			s.release(p.r)
		}
	}
	for _, ep := range s.cat().binders {
		r := s.lockResource(ep, aor)
		p := pending{r: r, old: r.state}
		// A REGISTER may change several bindings: each call sees the
		// state the previous one returned; only the last rendering is
		// sent, and nothing stays if any call fails.
		for _, c := range changes {
			in := &abi.Binding{ID: c.rec.ID, Contact: c.rec.Contact, Q: c.rec.Q,
				ExpiresUnix: c.rec.Expires.Unix(), Removed: c.removed}
			res, err := s.call(r, abi.Request{Op: abi.OpBinding, Binding: in}, nil)
			if err == nil && res.Code != 0 {
				err = fmt.Errorf("%s refused the binding: %d %s", ep.mod.Name(), res.Code, res.Reason)
			}
			if err != nil {
				r.state = p.old
				s.release(r)
				undo()
				s.log.Warn("binding change not applied", "aor", aor, "err", err)
				if req != nil {
					s.moduleError(req, tx, err)
				}
				return nil, false
			}
			if res.StateChanged {
				r.state = res.State
			}
			p.res = res
		}
		done = append(done, p)
		stage(b, r, p.res, nil)
	}
	if !s.commit(req, tx, b) {
		undo()
		return nil, false
	}
	locked := make([]*resource, 0, len(done))
	for _, p := range done {
		p.res.StateChanged = false // r.state already holds it
		p.r.pending = p.res
		locked = append(locked, p.r)
	}
	if s.bindings[aor] == nil {
		s.bindings[aor] = map[string]*binding{}
	}
	for _, c := range changes {
		if c.old != nil {
			s.timers.stop(&c.old.exp)
			delete(s.bindings[aor], c.old.rec.Contact)
		}
		if !c.removed {
			bd := &binding{rec: c.rec}
			s.bindings[aor][c.rec.Contact] = bd
			s.armBinding(bd)
		}
	}
	if len(s.bindings[aor]) == 0 {
		delete(s.bindings, aor)
	}
	return locked, true
}

// notifyBinders sends what applyBindings left pending in the resources it
// locked, and unlocks them.
func (s *Server) notifyBinders(locked []*resource) {
	for _, r := range locked {
		s.notifyAll(r)
		s.release(r)
	}
}

// armBinding (re)starts a binding's expiry timer; s.regMu is held.
func (s *Server) armBinding(b *binding) {
	s.timers.arm(&b.exp, b, b.rec.Expires)
}

func (b *binding) expired(s *Server) { s.expireBinding(b) }

func (s *Server) expireBinding(b *binding) {
	s.regMu.Lock()
	defer s.regMu.Unlock()
	if s.bindings[b.rec.AOR][b.rec.Contact] != b || time.Now().Before(b.rec.Expires) {
		return
	}
	locked, ok := s.applyBindings(nil, nil, b.rec.AOR, []bindingChange{{rec: b.rec, removed: true, old: b}})
	if !ok {
		s.timers.arm(&b.exp, b, time.Now().Add(retryExpiry))
		return
	}
	s.notifyBinders(locked)
}
