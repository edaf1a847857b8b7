package xmldoc

import (
	"encoding/xml"
	"fmt"
	"iter"
	"math/bits"
	"strings"
	"unicode/utf8"
	"unsafe"

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
	return r.read()
}

// ReadRoot is ParseRoot on the light path: it reads a published body and
// checks that its root is <local> in namespace space with an entity
// attribute naming resource. Refusals are sdk.Rejections with code 400.
func ReadRoot(body []byte, space, local, resource string) (*Node, error) {
	root, err := Read(body)
	return checkRoot(root, err, space, local, resource)
}

// A Reader reads documents as Read does, into memory it keeps for the next
// ones: a module that reads a document at every call keeps one and reads
// with no allocation once it has read the largest. Its Nodes are not
// copies: they point into the body read, which must not change while they
// are used, and into the Reader's memory, which Reset hands over to the
// next documents. The Nodes of every document read since the last Reset
// stay valid until the next one. A Reader is for one goroutine at a time.
type Reader struct {
	nodes      []Node
	kids, open []*Node
	attrs      []NodeAttr
}

// Read reads body as the package's Read does, without copying it.
func (d *Reader) Read(body []byte) (*Node, error) {
	return d.read(unsafe.String(unsafe.SliceData(body), len(body)))
}

// ReadRoot is the package's ReadRoot on d.
func (d *Reader) ReadRoot(body []byte, space, local, resource string) (*Node, error) {
	root, err := d.Read(body)
	return checkRoot(root, err, space, local, resource)
}

// Reset makes the memory of every Node read so far d's to reuse. It
// clears what was used, so that a Node reused starts empty, as a new one
// does, and so that d holds on to no document it was given.
func (d *Reader) Reset() {
	clear(d.nodes)
	clear(d.kids)
	clear(d.attrs)
	clear(d.open[:cap(d.open)])
	d.nodes, d.kids, d.attrs = d.nodes[:0], d.kids[:0], d.attrs[:0]
}

func (d *Reader) read(src string) (*Node, error) {
	r := reader{src: src, nodes: d.nodes, kids: d.kids, attrs: d.attrs, open: d.open[:0]}
	root, err := r.read()
	d.nodes, d.kids, d.attrs, d.open = r.nodes, r.kids, r.attrs, r.open
	return root, err
}

// read reads the document, with the line of an error.
func (r *reader) read() (*Node, error) {
	root, err := r.document()
	if err != nil {
		return nil, fmt.Errorf("not well-formed XML: line %d: %v", 1+strings.Count(r.src[:min(r.pos, len(r.src))], "\n"), err)
	}
	return root, nil
}

// checkRoot is ReadRoot's check of what Read returned.
func checkRoot(root *Node, err error, space, local, resource string) (*Node, error) {
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
// included), unescaped. Read only checks it: the usual leaf holds plain
// text, which Text returns as a substring of the source, and the text of
// an element with children, rarely wanted, is put together here.
func (n *Node) Text() string {
	if n == nil {
		return ""
	}
	s := n.Source[n.Inner:n.InnerEnd]
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '<' || c == '&' || c == '\r' {
			return n.joinText()
		}
	}
	return s
}

// joinText walks the content Read checked, so every piece is known to be
// well formed: the text between the markup, end-of-line handled and
// unescaped piece by piece as Read saw it, and CDATA sections.
func (n *Node) joinText() string {
	var b strings.Builder
	p, k := n.Inner, 0
	for p < n.InnerEnd {
		rest := n.Source[p:n.InnerEnd]
		lt := strings.IndexByte(rest, '<')
		if lt < 0 {
			lt = len(rest)
		}
		if lt > 0 {
			resolve(&b, newlines(rest[:lt]))
			p += lt
			continue
		}
		switch {
		case strings.HasPrefix(rest, "<!--"):
			p += 4 + strings.Index(rest[4:], "--") + 3
		case strings.HasPrefix(rest, "<![CDATA["):
			end := strings.Index(rest, "]]>")
			b.WriteString(newlines(rest[9:end]))
			p += end + 3
		case strings.HasPrefix(rest, "<?"):
			p += 2 + strings.Index(rest[2:], "?>") + 2
		default:
			p = n.Children[k].End
			k++
		}
	}
	return b.String()
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
			// Lengths first: comparing two empty strings still calls
			// memequal, costly in wasm, and most lookups are of "".
			if len(d.Local) == len(prefix) && (prefix == "" || d.Local == prefix) {
				return d.Value, true
			}
		}
	}
	return "", prefix == ""
}

const nsXML = "http://www.w3.org/XML/1998/namespace"

