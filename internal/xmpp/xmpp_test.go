package xmpp

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/internal/logtest"
)

func TestMapping(t *testing.T) {
	c, err := New(Config{Server: "127.0.0.1:1", Domain: "sip.example.com", Secret: "x",
		Domains: map[string]string{"xmpp.example.com": "jabber.example.org"}}, testHost{})
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{"sip:Juliet@xmpp.example.com": "juliet@jabber.example.org",
		"sip:juliet@XMPP.example.com;transport=tcp": "juliet@jabber.example.org", "sip:juliet@example.com": "", "sip:xmpp.example.com": "",
		"pres:%6Auliet@xmpp.example.com:5393": "juliet@jabber.example.org"} {
		if got, _ := c.JID(in); got != want {
			t.Errorf("JID(%q) = %q, want %q", in, got, want)
		}
	}
	if got, _ := c.SIPURI("juliet@jabber.example.org"); got != "sip:juliet@xmpp.example.com" {
		t.Errorf("SIPURI = %q", got)
	}
	for _, bad := range []Config{{}, {Server: "x:1"}, {Server: "x:1", Domain: "d"}, {Server: "x:1", Domain: "d", Secret: "s"}} {
		if _, err := New(bad, testHost{}); err == nil {
			t.Errorf("New(%+v) accepted", bad)
		}
	}
}

// fakeServer accepts component connections, checks the handshake and
// hands each authenticated connection to the test.
func fakeServer(t *testing.T, secret string) (string, chan net.Conn) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	conns := make(chan net.Conn, 4)
	go func() {
		for n := 0; ; n++ {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { conn.Close() })
			dec := xml.NewDecoder(conn)
			id := fmt.Sprintf("id%d", n)
			var hs string
			for hs == "" {
				tok, err := dec.Token()
				if err != nil {
					conn.Close()
					break
				}
				if s, ok := tok.(xml.StartElement); ok {
					if s.Name.Local == "stream" {
						fmt.Fprintf(conn, `<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:component:accept' id='%s' from='sip.test'>`, id)
						continue
					}
					var v string
					dec.DecodeElement(&v, &s)
					hs = v
				}
			}
			sum := sha1.Sum([]byte(id + secret))
			if hs != hex.EncodeToString(sum[:]) {
				io.WriteString(conn, `<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>`)
				conn.Close()
				continue
			}
			io.WriteString(conn, `<handshake/>`)
			conns <- conn
		}
	}()
	return l.Addr().String(), conns
}

func readStanza(t *testing.T, dec *xml.Decoder) stanza {
	t.Helper()
	for {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		if s, ok := tok.(xml.StartElement); ok && s.Name.Local != "stream" && s.Name.Local != "handshake" {
			var st stanza
			if err := dec.DecodeElement(&st, &s); err != nil {
				t.Fatal(err)
			}
			return st
		}
	}
}

type event struct {
	uri string
	p   abi.XMPPPresence
}

// testHost adapts functions to Host; a nil render renders nothing.
type testHost struct {
	presence func(string, abi.XMPPPresence)
	render   func(uri, watcher string) (string, []byte, error)
}

func (h testHost) Presence(uri string, p abi.XMPPPresence) { h.presence(uri, p) }

func (h testHost) Render(uri, watcher string) (string, []byte, error) {
	if h.render == nil {
		return abi.StatusPending, nil, nil
	}
	return h.render(uri, watcher)
}

