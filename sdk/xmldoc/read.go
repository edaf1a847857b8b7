package xmldoc

import (
	"encoding/xml"
	"fmt"
	"iter"
	"strings"
	"unicode/utf8"

	"github.com/presenced/presenced/sdk"
)

// Read is the light path: a namespace-aware XML reader written for Go
// compiled to wasm, where encoding/xml (under etree) costs ~10 times what
// it does natively and was most of a module call (RATIONALE.md, "A lighter
// XML path"). It checks well-formedness as strictly as encoding/xml does
// (and refuses a DOCTYPE, which no presence document needs), resolves
// every prefix, and returns a tree of Nodes that point into the source:
// names and attribute values are substrings of it, and each Node knows its
// byte span, so a module can copy an element out of a document without
// serializing it again.
//
// Errors start "not well-formed XML: " and give the line.
func Read(body []byte) (*Node, error) {
	r := reader{src: string(body)}
	root, err := r.document()
	if err != nil {
		return nil, fmt.Errorf("not well-formed XML: line %d: %v", 1+strings.Count(r.src[:min(r.pos, len(r.src))], "\n"), err)
	}
	return root, nil
}

// ReadRoot is ParseRoot on the light path: it reads a published body and
// checks that its root is <local> in namespace space with an entity
// attribute naming resource. Refusals are sdk.Rejections with code 400.
func ReadRoot(body []byte, space, local, resource string) (*Node, error) {
	root, err := Read(body)
	if err != nil {
		return nil, sdk.Reject(400, "%v", err)
	}
	if root.Local != local || root.Space != space {
		return nil, sdk.Reject(400, "root element is <%s> in namespace %q, want <%s> in %q",
			root.Name(), root.Space, local, space)
	}
	entity, ok := root.Attr("", "entity")
	if !ok || strings.TrimSpace(entity) == "" {
		return nil, sdk.Reject(400, "<%s> has no entity attribute", local)
	}
	if !sdk.SameResource(entity, resource) {
		return nil, sdk.Reject(400, "entity %q is not the resource published to, %q", entity, resource)
	}
	return root, nil
}

// Node is one element of a document read by Read.
type Node struct {
	Space, Local, Prefix string     // namespace URI, local name, prefix as written
	Attrs                []NodeAttr // attributes, without the namespace declarations
	Decls                []NodeAttr // xmlns declarations: Local is the prefix, "" for the default
	Children             []*Node    // child elements, in order
	Parent               *Node
	// The element is Source[Start:End]; its content (between the start and
	// end tags, empty for <x/>) is Source[Inner:InnerEnd].
	Start, Inner, InnerEnd, End int
	Source                      string
	text                        []string // character data directly inside, unescaped
}

// NodeAttr is an attribute: its namespace URI ("" for an unprefixed one),
// local name, prefix as written, and unescaped value.
type NodeAttr struct{ Space, Local, Prefix, Value string }

// Name is the element's name as written.
func (n *Node) Name() string {
	if n.Prefix == "" {
		return n.Local
	}
	return n.Prefix + ":" + n.Local
}

// A nil *Node is an element that is not there: it has no attributes, no
// text and no children, so that Attr, AttrValue, Text, Child and All read
// an optional element (n.Child(ns, "target").AttrValue("", "uri")) without
// a check at each step.

// Attr returns the value of the attribute local in namespace space ("" for
// an unprefixed attribute).
func (n *Node) Attr(space, local string) (string, bool) {
	if n == nil {
		return "", false
	}
	for _, a := range n.Attrs {
		if a.Local == local && a.Space == space {
			return a.Value, true
		}
	}
	return "", false
}

// AttrValue is Attr's value alone, "" for an attribute that is not there:
// for an optional attribute whose absence and emptiness mean the same.
func (n *Node) AttrValue(space, local string) string {
	v, _ := n.Attr(space, local)
	return v
}

// Text is the character data directly inside the element (CDATA
// included), unescaped.
func (n *Node) Text() string {
	if n == nil {
		return ""
	}
	return strings.Join(n.text, "")
}

// Raw is the element as written in the source.
func (n *Node) Raw() string { return n.Source[n.Start:n.End] }

