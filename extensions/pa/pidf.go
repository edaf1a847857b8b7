package main

import (
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"

	"github.com/beevik/etree"
	"github.com/presenced/presenced/sdk"
	"github.com/presenced/presenced/sdk/pubstate"
	"github.com/presenced/presenced/sdk/xmldoc"
)

const (
	nsPIDF = "urn:ietf:params:xml:ns:pidf"
	nsDM   = "urn:ietf:params:xml:ns:pidf:data-model"
)

// validate refuses a PIDF body with a 400 that says what is wrong, and
// returns the body to store. It is the only place a body is checked:
// compose trusts what validate let through. With lenient, a <basic> other
// than open or closed is stored as closed (and logged) instead of refused:
// some clients publish "busy" or "online" there. It reads the body on
// xmldoc's light path, into docs' reused memory: this runs on every
// PUBLISH.
func validate(docs *xmldoc.Reader, body []byte, resource string, lenient bool) ([]byte, error) {
	docs.Reset()
	root, err := docs.ReadRoot(body, nsPIDF, "presence", resource)
	if err != nil {
		return nil, err
	}
	n := 0
	var fix []*xmldoc.Node // <basic>s to store as closed
	for t := range root.All(nsPIDF, "tuple") {
		n++
		id := t.AttrValue("", "id")
		if id == "" {
			return nil, sdk.Reject(400, "tuple %d has no id attribute", n)
		}
		status := t.Child(nsPIDF, "status")
		if status == nil {
			return nil, sdk.Reject(400, "tuple %q has no <status>", id)
		}
		for b := range status.All(nsPIDF, "basic") {
			v := strings.TrimSpace(b.Text())
			if v == "open" || v == "closed" {
				continue
			}
			if !lenient {
				return nil, sdk.Reject(400, "tuple %q: <basic> is %q, want open or closed", id, v)
			}
			sdk.Log(sdk.LogWarn, fmt.Sprintf("publication for %s: tuple %q: <basic> is %q, stored as closed (lenient_basic)", resource, id, v))
			fix = append(fix, b)
		}
	}
	if len(fix) == 0 {
		return body, nil
	}
	// Rewrite only the content of each bad <basic>, in document order;
	// everything else stays byte for byte as published.
	var out strings.Builder
	last := 0
	for _, b := range fix {
		out.WriteString(root.Source[last:b.Start])
		out.WriteString("<" + b.Name() + ">closed</" + b.Name() + ">")
		last = b.End
	}
	out.WriteString(root.Source[last:])
	return []byte(out.String()), nil
}

