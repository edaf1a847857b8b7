package server

import (
	"errors"
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
	// flow is the connection its last REGISTER came over, TCP or TLS; not
	// stored, since no connection outlives the process.
	flow flow
}

// flow is a binding as the NOTIFY sender looks it up: the connection
// (transport, source ip:port) a REGISTER came over, and what a
// subscriber's Contact is matched with.
type flow struct {
	transport, source string // "TCP" or "TLS"; "" for a datagram REGISTER
	contact, instance string
}

// bindingChange is one binding added, refreshed or removed by a REGISTER
// or by expiry.
type bindingChange struct {
	rec     store.Binding
	removed bool
	old     *binding // the binding replaced or removed, nil for a new one
	flow    flow     // of the REGISTER that added or refreshed it
}

// register is a registrar (RFC 3261 §10.3): it keeps the bindings of
// each address of record and hands every change to the packages that
// compose presence from registrations.
// An error it returns has not been answered (answered does).
func (s *Server) register(req *sip.Request, tx sip.ServerTransaction) error {
	to := req.To().Address
	if to.User == "" {
		return refuse(404, "To has no user part")
	}
	host := strings.ToLower(to.Host)
	if len(s.domains) > 0 && !s.domains[host] {
		return refusef(404, "domain %q is not served here", host)
	}
	aor, ok := presentityOf(to)
	if !ok {
		return refusef(400, "To %s names no address of record (sip:user@host)", to.String())
	}
	path, err := header.Path(req)
	if err != nil {
		return refuse(400, err.Error())
	}
	s.regMu.Lock()
	defer s.regMu.Unlock()
	changes, err := s.bindingChanges(req, aor, path)
	if err != nil {
		return err
	}
	c, locked, err := s.applyBindings(aor, changes)
	if err != nil {
		return err
	}
	defer s.releaseAll(locked)
	var hdrs []sip.Header
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
		if b.rec.Instance != "" {
			ch.Params.Add("+sip.instance", `"`+b.rec.Instance+`"`)
		}
		if b.rec.RegID != 0 {
			ch.Params.Add("reg-id", strconv.FormatUint(uint64(b.rec.RegID), 10))
		}
		hdrs = append(hdrs, ch)
	}
	// RFC 3327 §5.3: the Path is returned only to a client that said it
	// understands it; it is stored either way.
	if header.Supported(req, "path") {
		for _, p := range path {
			hdrs = append(hdrs, sip.NewHeader("Path", p))
		}
	}
	s.replyOK(req, tx, "", append(hdrs, sip.NewHeader("Date", time.Now().UTC().Format(http1123)))...)
	c.emit()
	return nil
}

