package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/beevik/etree"
	"github.com/presenced/presenced/sdk"
	"github.com/presenced/presenced/sdk/pubstate"
	"github.com/presenced/presenced/sdk/xmldoc"
)

const nsPIDF = "urn:ietf:params:xml:ns:pidf"

// validate refuses a PIDF body with a 400 that says what is wrong. It is the
// only place a body is checked: compose trusts what validate let through.
func validate(body []byte, resource string) error {
	root, err := xmldoc.ParseRoot(body, nsPIDF, "presence", resource)
	if err != nil {
		return err
	}
	n := 0
	for _, t := range root.ChildElements() {
		if t.Tag != "tuple" || t.NamespaceURI() != nsPIDF {
			continue
		}
		n++
		id, _ := xmldoc.Attr(t, "id")
		if id == "" {
			return sdk.Reject(400, "tuple %d has no id attribute", n)
		}
		status := child(t, nsPIDF, "status")
		if status == nil {
			return sdk.Reject(400, "tuple %q has no <status>", id)
		}
		for _, b := range status.ChildElements() {
			if b.Tag != "basic" || b.NamespaceURI() != nsPIDF {
				continue
			}
			if v := strings.TrimSpace(b.Text()); v != "open" && v != "closed" {
				return sdk.Reject(400, "tuple %q: <basic> is %q, want open or closed", id, v)
			}
		}
	}
	return nil
}

// compose builds the one document watchers get from every publication, in
// the order given. Top-level children are grouped tuples first, then notes,
// then elements of other namespaces (RPID person, device, ...), each group
// in publication then document order: the PIDF schema (RFC 3863 §4.4) has
// them in that sequence, so interleaving two publications' children as they
// come would give a document a validating watcher refuses.
func compose(resource string, pubs []pubstate.Publication) ([]byte, error) {
	doc, root := newPresence(resource)
	// Prefixes bound on the composed root; its default namespace is PIDF.
	bound := map[string]string{"": nsPIDF}
	ids := map[string]bool{}
	var tuples, notes, others []*etree.Element
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
		for _, c := range src.ChildElements() {
			ns := c.NamespaceURI()
			cp := c.Copy()
			for _, a := range local {
				if !declares(cp, a) {
					cp.CreateAttr(a.FullKey(), a.Value)
				}
			}
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
	for _, group := range [][]*etree.Element{tuples, notes, others} {
		for _, e := range group {
			root.CreateText("\n")
			root.AddChild(e)
		}
	}
	root.CreateText("\n")
	return doc.WriteToBytes()
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
