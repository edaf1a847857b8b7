// Package rls owns the documents of a resource list server: the RFC 4826
// rls-services document that defines lists, and the RFC 4662 RLMI document
// and multipart/related body a list subscription is sent. It keeps no
// state and speaks no SIP; internal/server runs the subscriptions.
package rls

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"slices"
	"strings"
)

// List is one resource list: its URI, the event packages it serves (none
// named: every package served), and its members in document order.
type List struct {
	URI      string   `json:"uri"`
	Packages []string `json:"packages"`
	Members  []Member `json:"members"`
}

// Member is one entry of a list.
type Member struct {
	URI  string `json:"uri"`
	Name string `json:"name,omitempty"`
}

// Serves reports whether l may be subscribed to with event package ev.
func (l *List) Serves(ev string) bool {
	return len(l.Packages) == 0 || slices.Contains(l.Packages, ev)
}

// Has reports whether uri is a member of l.
func (l *List) Has(uri string) bool {
	return slices.ContainsFunc(l.Members, func(m Member) bool { return m.URI == uri })
}

// The elements of RFC 4826 §4 that presenced reads. A <resource-list>
// reference (a list kept on an XCAP server) is refused rather than
// ignored: presenced fetches nothing, and a list quietly empty would look
// like one whose members are all offline.
type servicesDoc struct {
	XMLName  xml.Name     `xml:"urn:ietf:params:xml:ns:rls-services rls-services"`
	Services []serviceDoc `xml:"service"`
}

type serviceDoc struct {
	URI          string    `xml:"uri,attr"`
	List         *listDoc  `xml:"list"` // in the rls-services namespace; its entries in resource-lists
	ResourceList *struct{} `xml:"resource-list"`
	Packages     []string  `xml:"packages>package"`
}

type listDoc struct {
	Entries []entryDoc `xml:"urn:ietf:params:xml:ns:resource-lists entry"`
	Lists   []listDoc  `xml:"urn:ietf:params:xml:ns:resource-lists list"`
}

type entryDoc struct {
	URI  string `xml:"uri,attr"`
	Name string `xml:"urn:ietf:params:xml:ns:resource-lists display-name"`
}

// ParseServices reads an RFC 4826 rls-services document. Nested <list>s
// are flattened into their service's members, in document order, each
// URI once (RFC 4662 §5: one <resource> per URI).
func ParseServices(data []byte) ([]List, error) {
	var doc servicesDoc
	if err := xml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("rls-services: %w", err)
	}
	seen := map[string]bool{}
	var out []List
	for i, s := range doc.Services {
		if s.URI == "" {
			return nil, fmt.Errorf("rls-services: service %d has no uri", i+1)
		}
		if seen[s.URI] {
			return nil, fmt.Errorf("rls-services: service %s is defined twice", s.URI)
		}
		seen[s.URI] = true
		if s.ResourceList != nil || s.List == nil {
			return nil, fmt.Errorf("rls-services: service %s: only an inline <list> is supported, not <resource-list> (presenced fetches no XCAP document)", s.URI)
		}
		l := List{URI: s.URI}
		for _, p := range s.Packages {
			if p = strings.TrimSpace(p); p != "" {
				l.Packages = append(l.Packages, p)
			}
		}
		if err := l.flatten(s.List); err != nil {
			return nil, fmt.Errorf("rls-services: service %s: %w", s.URI, err)
		}
		if err := l.Check(); err != nil {
			return nil, fmt.Errorf("rls-services: %w", err)
		}
		out = append(out, l)
	}
	return out, nil
}

func (l *List) flatten(d *listDoc) error {
	for _, e := range d.Entries {
		if e.URI == "" {
			return fmt.Errorf("an <entry> has no uri")
		}
		if !l.Has(e.URI) {
			l.Members = append(l.Members, Member{URI: e.URI, Name: strings.TrimSpace(e.Name)})
		}
	}
	for i := range d.Lists {
		if err := l.flatten(&d.Lists[i]); err != nil {
			return err
		}
	}
	return nil
}