// bindingChanges is what a REGISTER's Contacts ask of aor's bindings
// (RFC 3261 §10.3 steps 6 and 7): added, refreshed, replaced or removed,
// each with its expiry and the REGISTER's Path. s.regMu is held.
func (s *Server) bindingChanges(req *sip.Request, aor string, path []string) ([]bindingChange, error) {
	headerSecs, headerGiven, err := header.Expires(req)
	if err != nil {
		return nil, refuse(400, err.Error())
	}
	callID, cseq := req.CallID().Value(), req.CSeq().SeqNo
	current := s.bindings[aor]
	var changes []bindingChange
	seen := map[string]int{} // binding key -> the Contact that named it
	contacts := header.All(req, "Contact")
	for i, h := range contacts {
		c, ok := h.(*sip.ContactHeader)
		if !ok {
			return nil, refuse(400, "malformed Contact header")
		}
		if c.Address.Wildcard {
			// "*" removes every binding, and only with Expires: 0 and alone
			// (RFC 3261 §10.3 step 6).
			if len(contacts) != 1 || !headerGiven || headerSecs != 0 {
				return nil, refuse(400, "Contact: * needs Expires: 0 and no other Contact")
			}
			for _, b := range current {
				if b.rec.CallID == callID && cseq <= b.rec.CSeq {
					return nil, refusef(500, "CSeq %d is not above %d", cseq, b.rec.CSeq)
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
				return nil, refusef(400, "Contact %d: bad expires: %v", i+1, err)
			}
		}
		if secs > 0 && secs < s.opt.Registrar.Min {
			return nil, refuse(423, fmt.Sprintf("expires %d is below the minimum %d", secs, s.opt.Registrar.Min),
				sip.NewHeader("Min-Expires", strconv.Itoa(s.opt.Registrar.Min)))
		}
		secs = min(secs, s.opt.Registrar.Max)
		// Cloned: a parsed header's value keeps the request's headers
		// (parseRequest).
		rec := store.Binding{AOR: aor, Contact: c.Address.String(), CallID: strings.Clone(callID), CSeq: cseq,
			Expires: time.Now().Add(time.Duration(secs) * time.Second), Path: path}
		if v, ok := c.Params.Get("+sip.instance"); ok {
			if rec.Instance, err = header.Instance(v); err != nil {
				return nil, refusef(400, "Contact %d: %v", i+1, err)
			}
		}
		if v, ok := c.Params.Get("reg-id"); ok {
			if rec.Instance == "" {
				// RFC 5626 §6: a reg-id names a flow of an instance.
				return nil, refusef(400, "Contact %d: reg-id without +sip.instance", i+1)
			}
			if rec.RegID, err = header.RegID(v); err != nil {
				return nil, refusef(400, "Contact %d: %v", i+1, err)
			}
		}
		key := bindingKey(rec)
		if j, ok := seen[key]; ok {
			return nil, refusef(400, "Contacts %d and %d name the same binding", j, i+1)
		}
		seen[key] = i + 1
		old := matchBinding(current, rec)
		if old != nil && old.rec.CallID == callID && cseq <= old.rec.CSeq {
			return nil, refusef(500, "CSeq %d is not above %d", cseq, old.rec.CSeq)
		}
		if secs == 0 {
			if old != nil {
				changes = append(changes, bindingChange{rec: old.rec, removed: true, old: old})
			}
			continue
		}
		// A binding replaced by the same instance from another address
		// keeps its ID: the modules see one binding whose contact moved,
		// not one more device.
		rec.ID = newToken()
		if old != nil {
			rec.ID = old.rec.ID
		}
		if q, ok := c.Params.Get("q"); ok {
			if _, err := strconv.ParseFloat(q, 64); err != nil {
				return nil, refusef(400, "Contact %d: bad q %q", i+1, q)
			}
			rec.Q = strings.Clone(q)
		}
		ch := bindingChange{rec: rec, old: old}
		if tr := req.Transport(); tr == "TCP" || tr == "TLS" {
			ch.flow = flow{transport: tr, source: req.Source(), contact: rec.Contact, instance: rec.Instance}
		}
		changes = append(changes, ch)
	}
	return changes, nil
}

const http1123 = "Mon, 02 Jan 2006 15:04:05 GMT"

// bindingKey is what identifies a binding among its AOR's: its instance
// and reg-id when it has an instance (RFC 5626 §6, RFC 5627), its contact
// URI otherwise (RFC 3261 §10.3). A phone that registers again from a new
// port (a new TCP connection, a NAT rebinding) keeps its instance and so
// replaces its binding instead of adding one that would stay open until
// it expired.
func bindingKey(rec store.Binding) string {
	if rec.Instance == "" {
		return rec.Contact
	}
	return rec.Instance + ";reg-id=" + strconv.FormatUint(uint64(rec.RegID), 10)
}

// matchBinding is the binding of current that rec's Contact names: the
// one with its key or, for a Contact without an instance, the one with
// its URI whatever its instance, since RFC 3261 compares bindings by URI.
func matchBinding(current map[string]*binding, rec store.Binding) *binding {
	if b := current[bindingKey(rec)]; b != nil || rec.Instance != "" {
		return b
	}
	for _, b := range current {
		if b.rec.Contact == rec.Contact {
			return b
		}
	}
	return nil
}

func sortedBindings(m map[string]*binding) []*binding {
	out := make([]*binding, 0, len(m))
	for _, b := range m {
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].rec.Contact < out[j].rec.Contact })
	return out
}

