package xmldoc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/beevik/etree"
)

// same reports how a Read tree differs from the etree one Parse gives for
// the same document ("" when it does not): names, namespaces, attributes,
// declarations, children, and the text of leaves.
func same(n *Node, e *etree.Element) string {
	if n.Local != e.Tag || n.Prefix != e.Space || n.Space != e.NamespaceURI() {
		return "element " + n.Name() + " {" + n.Space + "} vs " + e.FullTag() + " {" + e.NamespaceURI() + "}"
	}
	var attrs, decls int
	for _, a := range e.Attr {
		switch {
		case a.Space == "" && a.Key == "xmlns", a.Space == "xmlns":
			decls++
			p := a.Key
			if a.Space == "" {
				p = ""
			}
			found := false
			for _, d := range n.Decls {
				found = found || d.Local == p && d.Value == a.Value
			}
			if !found {
				return "declaration " + a.FullKey() + " of " + e.FullTag()
			}
		default:
			attrs++
			space := a.NamespaceURI()
			switch a.Space {
			case "":
				space = ""
			case "xml": // bound by the spec; etree does not resolve it
				space = nsXML
			}
			v, ok := n.Attr(space, a.Key)
			if !ok || v != a.Value {
				return "attribute " + a.FullKey() + " of " + e.FullTag() + ": " + v + " vs " + a.Value
			}
		}
	}
	if attrs != len(n.Attrs) || decls != len(n.Decls) {
		return "attribute count of " + e.FullTag()
	}
	kids := e.ChildElements()
	if len(kids) != len(n.Children) {
		return "children of " + e.FullTag()
	}
	for i := range kids {
		if d := same(n.Children[i], kids[i]); d != "" {
			return d
		}
	}
	inner := n.Source[n.Inner:n.InnerEnd]
	if len(kids) == 0 && !strings.Contains(inner, "<!--") && !strings.Contains(inner, "<?") && n.Text() != e.Text() {
		return "text of " + e.FullTag() + ": " + n.Text() + " vs " + e.Text()
	}
	if n.Raw() == "" || n.Source[n.Start] != '<' || n.Source[n.End-1] != '>' {
		return "span of " + e.FullTag()
	}
	return ""
}

// corpus is every XML document in the repository's testdata: what pa and
// conference are tested with.
func corpus(t testing.TB) map[string][]byte {
	docs := map[string][]byte{"pidf": []byte(pidf)}
	for _, glob := range []string{"../../extensions/*/testdata/*.xml", "../../internal/server/testdata/*.xml"} {
		files, _ := filepath.Glob(glob)
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			docs[f] = b
		}
	}
	if len(docs) < 5 {
		t.Fatalf("only %d documents found", len(docs))
	}
	return docs
}

func TestReadAgreesWithParse(t *testing.T) {
	for name, b := range corpus(t) {
		e, perr := Parse(b)
		n, rerr := Read(b)
		if (perr == nil) != (rerr == nil) {
			t.Errorf("%s: Parse %v, Read %v", name, perr, rerr)
			continue
		}
		if perr == nil {
			if d := same(n, e); d != "" {
				t.Errorf("%s: %s", name, d)
			}
		}
	}
}

