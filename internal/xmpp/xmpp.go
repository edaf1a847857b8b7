// Package xmpp is the core side of pa's "jabber" backend (RFC 8048): a
// connector that joins an XMPP server as an external component (XEP-0114,
// jabber:component:accept). It owns the XMPP stream and the subscriptions
// on both sides of the gateway; what presence means stays in the presence
// module, which it reaches through Host.
//
// XMPP users seen from SIP. Config.Domains maps a SIP domain to an XMPP
// domain: the presentity sip:juliet@xmpp.example.com is the XMPP user
// juliet@xmpp.example.com when "xmpp.example.com" maps to it. Several SIP
// watchers of one presentity share one XMPP subscription, made from the
// fixed JID presenced@<component domain> (Config.User changes the local
// part): the XMPP user sees and approves one subscriber, the gateway, which
// is what RFC 8048 §5 allows a gateway to do, and the SIP side's own
// authorization (pa's policy) decides who among the SIP watchers sees it.
// The first SIP watcher makes the gateway subscribe, once; presenced never
// cancels that subscription (the user would have to approve the gateway
// again for the next watcher), only the user does. Before every probe (on
// each (re)connection, and when a user is watched again) the module is sent
// a reset, so no resource that left while nobody listened survives; while
// the server is unreachable watched users are reported unavailable.
//
// SIP users seen from XMPP. An XMPP user who subscribes to
// alice@<component domain> watches sip:alice@<Config.SIPDomain> (gateway.go):
// the component asks the host for what such a watcher would be sent,
// answers the request after the module's authorization, and sends the
// PIDF mapped to <presence/> (pidf.go), now and at every change.
package xmpp

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/presenced/presenced/abi"
)

// Config is the [xmpp] table of the daemon's TOML.
type Config struct {
	Server  string            // component port of the XMPP server, host:port
	Domain  string            // the component's domain, e.g. sip.example.com
	Secret  string            // the component's shared secret
	Domains map[string]string // SIP domain → XMPP domain
	// SIPDomain is the SIP domain XMPP users reach through the component:
	// a subscription to alice@Domain watches sip:alice@SIPDomain. Empty:
	// the SIP domain of Domains if it has one entry, else the reverse
	// direction is off (requests are answered "unsubscribed").
	SIPDomain  string
	User       string        // local part of the subscribing JID; "presenced" if empty
	MinBackoff time.Duration // first reconnection delay; 1s if zero
	MaxBackoff time.Duration // reconnection delay cap; 60s if zero
	Keepalive  time.Duration // whitespace keepalive when idle; 60s if zero
	Logger     *slog.Logger
}

// Host is the presence server, as the connector needs it. Neither method
// is called with a connector lock held, and both are called from one
// goroutine, one call at a time, in the order the stanzas came.
type Host interface {
	// Presence hands an XMPP user's presence to the presence module for
	// the presentity (op 6).
	Presence(sipURI string, p abi.XMPPPresence)
	// Render returns what a new watcher watcherURI of the presentity would
	// be sent now: the module's authorization (active, pending, rejected)
	// and, when active, its PIDF document. It changes nothing.
	Render(sipURI, watcherURI string) (status string, pidf []byte, err error)
}

// Component is the connector. Create it with New, start it with Run.
type Component struct {
	cfg       Config
	host      Host
	log       *slog.Logger
	jid       string            // the subscriber, presenced@domain
	xmppToSIP map[string]string // reverse of Domains

	mu        sync.Mutex
	watched   map[string]int // bare JID → SIP watchers
	out       []string       // queued stanzas for the current connection
	wake      chan struct{}
	connected bool
	down      bool     // watched users were reported unreachable since the last connection
	inbox     []func() // calls to the host, in order (deliver runs them)
	post      chan struct{}

	// subs is the reverse direction: SIP URI → subscriber's bare JID. Only
	// deliver's goroutine touches it.
	subs map[string]map[string]*subscriber
}

