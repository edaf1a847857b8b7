package xmpp

import (
	"fmt"
	"strings"

	"github.com/presenced/presenced/abi"
)

// The reverse direction of the gateway (RFC 8048 §5 read from XMPP): an
// XMPP user subscribes to alice@<component domain> and is sent the
// composed presence of sip:alice@<SIPDomain>, as the presence module
// renders it for a watcher whose URI is the user's (RFC 7247 §4:
// xmpp:romeo@example.net is sip:romeo@example.net, or the SIP URI its
// domain maps to), so the module's authorization decides, as for a SIP
// watcher. Everything here runs on deliver's goroutine.

// sipResource is the resource of the JID a SIP user's presence comes
// from: clients expect an available presence from a full JID.
const sipResource = "/sip"

// subscriber is an XMPP user subscribed to a SIP user's presence.
type subscriber struct {
	status string // the module's decision: active or pending
	last   string // the presence last sent, without its id: only changes are sent
}

// sipUser is the presentity an XMPP user addressed (alice@domain), if the
// reverse direction is on and the address is one.
func (c *Component) sipUser(to string) (string, bool) {
	user, dom, _ := strings.Cut(to, "@")
	if c.cfg.SIPDomain == "" || dom != strings.ToLower(c.cfg.Domain) || user == "" || to == c.jid {
		return "", false
	}
	return abi.Presentity("sip:" + user + "@" + c.cfg.SIPDomain)
}

// watcherURI is the SIP URI of an XMPP user, as the module sees them.
func (c *Component) watcherURI(bare string) string {
	if uri, ok := c.SIPURI(bare); ok {
		return uri
	}
	return "sip:" + bare
}

// fromSubscriber handles a presence stanza addressed to a SIP user.
func (c *Component) fromSubscriber(st *stanza, bare, to string) {
	if st.XMLName.Local != "presence" {
		return
	}
	uri, ok := c.sipUser(to)
	if !ok {
		if st.Type == "subscribe" {
			c.send(fmt.Sprintf(`<presence from='%s' to='%s' type='unsubscribed'/>`, esc(to), esc(bare)))
		}
		return
	}
	subs := c.subs[uri]
	switch st.Type {
	case "subscribe", "probe":
		// A probe comes from a server whose user is subscribed (RFC 6121
		// §4.3): after a restart of presenced it is how a subscription
		// made before is learnt again.
		if subs == nil {
			subs = map[string]*subscriber{}
			c.subs[uri] = subs
		}
		s := subs[bare]
		if s == nil {
			s = &subscriber{}
			subs[bare] = s
		}
		if st.Type == "subscribe" {
			s.status, s.last = "", "" // answer the request again, with the presence
		}
		c.update(uri, to, bare, s, st.Type == "probe")
	case "unsubscribe":
		if subs[bare] != nil {
			delete(subs, bare)
			if len(subs) == 0 {
				delete(c.subs, uri)
			}
			c.send(fmt.Sprintf(`<presence from='%s' to='%s' type='unavailable'/>`, esc(to+sipResource), esc(bare)))
		}
	}
}

// update renders uri for the subscriber and sends what changed: the
// answer to the request once the module decided, and the presence while
// active (all of it when again).
func (c *Component) update(uri, from, bare string, s *subscriber, again bool) {
	status, pidf, err := c.host.Render(uri, c.watcherURI(bare))
	if err != nil {
		c.log.Warn("presence of a SIP user not rendered for an XMPP subscriber", "resource", uri, "jid", bare, "err", err)
		return
	}
	switch status {
	case abi.StatusRejected:
		delete(c.subs[uri], bare)
		if len(c.subs[uri]) == 0 {
			delete(c.subs, uri)
		}
		c.send(fmt.Sprintf(`<presence from='%s' to='%s' type='unsubscribed'/>`, esc(from), esc(bare)))
		return
	case abi.StatusPending:
		s.status = status
		return
	}
	if s.status != abi.StatusActive {
		s.status = status
		c.send(fmt.Sprintf(`<presence from='%s' to='%s' type='subscribed'/>`, esc(from), esc(bare)))
	}
	p := presenceOf(pidf).stanza(from+sipResource, bare)
	if p != s.last || again {
		s.last = p
		c.send(p)
	}
}

// Changed tells the connector that the presence of a presentity may have
// changed: its XMPP subscribers are sent what changed. It only queues and
// never blocks.
func (c *Component) Changed(sipURI string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.enqueue(func() { c.refresh(sipURI, false) })
}

func (c *Component) refresh(uri string, again bool) {
	if len(c.subs[uri]) == 0 {
		return
	}
	user, _, _ := strings.Cut(strings.TrimPrefix(uri, "sip:"), "@")
	from := strings.ToLower(user) + "@" + strings.ToLower(c.cfg.Domain)
	for bare, s := range c.subs[uri] {
		c.update(uri, from, bare, s, again)
	}
}

// resend sends every subscriber its presence after a (re)connection: what
// was sent while the stream was down was lost.
func (c *Component) resend() {
	for uri := range c.subs {
		c.refresh(uri, true)
	}
}
