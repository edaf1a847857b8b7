package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/beevik/etree"
)

// The same checks as the presence package's (extensions/pa/pidf.go): each
// module is its own wasm binary, and these few functions are not worth a
// shared package yet.

// parseXML parses a document and returns its root element, refusing what
// etree lets through but a watcher's parser would not: several roots, text
// outside the root, a prefix no one declared.
func parseXML(body []byte) (*etree.Element, error) {
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

// attr returns an unprefixed attribute; etree's SelectAttr would also match
// a prefixed one of the same local name.
func attr(e *etree.Element, key string) (string, bool) {
	for _, a := range e.Attr {
		if a.Space == "" && a.Key == key {
			return a.Value, true
		}
	}
	return "", false
}

func clip(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
