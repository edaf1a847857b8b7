// Package xmldoc reads and writes the XML documents of a module: it parses
// and checks a published body, refusing what a watcher's parser would
// refuse with a message that says where, and checking that the root is the
// package's document about the resource published to; and it writes what
// watchers get (Writer), copying elements out of other documents with the
// namespace declarations they rely on (Writer.Copy, Copy). It builds for
// GOOS=wasip1.
package xmldoc

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/beevik/etree"
	"github.com/presenced/presenced/sdk"
)

// ParseRoot parses a published body and checks that its root is <tag> in
// namespace space, with an entity attribute naming resource (compared with
// sdk.SameResource). Every refusal is an sdk.Rejection with code 400 whose
// reason says what is wrong, ready to return from Publish; on success it
// returns the root for the package's own checks.
func ParseRoot(body []byte, space, tag, resource string) (*etree.Element, error) {
	root, err := Parse(body)
	if err != nil {
		return nil, sdk.Reject(400, "%v", err)
	}
	if root.Tag != tag || root.NamespaceURI() != space {
		return nil, sdk.Reject(400, "root element is <%s> in namespace %q, want <%s> in %q",
			root.FullTag(), root.NamespaceURI(), tag, space)
	}
	entity, ok := Attr(root, "entity")
	if !ok || strings.TrimSpace(entity) == "" {
		return nil, sdk.Reject(400, "<%s> has no entity attribute", tag)
	}
	if !sdk.SameResource(entity, resource) {
		return nil, sdk.Reject(400, "entity %q is not the resource published to, %q", entity, resource)
	}
	return root, nil
}

// Parse parses a document and returns its root element, refusing what
// etree lets through but a watcher's parser would not: several roots, text
// outside the root, a prefix no one declared. Errors start "not well-formed
// XML: ".
func Parse(body []byte) (*etree.Element, error) {
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(body); err != nil {
		return nil, fmt.Errorf("not well-formed XML: %v", syntaxError(body, err))
	}
	var root *etree.Element
	for _, t := range doc.Child {
		switch t := t.(type) {
		case *etree.Element:
			if root != nil {
				return nil, fmt.Errorf("not well-formed XML: second root element <%s>", t.FullTag())
			}
			root = t
		case *etree.CharData:
			if !t.IsWhitespace() {
				return nil, fmt.Errorf("not well-formed XML: text %q outside the root element", clip(t.Data))
			}
		}
	}
	if root == nil {
		return nil, errors.New("not well-formed XML: no root element")
	}
	if err := checkPrefixes(root); err != nil {
		return nil, fmt.Errorf("not well-formed XML: %w", err)
	}
	return root, nil
}

// syntaxError turns etree's catch-all ErrXML (it reads raw tokens, so an
// unclosed or mismatched element is all it can say) into encoding/xml's
// message with a line number. It parses a second time, but only on the
// error path.
func syntaxError(body []byte, err error) error {
	if !errors.Is(err, etree.ErrXML) {
		return err
	}
	d := xml.NewDecoder(bytes.NewReader(body))
	// Any declared charset: etree read the bytes as they are, and the
	// point is only to find where they stop being XML.
	d.CharsetReader = func(_ string, r io.Reader) (io.Reader, error) { return r, nil }
	for {
		_, e := d.Token()
		if e == io.EOF {
			return err
		}
		if e != nil {
			return e
		}
	}
}

// checkPrefixes refuses a prefix that no ancestor binds; etree keeps it as
// an unresolved name where a namespace-aware parser would stop. The xmlns
// and xml prefixes are bound by the XML Namespaces spec itself.
func checkPrefixes(e *etree.Element) error {
	if e.Space != "" && e.NamespaceURI() == "" {
		return fmt.Errorf("element <%s> uses undeclared prefix %q", e.FullTag(), e.Space)
	}
	for _, a := range e.Attr {
		if a.Space != "" && a.Space != "xmlns" && a.Space != "xml" && a.NamespaceURI() == "" {
			return fmt.Errorf("attribute %s of <%s> uses undeclared prefix %q", a.FullKey(), e.FullTag(), a.Space)
		}
	}
	for _, c := range e.ChildElements() {
		if err := checkPrefixes(c); err != nil {
			return err
		}
	}
	return nil
}

// Attr returns an unprefixed attribute of e; etree's SelectAttr would also
// match a prefixed one of the same local name, which is another attribute.
func Attr(e *etree.Element, key string) (string, bool) {
	for _, a := range e.Attr {
		if a.Space == "" && a.Key == key {
			return a.Value, true
		}
	}
	return "", false
}

// clip shortens stray text for an error message that goes into a Warning
// header.
func clip(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