// Child returns the first child element local in namespace space.
func (n *Node) Child(space, local string) *Node {
	if n == nil {
		return nil
	}
	for _, c := range n.Children {
		if c.Local == local && c.Space == space {
			return c
		}
	}
	return nil
}

// All yields the child elements local in namespace space, in order.
func (n *Node) All(space, local string) iter.Seq[*Node] {
	return func(yield func(*Node) bool) {
		if n == nil {
			return
		}
		for _, c := range n.Children {
			if c.Local == local && c.Space == space && !yield(c) {
				return
			}
		}
	}
}

// Lookup resolves a prefix ("" for the default namespace) where n is.
func (n *Node) Lookup(prefix string) (string, bool) {
	if prefix == "xml" {
		return nsXML, true
	}
	for e := n; e != nil; e = e.Parent {
		for _, d := range e.Decls {
			if d.Local == prefix {
				return d.Value, true
			}
		}
	}
	return "", prefix == ""
}

const nsXML = "http://www.w3.org/XML/1998/namespace"

type reader struct {
	src string
	pos int
}

func (r *reader) document() (*Node, error) {
	if !utf8.ValidString(r.src) {
		return nil, fmt.Errorf("invalid UTF-8")
	}
	if strings.HasPrefix(r.src, "\ufeff") {
		r.pos = 3 // a UTF-8 byte order mark
	}
	if strings.HasPrefix(r.src[r.pos:], "<?xml") && r.pos+5 < len(r.src) && isSpace(r.src[r.pos+5]) {
		if err := r.xmlDecl(); err != nil {
			return nil, err
		}
	}
	var root *Node
	for {
		r.skipSpace()
		if r.pos == len(r.src) {
			break
		}
		rest := r.src[r.pos:]
		switch {
		case strings.HasPrefix(rest, "<!--"):
			if err := r.comment(); err != nil {
				return nil, err
			}
		case strings.HasPrefix(rest, "<?"):
			if err := r.pi(); err != nil {
				return nil, err
			}
		case strings.HasPrefix(rest, "<!DOCTYPE"):
			return nil, fmt.Errorf("a DOCTYPE is not accepted")
		case rest[0] == '<':
			if root != nil {
				r.pos++
				return nil, fmt.Errorf("second root element <%s>", r.name())
			}
			n, err := r.element(nil)
			if err != nil {
				return nil, err
			}
			root = n
		default:
			return nil, fmt.Errorf("text %q outside the root element", clip(rest[:min(len(rest), 60)]))
		}
	}
	if root == nil {
		return nil, fmt.Errorf("no root element")
	}
	return root, nil
}

// xmlDecl reads <?xml version="1.0" encoding="..." standalone="..."?>: the
// body is taken as UTF-8, so another encoding is refused.
func (r *reader) xmlDecl() error {
	end := strings.Index(r.src[r.pos:], "?>")
	if end < 0 {
		return fmt.Errorf("unterminated XML declaration")
	}
	d := reader{src: r.src[r.pos+5 : r.pos+end]}
	r.pos += end + 2
	seen := 0
	for {
		sp := d.skipSpace()
		if d.pos == len(d.src) {
			break
		}
		k := d.name()
		d.skipSpace()
		if !sp || k == "" || d.pos == len(d.src) || d.src[d.pos] != '=' {
			return fmt.Errorf("malformed XML declaration")
		}
		d.pos++
		d.skipSpace()
		if d.pos == len(d.src) || (d.src[d.pos] != '"' && d.src[d.pos] != '\'') {
			return fmt.Errorf("malformed XML declaration")
		}
		q := strings.IndexByte(d.src[d.pos+1:], d.src[d.pos])
		if q < 0 {
			return fmt.Errorf("malformed XML declaration")
		}
		v := d.src[d.pos+1 : d.pos+1+q]
		d.pos += q + 2
		switch {
		case k == "version" && seen == 0:
			if v != "1.0" {
				return fmt.Errorf("XML version %q: only 1.0 is accepted", v)
			}
		case k == "encoding" && seen == 1:
			if !strings.EqualFold(v, "utf-8") && !strings.EqualFold(v, "us-ascii") {
				return fmt.Errorf("encoding %q: only UTF-8 is accepted", v)
			}
		case k == "standalone" && seen >= 1:
			seen = 2
		default:
			return fmt.Errorf("malformed XML declaration")
		}
		seen++
	}
	if seen == 0 {
		return fmt.Errorf("XML declaration without a version")
	}
	return nil
}