func TestReadRefuses(t *testing.T) {
	for doc, want := range map[string]string{
		"":                                   "no root element",
		"<a/><b/>":                           "second root",
		"text<a/>":                           "outside the root",
		"<x:a/>":                             `undeclared prefix "x"`,
		`<a xmlns:x="u"><b y:c="1"/></a>`:    `undeclared prefix "y"`,
		"<a>&unknown;</a>":                   "unknown reference",
		"<a>&#0;</a>":                        "unknown reference",
		"<a>AT&T</a>":                        "unterminated reference",
		`<!DOCTYPE a [<!ENTITY e "x">]><a/>`: "DOCTYPE",
		"<a":                                 "unterminated start tag",
		"<a>":                                "not closed",
		"<a></b>":                            "closed by </b>",
		"\xff<a/>":                           "UTF-8",
		`<a b="1" b="2"/>`:                   "repeated",
		`<a xmlns:x="u" xmlns:y="u" x:b="1" y:b="2"/>`: "repeated",
		`<a b=1/>`:               "not quoted",
		`<a b="<"/>`:             "'<'",
		"<a>]]></a>":             "]]>",
		"<a><!-- x -- y --></a>": `"--"`,
		"<a>\x01</a>":            "character",
		`<?xml version="1.0" encoding="ISO-8859-1"?><a/>`: "only UTF-8",
		"<a/><?xml version=\"1.0\"?>":                     "not at the start",
		`<a xmlns:x=""/>`:                                 "empty namespace",
		"<a:/>":                                           "malformed name",
		"<a>\n\n<b></a>":                                  "line 3",
	} {
		_, err := Read([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "not well-formed XML: ") {
			t.Errorf("Read(%q) = %v, want an error with %q", doc, err, want)
		}
	}
}

func TestReadAccepts(t *testing.T) {
	doc := "\ufeff<?xml version='1.0' encoding='utf-8' standalone='yes'?>\n<!-- c --><?pi x?>\n" +
		`<p:a xmlns:p="urn:p" xmlns="urn:d" xml:lang="en" b = 'x &amp; &#x41;&#66;'>` +
		`<b>one<![CDATA[<two>]]>&lt;</b><c/><!-- c --><?pi?></p:a>` + "\n<!-- after -->\n"
	n, err := Read([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if n.Space != "urn:p" || n.Local != "a" || len(n.Children) != 2 || n.Children[0].Space != "urn:d" {
		t.Fatalf("tree: %+v", n)
	}
	if v, _ := n.Attr("", "b"); v != "x & AB" {
		t.Errorf("attribute b = %q", v)
	}
	if v, _ := n.Attr("http://www.w3.org/XML/1998/namespace", "lang"); v != "en" {
		t.Errorf("xml:lang = %q", v)
	}
	if b := n.Child("urn:d", "b"); b == nil || b.Text() != "one<two><" || b.Raw() != "<b>one<![CDATA[<two>]]>&lt;</b>" {
		t.Errorf("b = %+v", b)
	}
	if c := n.Child("urn:d", "c"); c == nil || c.Raw() != "<c/>" || c.Inner != c.InnerEnd {
		t.Errorf("c = %+v", c)
	}
}

// All yields the matching children in order; a nil Node, an element that
// is not there, reads as one with nothing in it.
func TestNodeAccessors(t *testing.T) {
	n, err := Read([]byte(`<r xmlns="urn:d" xmlns:x="urn:x"><i id="1"/><x:i id="x"/><i id="2" a=""/><j/></r>`))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for c := range n.All("urn:d", "i") {
		ids = append(ids, c.AttrValue("", "id"))
	}
	if strings.Join(ids, " ") != "1 2" {
		t.Fatalf("All: %q", ids)
	}
	for range n.All("urn:d", "i") {
		break // stopping early must not panic
	}
	if v := n.Child("urn:d", "i").AttrValue("", "a"); v != "" {
		t.Fatalf("absent a: %q", v)
	}
	var none *Node
	if v, ok := none.Attr("", "id"); v != "" || ok || none.AttrValue("", "id") != "" || none.Text() != "" || none.Child("urn:d", "i") != nil {
		t.Fatal("nil Node has something")
	}
	for range none.All("urn:d", "i") {
		t.Fatal("nil Node has children")
	}
	if v := n.Child("urn:d", "missing").Child("urn:d", "i").AttrValue("", "id"); v != "" {
		t.Fatalf("chain through a missing element: %q", v)
	}
}

// equal reports whether two trees read from the same source are the same
// to a module: names, attributes, declarations, spans and children.
func equal(a, b *Node) bool {
	if a.Space != b.Space || a.Local != b.Local || a.Prefix != b.Prefix || a.Source != b.Source ||
		a.Start != b.Start || a.Inner != b.Inner || a.InnerEnd != b.InnerEnd || a.End != b.End ||
		len(a.Attrs) != len(b.Attrs) || len(a.Decls) != len(b.Decls) || len(a.Children) != len(b.Children) ||
		(a.Parent == nil) != (b.Parent == nil) || a.Text() != b.Text() {
		return false
	}
	for i := range a.Attrs {
		if a.Attrs[i] != b.Attrs[i] {
			return false
		}
	}
	for i := range a.Decls {
		if a.Decls[i] != b.Decls[i] {
			return false
		}
	}
	for i := range a.Children {
		if a.Children[i].Parent != a || b.Children[i].Parent != b || !equal(a.Children[i], b.Children[i]) {
			return false
		}
	}
	return true
}

// readBoth reads body with Read and with d, and fails unless both give the
// same tree or the same error.
func readBoth(t *testing.T, d *Reader, body []byte) *Node {
	t.Helper()
	want, werr := Read(body)
	got, err := d.Read(body)
	if (werr == nil) != (err == nil) || werr != nil && werr.Error() != err.Error() {
		t.Fatalf("Read: %v, Reader.Read: %v\n%q", werr, err, body)
	}
	if werr == nil && !equal(want, got) {
		t.Fatalf("Reader.Read's tree differs from Read's\n%q", body)
	}
	return got
}

// A Reader gives what Read gives, whether it reads into new memory, into
// memory Reset handed back (a larger document after a smaller one, a
// smaller after a larger, after a refused one), or a document after
// others it keeps: those stay as they were.
func TestReaderReuses(t *testing.T) {
	docs := [][]byte{[]byte(pidf), []byte("<a></b>")}
	for _, b := range corpus(t) {
		docs = append(docs, b, []byte("<a><b/><c>"))
	}
	docs = append(docs, []byte(pidf))
	var d Reader
	for _, b := range docs {
		d.Reset()
		readBoth(t, &d, b)
	}
	d.Reset()
	first := readBoth(t, &d, []byte(pidf))
	for _, b := range docs {
		readBoth(t, &d, b)
	}
	if want, _ := Read([]byte(pidf)); !equal(want, first) {
		t.Fatal("a document read before others without a Reset changed")
	}
}

// FuzzRead: whatever Read accepts, Parse (etree, over encoding/xml) accepts
// too, with the same tree; Read is never the laxer of the two.
func FuzzRead(f *testing.F) {
	for _, b := range corpus(f) {
		f.Add(b)
	}
	for _, s := range []string{"<a/><b/>", "<x:a/>", `<a xmlns:x="u"><x:b x:c="1"/></a>`, "<a>&amp;&#x41;</a>", "<a><![CDATA[x]]></a>"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		// A Reader that has read and dropped another document gives
		// what Read gives, refusal included.
		var d Reader
		d.Read([]byte(pidf))
		d.Reset()
		readBoth(t, &d, body)
		n, err := Read(body)
		if err != nil {
			return
		}
		e, perr := Parse(body)
		if perr != nil {
			t.Fatalf("Read accepted what Parse refuses (%v):\n%q", perr, body)
		}
		if d := same(n, e); d != "" {
			t.Fatalf("trees differ: %s\n%q", d, body)
		}
	})
}
