package main

// The "jabber" backend (RFC 8048 §4, which replaced RFC 7248): the host's
// XMPP connector hands every <presence/> stanza of the XMPP user a
// presentity maps to (abi.OpXMPP); pa keeps one entry per XMPP resource in
// the presentity's state and composes them into PIDF with RPID:
//
//   - each available resource is a tuple, basic open, whose contact is the
//     full JID as an xmpp: URI, with the XMPP priority (-128..127) as the
//     contact priority: 0 for 0 or below, else priority/127 (3 decimals);
//   - <status/> text is a <note> of the tuple, with its xml:lang;
//   - <show/> of the most available resource (highest priority, then most
//     recent) is the person's activity (RFC 4480): away → <rpid:away/>,
//     xa (extended away) → <rpid:away/> and <rpid:other>extended away</rpid:other>,
//     dnd → <rpid:busy/>, chat → no activity (open) with a note
//     "free for chat" when the stanza had no status text;
//   - unavailable removes that resource's tuple; unavailable from the bare
//     JID (the server's answer to a probe for an offline user, or the
//     connector losing the XMPP server) removes them all. When no resource
//     is left the user is shown as one closed tuple (with the last
//     unavailable status as its note), whatever dummy_presence says;
//   - reset (the connector (re)connected, or the user is watched again,
//     and a probe follows) forgets every resource without notifying, so
//     a resource that left while nobody listened does not stay open.
//
// The XMPP part is composed as one more publication, the least recently
// modified, so a SIP publication's person wins over it.

import (
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"

	"github.com/beevik/etree"
	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/sdk"
	"github.com/presenced/presenced/sdk/pubstate"
	"github.com/presenced/presenced/sdk/xmldoc"
	"google.golang.org/protobuf/encoding/protowire"
)

const (
	nsRPID = "urn:ietf:params:xml:ns:pidf:rpid"

	// State fields added for XMPP (see state.go):
	//
	//	repeated XMPPResource xmpp = 6;  // available resources, in arrival order
	//	XMPPOffline xmpp_offline   = 7;  // set once every resource left
	//	message XMPPResource { string jid = 1; string show = 2; string status = 3; int64 priority = 4; string lang = 5; int64 seq = 6; }
	//	message XMPPOffline  { string jid = 1; string status = 3; string lang = 5; }
	fStateXMPP        = 6
	fStateXMPPOffline = 7

	fXJID    = 1
	fXShow   = 2
	fXStatus = 3
	fXPrio   = 4
	fXLang   = 5
	fXSeq    = 6

	// xmppPubID names the XMPP part among publications when composing; the
	// host's publication ids never contain a NUL.
	xmppPubID = "\x00xmpp"
)

// xmppRes is one XMPP resource's presence; the offline record uses JID,
// Status and Lang only.
type xmppRes struct {
	JID, Show, Status, Lang string
	Priority                int64
	Seq                     int64 // order of the last change, for ties
}

func (p *pa) XMPP(req *sdk.Request) (*sdk.Response, error) {
	x := req.XMPP
	jid := strings.TrimSpace(x.From)
	if jid == "" || strings.ContainsAny(jid, " <>\"") {
		return nil, sdk.Reject(400, "xmpp presence from %q: not a JID", x.From)
	}
	st, err := decodeState(req.State)
	if err != nil {
		return nil, err
	}
	bare, _, hasRes := strings.Cut(jid, "/")
	var changed bool
	switch x.Type {
	case "":
		show := x.Show
		switch show {
		case "", "away", "chat", "dnd", "xa":
		default:
			sdk.Log(sdk.LogWarn, fmt.Sprintf("xmpp presence of %s for %s: unknown show %q, taken as available", jid, req.Resource, show))
			show = ""
		}
		changed = st.setXMPP(xmppRes{JID: jid, Show: show, Status: x.Status, Lang: x.Lang, Priority: int64(x.Priority)})
	case "unavailable":
		changed = st.dropXMPP(jid, bare, !hasRes, x.Status, x.Lang)
	case "reset":
		// The host is about to probe: what this state says of the user may
		// be stale, and the probe's answers are the truth. Watchers are
		// not told: the answers, a moment later, notify what differs from
		// what each was last sent.
		st.XMPP = nil
		st.XMPPOffline = &xmppRes{JID: bare}
		return &sdk.Response{State: st.encode(), StateChanged: true}, nil
	default:
		return nil, sdk.Reject(400, "xmpp presence of type %q: only available, unavailable and reset map to presence", x.Type)
	}
	return p.respond(req, st, changed)
}

