package main

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/beevik/etree"
	"github.com/presenced/presenced/abi"
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
// xmldoc's light path: this runs on every PUBLISH.
func validate(body []byte, resource string, lenient bool) ([]byte, error) {
	root, err := xmldoc.ReadRoot(body, nsPIDF, "presence", resource)
	if err != nil {
		return nil, err
	}
	n := 0
	var fix []*xmldoc.Node // <basic>s to store as closed
	for _, t := range root.Children {
		if t.Local != "tuple" || t.Space != nsPIDF {
			continue
		}
		n++
		id, _ := t.Attr("", "id")
		if id == "" {
			return nil, sdk.Reject(400, "tuple %d has no id attribute", n)
		}
		status := t.Child(nsPIDF, "status")
		if status == nil {
			return nil, sdk.Reject(400, "tuple %q has no <status>", id)
		}
		for _, b := range status.Children {
			if b.Local != "basic" || b.Space != nsPIDF {
				continue
			}
			v := strings.TrimSpace(b.Text())
			if v == "open" || v == "closed" {
				continue
			}
			if !lenient {
				return nil, sdk.Reject(400, "tuple %q: <basic> is %q, want open or closed", id, v)
			}
			sdk.Log(abi.LogWarn, fmt.Sprintf("publication for %s: tuple %q: <basic> is %q, stored as closed (lenient_basic)", resource, id, v))
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
func compose(resource string, pubs []pubstate.Publication, recent []string, binds []binding) ([]byte, error) {
	doc, root := newPresence(resource)
	// Prefixes bound on the composed root; its default namespace is PIDF.
	bound := map[string]string{"": nsPIDF}
	ids := map[string]bool{}
	rank := make(map[string]int, len(recent))
	for i, id := range recent {
		rank[id] = i
	}
	var tuples, notes, others, personNotes []*etree.Element
	var person, personSrc *etree.Element
	personRank := -1
	for _, p := range pubs {
		src, err := xmldoc.Parse(p.Body)
		if err != nil {
			return nil, fmt.Errorf("stored publication %q: %w", p.ID, err)
		}
		// Declarations the root of this publication makes that the composed
		// root cannot: a prefix taken for another namespace, or a default
		// namespace other than PIDF. Each copied child carries them.
		var local []etree.Attr
		def := ""
		for _, a := range src.Attr {
			switch {
			case a.Space == "xmlns":
				if u, ok := bound[a.Key]; !ok {
					root.CreateAttr("xmlns:"+a.Key, a.Value)
					bound[a.Key] = a.Value
				} else if u != a.Value {
					local = append(local, a)
				}
			case a.Space == "" && a.Key == "xmlns":
				def = a.Value
			}
		}
		if def != nsPIDF {
			// Unprefixed children were in def (or in no namespace at all
			// when the root declared none); say so, or they would fall into
			// the composed root's PIDF default.
			local = append(local, etree.Attr{Key: "xmlns", Value: def})
		}
		carry := func(c *etree.Element) *etree.Element {
			cp := c.Copy()
			for _, a := range local {
				if !declares(cp, a) {
					cp.CreateAttr(a.FullKey(), a.Value)
				}
			}
			return cp
		}
		for _, c := range src.ChildElements() {
			ns := c.NamespaceURI()
			if ns == nsDM && c.Tag == "person" {
				for _, n := range c.ChildElements() {
					if n.Tag == "note" && n.NamespaceURI() == nsDM {
						personNotes = append(personNotes, n)
					}
				}
				if r := rank[p.ID]; r > personRank {
					person, personSrc, personRank = carry(c), c, r
				}
				continue
			}
			cp := carry(c)
			uniqueID(cp, ids)
			switch {
			case ns == nsPIDF && c.Tag == "tuple":
				tuples = append(tuples, cp)
			case ns == nsPIDF && c.Tag == "note":
				notes = append(notes, cp)
			default:
				others = append(others, cp)
			}
		}
	}
	for _, b := range binds {
		tuples = append(tuples, bindingTuple(b, ids))
	}
	if person != nil {
		mergeNotes(person, personSrc, personNotes)
		uniqueID(person, ids)
		others = append([]*etree.Element{person}, others...)
	}
	for _, group := range [][]*etree.Element{tuples, notes, others} {
		for _, e := range group {
			root.CreateText("\n")
			root.AddChild(e)
		}
	}
	root.CreateText("\n")
	return doc.WriteToBytes()
}

// mergeNotes adds to person, the copy of src, the notes of the others it
// does not have yet (same text and language), before its <dm:timestamp>,
// where the data model's schema puts notes. It looks at src, still in its
// publication, where prefixes resolve; the copy has the same children.
func mergeNotes(person, src *etree.Element, all []*etree.Element) {
	type key struct{ lang, text string }
	have := map[key]bool{}
	for _, n := range src.ChildElements() {
		if n.Tag == "note" && n.NamespaceURI() == nsDM {
			have[key{lang(n), strings.TrimSpace(n.Text())}] = true
		}
	}
	at := -1
	if ts := child(src, nsDM, "timestamp"); ts != nil {
		at = ts.Index()
	}
	for _, n := range all {
		k := key{lang(n), strings.TrimSpace(n.Text())}
		if have[k] {
			continue
		}
		have[k] = true
		// In the person's own prefix for the data model, bound where the
		// person is, whatever the note's publication called it.
		e := etree.NewElement("note")
		e.Space = person.Space
		if k.lang != "" {
			e.CreateAttr("xml:lang", k.lang)
		}
		e.SetText(k.text)
		if at >= 0 {
			person.InsertChildAt(at, e)
			at++
		} else {
			person.AddChild(e)
		}
	}
}

func lang(e *etree.Element) string {
	for _, a := range e.Attr {
		if a.Space == "xml" && a.Key == "lang" {
			return a.Value
		}
	}
	return ""
}

// bindingTuple is the tuple a registered contact shows as: open, reachable
// at the contact, with its q as the priority. Its id is a hash of the
// binding's, so it is the same at every render and starts with a letter
// as an xs:ID must, whatever the host's ids look like.
func bindingTuple(b binding, ids map[string]bool) *etree.Element {
	h := fnv.New32a()
	h.Write([]byte(b.ID))
	t := etree.NewElement("tuple")
	t.CreateAttr("id", fmt.Sprintf("reg-%08x", h.Sum32()))
	uniqueID(t, ids)
	t.CreateElement("status").CreateElement("basic").SetText("open")
	c := t.CreateElement("contact")
	if b.Q != "" {
		c.CreateAttr("priority", b.Q)
	}
	c.SetText(b.Contact)
	return t
}

// dummy is what watchers of a presentity with no publication get when
// dummy_presence is on: offline, which is what "nothing published" means to
// a client, rather than a NOTIFY without a body some clients mishandle.
func dummy(resource string) []byte {
	doc, root := newPresence(resource)
	t := root.CreateElement("tuple")
	t.CreateAttr("id", "pa-dummy")
	t.CreateElement("status").CreateElement("basic").SetText("closed")
	b, _ := doc.WriteToBytes()
	return b
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

// uniqueID renames an element's id when an earlier one took it: ids are
// xs:ID, unique across the whole composed document, and two devices each
// publishing a tuple "t1" is ordinary. The suffix depends only on the order
// of publications, so every render of one state gives the same ids.
func uniqueID(e *etree.Element, ids map[string]bool) {
	var a *etree.Attr
	for i := range e.Attr {
		if e.Attr[i].Space == "" && e.Attr[i].Key == "id" {
			a = &e.Attr[i]
		}
	}
	if a == nil {
		return
	}
	id := a.Value
	for n := 2; ids[id]; n++ {
		id = a.Value + "-" + strconv.Itoa(n)
	}
	a.Value = id
	ids[id] = true
}

// declares reports whether e itself binds the prefix a declares, in which
// case its own binding wins and must not be duplicated.
func declares(e *etree.Element, a etree.Attr) bool {
	for _, b := range e.Attr {
		if b.Space == a.Space && b.Key == a.Key {
			return true
		}
	}
	return false
}

func child(e *etree.Element, ns, tag string) *etree.Element {
	for _, c := range e.ChildElements() {
		if c.Tag == tag && c.NamespaceURI() == ns {
			return c
		}
	}
	return nil
}
