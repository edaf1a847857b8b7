package main

import (
	"strconv"
	"strings"

	"github.com/presenced/presenced/sdk"
	"github.com/presenced/presenced/sdk/xmldoc"
)

const ns = "urn:ietf:params:xml:ns:dialog-info"

// dialog is what *dialog* keeps of a <dialog> (RFC 4235 §4.1): what a lamp
// shows, and what a phone needs to pick the call up (identities, targets,
// and the call-id and tags of an INVITE with Replaces).
type dialog struct {
	id, callID, localTag, remoteTag, direction string
	state, event, code                         string
	local, remote                              party
}

type party struct{ display, identity, target string }

// progress orders the states as a dialog moves through them; a dialog
// never moves back.
var progress = map[string]int{"trying": 1, "proceeding": 2, "early": 3, "confirmed": 4, "terminated": 5}

func bad(format string, args ...any) error { return sdk.Reject(400, format, args...) }

// parse reads a dialog-info document about resource: whether it is full
// state, and its dialogs. Elements other than those kept are dropped. It
// reads into docs' reused memory, as pa does: every call reads each live
// publication again, and a Go guest pays for each allocation. The
// dialogs' strings point into body, which outlives them: they are
// written out before the call returns.
func parse(docs *xmldoc.Reader, body []byte, resource string) (full bool, ds []dialog, err error) {
	docs.Reset()
	root, err := docs.ReadRoot(body, ns, "dialog-info", resource)
	if err != nil {
		return false, nil, err
	}
	state, _ := root.Attr("", "state")
	if state != "full" && state != "partial" {
		return false, nil, bad("<dialog-info> state %q: want full or partial", state)
	}
	if v, ok := root.Attr("", "version"); !ok {
		return false, nil, bad("<dialog-info> has no version")
	} else if _, err := strconv.ParseUint(v, 10, 32); err != nil {
		return false, nil, bad("<dialog-info> version %q: want an unsigned 32-bit integer", v)
	}
	seen := map[string]bool{}
	for n := range root.All(ns, "dialog") {
		attr := func(k string) string { return n.AttrValue("", k) }
		d := dialog{id: attr("id"), callID: attr("call-id"), localTag: attr("local-tag"), remoteTag: attr("remote-tag"), direction: attr("direction")}
		switch s := n.Child(ns, "state"); {
		case d.id == "":
			return false, nil, bad("a <dialog> has no id")
		case seen[d.id]:
			return false, nil, bad("two dialogs with id %q", d.id)
		case d.direction != "" && d.direction != "initiator" && d.direction != "recipient":
			return false, nil, bad("dialog %q: direction %q: want initiator or recipient", d.id, d.direction)
		case s == nil:
			return false, nil, bad("dialog %q has no <state>", d.id)
		case progress[strings.TrimSpace(s.Text())] == 0:
			return false, nil, bad("dialog %q: state %q: want trying, proceeding, early, confirmed or terminated", d.id, s.Text())
		default:
			d.state = strings.TrimSpace(s.Text())
			d.event, d.code = s.AttrValue("", "event"), s.AttrValue("", "code")
		}
		seen[d.id] = true
		d.local, d.remote = partyOf(n.Child(ns, "local")), partyOf(n.Child(ns, "remote"))
		ds = append(ds, d)
	}
	return state == "full", ds, nil
}

// partyOf is what is kept of a <local> or <remote>: nothing when n, or
// what it holds, is not there (nil).
func partyOf(n *xmldoc.Node) party {
	id := n.Child(ns, "identity")
	return party{display: id.AttrValue("", "display"), identity: strings.TrimSpace(id.Text()),
		target: n.Child(ns, "target").AttrValue("", "uri")}
}

// document writes a full-state document about entity, one <dialog> a
// line, each in RFC 4235's element order.
func document(entity string, version uint64, ds []dialog) []byte {
	w := xmldoc.NewWriter()
	w.Start(ns, "dialog-info", xmldoc.A("version", strconv.FormatUint(version, 10)), xmldoc.A("state", "full"), xmldoc.A("entity", entity))
	w.Text("\n")
	for _, d := range ds {
		w.Start(ns, "dialog", xmldoc.Attrs("id", d.id, "call-id", d.callID, "local-tag", d.localTag, "remote-tag", d.remoteTag, "direction", d.direction)...)
		w.Element(ns, "state", d.state, xmldoc.Attrs("event", d.event, "code", d.code)...)
		for _, p := range []struct {
			tag string
			party
		}{{"local", d.local}, {"remote", d.remote}} {
			if p.party == (party{}) {
				continue
			}
			w.Start(ns, p.tag)
			if p.identity != "" {
				w.Element(ns, "identity", p.identity, xmldoc.Attrs("display", p.display)...)
			}
			if p.target != "" {
				w.Element(ns, "target", "", xmldoc.A("uri", p.target))
			}
			w.End()
		}
		w.End()
		w.Text("\n")
	}
	w.End()
	return append(w.Bytes(), '\n')
}
