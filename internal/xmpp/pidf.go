package xmpp

import (
	"encoding/xml"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// PIDF to XMPP, RFC 8048 §5 and the inverse of what pa does with XMPP
// presence: a presentity is available when a tuple is open; the person's
// RPID activities give <show/> (away → away; away with "extended away",
// vacation → xa; busy, on-the-phone, meeting → dnd); the person's note,
// else the first open tuple's, is <status/> with its xml:lang; the highest
// contact priority of an open tuple, times 127, is <priority/>.

const nsRPID = "urn:ietf:params:xml:ns:pidf:rpid"

type note struct {
	Lang string `xml:"http://www.w3.org/XML/1998/namespace lang,attr"`
	Text string `xml:",chardata"`
}

type pidfDoc struct {
	Tuples []struct {
		Basic   string `xml:"urn:ietf:params:xml:ns:pidf status>basic"`
		Contact struct {
			Priority string `xml:"priority,attr"`
		} `xml:"urn:ietf:params:xml:ns:pidf contact"`
		Notes []note `xml:"urn:ietf:params:xml:ns:pidf note"`
	} `xml:"urn:ietf:params:xml:ns:pidf tuple"`
	Persons []struct {
		Activities struct {
			Any []struct {
				XMLName xml.Name
				Text    string `xml:",chardata"`
			} `xml:",any"`
		} `xml:"urn:ietf:params:xml:ns:pidf:rpid activities"`
		Notes []note `xml:"urn:ietf:params:xml:ns:pidf:data-model note"`
	} `xml:"urn:ietf:params:xml:ns:pidf:data-model person"`
}

// xmppPresence is what a <presence/> says.
type xmppPresence struct {
	Available    bool
	Show         string
	Status, Lang string
	Priority     int
	HasPriority  bool
}

// presenceOf maps a PIDF document; one it cannot read, or none (a pending
// watcher, dummy_presence off), is unavailable.
func presenceOf(doc []byte) xmppPresence {
	var d pidfDoc
	var p xmppPresence
	if len(doc) == 0 || xml.Unmarshal(doc, &d) != nil {
		return p
	}
	best := -1.0
	for _, t := range d.Tuples {
		if strings.TrimSpace(t.Basic) != "open" {
			continue
		}
		if !p.Available && len(t.Notes) > 0 {
			p.Status, p.Lang = strings.TrimSpace(t.Notes[0].Text), t.Notes[0].Lang
		}
		p.Available = true
		if q, err := strconv.ParseFloat(strings.TrimSpace(t.Contact.Priority), 64); err == nil && q >= 0 && q <= 1 && q > best {
			best = q
		}
	}
	if !p.Available {
		return xmppPresence{}
	}
	if best >= 0 {
		p.Priority, p.HasPriority = int(math.Round(best*127)), true
	}
	if len(d.Persons) == 0 {
		return p
	}
	person := d.Persons[0]
	if len(person.Notes) > 0 {
		p.Status, p.Lang = strings.TrimSpace(person.Notes[0].Text), person.Notes[0].Lang
	}
	for _, a := range person.Activities.Any {
		if a.XMLName.Space != nsRPID {
			continue
		}
		switch a.XMLName.Local {
		case "busy", "on-the-phone", "meeting":
			p.Show = "dnd"
		case "vacation":
			p.Show = "xa"
		case "away":
			if p.Show == "" {
				p.Show = "away"
			}
		case "other":
			if strings.EqualFold(strings.TrimSpace(a.Text), "extended away") && p.Show != "dnd" {
				p.Show = "xa"
			}
		}
	}
	return p
}

// stanza writes p from one JID to another.
func (p xmppPresence) stanza(from, to string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<presence from='%s' to='%s'`, esc(from), esc(to))
	if !p.Available {
		b.WriteString(` type='unavailable'`)
	}
	b.WriteString(`>`)
	if p.Show != "" {
		fmt.Fprintf(&b, `<show>%s</show>`, p.Show)
	}
	if p.Status != "" {
		if p.Lang != "" {
			fmt.Fprintf(&b, `<status xml:lang='%s'>%s</status>`, esc(p.Lang), esc(p.Status))
		} else {
			fmt.Fprintf(&b, `<status>%s</status>`, esc(p.Status))
		}
	}
	if p.Available && p.HasPriority {
		fmt.Fprintf(&b, `<priority>%d</priority>`, p.Priority)
	}
	b.WriteString(`</presence>`)
	return b.String()
}