func (r *reader) comment() error {
	end := strings.Index(r.src[r.pos+4:], "--")
	if end < 0 {
		return fmt.Errorf("unterminated comment")
	}
	r.pos += 4 + end
	if !strings.HasPrefix(r.src[r.pos:], "-->") {
		return fmt.Errorf(`"--" inside a comment`)
	}
	r.pos += 3
	return nil
}

func (r *reader) pi() error {
	r.pos += 2
	target := r.name()
	if target == "" {
		return fmt.Errorf("processing instruction without a target")
	}
	if strings.EqualFold(target, "xml") {
		return fmt.Errorf("XML declaration not at the start of the document")
	}
	end := strings.Index(r.src[r.pos:], "?>")
	if end < 0 {
		return fmt.Errorf("unterminated processing instruction")
	}
	if end > 0 && !isSpace(r.src[r.pos]) {
		return fmt.Errorf("malformed processing instruction <?%s", target)
	}
	if err := checkChars(r.src[r.pos : r.pos+end]); err != nil {
		return err
	}
	r.pos += end + 2
	return nil
}

// element reads one element and its content; r.pos is at its '<'.
func (r *reader) element(parent *Node) (*Node, error) {
	n := &Node{Parent: parent, Start: r.pos, Source: r.src}
	r.pos++
	qname := r.name()
	if qname == "" {
		return nil, fmt.Errorf("malformed start tag")
	}
	var err error
	if n.Prefix, n.Local, err = splitQName(qname); err != nil {
		return nil, err
	}
	type raw struct{ qname, value string }
	var attrs []raw
	for {
		sp := r.skipSpace()
		if r.pos == len(r.src) {
			return nil, fmt.Errorf("unterminated start tag <%s", qname)
		}
		c := r.src[r.pos]
		if c == '>' || c == '/' {
			break
		}
		if !sp {
			return nil, fmt.Errorf("no space before an attribute in <%s>", qname)
		}
		an := r.name()
		if an == "" {
			return nil, fmt.Errorf("malformed attribute in <%s>", qname)
		}
		r.skipSpace()
		if r.pos == len(r.src) || r.src[r.pos] != '=' {
			return nil, fmt.Errorf("attribute %s of <%s> has no value", an, qname)
		}
		r.pos++
		r.skipSpace()
		if r.pos == len(r.src) || (r.src[r.pos] != '"' && r.src[r.pos] != '\'') {
			return nil, fmt.Errorf("attribute %s of <%s>: value not quoted", an, qname)
		}
		q := r.src[r.pos]
		end := strings.IndexByte(r.src[r.pos+1:], q)
		if end < 0 {
			return nil, fmt.Errorf("attribute %s of <%s>: unterminated value", an, qname)
		}
		v := r.src[r.pos+1 : r.pos+1+end]
		r.pos += end + 2
		if strings.IndexByte(v, '<') >= 0 {
			return nil, fmt.Errorf("attribute %s of <%s>: '<' in a value", an, qname)
		}
		if err := checkChars(v); err != nil {
			return nil, fmt.Errorf("attribute %s of <%s>: %v", an, qname, err)
		}
		if v, err = unescape(newlines(v)); err != nil {
			return nil, fmt.Errorf("attribute %s of <%s>: %v", an, qname, err)
		}
		for _, a := range attrs {
			if a.qname == an {
				return nil, fmt.Errorf("attribute %s repeated in <%s>", an, qname)
			}
		}
		attrs = append(attrs, raw{an, v})
	}
	// Declarations first: they apply to the element's own name and
	// attributes.
	for _, a := range attrs {
		switch {
		case a.qname == "xmlns":
			n.Decls = append(n.Decls, NodeAttr{Local: "", Value: a.value})
		case strings.HasPrefix(a.qname, "xmlns:"):
			p := a.qname[6:]
			if p == "" || strings.IndexByte(p, ':') >= 0 {
				return nil, fmt.Errorf("malformed declaration %s in <%s>", a.qname, qname)
			}
			if a.value == "" {
				return nil, fmt.Errorf("prefix %q bound to an empty namespace in <%s>", p, qname)
			}
			if p == "xmlns" || (p == "xml") != (a.value == nsXML) {
				return nil, fmt.Errorf("prefix %q cannot be bound to %q", p, a.value)
			}
			n.Decls = append(n.Decls, NodeAttr{Local: p, Value: a.value})
		}
	}
	var ok bool
	if n.Space, ok = n.Lookup(n.Prefix); !ok {
		return nil, fmt.Errorf("element <%s> uses undeclared prefix %q", qname, n.Prefix)
	}
	for _, a := range attrs {
		if a.qname == "xmlns" || strings.HasPrefix(a.qname, "xmlns:") {
			continue
		}
		p, l, err := splitQName(a.qname)
		if err != nil {
			return nil, err
		}
		at := NodeAttr{Local: l, Prefix: p, Value: a.value}
		if p != "" {
			if at.Space, ok = n.Lookup(p); !ok {
				return nil, fmt.Errorf("attribute %s of <%s> uses undeclared prefix %q", a.qname, qname, p)
			}
		}
		for _, b := range n.Attrs {
			if b.Local == at.Local && b.Space == at.Space {
				return nil, fmt.Errorf("attribute {%s}%s repeated in <%s>", at.Space, at.Local, qname)
			}
		}
		n.Attrs = append(n.Attrs, at)
	}
	if r.src[r.pos] == '/' {
		if !strings.HasPrefix(r.src[r.pos:], "/>") {
			return nil, fmt.Errorf("malformed start tag <%s", qname)
		}
		r.pos += 2
		n.Inner, n.InnerEnd, n.End = r.pos, r.pos, r.pos
		return n, nil
	}
	r.pos++
	n.Inner = r.pos
	if err := r.content(n); err != nil {
		return nil, err
	}
	// r.pos is at "</"
	n.InnerEnd = r.pos
	r.pos += 2
	if end := r.name(); end != qname {
		return nil, fmt.Errorf("element <%s> closed by </%s>", qname, end)
	}
	r.skipSpace()
	if r.pos == len(r.src) || r.src[r.pos] != '>' {
		return nil, fmt.Errorf("malformed end tag </%s", qname)
	}
	r.pos++
	n.End = r.pos
	return n, nil
}