// New checks cfg and returns a connector feeding host.
func New(cfg Config, host Host) (*Component, error) {
	if cfg.Server == "" {
		return nil, errors.New("xmpp: server (host:port of the component port) is not set")
	}
	if _, _, err := net.SplitHostPort(cfg.Server); err != nil {
		return nil, fmt.Errorf("xmpp: server %q: %v", cfg.Server, err)
	}
	if cfg.Domain == "" || strings.ContainsAny(cfg.Domain, "@/ ") {
		return nil, fmt.Errorf("xmpp: domain %q: want the component's domain, e.g. sip.example.com", cfg.Domain)
	}
	if cfg.Secret == "" {
		return nil, errors.New("xmpp: secret is not set")
	}
	if len(cfg.Domains) == 0 {
		return nil, errors.New("xmpp: domains maps no SIP domain to an XMPP domain")
	}
	if cfg.User == "" {
		cfg.User = "presenced"
	}
	if cfg.SIPDomain == "" && len(cfg.Domains) == 1 {
		for s := range cfg.Domains {
			cfg.SIPDomain = s
		}
	}
	cfg.SIPDomain = strings.ToLower(cfg.SIPDomain)
	if strings.ContainsAny(cfg.SIPDomain, "@/:; ") {
		return nil, fmt.Errorf("xmpp: sip_domain %q: want a SIP domain, e.g. example.com", cfg.SIPDomain)
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = time.Minute
	}
	if cfg.Keepalive <= 0 {
		cfg.Keepalive = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	// "domain", not "component": the daemon tags the connector's lines
	// component=xmpp, and a JSON line must not carry a key twice.
	c := &Component{cfg: cfg, host: host, log: cfg.Logger.With("domain", cfg.Domain, "server", cfg.Server),
		jid: cfg.User + "@" + cfg.Domain, xmppToSIP: map[string]string{},
		watched: map[string]int{}, wake: make(chan struct{}, 1), post: make(chan struct{}, 1),
		subs: map[string]map[string]*subscriber{}}
	for s, x := range cfg.Domains {
		s, x = strings.ToLower(s), strings.ToLower(x)
		if o, dup := c.xmppToSIP[x]; dup {
			return nil, fmt.Errorf("xmpp: domains: XMPP domain %q is mapped from both %q and %q", x, o, s)
		}
		c.xmppToSIP[x] = s
	}
	return c, nil
}

// JID returns the XMPP user a SIP URI maps to (bare JID), if its domain is
// mapped.
func (c *Component) JID(sipURI string) (string, bool) {
	key, ok := abi.Presentity(sipURI)
	if !ok {
		return "", false
	}
	// A key's user holds no unescaped '@' and its host is lower case,
	// without a port.
	user, host, _ := strings.Cut(strings.TrimPrefix(key, "sip:"), "@")
	x, ok := c.cfg.Domains[host]
	if !ok {
		for s, xd := range c.cfg.Domains {
			if strings.EqualFold(s, host) {
				x, ok = xd, true
			}
		}
	}
	if !ok {
		return "", false
	}
	return strings.ToLower(user) + "@" + strings.ToLower(x), true
}

// SIPURI returns the presentity a bare JID is, if its domain is mapped.
func (c *Component) SIPURI(bareJID string) (string, bool) {
	user, dom, ok := strings.Cut(strings.ToLower(bareJID), "@")
	if !ok || user == "" {
		return "", false
	}
	s, ok := c.xmppToSIP[dom]
	if !ok {
		return "", false
	}
	return "sip:" + user + "@" + s, true
}

// Maps reports whether the SIP URI is an XMPP user's presentity.
func (c *Component) Maps(sipURI string) bool {
	_, ok := c.JID(sipURI)
	return ok
}

// Watch records a SIP watcher of sipURI. The first one subscribes to the
// XMPP user's presence (the user's server answers at once when the
// gateway was approved before) and, connected, resets what the module
// knows of the user, for the probe that follows; while the server is
// unreachable it reports the user unavailable. It does nothing for an
// unmapped URI, and never blocks.
func (c *Component) Watch(sipURI string) {
	jid, ok := c.JID(sipURI)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.watched[jid]++
	if c.watched[jid] > 1 {
		return
	}
	switch {
	case c.connected:
		c.enqueue(c.reset(jid))
		c.queue(c.subscribe(jid)...)
	case c.down:
		c.enqueue(c.unreachable(jid))
	}
}

// Unwatch undoes one Watch. The last one keeps the XMPP subscription: the
// connector only stops listening to the user, and a later watcher needs no
// new approval from them.
func (c *Component) Unwatch(sipURI string) {
	jid, ok := c.JID(sipURI)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.watched[jid] > 1 {
		c.watched[jid]--
		return
	}
	delete(c.watched, jid)
}

// Connected reports whether the component is connected and authenticated.
func (c *Component) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connected
}