// setXMPP adds or replaces an available resource.
func (st *state) setXMPP(r xmppRes) bool {
	var seq int64
	for _, o := range st.XMPP {
		seq = max(seq, o.Seq)
	}
	r.Seq = seq + 1
	st.XMPPOffline = nil
	i := slices.IndexFunc(st.XMPP, func(o xmppRes) bool { return o.JID == r.JID })
	if i < 0 {
		st.XMPP = append(st.XMPP, r)
		return true
	}
	old := st.XMPP[i]
	st.XMPP[i] = r
	old.Seq = r.Seq
	return old != r
}

// dropXMPP removes one resource, or all of them for the bare JID, and
// records the user offline when none is left.
func (st *state) dropXMPP(jid, bare string, all bool, status, lang string) bool {
	n := len(st.XMPP)
	st.XMPP = slices.DeleteFunc(st.XMPP, func(o xmppRes) bool {
		return o.JID == jid || (all && strings.HasPrefix(o.JID, bare+"/"))
	})
	changed := len(st.XMPP) != n
	if len(st.XMPP) == 0 {
		off := &xmppRes{JID: bare, Status: status, Lang: lang}
		if st.XMPPOffline == nil || *st.XMPPOffline != *off {
			st.XMPPOffline = off
			changed = true
		}
	}
	return changed
}

func (st *state) hasXMPP() bool { return len(st.XMPP) > 0 || st.XMPPOffline != nil }

// composeAll is compose with the XMPP part added as the oldest publication.
func composeAll(docs *xmldoc.Reader, resource string, st *state, binds []binding) ([]byte, error) {
	if !st.hasXMPP() {
		return compose(docs, resource, st.Pubs, st.Recent, binds)
	}
	pubs := append([]pubstate.Publication{{ID: xmppPubID, Body: xmppDoc(resource, st)}}, st.Pubs...)
	recent := append([]string{xmppPubID}, st.Recent...)
	return compose(docs, resource, pubs, recent, binds)
}

// xmppDoc is the PIDF document of the XMPP resources alone.
func xmppDoc(resource string, st *state) []byte {
	doc, root := newPresence(resource)
	root.CreateAttr("xmlns:dm", nsDM)
	root.CreateAttr("xmlns:rpid", nsRPID)
	if len(st.XMPP) == 0 {
		off := st.XMPPOffline
		t := root.CreateElement("tuple")
		t.CreateAttr("id", xmppTupleID(off.JID))
		t.CreateElement("status").CreateElement("basic").SetText("closed")
		t.CreateElement("contact").SetText("xmpp:" + off.JID)
		addNote(t, "note", off.Status, off.Lang)
		b, _ := doc.WriteToBytes()
		return b
	}
	var top *xmppRes
	for i := range st.XMPP {
		r := &st.XMPP[i]
		if top == nil || r.Priority > top.Priority || (r.Priority == top.Priority && r.Seq > top.Seq) {
			top = r
		}
		t := root.CreateElement("tuple")
		t.CreateAttr("id", xmppTupleID(r.JID))
		t.CreateElement("status").CreateElement("basic").SetText("open")
		c := t.CreateElement("contact")
		c.CreateAttr("priority", xmppPriority(r.Priority))
		c.SetText("xmpp:" + r.JID)
		note := r.Status
		if note == "" && r.Show == "chat" {
			note = "free for chat"
		}
		addNote(t, "note", note, r.Lang)
	}
	var acts []string
	switch top.Show {
	case "away":
		acts = []string{"away"}
	case "xa":
		acts = []string{"away", "other"}
	case "dnd":
		acts = []string{"busy"}
	}
	if len(acts) > 0 || top.Status != "" {
		person := root.CreateElement("dm:person")
		person.CreateAttr("id", "xmpp-person")
		if len(acts) > 0 {
			a := person.CreateElement("rpid:activities")
			for _, act := range acts {
				e := a.CreateElement("rpid:" + act)
				if act == "other" {
					e.SetText("extended away")
				}
			}
		}
		addNote(person, "dm:note", top.Status, top.Lang)
	}
	b, _ := doc.WriteToBytes()
	return b
}