// compose builds the one document watchers get from every publication, in
// the order given, and the registrar's bindings. Top-level children are
// grouped tuples first, then notes, then elements of other namespaces, each
// group in publication then document order: the PIDF schema (RFC 3863 §4.4)
// has them in that sequence, so interleaving two publications' children as
// they come would give a document a validating watcher refuses.
//
// Tuples and devices are services and devices of their own and all kept;
// registrar tuples follow the published ones. The person is one (RFC 4479
// §3.1): only the first <dm:person> of the most recently modified
// publication (recent, most recent last) is sent, first of the other
// elements, with the <dm:note>s of every other person added to it.
//
// It reads publications on xmldoc's light path, into docs' reused memory,
// and copies each element as
// it was published, rewriting only a start tag that needs a namespace
// declaration or a new id: no DOM is built or serialized (RATIONALE.md).
func compose(docs *xmldoc.Reader, resource string, pubs []pubstate.Publication, recent []string, binds []binding) ([]byte, error) {
	// The document is written into one buffer sized for what it copies:
	// grown as it went and then copied out, it was four allocations, each
	// costing more in a guest than copying the document does.
	size := 128 + 2*len(resource) + 160*len(binds)
	for _, p := range pubs {
		size += len(p.Body)
	}
	head := make([]byte, 0, size)
	head = append(head, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+`<presence xmlns="`+nsPIDF+`" entity="`...)
	head = append(head, xmldoc.EscapeAttr(resource)...)
	head = append(head, '"')
	// Prefixes bound on the composed root (Local the prefix, Value the
	// namespace); its default namespace is PIDF. This, the ids taken and
	// the rank of a publication in recent are a few entries each, which a
	// scan finds faster in a guest than a map hashes them.
	bound := []xmldoc.NodeAttr{{Value: nsPIDF}}
	ids := make([]string, 0, 8)
	var tuples, notes, others []string
	var personNotes []*xmldoc.Node
	var person *xmldoc.Node
	var personLocal []xmldoc.NodeAttr
	personRank := -1
	docs.Reset()
	for _, p := range pubs {
		src, err := docs.Read(p.Body)
		if err != nil {
			return nil, fmt.Errorf("stored publication %q: %w", p.ID, err)
		}
		// Declarations the root of this publication makes that the composed
		// root cannot: a prefix taken for another namespace, or a default
		// namespace other than PIDF. Each copied child carries them.
		var local []xmldoc.NodeAttr
		def := ""
		for _, d := range src.Decls {
			if d.Local == "" {
				def = d.Value
				continue
			}
			switch i := slices.IndexFunc(bound, func(b xmldoc.NodeAttr) bool { return b.Local == d.Local }); {
			case i < 0:
				head = append(head, ` xmlns:`...)
				head = append(head, d.Local...)
				head = append(head, `="`...)
				head = append(head, xmldoc.EscapeAttr(d.Value)...)
				head = append(head, '"')
				bound = append(bound, d)
			case bound[i].Value != d.Value:
				local = append(local, d)
			}
		}
		if def != nsPIDF {
			// Unprefixed children were in def (or in no namespace at all
			// when the root declared none); say so, or they would fall into
			// the composed root's PIDF default.
			local = append(local, xmldoc.NodeAttr{Value: def})
		}
		for _, c := range src.Children {
			if c.Space == nsDM && c.Local == "person" {
				for _, n := range c.Children {
					if n.Local == "note" && n.Space == nsDM {
						personNotes = append(personNotes, n)
					}
				}
				if r := slices.Index(recent, p.ID); r > personRank {
					person, personLocal, personRank = c, local, r
				}
				continue
			}
			var id string
			id, ids = uniqueID(c, ids)
			cp := copyElement(c, local, id, "")
			switch {
			case c.Space == nsPIDF && c.Local == "tuple":
				tuples = append(tuples, cp)
			case c.Space == nsPIDF && c.Local == "note":
				notes = append(notes, cp)
			default:
				others = append(others, cp)
			}
		}
	}
	for _, b := range binds {
		var t string
		t, ids = bindingTuple(b, ids)
		tuples = append(tuples, t)
	}
	if person != nil {
		id, _ := uniqueID(person, ids)
		others = append([]string{copyElement(person, personLocal, id, mergeNotes(person, personNotes))}, others...)
	}
	head = append(head, '>')
	for _, group := range [][]string{tuples, notes, others} {
		for _, e := range group {
			head = append(head, '\n')
			head = append(head, e...)
		}
	}
	return append(head, "\n</presence>"...), nil
}

// copyElement is e as published, with the declarations in local it does not
// make itself added to its start tag, its id set to id, and extra inserted
// before its <dm:timestamp> child (or at its end).
func copyElement(e *xmldoc.Node, local []xmldoc.NodeAttr, id, extra string) string {
	var add []xmldoc.NodeAttr
	for _, d := range local {
		if _, own := declared(e, d.Local); !own {
			add = append(add, d)
		}
	}
	old, _ := e.Attr("", "id")
	if len(add) == 0 && id == old && extra == "" {
		return e.Raw()
	}
	var b strings.Builder
	b.WriteString("<" + e.Name())
	for _, d := range append(append([]xmldoc.NodeAttr(nil), e.Decls...), add...) {
		if d.Local == "" {
			b.WriteString(` xmlns="` + xmldoc.EscapeAttr(d.Value) + `"`)
		} else {
			b.WriteString(` xmlns:` + d.Local + `="` + xmldoc.EscapeAttr(d.Value) + `"`)
		}
	}
	for _, a := range e.Attrs {
		v := a.Value
		if a.Space == "" && a.Local == "id" {
			v = id
		}
		name := a.Local
		if a.Prefix != "" {
			name = a.Prefix + ":" + a.Local
		}
		b.WriteString(" " + name + `="` + xmldoc.EscapeAttr(v) + `"`)
	}
	if e.Inner == e.End && extra == "" { // <x/>
		b.WriteString("/>")
		return b.String()
	}
	b.WriteByte('>')
	at := e.InnerEnd
	if extra != "" {
		for _, c := range e.Children {
			if c.Local == "timestamp" && c.Space == nsDM {
				at = c.Start
				break
			}
		}
	}
	b.WriteString(e.Source[e.Inner:at])
	b.WriteString(extra)
	b.WriteString(e.Source[at:e.InnerEnd])
	b.WriteString("</" + e.Name() + ">")
	return b.String()
}