// content reads what is inside n up to its end tag, leaving r.pos at "</".
func (r *reader) content(n *Node) error {
	for {
		lt := strings.IndexByte(r.src[r.pos:], '<')
		if lt < 0 {
			return fmt.Errorf("element <%s> is not closed", n.Name())
		}
		if lt > 0 {
			text := r.src[r.pos : r.pos+lt]
			if strings.Contains(text, "]]>") {
				return fmt.Errorf(`"]]>" in text`)
			}
			if err := checkChars(text); err != nil {
				return err
			}
			t, err := unescape(newlines(text))
			if err != nil {
				return err
			}
			n.text = append(n.text, t)
			r.pos += lt
		}
		rest := r.src[r.pos:]
		switch {
		case strings.HasPrefix(rest, "</"):
			return nil
		case strings.HasPrefix(rest, "<!--"):
			if err := r.comment(); err != nil {
				return err
			}
		case strings.HasPrefix(rest, "<![CDATA["):
			end := strings.Index(rest, "]]>")
			if end < 0 {
				return fmt.Errorf("unterminated CDATA section")
			}
			if err := checkChars(rest[9:end]); err != nil {
				return err
			}
			n.text = append(n.text, newlines(rest[9:end]))
			r.pos += end + 3
		case strings.HasPrefix(rest, "<?"):
			if err := r.pi(); err != nil {
				return err
			}
		case strings.HasPrefix(rest, "<!"):
			return fmt.Errorf("markup declaration inside <%s>", n.Name())
		default:
			c, err := r.element(n)
			if err != nil {
				return err
			}
			n.Children = append(n.Children, c)
		}
	}
}