func addNote(parent *etree.Element, tag, text, lang string) {
	if text == "" {
		return
	}
	n := parent.CreateElement(tag)
	if lang != "" {
		n.CreateAttr("xml:lang", lang)
	}
	n.SetText(text)
}

// xmppTupleID is stable for a JID and a valid xs:ID.
func xmppTupleID(jid string) string {
	h := fnv.New32a()
	h.Write([]byte(jid))
	return fmt.Sprintf("xmpp-%08x", h.Sum32())
}

// xmppPriority maps an XMPP priority (-128..127) to a PIDF qvalue.
func xmppPriority(p int64) string {
	if p <= 0 {
		return "0"
	}
	if p >= 127 {
		return "1"
	}
	s := strconv.FormatFloat(float64(p)/127, 'f', 3, 64)
	return strings.TrimRight(s, "0")
}

func encodeXMPPRes(r xmppRes) []byte {
	var v []byte
	for _, f := range []struct {
		num protowire.Number
		s   string
	}{{fXJID, r.JID}, {fXShow, r.Show}, {fXStatus, r.Status}, {fXLang, r.Lang}} {
		if f.s != "" {
			v = protowire.AppendTag(v, f.num, protowire.BytesType)
			v = protowire.AppendString(v, f.s)
		}
	}
	for _, f := range []struct {
		num protowire.Number
		n   int64
	}{{fXPrio, r.Priority}, {fXSeq, r.Seq}} {
		if f.n != 0 {
			v = protowire.AppendTag(v, f.num, protowire.VarintType)
			v = protowire.AppendVarint(v, uint64(f.n))
		}
	}
	return v
}

func decodeXMPPRes(b []byte) (xmppRes, error) {
	var r xmppRes
	err := abi.Fields(b, func(f abi.Field) error {
		switch {
		case f.IsBytes(fXJID):
			r.JID = string(f.Bytes)
		case f.IsBytes(fXShow):
			r.Show = string(f.Bytes)
		case f.IsBytes(fXStatus):
			r.Status = string(f.Bytes)
		case f.IsBytes(fXLang):
			r.Lang = string(f.Bytes)
		case f.IsVarint(fXPrio):
			r.Priority = int64(f.Varint)
		case f.IsVarint(fXSeq):
			r.Seq = int64(f.Varint)
		}
		return nil
	})
	return r, err
}

// appendXMPP adds the XMPP fields to an encoded state.
func (st *state) appendXMPP(b []byte) []byte {
	for _, r := range st.XMPP {
		b = protowire.AppendTag(b, fStateXMPP, protowire.BytesType)
		b = protowire.AppendBytes(b, encodeXMPPRes(r))
	}
	if st.XMPPOffline != nil {
		b = protowire.AppendTag(b, fStateXMPPOffline, protowire.BytesType)
		b = protowire.AppendBytes(b, encodeXMPPRes(*st.XMPPOffline))
	}
	return b
}

// decodeXMPPField reads field 6 or 7 of the state.
func (st *state) decodeXMPPField(num protowire.Number, v []byte) error {
	r, err := decodeXMPPRes(v)
	if err != nil {
		return fmt.Errorf("xmpp field %d: %w", num, err)
	}
	if num == fStateXMPP {
		st.XMPP = append(st.XMPP, r)
	} else {
		st.XMPPOffline = &r
	}
	return nil
}