// declared reports whether e itself declares prefix ("" for the default
// namespace), in which case its own binding wins.
func declared(e *xmldoc.Node, prefix string) (string, bool) {
	for _, d := range e.Decls {
		if d.Local == prefix {
			return d.Value, true
		}
	}
	return "", false
}

// mergeNotes returns the <dm:note>s of the other persons that person does
// not have yet (same text and language), for copyElement to put before its
// <dm:timestamp>, where the data model's schema puts notes. They are
// written in the person's own prefix for the data model, whatever the
// note's publication called it.
func mergeNotes(person *xmldoc.Node, all []*xmldoc.Node) string {
	type key struct{ lang, text string }
	have := map[key]bool{}
	for _, n := range person.Children {
		if n.Local == "note" && n.Space == nsDM {
			have[key{lang(n), strings.TrimSpace(n.Text())}] = true
		}
	}
	tag := "note"
	if person.Prefix != "" {
		tag = person.Prefix + ":note"
	}
	var b strings.Builder
	for _, n := range all {
		k := key{lang(n), strings.TrimSpace(n.Text())}
		if have[k] {
			continue
		}
		have[k] = true
		b.WriteString("<" + tag)
		if k.lang != "" {
			b.WriteString(` xml:lang="` + xmldoc.EscapeAttr(k.lang) + `"`)
		}
		b.WriteString(">" + xmldoc.EscapeText(k.text) + "</" + tag + ">")
	}
	return b.String()
}

func lang(e *xmldoc.Node) string { return e.AttrValue("http://www.w3.org/XML/1998/namespace", "lang") }

// bindingTuple is the tuple a registered contact shows as: open, reachable
// at the contact, with its q as the priority. Its id is a hash of the
// binding's, so it is the same at every render and starts with a letter
// as an xs:ID must, whatever the host's ids look like.
func bindingTuple(b binding, ids []string) (string, []string) {
	h := fnv.New32a()
	h.Write([]byte(b.ID))
	id, ids := unique(fmt.Sprintf("reg-%08x", h.Sum32()), ids)
	prio := ""
	if b.Q != "" {
		prio = ` priority="` + xmldoc.EscapeAttr(b.Q) + `"`
	}
	return `<tuple id="` + xmldoc.EscapeAttr(id) + `"><status><basic>open</basic></status><contact` + prio + ">" +
		xmldoc.EscapeText(b.Contact) + "</contact></tuple>", ids
}

// dummy is what watchers of a presentity with no publication get when
// dummy_presence is on: offline, which is what "nothing published" means to
// a client, rather than a NOTIFY without a body some clients mishandle.
func dummy(resource string) []byte {
	return []byte(`<?xml version="1.0" encoding="UTF-8"?>` + "\n" + `<presence xmlns="` + nsPIDF + `" entity="` +
		xmldoc.EscapeAttr(resource) + `">` + "\n" + `<tuple id="pa-dummy"><status><basic>closed</basic></status></tuple>` + "\n</presence>")
}

// uniqueID returns the id e's copy takes (its own unless an earlier element
// took it) and ids with it taken; "" for an element without one.
func uniqueID(e *xmldoc.Node, ids []string) (string, []string) {
	id, ok := e.Attr("", "id")
	if !ok {
		return "", ids
	}
	return unique(id, ids)
}

// unique renames id when an earlier element took it, and returns ids with
// the name it gives added: ids are xs:ID, unique
// across the whole composed document, and two devices each publishing a
// tuple "t1" is ordinary. The suffix depends only on the order of
// publications, so every render of one state gives the same ids.
func unique(id string, ids []string) (string, []string) {
	v := id
	for n := 2; slices.Contains(ids, v); n++ {
		v = id + "-" + strconv.Itoa(n)
	}
	return v, append(ids, v)
}

func newPresence(resource string) (*etree.Document, *etree.Element) {
	doc := etree.NewDocument()
	// Escape only what XML requires: smaller, and text reads as published.
	doc.WriteSettings.CanonicalText = true
	doc.WriteSettings.CanonicalAttrVal = true
	doc.CreateProcInst("xml", `version="1.0" encoding="UTF-8"`)
	root := doc.CreateElement("presence")
	root.CreateAttr("xmlns", nsPIDF)
	root.CreateAttr("entity", resource)
	return doc, root
}
