// Package confinfo reads, merges, diffs and writes RFC 4575
// conference-info documents: what a conference event package needs to keep
// a merged conference state from full and partial publications, and to
// send each watcher either the whole document or only what changed. A
// watcher-side test uses the same Merge to rebuild what it was sent. It
// builds for GOOS=wasip1.
//
// Documents are handled as normalized etree roots: no comments, no
// whitespace between elements, every namespace declared once on the root
// (the conference-info namespace as the default one), and no state
// attributes below the root. Normalized documents compare with Canonical.
package confinfo

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/beevik/etree"
	"github.com/presenced/presenced/sdk"
	"github.com/presenced/presenced/sdk/xmldoc"
)

const (
	// Namespace is the conference-info XML namespace.
	Namespace = "urn:ietf:params:xml:ns:conference-info"
	// MediaType is the conference-info body type.
	MediaType = "application/conference-info+xml"
	// Root is the root element's name.
	Root = "conference-info"
)

// Values of the state attribute (RFC 4575 §5.1).
const (
	Full    = "full"
	Partial = "partial"
	Deleted = "deleted"
)

// containers are the unkeyed elements merged child by child rather than
// replaced whole: the sections of a conference-info document that carry a
// state attribute in RFC 4575's schema.
var containers = []string{"conference-description", "host-info", "conference-state", "users", "sidebars-by-ref", "sidebars-by-val"}

// required are the elements that must carry their key.
var required = map[string]string{"user": "entity", "endpoint": "entity", "media": "id"}

// Doc is a parsed, normalized document with its root's state and version.
type Doc struct {
	Root       *etree.Element
	State      string // Full or Partial
	Version    uint64
	HasVersion bool
}

// Parse reads a published body for resource: well-formed XML whose root is
// <conference-info> in Namespace with an entity naming resource (resource
// "" skips that check, for a watcher reading a NOTIFY), a state of full or
// partial (default full) and an unsigned version. Keyed elements (user and
// endpoint by entity, media by id) must carry their key, once per parent.
// Refusals are sdk.Rejections with code 400.
func Parse(body []byte, resource string) (*Doc, error) {
	var root *etree.Element
	var err error
	if resource != "" {
		root, err = xmldoc.ParseRoot(body, Namespace, Root, resource)
	} else {
		root, err = xmldoc.Parse(body)
		if err == nil && (root.Tag != Root || root.NamespaceURI() != Namespace) {
			err = fmt.Errorf("root element is <%s> in namespace %q", root.FullTag(), root.NamespaceURI())
		}
	}
	if err != nil {
		if _, ok := err.(*sdk.Rejection); ok {
			return nil, err
		}
		return nil, sdk.Reject(400, "%v", err)
	}
	d := &Doc{Root: root, State: Full}
	if s, ok := xmldoc.Attr(root, "state"); ok {
		switch s {
		case Full, Partial:
			d.State = s
		default:
			return nil, sdk.Reject(400, "<conference-info> state %q: want full or partial", s)
		}
	}
	if v, ok := xmldoc.Attr(root, "version"); ok {
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
		if err != nil {
			return nil, sdk.Reject(400, "<conference-info> version %q is not an unsigned integer", v)
		}
		d.Version, d.HasVersion = n, true
	}
	if err := check(root); err != nil {
		return nil, sdk.Reject(400, "%v", err)
	}
	if err := Normalize(root); err != nil {
		return nil, sdk.Reject(400, "%v", err)
	}
	return d, nil
}

// check refuses keyed elements without a key, duplicate keys among
// siblings and state values RFC 4575 does not have.
func check(e *etree.Element) error {
	seen := map[string]bool{}
	for _, c := range e.ChildElements() {
		if c.NamespaceURI() == Namespace {
			if k, ok := required[c.Tag]; ok {
				if v, _ := xmldoc.Attr(c, k); strings.TrimSpace(v) == "" {
					return fmt.Errorf("<%s> inside <%s> has no %s attribute", c.Tag, e.Tag, k)
				}
			}
		}
		if s, ok := xmldoc.Attr(c, "state"); ok && s != Full && s != Partial && s != Deleted {
			return fmt.Errorf("<%s> state %q: want full, partial or deleted", c.Tag, s)
		}
		if k := key(c); k != "" && !isContainer(c) {
			if seen[k] {
				return fmt.Errorf("<%s> inside <%s>: %s appears twice", c.Tag, e.Tag, strings.ReplaceAll(k, "\x00", " "))
			}
			seen[k] = true
		}
		if err := check(c); err != nil {
			return err
		}
	}
	return nil
}

