package xmldoc

import (
	"strconv"
	"strings"

	"github.com/beevik/etree"
)

// Writer builds an XML document as text, for a module that renders what
// it sends rather than editing a tree: names are written as given, values
// escaped, and each namespace declared once, on the element where it
// comes into use, for that element and all it holds. Declare a namespace
// before the root (Declare) to have it declared once for the whole
// document. The zero Writer is ready; it writes no XML declaration.
type Writer struct {
	b     strings.Builder
	open  []frame // elements started and not yet ended
	scope []decl  // namespace bindings in force, innermost last
	next  []decl  // Declare'd for the next Start
	inTag bool    // a start tag is written up to its attributes
}

type frame struct {
	name  string // as written, with its prefix
	scope int    // len(scope) before the element's own declarations
}

// decl binds prefix ("" for the default namespace) to space.
type decl struct{ prefix, space string }

// A returns an unprefixed attribute for Start. An attribute in a
// namespace is a NodeAttr with its Space (and the Prefix to declare for
// it, if nothing binds it yet).
func A(local, value string) NodeAttr { return NodeAttr{Local: local, Value: value} }

// Attrs returns the unprefixed attributes of name, value pairs for Start,
// but for those whose value is empty: for a vocabulary whose attributes
// are all optional, as a <dialog>'s of RFC 4235 are. An odd number of
// arguments panics, as strings.NewReplacer does.
func Attrs(pairs ...string) []NodeAttr {
	if len(pairs)%2 == 1 {
		panic("xmldoc.Attrs: odd argument count")
	}
	var out []NodeAttr
	for i := 0; i < len(pairs); i += 2 {
		if pairs[i+1] != "" {
			out = append(out, A(pairs[i], pairs[i+1]))
		}
	}
	return out
}

// NewWriter returns a Writer that has written the XML declaration
// (version 1.0, UTF-8) and a line break.
func NewWriter() *Writer {
	w := &Writer{}
	w.b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	return w
}

// Declare binds prefix to space ("" prefix: the default namespace) on the
// next element started, so that it and everything inside it use that
// prefix for space. An element in a namespace nothing binds gets it as
// its default namespace; an attribute in one gets its Prefix, or "ns1"...
func (w *Writer) Declare(prefix, space string) {
	w.next = append(w.next, decl{prefix, space})
}

// lookup returns the binding of prefix in force.
func (w *Writer) lookup(prefix string) (string, bool) {
	for i := len(w.scope) - 1; i >= 0; i-- {
		if w.scope[i].prefix == prefix {
			return w.scope[i].space, true
		}
	}
	return "", false
}

// prefixOf returns a prefix bound to space and not shadowed since.
func (w *Writer) prefixOf(space string, attr bool) (string, bool) {
	for i := len(w.scope) - 1; i >= 0; i-- {
		d := w.scope[i]
		if d.space != space || (attr && d.prefix == "") {
			continue
		}
		if s, _ := w.lookup(d.prefix); s == space {
			return d.prefix, true
		}
	}
	return "", false
}

// bind declares prefix for space on the start tag being built.
func (w *Writer) bind(tag *strings.Builder, prefix, space string) {
	w.scope = append(w.scope, decl{prefix, space})
	if prefix == "" {
		tag.WriteString(` xmlns="` + EscapeAttr(space) + `"`)
	} else {
		tag.WriteString(` xmlns:` + prefix + `="` + EscapeAttr(space) + `"`)
	}
}

// Start writes the start tag of <local> in namespace space ("" for none)
// with attrs, in that order. An attribute's Prefix is the one to declare
// for its Space when nothing binds it yet.
func (w *Writer) Start(space, local string, attrs ...NodeAttr) {
	w.closeTag()
	f := frame{scope: len(w.scope)}
	var tag strings.Builder
	for _, d := range w.next {
		w.bind(&tag, d.prefix, d.space)
	}
	w.next = w.next[:0]
	// The default namespace first: an element in it needs no prefix.
	prefix, ok := "", false
	if cur, _ := w.lookup(""); cur == space {
		ok = true
	} else {
		prefix, ok = w.prefixOf(space, false)
	}
	if !ok {
		w.bind(&tag, "", space)
	}
	f.name = local
	if prefix != "" {
		f.name = prefix + ":" + local
	}
	for _, a := range attrs {
		name := a.Local
		if a.Space != "" {
			p, ok := w.prefixOf(a.Space, true)
			if !ok {
				p = a.Prefix
				if _, taken := w.lookup(p); p == "" || taken {
					p = w.freePrefix()
				}
				w.bind(&tag, p, a.Space)
			}
			name = p + ":" + a.Local
		}
		tag.WriteString(" " + name + `="` + EscapeAttr(a.Value) + `"`)
	}
	w.b.WriteString("<" + f.name + tag.String())
	w.open = append(w.open, f)
	w.inTag = true
}

// freePrefix is a prefix not bound in scope, for an attribute's namespace.
func (w *Writer) freePrefix() string {
	for n := 1; ; n++ {
		p := "ns" + strconv.Itoa(n)
		if _, taken := w.lookup(p); !taken {
			return p
		}
	}
}

func (w *Writer) closeTag() {
	if w.inTag {
		w.b.WriteByte('>')
		w.inTag = false
	}
}

// Text writes character data, escaped.
func (w *Writer) Text(s string) {
	w.closeTag()
	w.b.WriteString(EscapeText(s))
}

// End ends the innermost element started (as <x/> when it holds nothing).
func (w *Writer) End() {
	if len(w.open) == 0 {
		return
	}
	f := w.open[len(w.open)-1]
	w.open = w.open[:len(w.open)-1]
	w.scope = w.scope[:f.scope]
	if w.inTag {
		w.b.WriteString("/>")
		w.inTag = false
		return
	}
	w.b.WriteString("</" + f.name + ">")
}

