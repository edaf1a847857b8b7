package xmldoc

import (
	"strings"
	"testing"

	"github.com/beevik/etree"
)

const (
	nsD = "urn:ietf:params:xml:ns:dialog-info"
	nsX = "urn:example:x"
)

func TestWriter(t *testing.T) {
	w := NewWriter()
	w.Declare("x", nsX)
	w.Start(nsD, "dialog-info", A("version", "0"), A("entity", `sip:a&"b"@example.com`))
	w.Start(nsD, "dialog", A("id", "1"), NodeAttr{Space: nsX, Local: "mark", Value: "<"})
	w.Element(nsX, "note", "a < b & c > d\r")
	w.Element(nsD, "state", "")
	w.End()
	w.Start("", "plain", NodeAttr{Space: "urn:example:y", Prefix: "y", Local: "k", Value: "v"})
	w.Element("urn:example:z", "z", "")
	got := string(w.Bytes())
	want := `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		`<dialog-info xmlns:x="urn:example:x" xmlns="` + nsD + `" version="0" entity="sip:a&amp;&quot;b&quot;@example.com">` +
		`<dialog id="1" x:mark="&lt;"><x:note>a &lt; b &amp; c &gt; d&#xD;</x:note><state/></dialog>` +
		`<plain xmlns="" xmlns:y="urn:example:y" y:k="v"><z xmlns="urn:example:z"/></plain></dialog-info>`
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	// What it writes reads back with the namespaces it meant.
	root, err := Read([]byte(got))
	if err != nil {
		t.Fatal(err)
	}
	if n := root.Children[0].Children[0]; n.Space != nsX || n.Text() != "a < b & c > d\r" {
		t.Errorf("note: <%s> in %q, text %q", n.Name(), n.Space, n.Text())
	}
	if p := root.Children[1]; p.Space != "" || p.Children[0].Space != "urn:example:z" {
		t.Errorf("plain in %q, z in %q", p.Space, p.Children[0].Space)
	}
}

// src is a document whose elements rely on declarations of the root.
const src = `<dialog-info xmlns="` + nsD + `" xmlns:d="` + nsD + `" xmlns:x="` + nsX + `" entity="sip:a@example.com">` +
	`<d:dialog id="1" x:k="v"><state>confirmed</state><x:y xmlns:x="urn:other"/></d:dialog>` +
	`</dialog-info>`

func TestWriterCopy(t *testing.T) {
	root, err := Read([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	dialog := root.Children[0]

	// Into a document that binds nothing: every inherited prefix is
	// declared on the copy, the one x that is declared inside as well.
	var w Writer
	w.Copy(dialog)
	got := string(w.Bytes())
	want := `<d:dialog xmlns:d="` + nsD + `" xmlns:x="` + nsX + `" xmlns="` + nsD + `" id="1" x:k="v"><state>confirmed</state><x:y xmlns:x="urn:other"/></d:dialog>`
	if got != want {
		t.Fatalf("copy alone:\n%s\nwant\n%s", got, want)
	}
	if _, err := Read([]byte(got)); err != nil {
		t.Fatalf("the copy does not read alone: %v", err)
	}

	// Into a document that binds them the same: byte for byte.
	w = Writer{}
	w.Declare("", nsD)
	w.Declare("d", nsD)
	w.Declare("x", nsX)
	w.Start(nsD, "dialog-info")
	w.Copy(dialog)
	if got := string(w.Bytes()); !strings.Contains(got, `<dialog-info xmlns="`+nsD+`" xmlns:d="`+nsD+`" xmlns:x="`+nsX+`">`+dialog.Raw()) {
		t.Fatalf("copy where bound the same is not the source:\n%s", got)
	}

	// An unprefixed element of no namespace, copied under a default one.
	plain, err := Read([]byte(`<a><b><c/></b></a>`))
	if err != nil {
		t.Fatal(err)
	}
	w = Writer{}
	w.Start(nsD, "dialog-info")
	w.Copy(plain.Children[0])
	if got, want := string(w.Bytes()), `<dialog-info xmlns="`+nsD+`"><b xmlns=""><c/></b></dialog-info>`; got != want {
		t.Fatalf("no namespace:\n%s\nwant\n%s", got, want)
	}
}

func TestCopyEtree(t *testing.T) {
	root, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	dialog := root.ChildElements()[0]
	if bare := dialog.Copy(); bare.NamespaceURI() != "" {
		t.Fatalf("etree's Copy kept the namespace (%q): this test no longer shows why Copy exists", bare.NamespaceURI())
	}
	doc := etree.NewDocument()
	doc.SetRoot(Copy(dialog))
	s, err := doc.WriteToString()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse([]byte(s))
	if err != nil {
		t.Fatalf("the copy does not parse alone: %v\n%s", err, s)
	}
	if back.NamespaceURI() != nsD || back.ChildElements()[0].NamespaceURI() != nsD {
		t.Fatalf("copy lost its namespaces:\n%s", s)
	}
	if a := back.SelectAttr("x:k"); a == nil || a.NamespaceURI() != nsX {
		t.Fatalf("attribute x:k lost its namespace:\n%s", s)
	}
}

// Attrs leaves out the attributes without a value, in the order given.
func TestAttrs(t *testing.T) {
	w := &Writer{}
	w.Element(nsD, "dialog", "", Attrs("id", "a&b", "call-id", "", "direction", "recipient")...)
	if got, want := string(w.Bytes()), `<dialog xmlns="`+nsD+`" id="a&amp;b" direction="recipient"/>`; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	if a := Attrs("id", ""); a != nil {
		t.Fatalf("no value: %v", a)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("an odd count did not panic")
		}
	}()
	Attrs("id")
}