// Normalize rewrites root in place into the form this package keeps:
// comments, processing instructions and whitespace between elements
// dropped, the conference-info namespace as the default namespace, every
// other namespace declared once on the root. Two namespaces published
// under the same prefix get the second a new prefix.
func Normalize(root *etree.Element) error {
	prefixes := map[string]string{} // uri -> prefix
	used := map[string]string{}     // prefix -> uri
	// Namespaces resolve through the declarations: read every URI before
	// any declaration is dropped.
	type fix struct {
		e     *etree.Element
		uri   string
		attrs []string // namespace of each attribute, "" when unprefixed
	}
	var fixes []fix
	var read func(e *etree.Element)
	read = func(e *etree.Element) {
		f := fix{e: e, uri: e.NamespaceURI(), attrs: make([]string, len(e.Attr))}
		for i := range e.Attr {
			if a := &e.Attr[i]; a.Space != "" && a.Space != "xmlns" && a.Space != "xml" {
				f.attrs[i] = a.NamespaceURI()
			}
		}
		fixes = append(fixes, f)
		for _, c := range e.ChildElements() {
			read(c)
		}
	}
	read(root)
	for _, f := range fixes {
		e := f.e
		var attrs []etree.Attr
		for i, a := range e.Attr {
			if a.Space == "xmlns" || (a.Space == "" && a.Key == "xmlns") {
				continue
			}
			if f.attrs[i] != "" {
				a.Space = prefixFor(f.attrs[i], a.Space, prefixes, used)
			}
			attrs = append(attrs, a)
		}
		setAttrs(e, attrs)
		switch f.uri {
		case Namespace:
			e.Space = ""
		case "":
			return fmt.Errorf("element <%s> is in no namespace", e.Tag)
		default:
			e.Space = prefixFor(f.uri, e.Space, prefixes, used)
		}
		// Through RemoveChildAt, which keeps the children's indexes right.
		hasElem := slices.ContainsFunc(e.Child, func(t etree.Token) bool { _, ok := t.(*etree.Element); return ok })
		for i := len(e.Child) - 1; i >= 0; i-- {
			switch t := e.Child[i].(type) {
			case *etree.Element:
			case *etree.CharData:
				if hasElem && t.IsWhitespace() {
					e.RemoveChildAt(i)
				}
			default:
				e.RemoveChildAt(i)
			}
		}
	}
	declare(root, prefixes)
	return nil
}

// setAttrs replaces e's attributes with attrs.
func setAttrs(e *etree.Element, attrs []etree.Attr) {
	e.Attr = nil
	for _, a := range attrs {
		e.CreateAttr(a.FullKey(), a.Value)
	}
}

// declare puts the namespace declarations on root: the default namespace
// first, then the others sorted by prefix.
func declare(root *etree.Element, prefixes map[string]string) {
	var decl []etree.Attr
	decl = append(decl, etree.Attr{Key: "xmlns", Value: Namespace})
	var ps []string
	byPrefix := map[string]string{}
	for uri, p := range prefixes {
		ps = append(ps, p)
		byPrefix[p] = uri
	}
	slices.Sort(ps)
	for _, p := range ps {
		decl = append(decl, etree.Attr{Space: "xmlns", Key: p, Value: byPrefix[p]})
	}
	var rest []etree.Attr
	for _, a := range root.Attr {
		if a.Space == "xmlns" || (a.Space == "" && a.Key == "xmlns") {
			continue
		}
		rest = append(rest, a)
	}
	setAttrs(root, append(decl, rest...))
}

func prefixFor(uri, want string, prefixes, used map[string]string) string {
	if p, ok := prefixes[uri]; ok {
		return p
	}
	p := want
	for i := 1; p == "" || p == "xmlns" || p == "xml" || used[p] != ""; i++ {
		p = "ns" + strconv.Itoa(i)
	}
	prefixes[uri], used[p] = p, uri
	return p
}

// key identifies a child among its siblings: namespace and name, plus the
// entity or id attribute for a keyed element. Containers are keyed by
// name alone.
func key(e *etree.Element) string {
	k := e.NamespaceURI() + "\x00" + e.Tag
	if isContainer(e) {
		return k
	}
	if v, ok := xmldoc.Attr(e, "entity"); ok {
		return k + "\x00entity=" + v
	}
	if v, ok := xmldoc.Attr(e, "id"); ok {
		return k + "\x00id=" + v
	}
	return ""
}