// subscribe asks for the user's presence. The probe RFC 8048 §5 pairs with
// it is sent when the user's server answers "subscribed": a probe while the
// request is still pending is answered "unsubscribed" (RFC 6121 §4.3.2),
// which Prosody takes as cancelling the request. Once approved, the
// server sends the current presence on its own; the probe covers a
// subscription approved before (a reconnection).
func (c *Component) subscribe(jid string) []string {
	return []string{c.presence(jid, "subscribe")}
}

func (c *Component) presence(to, typ string) string {
	return fmt.Sprintf(`<presence from='%s' to='%s' type='%s' id='%s'/>`, esc(c.jid), esc(to), typ, newID())
}

// reset is the input that makes the module forget the user before a
// probe (ABI.md, op 6).
func (c *Component) reset(jid string) func() {
	return c.input(jid, abi.XMPPPresence{From: jid, Type: "reset"})
}

// unreachable is the input that shows the user closed while the XMPP
// server cannot be reached.
func (c *Component) unreachable(jid string) func() {
	return c.input(jid, abi.XMPPPresence{From: jid, Type: "unavailable", Status: "XMPP server unreachable", Lang: "en"})
}

func (c *Component) input(jid string, p abi.XMPPPresence) func() {
	uri, _ := c.SIPURI(jid)
	return func() { c.host.Presence(uri, p) }
}

// enqueue adds a call to the host for deliver; c.mu is held.
func (c *Component) enqueue(f ...func()) {
	c.inbox = append(c.inbox, f...)
	select {
	case c.post <- struct{}{}:
	default:
	}
}

// deliver makes the calls to the host, in order, until ctx is done: the
// reader, Watch and Changed only queue them, so none of them waits for a
// module call, and Watch, called under the server's resource lock, cannot
// deadlock with a call that takes it.
func (c *Component) deliver(ctx context.Context) {
	for {
		c.mu.Lock()
		in := c.inbox
		c.inbox = nil
		c.mu.Unlock()
		for _, f := range in {
			f()
		}
		select {
		case <-ctx.Done():
			return
		case <-c.post:
		}
	}
}