func TestConnector(t *testing.T) {
	addr, conns := fakeServer(t, "pw")
	events := make(chan event, 16)
	c, err := New(Config{Server: addr, Domain: "sip.test", Secret: "pw", Domains: map[string]string{"sip.test.org": "xmpp.test"},
		MinBackoff: 10 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		testHost{presence: func(uri string, p abi.XMPPPresence) { events <- event{uri, p} }})
	if err != nil {
		t.Fatal(err)
	}
	c.Watch("sip:juliet@sip.test.org")
	c.Watch("sip:juliet@sip.test.org") // a second watcher: one subscription
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	defer func() { cancel(); <-done }()
	go func() { c.Run(ctx); close(done) }()

	conn := <-conns
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	dec := xml.NewDecoder(conn)
	// On connecting, the module forgets what it knew of juliet before the
	// subscription's answers come.
	if e := <-events; e.uri != "sip:juliet@sip.test.org" || e.p.Type != "reset" || e.p.From != "juliet@xmpp.test" {
		t.Fatalf("on connecting: %+v, want a reset", e)
	}
	st := readStanza(t, dec)
	if st.Type != "subscribe" || st.To != "juliet@xmpp.test" || st.From != "presenced@sip.test" {
		t.Fatalf("first stanza %+v, want a subscribe", st)
	}
	io.WriteString(conn, `<presence from='juliet@xmpp.test' to='presenced@sip.test' type='subscribed'/>`)
	if st = readStanza(t, dec); st.Type != "probe" {
		t.Fatalf("after subscribed: %+v, want a probe", st)
	}
	io.WriteString(conn, `<presence from='juliet@xmpp.test/r1' to='presenced@sip.test' xml:lang='en'><show>dnd</show><status>busy</status><priority>7</priority></presence>`+
		`<presence from='nobody@xmpp.test/r1' to='presenced@sip.test'/>`+
		`<iq type='get' id='q1' from='xmpp.test' to='sip.test'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	e := <-events
	if want := (event{"sip:juliet@sip.test.org", abi.XMPPPresence{From: "juliet@xmpp.test/r1", Show: "dnd", Status: "busy", Priority: 7, Lang: "en"}}); e != want {
		t.Fatalf("got %+v, want %+v", e, want)
	}
	if st = readStanza(t, dec); st.XMLName.Local != "iq" || st.Type != "error" || st.ID != "q1" {
		t.Fatalf("iq answer %+v", st)
	}
	c.Unwatch("sip:juliet@sip.test.org")
	c.Unwatch("sip:juliet@sip.test.org")
	// The last watcher leaving keeps the subscription: the next stanza is
	// romeo's subscribe, not an unsubscribe to juliet.
	c.Watch("sip:romeo@sip.test.org")
	if e := <-events; e.uri != "sip:romeo@sip.test.org" || e.p.Type != "reset" {
		t.Fatalf("a new watched user: %+v, want a reset", e)
	}
	if st = readStanza(t, dec); st.Type != "subscribe" || st.To != "romeo@xmpp.test" {
		t.Fatalf("got %+v, want a subscribe to romeo", st)
	}
	// juliet, watched by nobody, is not listened to.
	io.WriteString(conn, `<presence from='juliet@xmpp.test/r1' to='presenced@sip.test'/>`)

	// The server going away makes the watched users unavailable, and the
	// connector reconnects, resets and subscribes again.
	conn.Close()
	e = <-events
	if e.uri != "sip:romeo@sip.test.org" || e.p.Type != "unavailable" || e.p.From != "romeo@xmpp.test" {
		t.Fatalf("on disconnect: %+v", e)
	}
	conn = <-conns
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if e := <-events; e.uri != "sip:romeo@sip.test.org" || e.p.Type != "reset" {
		t.Fatalf("on reconnecting: %+v, want a reset", e)
	}
	if st = readStanza(t, xml.NewDecoder(conn)); st.Type != "subscribe" || st.To != "romeo@xmpp.test" {
		t.Fatalf("after reconnecting: %+v", st)
	}
}

func TestRefusedHandshake(t *testing.T) {
	addr, _ := fakeServer(t, "right")
	var buf logtest.Buffer
	c, _ := New(Config{Server: addr, Domain: "sip.test", Secret: "wrong", Domains: map[string]string{"a": "b"},
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&buf, nil))},
		testHost{presence: func(string, abi.XMPPPresence) {}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	for strings.Count(buf.String(), "handshake refused") < 3 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if !strings.Contains(buf.String(), "level=ERROR msg=\"xmpp server refused the component\"") {
		t.Fatalf("log:\n%s", buf.String())
	}
}