func isContainer(e *etree.Element) bool {
	return slices.Contains(containers, e.Tag) && e.NamespaceURI() == Namespace
}

// group identifies an unkeyed, non-container element's group: its
// siblings of the same name, replaced together.
func group(e *etree.Element) string { return e.NamespaceURI() + "\x00" + e.Tag }

// StripState removes state attributes from e and below, so stored
// documents say nothing about how they were sent.
func StripState(e *etree.Element) {
	e.RemoveAttr("state")
	for _, c := range e.ChildElements() {
		StripState(c)
	}
}

// New returns the normalized root of a new full document built from a
// published one: deleted elements dropped, state attributes stripped, the
// root's attributes kept except state and version.
func New(d *Doc) *etree.Element {
	root := etree.NewElement(Root)
	var attrs []etree.Attr
	for _, a := range d.Root.Attr {
		if a.Space == "" && (a.Key == "state" || a.Key == "version") {
			continue
		}
		attrs = append(attrs, a)
	}
	setAttrs(root, attrs)
	mergeChildren(root, d.Root)
	return root
}

// Merge applies src, a partial document (or any document read as one),
// to dst in place, following RFC 4575 §4.6: a keyed element (one with an
// entity or id attribute) or a section (conference-description,
// host-info, conference-state, users, sidebars-by-ref, sidebars-by-val)
// with state="deleted" is removed, with state="full" replaced, and
// otherwise updated child by child (added when missing); any other
// element is replaced together with its same-named siblings. Attributes
// of merged elements are set from src; namespace declarations of src's
// root are added to dst's.
func Merge(dst, src *etree.Element) {
	mergeNamespaces(dst, src)
	for _, a := range src.Attr {
		if a.Space == "xmlns" || (a.Space == "" && (a.Key == "xmlns" || a.Key == "state" || a.Key == "version")) {
			continue
		}
		dst.CreateAttr(a.FullKey(), a.Value)
	}
	mergeChildren(dst, src)
}

// mergeNamespaces leaves nothing to do: copies are adopted one by one
// (adopt), and the declarations sorted once the merge is done.
func mergeNamespaces(dst, src *etree.Element) {}

// rootOf is the top of e's tree.
func rootOf(e *etree.Element) *etree.Element {
	for e.Parent() != nil && e.Parent().Tag != "" {
		e = e.Parent()
	}
	return e
}

// decls maps a normalized root's prefixes to namespaces.
func decls(root *etree.Element) map[string]string {
	m := map[string]string{}
	for _, a := range root.Attr {
		if a.Space == "xmlns" {
			m[a.Key] = a.Value
		}
	}
	return m
}

// adopt rewrites the prefixes of n, a copy of an element of the document
// whose root is src, for the document whose root is dst, declaring on dst
// a namespace it lacks (under n's prefix, or a new one if that is taken).
func adopt(n, src, dst *etree.Element) {
	if src == dst {
		return
	}
	from := decls(src)
	if len(from) == 0 {
		return
	}
	to := decls(dst)
	prefixes := map[string]string{}
	for p, uri := range to {
		prefixes[uri] = p
	}
	var walk func(e *etree.Element)
	walk = func(e *etree.Element) {
		if e.Space != "" {
			e.Space = prefixFor(from[e.Space], e.Space, prefixes, to)
		}
		for i := range e.Attr {
			if a := &e.Attr[i]; a.Space != "" && a.Space != "xml" && a.Space != "xmlns" {
				a.Space = prefixFor(from[a.Space], a.Space, prefixes, to)
			}
		}
		for _, c := range e.ChildElements() {
			walk(c)
		}
	}
	walk(n)
	if len(prefixes) != len(decls(dst)) {
		declare(dst, prefixes)
	}
}

func mergeChildren(dst, src *etree.Element) {
	dstRoot, srcRoot := rootOf(dst), rootOf(src)
	copyOf := func(e *etree.Element) *etree.Element {
		n := e.Copy()
		StripState(n)
		adopt(n, srcRoot, dstRoot)
		return n
	}
	done := map[string]bool{}
	for _, c := range src.ChildElements() {
		state, _ := xmldoc.Attr(c, "state")
		if k := key(c); k != "" {
			old := find(dst, k)
			switch {
			case state == Deleted:
				if old != nil {
					dst.RemoveChild(old)
				}
			case old == nil:
				insert(dst, copyOf(c))
			case state == Full:
				dst.InsertChildAt(old.Index(), copyOf(c))
				dst.RemoveChild(old)
			default:
				copyAttrs(old, c)
				mergeChildren(old, c)
			}
			continue
		}
		g := group(c)
		if done[g] {
			continue
		}
		done[g] = true
		at := -1
		for _, o := range dst.ChildElements() {
			if key(o) == "" && group(o) == g {
				if at < 0 {
					at = o.Index()
				}
				dst.RemoveChild(o)
			}
		}
		if state == Deleted {
			continue
		}
		for _, s := range src.ChildElements() {
			if key(s) != "" || group(s) != g {
				continue
			}
			n := copyOf(s)
			if at < 0 {
				insert(dst, n)
				at = n.Index() + 1
			} else {
				dst.InsertChildAt(at, n)
				at = n.Index() + 1
			}
		}
	}
}