// queue adds stanzas for the writer; c.mu is held.
func (c *Component) queue(s ...string) {
	c.out = append(c.out, s...)
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Run connects and stays connected, reconnecting with a doubling backoff
// up to MaxBackoff, until ctx is done.
func (c *Component) Run(ctx context.Context) {
	delivered := make(chan struct{})
	go func() { c.deliver(ctx); close(delivered) }()
	defer func() { <-delivered }()
	backoff := c.cfg.MinBackoff
	for ctx.Err() == nil {
		start := time.Now()
		err := c.session(ctx)
		if ctx.Err() != nil {
			return
		}
		c.lost()
		if time.Since(start) > 2*c.cfg.MaxBackoff {
			backoff = c.cfg.MinBackoff
		}
		c.log.Warn("xmpp component not connected; SIP watchers of XMPP users see them closed until it connects",
			"err", err, "retry_in", backoff.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, c.cfg.MaxBackoff)
	}
}

// StreamError is a <stream:error/> the server sent, such as not-authorized
// for a wrong secret or domain.
type StreamError struct {
	Condition, Text string
}

func (e *StreamError) Error() string {
	s := "stream error " + e.Condition
	if e.Text != "" {
		s += ": " + e.Text
	}
	switch e.Condition {
	case "not-authorized":
		s += " (handshake refused: check the component secret and that the server has a Component for this domain)"
	case "host-unknown":
		s += " (the server has no Component for this domain)"
	case "conflict":
		s += " (another connection already serves this component)"
	}
	return s
}

type streamErr struct {
	Inner []struct {
		XMLName xml.Name
		Text    string `xml:",chardata"`
	} `xml:",any"`
}

type stanza struct {
	XMLName  xml.Name
	From     string `xml:"from,attr"`
	To       string `xml:"to,attr"`
	Type     string `xml:"type,attr"`
	ID       string `xml:"id,attr"`
	Lang     string `xml:"http://www.w3.org/XML/1998/namespace lang,attr"`
	Show     string `xml:"show"`
	Priority string `xml:"priority"`
	Status   []struct {
		Lang string `xml:"http://www.w3.org/XML/1998/namespace lang,attr"`
		Text string `xml:",chardata"`
	} `xml:"status"`
}

const (
	nsStream = "http://etherx.jabber.org/streams"
	dialWait = 10 * time.Second
)

// session runs one connection: connect, handshake, subscribe to every
// watched user, then read stanzas until the connection ends.
func (c *Component) session(ctx context.Context) (err error) {
	d := net.Dialer{Timeout: dialWait}
	conn, err := d.DialContext(ctx, "tcp", c.cfg.Server)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	conn.SetDeadline(time.Now().Add(dialWait))
	if _, err := fmt.Fprintf(conn, `<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='%s' to='%s'>`, nsStream, esc(c.cfg.Domain)); err != nil {
		return err
	}
	dec := xml.NewDecoder(conn)
	var id string
	for id == "" {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("reading stream header: %w", err)
		}
		if s, ok := tok.(xml.StartElement); ok {
			if s.Name.Local != "stream" || s.Name.Space != nsStream {
				return fmt.Errorf("server opened <%s>, not a stream", s.Name.Local)
			}
			for _, a := range s.Attr {
				if a.Name.Local == "id" {
					id = a.Value
				}
			}
			if id == "" {
				// A server that will not serve this component (Prosody
				// for an unknown domain) answers with a header and then
				// a stream error: report the error, not the header.
				return c.headerError(dec)
			}
		}
	}
	sum := sha1.Sum([]byte(id + c.cfg.Secret))
	if _, err := fmt.Fprintf(conn, "<handshake>%s</handshake>", hex.EncodeToString(sum[:])); err != nil {
		return err
	}
	if err := c.expectHandshake(dec); err != nil {
		if se := (*StreamError)(nil); errors.As(err, &se) {
			c.log.Error("xmpp server refused the component", "err", err)
		}
		return err
	}
	conn.SetDeadline(time.Time{})
	c.log.Info("xmpp component connected", "jid", c.jid)

	// Whatever the module knows of the watched users may be stale (they
	// changed while the connector was away, or while presenced was
	// stopped): reset each, then subscribe again, which the user's server
	// answers (an approved gateway at once) and the probe follows.
	c.mu.Lock()
	c.connected, c.down = true, false
	c.out = nil
	for jid := range c.watched {
		c.enqueue(c.reset(jid))
		c.out = append(c.out, c.subscribe(jid)...)
	}
	c.enqueue(c.resend)
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.connected = false
		c.out = nil
		c.mu.Unlock()
	}()

	werr := make(chan error, 1)
	done := make(chan struct{})
	defer close(done)
	go func() { werr <- c.writer(conn, done) }()
	for {
		if err := c.read(dec); err != nil {
			select {
			case e := <-werr:
				return e
			default:
			}
			return err
		}
	}
}

func (c *Component) expectHandshake(dec *xml.Decoder) error {
	for {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("waiting for the handshake answer: %w", err)
		}
		s, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		switch {
		case s.Name.Local == "handshake":
			return dec.Skip()
		case s.Name.Local == "error" && s.Name.Space == nsStream:
			return c.streamError(dec, s)
		default:
			if err := dec.Skip(); err != nil {
				return err
			}
		}
	}
}

func (c *Component) streamError(dec *xml.Decoder, s xml.StartElement) error {
	var e streamErr
	if err := dec.DecodeElement(&e, &s); err != nil {
		return err
	}
	se := &StreamError{Condition: "undefined-condition"}
	for _, in := range e.Inner {
		if in.XMLName.Local == "text" {
			se.Text = strings.TrimSpace(in.Text)
		} else {
			se.Condition = in.XMLName.Local
		}
	}
	return se
}

// headerError reads what follows a stream header without an id: the
// stream error that explains it, if the server sent one.
func (c *Component) headerError(dec *xml.Decoder) error {
	for {
		tok, err := dec.Token()
		if err != nil {
			return errors.New("stream header without an id, and no stream error")
		}
		if s, ok := tok.(xml.StartElement); ok {
			if s.Name.Local == "error" && s.Name.Space == nsStream {
				err := c.streamError(dec, s)
				c.log.Error("xmpp server refused the component", "err", err)
				return err
			}
			return fmt.Errorf("stream header without an id, then <%s>", s.Name.Local)
		}
	}
}