// A reader makes few allocations and calls, which is what costs in a Go
// wasm guest (RATIONALE.md, "Cheap in wasm"): one pass over the source
// (scan) finds what the document holds, so that the checks, end-of-line
// handling and unescaping each piece would need are skipped when the
// document has nothing for them, and bounds how many Nodes and NodeAttrs
// it can have, which are then taken from a few slices instead of being
// allocated one by one.
type reader struct {
	src   string
	pos   int
	colon int // set by name

	has uint8 // the scan bits of the whole document
	// what scan counted of the elements, children and attributes not
	// yet read: it sizes the chunks, a wrong count costs one more
	nodesLeft, kidsLeft, attrsLeft int
	nodes                          []Node
	kids                           []*Node
	attrs                          []NodeAttr
	open                           []*Node // children of the elements being read, until their parent closes
}

// What scan records of a document: an excluded character, a CR, a '&',
// "]]>", '<' and '='.
const (
	hasOdd = 1 << iota
	hasCR
	hasAmp
	hasCDEnd
	hasLT
	hasEq
)

// byteScan is scan's view of an ASCII byte, byteName name's: a byte that
// may start a name, or one that may only follow.
var byteScan, byteName = func() (scan, name [256]uint8) {
	for c := range 256 {
		switch {
		case c < 0x20 && c != '\t' && c != '\n' && c != '\r':
			scan[c] = hasOdd
		case c == '\r':
			scan[c] = hasCR
		case c == '&':
			scan[c] = hasAmp
		case c == ']':
			scan[c] = hasCDEnd
		case c == '<':
			scan[c] = hasLT
		case c == '=':
			scan[c] = hasEq
		}
		switch {
		case c >= 0x80:
			name[c] = nameStart | nameMore | nameHigh
		case c == ':':
			name[c] = nameStart | nameMore | nameColon
		case c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
			name[c] = nameStart | nameMore
		case c == '-' || c == '.' || '0' <= c && c <= '9':
			name[c] = nameMore
		}
	}
	return
}()

const (
	nameStart = 1 << iota
	nameMore
	nameHigh
	nameColon
)

// scan checks that the source is UTF-8 and records in r.has what it holds,
// in nodesLeft its '<'s before a name and in attrsLeft its '='s. An ASCII
// stretch is read eight bytes at a time: a loop over bytes costs about
// 6 ns a byte in a wasm guest. What it records may be more than the
// document holds (a ']' is taken for a "]]>"), never less, except the two
// counts, which only size the first chunks.
func (r *reader) scan() bool {
	const lo, hi, low7 = 0x0101010101010101, 0x8080808080808080, 0x7f7f7f7f7f7f7f7f
	// is has the high bit of each byte of x (all ASCII) that is c.
	is := func(x uint64, c byte) uint64 { return ^((x ^ uint64(c)*lo) + low7) & hi }
	s := r.src
	var has uint8
	nodes, eqs := 0, 0
	for i := 0; i < len(s); {
		if i+9 <= len(s) {
			x := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
				uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
			if x&hi == 0 {
				next := x>>8 | uint64(s[i+8])<<56
				// A name starts with a byte from 0x40 up (':' aside).
				nodes += bits.OnesCount64(is(x, '<') & (next << 1))
				eqs += bits.OnesCount64(is(x, '='))
				if is(x, '&') != 0 {
					has |= hasAmp
				}
				if is(x, ']') != 0 {
					has |= hasCDEnd
				}
				if low := ^(x<<1 | x<<2) & hi; low != 0 { // a byte below 0x20
					cr := is(x, '\r')
					if cr != 0 {
						has |= hasCR
					}
					if low&^(cr|is(x, '\n')|is(x, '\t')) != 0 {
						has |= hasOdd
					}
				}
				i += 8
				continue
			}
		}
		c := s[i]
		if c >= 0x80 {
			ru, size := utf8.DecodeRuneInString(s[i:])
			if size == 1 {
				return false
			}
			if ru == 0xFFFE || ru == 0xFFFF {
				has |= hasOdd
			}
			i += size
			continue
		}
		switch k := byteScan[c]; k {
		case 0:
		case hasLT:
			if i+1 < len(s) && byteName[s[i+1]]&nameStart != 0 {
				nodes++
			}
		case hasEq:
			eqs++
		case hasCDEnd:
			if i+2 < len(s) && s[i+1] == ']' && s[i+2] == '>' {
				has |= hasCDEnd
			}
		default:
			has |= k
		}
		i++
	}
	r.has, r.nodesLeft, r.kidsLeft, r.attrsLeft = has, nodes, nodes, eqs
	return true
}

// Nodes, their children and attributes come from chunks of at most
// chunk entries, enough for any presence document in one, and bounded so
// that a large malformed body costs little before it is refused.
const chunk = 256