// order is the order of the children of conference-info elements in RFC
// 4575's schema (§5), where new elements are inserted; elements it does
// not list go last.
var order = map[string][]string{
	Root:                     {"conference-description", "host-info", "conference-state", "users", "sidebars-by-ref", "sidebars-by-val"},
	"conference-description": {"display-text", "subject", "free-text", "keywords", "conf-uris", "service-uris", "maximum-user-count", "available-media"},
	"host-info":              {"display-text", "web-page", "uris"},
	"conference-state":       {"user-count", "active", "locked"},
	"user":                   {"display-text", "associated-aors", "roles", "languages", "cascaded-focus", "endpoint"},
	"endpoint":               {"display-text", "referred", "status", "joining-method", "joining-info", "disconnection-method", "disconnection-info", "media", "call-info"},
	"media":                  {"display-text", "type", "label", "src-id", "status"},
}

// rank is child's place in order. Normalized documents have the
// conference-info namespace as the default one, so no prefix means it
// (child may be a copy not yet attached).
func rank(parent, child *etree.Element) int {
	if child.Space == "" && parent.Space == "" {
		if i := slices.Index(order[parent.Tag], child.Tag); i >= 0 {
			return i
		}
	}
	return 1 << 20
}

// insert adds n to e's children after the last child that does not come
// after it in the schema's order.
func insert(e, n *etree.Element) {
	r := rank(e, n)
	at := len(e.Child)
	for _, c := range e.ChildElements() {
		if rank(e, c) > r {
			at = c.Index()
			break
		}
	}
	e.InsertChildAt(at, n)
}

func copyAttrs(dst, src *etree.Element) {
	for _, a := range src.Attr {
		if a.Space == "" && a.Key == "state" {
			continue
		}
		dst.CreateAttr(a.FullKey(), a.Value)
	}
}

func find(e *etree.Element, k string) *etree.Element {
	for _, c := range e.ChildElements() {
		if key(c) == k {
			return c
		}
	}
	return nil
}

// Diff returns the partial document that turns old into new under Merge,
// both normalized roots without state attributes, or nil when they are
// the same (Equal). ok is false when no partial document can say the
// change (an element removed that has no key, an attribute removed, or an
// order Merge would not reproduce): send new in full. Diff checks its
// answer by merging it into old, which it therefore changes: pass a copy
// to keep it.
func Diff(old, new *etree.Element) (d *etree.Element, ok bool) {
	if Equal(old, new) {
		return nil, true
	}
	if !sameAttrs(old, new, true) {
		return nil, false
	}
	d = shallow(new)
	if !diffChildren(old, new, d) {
		return nil, false
	}
	// Check: the watcher must end with exactly new.
	Merge(old, d)
	if !Equal(old, new) {
		return nil, false
	}
	return d, true
}