// lost reports every watched user unavailable, once per outage: a server
// that is down, or refuses the component, must not leave SIP watchers with
// presence from before (saved state at start included).
func (c *Component) lost() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return
	}
	c.down = true
	for jid := range c.watched {
		c.enqueue(c.unreachable(jid))
	}
}

func (c *Component) writer(conn net.Conn, done chan struct{}) error {
	t := time.NewTimer(c.cfg.Keepalive)
	defer t.Stop()
	for {
		c.mu.Lock()
		out := c.out
		c.out = nil
		c.mu.Unlock()
		if len(out) > 0 {
			conn.SetWriteDeadline(time.Now().Add(dialWait))
			if _, err := io.WriteString(conn, strings.Join(out, "")); err != nil {
				conn.Close()
				return err
			}
			t.Reset(c.cfg.Keepalive)
		}
		select {
		case <-done:
			return nil
		case <-c.wake:
		case <-t.C:
			c.mu.Lock()
			c.out = append(c.out, " ")
			c.mu.Unlock()
			t.Reset(c.cfg.Keepalive)
		}
	}
}

// read handles one top-level element of the stream.
func (c *Component) read(dec *xml.Decoder) error {
	for {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch s := tok.(type) {
		case xml.EndElement:
			return errors.New("server closed the stream")
		case xml.StartElement:
			if s.Name.Local == "error" && s.Name.Space == nsStream {
				err := c.streamError(dec, s)
				c.log.Error("xmpp server ended the stream", "err", err)
				return err
			}
			var st stanza
			if err := dec.DecodeElement(&st, &s); err != nil {
				return err
			}
			c.handle(&st)
			return nil
		}
	}
}

func (c *Component) handle(st *stanza) {
	c.log.Debug("xmpp stanza", "name", st.XMLName.Local, "type", st.Type, "from", st.From, "to", st.To)
	switch st.XMLName.Local {
	case "iq":
		if st.Type == "get" || st.Type == "set" {
			c.send(fmt.Sprintf(`<iq type='error' from='%s' to='%s' id='%s'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`,
				esc(st.To), esc(st.From), esc(st.ID)))
		}
		return
	case "presence":
	default:
		return
	}
	bare, _, _ := strings.Cut(st.From, "/")
	bare = strings.ToLower(bare)
	to, _, _ := strings.Cut(strings.ToLower(st.To), "/")
	if to != c.jid && strings.Contains(to, "@") {
		c.mu.Lock()
		c.enqueue(func() { c.fromSubscriber(st, bare, to) })
		c.mu.Unlock()
		return
	}
	switch st.Type {
	case "", "unavailable":
	case "unsubscribed":
		c.log.Info("xmpp user refused or cancelled the presence subscription", "jid", bare)
		st.Type, st.Show = "unavailable", ""
		st.From = bare
	case "error":
		c.log.Warn("xmpp presence error", "from", st.From)
		st.Type, st.Show, st.From = "unavailable", "", bare
	case "subscribed":
		c.mu.Lock()
		if c.watched[bare] > 0 && c.connected {
			c.queue(c.presence(bare, "probe"))
		}
		c.mu.Unlock()
		return
	default: // subscribe, unsubscribe, probe to the gateway itself
		if st.Type == "subscribe" {
			c.send(fmt.Sprintf(`<presence from='%s' to='%s' type='unsubscribed'/>`, esc(c.jid), esc(bare)))
		}
		return
	}
	uri, ok := c.SIPURI(bare)
	if !ok {
		return
	}
	p := abi.XMPPPresence{From: st.From, Type: st.Type, Show: strings.TrimSpace(st.Show), Lang: st.Lang}
	var prio int
	if _, err := fmt.Sscan(strings.TrimSpace(st.Priority), &prio); err == nil && prio >= -128 && prio <= 127 {
		p.Priority = int32(prio)
	}
	for i, s := range st.Status {
		if i == 0 || (s.Lang == st.Lang && s.Lang != "") {
			p.Status = strings.TrimSpace(s.Text)
			if s.Lang != "" {
				p.Lang = s.Lang
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// A user nobody watches is not listened to: the gateway stays
	// subscribed, and a new watcher's reset and probe bring the user back.
	if c.watched[bare] > 0 {
		c.enqueue(func() { c.host.Presence(uri, p) })
	}
}

func (c *Component) send(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.connected {
		c.queue(s)
	}
}

func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return strings.ReplaceAll(b.String(), "'", "&#39;")
}

func newID() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}