// carve returns n entries from the chunk *pool, starting a new chunk with
// room for what *left says is still to come (at most chunk, at least n)
// when it has too few; the result's capacity is its length, so an append
// to it never writes into a neighbour's.
func carve[T any](pool *[]T, n int, left *int) []T {
	p := *pool
	if cap(p)-len(p) < n {
		p = make([]T, 0, max(n, min(*left, chunk)))
	}
	*left -= n
	*pool = p[:len(p)+n]
	return p[len(p) : len(p)+n : len(p)+n]
}

func (r *reader) document() (*Node, error) {
	if !r.scan() {
		return nil, fmt.Errorf("invalid UTF-8")
	}
	if cap(r.kids) == 0 {
		// One allocation for the children of every element and the
		// stack they wait on until their parent closes.
		k := min(r.kidsLeft, chunk)
		ptrs := make([]*Node, 2*k)
		r.kids, r.open = ptrs[:0:k], ptrs[k:k]
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

// commonDecls are the XML declarations presence clients send, which
// xmlDecl accepts without reading them piece by piece (about 1 µs in wasm).
var commonDecls = [...]struct {
	text  string
	attrs int // its '='s
}{
	{`<?xml version="1.0" encoding="UTF-8"?>`, 2},
	{`<?xml version="1.0" encoding="utf-8"?>`, 2},
	{`<?xml version='1.0' encoding='UTF-8'?>`, 2},
	{`<?xml version="1.0"?>`, 1},
}

// xmlDecl reads <?xml version="1.0" encoding="..." standalone="..."?>: the
// body is taken as UTF-8, so another encoding is refused.
func (r *reader) xmlDecl() error {
	for _, d := range commonDecls {
		if strings.HasPrefix(r.src[r.pos:], d.text) {
			r.pos += len(d.text)
			r.attrsLeft -= d.attrs
			return nil
		}
	}
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
	r.attrsLeft -= seen // scan counted their '='s
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
	if r.has&hasOdd != 0 {
		if err := checkChars(r.src[r.pos : r.pos+end]); err != nil {
			return err
		}
	}
	r.pos += end + 2
	return nil
}

// rawAttr is an attribute as read, before its name is resolved.
type rawAttr struct {
	qname, value string
	colon        int // where name found qname's first colon
}

// element reads one element and its content; r.pos is at its '<'.
func (r *reader) element(parent *Node) (*Node, error) {
	n := &carve(&r.nodes, 1, &r.nodesLeft)[0]
	n.Parent, n.Start, n.Source = parent, r.pos, r.src
	r.pos++
	qname := r.name()
	if qname == "" {
		return nil, fmt.Errorf("malformed start tag")
	}
	var err error
	n.Local = qname
	if r.colon >= 0 {
		if n.Prefix, n.Local, err = splitQName(qname, r.colon); err != nil {
			return nil, err
		}
	}
	var buf [8]rawAttr // enough for most elements, on the stack
	attrs := buf[:0]
	decls := 0
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
		colon := r.colon
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
		if r.has&hasOdd != 0 {
			if err := checkChars(v); err != nil {
				return nil, fmt.Errorf("attribute %s of <%s>: %v", an, qname, err)
			}
		}
		if r.has&(hasCR|hasAmp) != 0 {
			if v, err = unescape(newlines(v)); err != nil {
				return nil, fmt.Errorf("attribute %s of <%s>: %v", an, qname, err)
			}
		}
		for _, a := range attrs {
			if a.qname == an {
				return nil, fmt.Errorf("attribute %s repeated in <%s>", an, qname)
			}
		}
		if isDecl(an) {
			decls++
		}
		attrs = append(attrs, rawAttr{an, v, colon})
	}
	if len(attrs) > 0 {
		// Declarations first: they apply to the element's own name and
		// attributes.
		all := carve(&r.attrs, len(attrs), &r.attrsLeft)
		n.Decls, n.Attrs = all[:0:decls], all[decls:decls]
		for _, a := range attrs {
			switch {
			case a.qname == "xmlns":
				n.Decls = append(n.Decls, NodeAttr{Local: "", Value: a.value})
			case isDecl(a.qname):
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
		if decls == 0 {
			n.Decls = nil
		}
	}
	var ok bool
	if n.Space, ok = n.Lookup(n.Prefix); !ok {
		return nil, fmt.Errorf("element <%s> uses undeclared prefix %q", qname, n.Prefix)
	}
	for _, a := range attrs {
		if isDecl(a.qname) {
			continue
		}
		at := NodeAttr{Local: a.qname, Value: a.value}
		if a.colon >= 0 {
			if at.Prefix, at.Local, err = splitQName(a.qname, a.colon); err != nil {
				return nil, err
			}
		}
		p := at.Prefix
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
	if len(n.Attrs) == 0 {
		n.Attrs = nil
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
	// The end tag usually repeats the name: compared in place, it needs
	// no second read.
	if e := r.pos + len(qname); e <= len(r.src) && r.src[r.pos:e] == qname && (e == len(r.src) || byteName[r.src[e]] == 0) {
		r.pos = e
	} else if end := r.name(); end != qname {
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

// isDecl tells a namespace declaration from an attribute.
func isDecl(qname string) bool {
	return len(qname) >= 5 && qname[:5] == "xmlns" && (len(qname) == 5 || qname[5] == ':')
}

// content reads what is inside n up to its end tag, leaving r.pos at "</".
// Text is only checked here; Text puts it together when asked.
func (r *reader) content(n *Node) error {
	mark := len(r.open)
	for {
		lt := strings.IndexByte(r.src[r.pos:], '<')
		if lt < 0 {
			return fmt.Errorf("element <%s> is not closed", n.Name())
		}
		if lt > 0 {
			text := r.src[r.pos : r.pos+lt]
			if r.has&hasCDEnd != 0 && strings.Contains(text, "]]>") {
				return fmt.Errorf(`"]]>" in text`)
			}
			if r.has&hasOdd != 0 {
				if err := checkChars(text); err != nil {
					return err
				}
			}
			if r.has&hasAmp != 0 {
				if err := resolve(nil, newlines(text)); err != nil {
					return err
				}
			}
			r.pos += lt
		}
		rest := r.src[r.pos:]
		// Dispatch on the byte after '<': a chain of prefix tests costs a
		// call each in wasm.
		var next byte
		if len(rest) > 1 {
			next = rest[1]
		}
		switch {
		case next == '/':
			if k := len(r.open) - mark; k > 0 {
				n.Children = carve(&r.kids, k, &r.kidsLeft)
				for i, c := range r.open[mark:] { // copy would call typedslicecopy
					n.Children[i] = c
				}
				r.open = r.open[:mark]
			}
			return nil
		case next == '!' && strings.HasPrefix(rest, "<!--"):
			if err := r.comment(); err != nil {
				return err
			}
		case next == '!' && strings.HasPrefix(rest, "<![CDATA["):
			end := strings.Index(rest, "]]>")
			if end < 0 {
				return fmt.Errorf("unterminated CDATA section")
			}
			if r.has&hasOdd != 0 {
				if err := checkChars(rest[9:end]); err != nil {
					return err
				}
			}
			r.pos += end + 3
		case next == '?':
			if err := r.pi(); err != nil {
				return err
			}
		case next == '!':
			return fmt.Errorf("markup declaration inside <%s>", n.Name())
		default:
			c, err := r.element(n)
			if err != nil {
				return err
			}
			r.open = append(r.open, c)
		}
	}
}

// name reads an XML Name (prefixes included) and returns "" if there is
// none at r.pos; it leaves in r.colon where the name's first colon is, -1
// for none. A name with non-ASCII runes is checked by encoding/xml, whose
// tables say which runes names may have: rare in presence documents, so
// the slow path is fine.
func (r *reader) name() string {
	s, start, i := r.src, r.pos, r.pos
	if i == len(s) || byteName[s[i]]&nameStart == 0 {
		return ""
	}
	var seen uint8
	for ; i < len(s); i++ {
		k := byteName[s[i]]
		if k == 0 {
			break
		}
		seen |= k
	}
	r.pos = i
	name := s[start:i]
	r.colon = -1
	if seen&nameColon != 0 {
		r.colon = strings.IndexByte(name, ':')
	}
	if seen&nameHigh != 0 {
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

// splitQName splits a name read by name at its first colon (a name
// without one is its own local name, with no call).
func splitQName(q string, colon int) (prefix, local string, err error) {
	p, l := q[:colon], q[colon+1:]
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
	if strings.IndexByte(s, '&') < 0 {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	if err := resolve(&b, s); err != nil {
		return "", err
	}
	return b.String(), nil
}

// resolve writes s to b with its references resolved, or only checks them
// when b is nil.
func resolve(b *strings.Builder, s string) error {
	for {
		amp := strings.IndexByte(s, '&')
		if amp < 0 {
			break
		}
		if b != nil {
			b.WriteString(s[:amp])
		}
		s = s[amp:]
		semi := strings.IndexByte(s, ';')
		if semi < 0 {
			return fmt.Errorf("unterminated reference %q", clip(s))
		}
		var c rune
		switch ref := s[1:semi]; ref {
		case "lt":
			c = '<'
		case "gt":
			c = '>'
		case "amp":
			c = '&'
		case "quot":
			c = '"'
		case "apos":
			c = '\''
		default:
			var ok bool
			if c, ok = charRef(ref); !ok {
				return fmt.Errorf("unknown reference &%s;", clip(ref))
			}
		}
		if b != nil {
			b.WriteRune(c)
		}
		s = s[semi+1:]
	}
	if b != nil {
		b.WriteString(s)
	}
	return nil
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