// name reads an XML Name (prefixes included) and returns "" if there is
// none at r.pos. A name with non-ASCII runes is checked by encoding/xml,
// whose tables say which runes names may have: rare in presence documents,
// so the slow path is fine.
func (r *reader) name() string {
	start := r.pos
	ascii := true
	for r.pos < len(r.src) {
		c := r.src[r.pos]
		if c >= 0x80 || c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' ||
			r.pos > start && (c == '-' || c == '.' || '0' <= c && c <= '9') {
			ascii = ascii && c < 0x80
			r.pos++
			continue
		}
		break
	}
	name := r.src[start:r.pos]
	if !ascii {
		if _, err := xml.NewDecoder(strings.NewReader("<" + name + "/>")).Token(); err != nil {
			r.pos = start
			return ""
		}
	}
	return name
}

func (r *reader) skipSpace() bool {
	start := r.pos
	for r.pos < len(r.src) && isSpace(r.src[r.pos]) {
		r.pos++
	}
	return r.pos > start
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func splitQName(q string) (prefix, local string, err error) {
	p, l, ok := strings.Cut(q, ":")
	if !ok {
		return "", q, nil
	}
	if p == "" || l == "" || strings.IndexByte(l, ':') >= 0 {
		return "", "", fmt.Errorf("malformed name %q", q)
	}
	return p, l, nil
}

// checkChars refuses the control characters XML 1.0 excludes.
func checkChars(s string) error {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
			return fmt.Errorf("character %#x not allowed in XML", c)
		}
	}
	if strings.Contains(s, "\uFFFE") || strings.Contains(s, "\uFFFF") {
		return fmt.Errorf("character U+FFFE or U+FFFF not allowed in XML")
	}
	return nil
}

// newlines does XML's end-of-line handling: CR LF and a lone CR read as
// LF (a &#13; reference stays a CR: it is resolved afterwards).
func newlines(s string) string {
	if strings.IndexByte(s, '\r') < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n")
}

// unescape resolves the five predefined entities and character references;
// any other entity is an error (there is no DTD to define one).
func unescape(s string) (string, error) {
	amp := strings.IndexByte(s, '&')
	if amp < 0 {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	for amp >= 0 {
		b.WriteString(s[:amp])
		s = s[amp:]
		semi := strings.IndexByte(s, ';')
		if semi < 0 {
			return "", fmt.Errorf("unterminated reference %q", clip(s))
		}
		ref := s[1:semi]
		switch ref {
		case "lt":
			b.WriteByte('<')
		case "gt":
			b.WriteByte('>')
		case "amp":
			b.WriteByte('&')
		case "quot":
			b.WriteByte('"')
		case "apos":
			b.WriteByte('\'')
		default:
			r, ok := charRef(ref)
			if !ok {
				return "", fmt.Errorf("unknown reference &%s;", clip(ref))
			}
			b.WriteRune(r)
		}
		s = s[semi+1:]
		amp = strings.IndexByte(s, '&')
	}
	b.WriteString(s)
	return b.String(), nil
}

// charRef reads "#123" or "#x7B" as a character XML allows.
func charRef(ref string) (rune, bool) {
	if len(ref) < 2 || ref[0] != '#' {
		return 0, false
	}
	digits, base := ref[1:], rune(10)
	if digits[0] == 'x' {
		digits, base = digits[1:], 16
	}
	if digits == "" || len(digits) > 8 {
		return 0, false
	}
	var v rune
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		var d rune
		switch {
		case '0' <= c && c <= '9':
			d = rune(c - '0')
		case base == 16 && 'a' <= c && c <= 'f':
			d = rune(c-'a') + 10
		case base == 16 && 'A' <= c && c <= 'F':
			d = rune(c-'A') + 10
		default:
			return 0, false
		}
		v = v*base + d
	}
	ok := v == '\t' || v == '\n' || v == '\r' || 0x20 <= v && v <= 0xD7FF || 0xE000 <= v && v <= 0xFFFD || 0x10000 <= v && v <= 0x10FFFF
	return v, ok
}