// Element writes <local>text</local> in namespace space.
func (w *Writer) Element(space, local, text string, attrs ...NodeAttr) {
	w.Start(space, local, attrs...)
	if text != "" {
		w.Text(text)
	}
	w.End()
}

// Copy writes n, an element of a document Read read, as it was written,
// byte for byte, but for declarations added to its start tag: those of
// the namespaces it or its content takes from its ancestors in the source
// that are not bound the same where it is written. So a <d:dialog> copied
// out of its document keeps its xmlns:d.
func (w *Writer) Copy(n *Node) {
	w.closeTag()
	var add strings.Builder
	for _, p := range inherited(n) {
		space, _ := n.Parent.lookupOrNone(p)
		if cur, _ := w.lookup(p); cur == space {
			continue
		}
		if p == "" {
			add.WriteString(` xmlns="` + EscapeAttr(space) + `"`)
		} else {
			add.WriteString(` xmlns:` + p + `="` + EscapeAttr(space) + `"`)
		}
	}
	raw := n.Raw()
	k := 1 + len(n.Name()) // raw starts "<name", as XML has it
	w.b.WriteString(raw[:k] + add.String() + raw[k:])
}

// lookupOrNone is Lookup on a node that may be nil (the root's parent).
func (n *Node) lookupOrNone(prefix string) (string, bool) {
	if n == nil {
		if prefix == "xml" {
			return nsXML, true
		}
		return "", prefix == ""
	}
	return n.Lookup(prefix)
}

// inherited lists, in order of first use, the prefixes ("" for the default
// namespace) that n or its content uses without declaring them inside n.
func inherited(n *Node) []string {
	var out []string
	seen := map[string]bool{}
	var walk func(n *Node, local map[string]bool)
	walk = func(n *Node, local map[string]bool) {
		if len(n.Decls) > 0 {
			inner := make(map[string]bool, len(local)+len(n.Decls))
			for k := range local {
				inner[k] = true
			}
			for _, d := range n.Decls {
				inner[d.Local] = true
			}
			local = inner
		}
		use := func(p string) {
			if !local[p] && !seen[p] && p != "xml" {
				seen[p] = true
				out = append(out, p)
			}
		}
		use(n.Prefix)
		for _, a := range n.Attrs {
			if a.Prefix != "" {
				use(a.Prefix)
			}
		}
		for _, c := range n.Children {
			walk(c, local)
		}
	}
	walk(n, nil)
	return out
}

// Bytes ends every element still open and returns the document.
func (w *Writer) Bytes() []byte {
	for len(w.open) > 0 {
		w.End()
	}
	return []byte(w.b.String())
}

// Copy returns a deep copy of e, an element of an etree document, that
// keeps the namespaces it or its content takes from e's ancestors: they
// are declared on the copy, so that it means the same wherever it is put
// (etree's own Copy drops them, and a copied <d:dialog> loses xmlns:d).
func Copy(e *etree.Element) *etree.Element {
	c := e.Copy()
	var add []etree.Attr
	for _, p := range inheritedTree(e) {
		space := ""
		for a := e.Parent(); a != nil; a = a.Parent() {
			if s, ok := declares(a, p); ok {
				space = s
				break
			}
		}
		if p == "" {
			if space != "" {
				add = append(add, etree.Attr{Key: "xmlns", Value: space})
			}
		} else if space != "" {
			add = append(add, etree.Attr{Space: "xmlns", Key: p, Value: space})
		}
	}
	c.Attr = append(add, c.Attr...)
	return c
}

// declares reports the namespace e itself binds prefix to.
func declares(e *etree.Element, prefix string) (string, bool) {
	for _, a := range e.Attr {
		if (prefix == "" && a.Space == "" && a.Key == "xmlns") || (prefix != "" && a.Space == "xmlns" && a.Key == prefix) {
			return a.Value, true
		}
	}
	return "", false
}

// inheritedTree is inherited for an etree element.
func inheritedTree(e *etree.Element) []string {
	var out []string
	seen := map[string]bool{}
	var walk func(e *etree.Element, local map[string]bool)
	walk = func(e *etree.Element, local map[string]bool) {
		inner := local
		for _, a := range e.Attr {
			p, ok := "", false
			switch {
			case a.Space == "" && a.Key == "xmlns":
				ok = true
			case a.Space == "xmlns":
				p, ok = a.Key, true
			}
			if ok {
				if len(inner) == len(local) {
					inner = map[string]bool{}
					for k := range local {
						inner[k] = true
					}
				}
				inner[p] = true
			}
		}
		use := func(p string) {
			if !inner[p] && !seen[p] && p != "xml" && p != "xmlns" {
				seen[p] = true
				out = append(out, p)
			}
		}
		use(e.Space)
		for _, a := range e.Attr {
			if a.Space != "" {
				use(a.Space)
			}
		}
		for _, c := range e.ChildElements() {
			walk(c, inner)
		}
	}
	walk(e, map[string]bool{})
	return out
}

var (
	attrEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", `"`, "&quot;", "\t", "&#x9;", "\n", "&#xA;", "\r", "&#xD;")
	textEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "\r", "&#xD;")
)

// EscapeAttr escapes s for an attribute value in double quotes: only what
// XML requires, and the white space a parser would otherwise normalize.
func EscapeAttr(s string) string { return attrEscaper.Replace(s) }

// EscapeText escapes s for character data: only what XML requires (and
// '>' for "]]>", and CR, which a parser would turn into LF), so text reads
// as it was given.
func EscapeText(s string) string { return textEscaper.Replace(s) }