// applyBindings is one change for a REGISTER's binding changes (or an
// expiry's): every binding package's module is proposed each change in
// turn (each call sees the state the one before staged; the last
// rendering is what watchers are sent), the bindings are committed with
// the modules' answers, and the change is applied; the caller emits, then
// releases the resources returned, locked until then. s.regMu is held.
func (s *Server) applyBindings(aor string, changes []bindingChange) (*change, []*resource, error) {
	c := s.newChange()
	if len(changes) == 0 {
		return c, nil, nil
	}
	var locked []*resource
	for _, ep := range s.cat().binders {
		r := s.lockResource(ep, aor)
		locked = append(locked, r)
		for _, ch := range changes {
			in := &abi.Binding{ID: ch.rec.ID, Contact: ch.rec.Contact, Q: ch.rec.Q,
				ExpiresUnix: ch.rec.Expires.Unix(), Removed: ch.removed}
			_, err := c.propose(r, abi.Request{Op: abi.OpBinding, Binding: in})
			var rf *refusal
			if errors.As(err, &rf) {
				// Not the client's fault: a module has no say in
				// registrations, so its refusal is the server's failure.
				err = fmt.Errorf("%s refused the binding: %v", ep.mod.Name(), rf)
			}
			if err != nil {
				s.releaseAll(locked)
				s.log.Warn("binding change not applied", "aor", aor, "err", err)
				return nil, nil, err
			}
		}
	}
	for _, ch := range changes {
		if ch.removed {
			c.batch.DeleteBindings = append(c.batch.DeleteBindings, ch.rec.ID)
		} else {
			c.batch.Bindings = append(c.batch.Bindings, ch.rec)
		}
	}
	if err := c.commit(); err != nil {
		s.releaseAll(locked)
		return nil, nil, err
	}
	c.then(func() { s.bind(aor, changes) })
	c.apply()
	return c, locked, nil
}

// bind makes binding changes live; s.regMu is held.
func (s *Server) bind(aor string, changes []bindingChange) {
	if s.bindings[aor] == nil {
		s.bindings[aor] = map[string]*binding{}
	}
	for _, c := range changes {
		if c.old != nil {
			s.timers.stop(c.old)
			delete(s.bindings[aor], bindingKey(c.old.rec))
		}
		if !c.removed {
			bd := &binding{rec: c.rec, flow: c.flow}
			s.bindings[aor][bindingKey(c.rec)] = bd
			s.armBinding(bd)
		}
	}
	var flows []flow
	for _, b := range s.bindings[aor] {
		if b.flow.source != "" {
			flows = append(flows, b.flow)
		}
	}
	if len(s.bindings[aor]) == 0 {
		delete(s.bindings, aor)
	}
	s.flowMu.Lock()
	if len(flows) == 0 {
		delete(s.flows, aor)
	} else {
		s.flows[aor] = flows
	}
	s.flowMu.Unlock()
}

// registeredFlow is the source of a live TCP or TLS connection over which
// d's subscriber registered a binding, "" if there is none: a binding of
// the subscriber's address of record with d's instance or, without one,
// d's Contact URI. Any lock may be held.
func (s *Server) registeredFlow(d *dialog, transport string) string {
	var u sip.Uri
	if err := sip.ParseUri(d.remoteURI(), &u); err != nil {
		return ""
	}
	aor, ok := presentityOf(u)
	if !ok {
		return ""
	}
	s.flowMu.Lock()
	flows := s.flows[aor]
	s.flowMu.Unlock()
	for _, f := range flows {
		if !strings.EqualFold(f.transport, transport) {
			continue
		}
		if inst := d.instance(); inst != "" && f.instance == inst || inst == "" && f.contact == d.target() {
			if c, err := s.ua.TransportLayer().GetConnection(transport, f.source); err == nil && c != nil {
				c.TryClose() // GetConnection took a reference
				return f.source
			}
		}
	}
	return ""
}

// releaseAll releases resources locked by applyBindings.
func (s *Server) releaseAll(locked []*resource) {
	for _, r := range locked {
		s.release(r)
	}
}

// armBinding (re)starts a binding's expiry timer; s.regMu is held.
func (s *Server) armBinding(b *binding) {
	s.timers.arm(b, b.rec.Expires)
}

func (b *binding) expired(s *Server) { s.expireBinding(b) }
func (b *binding) due() *expiry      { return &b.exp }

func (s *Server) expireBinding(b *binding) {
	s.regMu.Lock()
	defer s.regMu.Unlock()
	if s.bindings[b.rec.AOR][bindingKey(b.rec)] != b || time.Now().Before(b.rec.Expires) {
		return
	}
	c, locked, err := s.applyBindings(b.rec.AOR, []bindingChange{{rec: b.rec, removed: true, old: b}})
	if err != nil {
		s.timers.arm(b, time.Now().Add(retryExpiry))
		return
	}
	c.emit()
	s.releaseAll(locked)
}