// Equal reports whether two normalized elements are the same: names,
// attributes in order, text and children.
func Equal(a, b *etree.Element) bool {
	if a.Tag != b.Tag || a.Space != b.Space || len(a.Attr) != len(b.Attr) || len(a.Child) != len(b.Child) {
		return false
	}
	for i := range a.Attr {
		x, y := &a.Attr[i], &b.Attr[i]
		if x.Space != y.Space || x.Key != y.Key || x.Value != y.Value {
			return false
		}
	}
	for i := range a.Child {
		switch x := a.Child[i].(type) {
		case *etree.Element:
			y, ok := b.Child[i].(*etree.Element)
			if !ok || !Equal(x, y) {
				return false
			}
		case *etree.CharData:
			y, ok := b.Child[i].(*etree.CharData)
			if !ok || x.Data != y.Data {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func diffChildren(old, new, out *etree.Element) bool {
	oldKeyed := map[string]*etree.Element{}
	oldGroups := map[string][]*etree.Element{}
	for _, c := range old.ChildElements() {
		if k := key(c); k != "" {
			oldKeyed[k] = c
		} else {
			oldGroups[group(c)] = append(oldGroups[group(c)], c)
		}
	}
	newKeys := map[string]bool{}
	newGroups := map[string][]*etree.Element{}
	var order []string
	for _, c := range new.ChildElements() {
		k := key(c)
		if k == "" {
			g := group(c)
			if newGroups[g] == nil {
				order = append(order, g)
			}
			newGroups[g] = append(newGroups[g], c)
			continue
		}
		newKeys[k] = true
		o := oldKeyed[k]
		if o == nil {
			n := c.Copy()
			n.CreateAttr("state", Full)
			out.AddChild(n)
			continue
		}
		if Equal(o, c) {
			continue
		}
		p := shallow(c)
		if sameAttrs(o, c, false) && diffChildren(o, c, p) {
			p.CreateAttr("state", Partial)
			out.AddChild(p)
		} else {
			n := c.Copy()
			n.CreateAttr("state", Full)
			out.AddChild(n)
		}
	}
	for _, c := range old.ChildElements() {
		if k := key(c); k != "" && !newKeys[k] {
			n := etree.NewElement(c.Tag)
			n.Space = c.Space
			if !isContainer(c) {
				for _, a := range []string{"entity", "id"} {
					if v, ok := xmldoc.Attr(c, a); ok {
						n.CreateAttr(a, v)
						break
					}
				}
			}
			n.CreateAttr("state", Deleted)
			out.AddChild(n)
		}
	}
	for g := range oldGroups {
		if newGroups[g] == nil {
			return false
		}
	}
	for _, g := range order {
		if sameList(oldGroups[g], newGroups[g]) {
			continue
		}
		for _, c := range newGroups[g] {
			out.AddChild(c.Copy())
		}
	}
	return true
}

func sameList(a, b []*etree.Element) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// sameAttrs reports whether setting new's attributes on old gives new's:
// none of old's is missing from new. root skips state and version.
func sameAttrs(old, new *etree.Element, root bool) bool {
	for _, a := range old.Attr {
		if root && a.Space == "" && (a.Key == "state" || a.Key == "version") {
			continue
		}
		if new.SelectAttr(a.FullKey()) == nil {
			return false
		}
	}
	return true
}

// shallow copies e's name and attributes, not its children.
func shallow(e *etree.Element) *etree.Element {
	n := etree.NewElement(e.Tag)
	n.Space = e.Space
	setAttrs(n, e.Attr)
	return n
}

// Canonical serializes a normalized element compactly, for comparing and
// storing; Decode reads it back.
func Canonical(e *etree.Element) []byte {
	var b bytes.Buffer
	e.WriteTo(&b, &etree.WriteSettings{})
	return b.Bytes()
}

// Decode reads back what Canonical wrote.
func Decode(b []byte) (*etree.Element, error) {
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(b); err != nil {
		return nil, err
	}
	if doc.Root() == nil {
		return nil, fmt.Errorf("no root element")
	}
	return doc.Root(), nil
}

// Empty is the document of a conference with nothing known about it, or
// no longer: not active, no users.
func Empty(entity string) *etree.Element {
	root := etree.NewElement(Root)
	root.CreateAttr("xmlns", Namespace)
	root.CreateAttr("entity", entity)
	cs := root.CreateElement("conference-state")
	cs.CreateElement("user-count").SetText("0")
	cs.CreateElement("active").SetText("false")
	root.CreateElement("users")
	return root
}

// Render writes root as a document to send, with the XML declaration, the
// given state and version on the root, without indentation: a NOTIFY
// over UDP must stay under the path MTU, and whitespace is most of a
// pretty-printed conference-info document's growth.
func Render(root *etree.Element, state string, version uint64) []byte {
	r := root.Copy()
	r.RemoveAttr("state")
	r.RemoveAttr("version")
	// state and version right after the namespace declarations and entity.
	var head, tail []etree.Attr
	for _, a := range r.Attr {
		if a.Space == "xmlns" || (a.Space == "" && (a.Key == "xmlns" || a.Key == "entity")) {
			head = append(head, a)
		} else {
			tail = append(tail, a)
		}
	}
	head = append(head, etree.Attr{Key: "state", Value: state}, etree.Attr{Key: "version", Value: strconv.FormatUint(version, 10)})
	setAttrs(r, append(head, tail...))
	doc := etree.NewDocument()
	doc.CreateProcInst("xml", `version="1.0" encoding="UTF-8"`)
	doc.SetRoot(r)
	b, _ := doc.WriteToBytes()
	return b
}
