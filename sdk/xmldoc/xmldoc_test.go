package xmldoc

import (
	"errors"
	"strings"
	"testing"

	"github.com/presenced/presenced/sdk"
)

const ns = "urn:example:doc"

func TestParse(t *testing.T) {
	root, err := Parse([]byte("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<doc xmlns=\"urn:example:doc\" xmlns:x=\"urn:example:x\" xml:lang=\"en\"><x:a x:b=\"1\"/></doc>\n"))
	if err != nil {
		t.Fatal(err)
	}
	if root.Tag != "doc" || root.NamespaceURI() != ns {
		t.Fatalf("root = <%s> in %q", root.FullTag(), root.NamespaceURI())
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ body, want string }{
		{"<doc>\n<a>\n</doc>", "not well-formed XML: XML syntax error on line 3: element <a> closed by </doc>"},
		{"<doc><a", "not well-formed XML: XML syntax error on line 1: unexpected EOF"},
		{"<doc/><doc/>", "not well-formed XML: second root element <doc>"},
		{"<doc/>hello", `not well-formed XML: text "hello" outside the root element`},
		{"<doc/>" + strings.Repeat("y", 50), `not well-formed XML: text "` + strings.Repeat("y", 40) + `..." outside the root element`},
		{"", "not well-formed XML: no root element"},
		{`<doc><p:a/></doc>`, `not well-formed XML: element <p:a> uses undeclared prefix "p"`},
		{`<doc><a p:b="1"/></doc>`, `not well-formed XML: attribute p:b of <a> uses undeclared prefix "p"`},
	}
	for _, tt := range tests {
		_, err := Parse([]byte(tt.body))
		if err == nil || err.Error() != tt.want {
			t.Errorf("Parse(%q): err = %v, want %q", tt.body, err, tt.want)
		}
	}
}

func TestParseRoot(t *testing.T) {
	const resource = "sip:alice@example.com"
	if _, err := ParseRoot([]byte(`<doc xmlns="urn:example:doc" entity="pres:alice@example.com"/>`), ns, "doc", resource); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ body, want string }{
		{`<doc`, "not well-formed XML: XML syntax error on line 1: unexpected EOF"},
		{`<doc xmlns="urn:example:other" entity="sip:alice@example.com"/>`, `root element is <doc> in namespace "urn:example:other", want <doc> in "urn:example:doc"`},
		{`<x:other xmlns:x="urn:example:doc"/>`, `root element is <x:other> in namespace "urn:example:doc", want <doc> in "urn:example:doc"`},
		{`<doc xmlns="urn:example:doc"/>`, "<doc> has no entity attribute"},
		{`<doc xmlns="urn:example:doc" entity=" "/>`, "<doc> has no entity attribute"},
		{`<doc xmlns="urn:example:doc" xmlns:x="urn:x" x:entity="sip:alice@example.com"/>`, "<doc> has no entity attribute"},
		{`<doc xmlns="urn:example:doc" entity="sip:bob@example.com"/>`, `entity "sip:bob@example.com" is not the resource published to, "sip:alice@example.com"`},
	}
	for _, tt := range tests {
		_, err := ParseRoot([]byte(tt.body), ns, "doc", resource)
		var rej *sdk.Rejection
		if !errors.As(err, &rej) || rej.Code != 400 || rej.Reason != tt.want {
			t.Errorf("ParseRoot(%q): err = %v, want 400 %q", tt.body, err, tt.want)
		}
	}
}

func TestAttr(t *testing.T) {
	root, err := Parse([]byte(`<doc xmlns:x="urn:x" x:id="p" id="u"/>`))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := Attr(root, "id"); !ok || v != "u" {
		t.Fatalf("Attr id = %q, %v", v, ok)
	}
	if _, ok := Attr(root, "other"); ok {
		t.Fatal("Attr found a missing attribute")
	}
}