// Check says what is wrong with l, or nil: a list needs a sip: or sips:
// URI, and so does each member, which may not be the list itself (a list
// watching itself would never settle) nor appear twice.
func (l *List) Check() error {
	if !sipURI(l.URI) {
		return fmt.Errorf("list uri %q is not a sip: or sips: URI with a user part", l.URI)
	}
	seen := map[string]bool{}
	for _, m := range l.Members {
		switch {
		case !sipURI(m.URI):
			return fmt.Errorf("list %s: member %q is not a sip: or sips: URI with a user part", l.URI, m.URI)
		case m.URI == l.URI:
			return fmt.Errorf("list %s names itself as a member", l.URI)
		case seen[m.URI]:
			return fmt.Errorf("list %s names %s twice", l.URI, m.URI)
		}
		seen[m.URI] = true
	}
	return nil
}

func sipURI(u string) bool {
	rest, ok := strings.CutPrefix(u, "sip:")
	if !ok {
		rest, ok = strings.CutPrefix(u, "sips:")
	}
	user, host, ok2 := strings.Cut(rest, "@")
	return ok && ok2 && user != "" && host != "" && !strings.ContainsAny(u, " <>\"")
}

// Instance is one back-end subscription of a resource (RFC 4662 §5.2):
// its id, its state (active, pending, terminated), the reason of a
// terminated one, and the Content-ID of its document in this body ("" if
// none is sent).
type Instance struct {
	ID, State, Reason, CID string
}

// Resource is one <resource> of an RLMI document.
type Resource struct {
	URI, Name string
	Instances []Instance
}

// Part is one member document carried beside the RLMI document.
type Part struct {
	CID, ContentType string
	Body             []byte
}

// RLMI writes the RFC 4662 §5 document for list uri.
func RLMI(uri string, version uint32, full bool, res []Resource) []byte {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	fmt.Fprintf(&b, `<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="%s" version="%d" fullState="%t">`+"\n", esc(uri), version, full)
	for _, r := range res {
		fmt.Fprintf(&b, `  <resource uri="%s">`+"\n", esc(r.URI))
		if r.Name != "" {
			fmt.Fprintf(&b, "    <name>%s</name>\n", esc(r.Name))
		}
		for _, in := range r.Instances {
			fmt.Fprintf(&b, `    <instance id="%s" state="%s"`, esc(in.ID), esc(in.State))
			if in.Reason != "" {
				fmt.Fprintf(&b, ` reason="%s"`, esc(in.Reason))
			}
			if in.CID != "" {
				fmt.Fprintf(&b, ` cid="%s"`, esc(in.CID))
			}
			b.WriteString("/>\n")
		}
		b.WriteString("  </resource>\n")
	}
	b.WriteString("</list>\n")
	return b.Bytes()
}

func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return strings.ReplaceAll(b.String(), `"`, "&#34;")
}

// Multipart is the body of a list NOTIFY (RFC 4662 §5.1, RFC 2387): the
// RLMI document first, with Content-ID rootCID, then each part. boundary
// must appear in no part.
func Multipart(rootCID string, rlmi []byte, parts []Part, boundary string) (contentType string, body []byte) {
	var b bytes.Buffer
	part := func(cid, ctype string, data []byte) {
		fmt.Fprintf(&b, "--%s\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <%s>\r\nContent-Type: %s\r\n\r\n", boundary, cid, ctype)
		b.Write(data)
		b.WriteString("\r\n")
	}
	part(rootCID, "application/rlmi+xml;charset=\"UTF-8\"", rlmi)
	for _, p := range parts {
		part(p.CID, p.ContentType, p.Body)
	}
	fmt.Fprintf(&b, "--%s--\r\n", boundary)
	return fmt.Sprintf(`multipart/related;type="application/rlmi+xml";start="<%s>";boundary="%s"`, rootCID, boundary), b.Bytes()
}
